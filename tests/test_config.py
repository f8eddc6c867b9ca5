"""Config defaults are the paper's; YAML overrides; bad keys and values are named."""

import dataclasses
import math
import pathlib

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seg4reg_tf import config as config_module
from seg4reg_tf.config import REMOVED, Config, load_config

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"


def test_defaults_are_the_papers_recipe():
    config = Config()
    assert (config.data.image_height, config.data.image_width) == (512, 256)
    assert config.data.flip and config.data.rotation_degrees == 45.0
    assert config.data.scale_range == (0.85, 1.25)
    segmentation = [config.seg, config.roie, config.tcl]
    regression = [config.reg, config.refine]
    assert sum(phase.epochs for phase in segmentation) == 90
    assert sum(phase.epochs for phase in regression) == 200
    assert all(phase.learning_rate == 1e-4 for phase in segmentation)
    assert all(phase.learning_rate == 1e-3 for phase in regression)
    assert all(phase.weight_decay == 1e-5 for phase in segmentation + regression)
    assert config.segmenter.output_stride == 8


def test_paper_yaml_states_the_defaults_and_smoke_yaml_is_small():
    assert load_config(CONFIGS / "paper.yaml") == Config()
    smoke = load_config(CONFIGS / "smoke.yaml")
    assert smoke.data.image_height * smoke.data.image_width <= 64 * 32
    assert smoke.segmenter.weights == "none" and smoke.regressor.weights == "none"
    for path in CONFIGS.glob("*.yaml"):
        assert path.read_text().startswith("#"), f"{path} must open with a comment"
        load_config(path)  # every shipped config is valid


def test_every_option_is_set_by_a_shipped_config_or_documented():
    """The config is a user's surface: each of its keys is set by one of configs/*.yaml or
    named in the docs (as `section.key`, or `<phase>.key` for the phases')."""
    docs = "".join(path.read_text() for path in (CONFIGS.parent / "docs").glob("*.md"))
    shipped = set()
    for path in CONFIGS.glob("*.yaml"):
        for section, values in yaml.safe_load(path.read_text()).items():
            shipped |= {f"{section}.{key}" for key in values}
    config = Config()
    keys = [(section.name, field.name) for section in dataclasses.fields(config)
            for field in dataclasses.fields(getattr(config, section.name))]
    unseen = [f"{section}.{key}" for section, key in keys
              if f"{section}.{key}" not in shipped and f"`{section}.{key}`" not in docs and f"`<phase>.{key}`" not in docs]
    assert len(keys) > 50 and unseen == []


def test_yaml_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seg:\n  epochs: 3\ndata:\n  scale_range: [0.9, 1.1]\n  root: /data\ninference:\n  angles: vertebrae\n")
    config = load_config(path)
    assert config.seg.epochs == 3 and config.seg.learning_rate == 1e-4
    assert config.inference.angles == "vertebrae" and Config().inference.angles == "auto"
    assert config.data.scale_range == (0.9, 1.1) and config.data.root == "/data"
    assert config.roie.epochs == Config().roie.epochs


@pytest.mark.parametrize(
    "text, message",
    [
        ("seg:\n  epoch: 3\n", r"c\.yaml: unknown key 'seg\.epoch'"),
        ("segmentor:\n  weights: none\n", r"c\.yaml: unknown key 'segmentor'"),
        ("seg:\n  epochs: ten\n", r"c\.yaml: key 'seg\.epochs' must be an integer"),
        ("seg:\n  epochs: 2.5\n", r"key 'seg\.epochs' must be an integer"),
        ("data:\n  flip: 1\n", r"key 'data\.flip' must be true or false"),
        ("data:\n  scale_range: [0.9]\n", r"key 'data\.scale_range' must be a list of 2"),
        ("regressor:\n  input_mode: rgb\n", r"key 'regressor\.input_mode' must be one of"),
        ("data:\n  image_height: 500\n", r"c\.yaml: in 'data': 'image_height' must be a positive multiple of 32"),
        ("data: 3\n", r"c\.yaml: 'data' must be a mapping"),
        ("seg: [\n", r"c\.yaml: not valid YAML"),
        ("", r"c\.yaml: expected a mapping of config sections .* got an empty file"),
        ("# only a comment\n", r"c\.yaml: expected a mapping .* got an empty file"),
        ("[]\n", r"c\.yaml: expected a mapping .* got list"),
        ("- data\n", r"c\.yaml: expected a mapping .* got list"),
        ("seg:\n  learning_rate: .nan\n", r"key 'seg\.learning_rate' must be a finite number"),
        ("reg:\n  weight_decay: .inf\n", r"key 'reg\.weight_decay' must be a finite number"),
        ("data:\n  synthetic_train: -5\n", r"'synthetic_train' must be >= 1"),
        ("roie:\n  monitor: jaccard\n", r"key 'roie\.monitor' must be one of 'dice', 'readout'"),
        ("reg:\n  monitor: readout\n", r"unknown key 'reg\.monitor'"),
        ("segmenter:\n  boundary_weight: -1\n", r"in 'segmenter': 'boundary_weight' must be >= 0"),
        ("segmenter:\n  boundary_width: 3\n", r"'segmenter\.boundary_width' was removed \(the band's width"),
        ("data:\n  gamma_range: [0.6, 1.6]\n", r"c\.yaml: 'data\.gamma_range' was removed \(exposure augmentation"),
        ("segmenter:\n  positive_class_weight: 2.0\n", r"'segmenter\.positive_class_weight' was removed"),
        ("refine:\n  loss: smape_detached\n", r"'refine\.loss: smape_detached' was removed"),
        ("seg:\n  precision: float16\n", r"key 'seg\.precision' must be one of 'float32', 'bfloat16'"),
        ("reg:\n  precision: bfloat16\n", r"unknown key 'reg\.precision'"),
        ("export:\n  precision: auto\n", r"key 'export\.precision' must be one of 'float32', 'bfloat16'"),
        ("data:\n  synthetic_renderer: realistic\n", r"'data\.synthetic_renderer' was removed"),
        ("regressor:\n  vertebra_weight: 0.5\n", r"'regressor\.vertebra_weight' was removed \(N_R's dense supervision"),
        ("inference:\n  segmenter_flips: true\n", r"'inference\.segmenter_flips' was removed \(N_S's test-time flips doubled"),
        ("export:\n  intra_op_threads: 2\n", r"'export\.intra_op_threads' was removed \(TensorFlow's own thread pools"),
    ],
)
def test_bad_yaml_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path)


@pytest.mark.parametrize("key", sorted(REMOVED))
def test_a_removed_option_at_its_old_default_still_loads(tmp_path, key):
    """Workdirs written before an option was removed name it with its old default in their
    config.yaml: they load (the option ignored); any other value is refused as removed."""
    section, name = key.split(".")
    default = REMOVED[key][0]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({section: {name: list(default) if isinstance(default, tuple) else default}}))
    assert load_config(path) == load_config(None)
    path.write_text(yaml.safe_dump({section: {name: "something else"}}))
    with pytest.raises(ValueError, match=f"'{key}' was removed"):
        load_config(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_configs_are_frozen_and_round_trip(tmp_path):
    config = load_config(CONFIGS / "smoke.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seg.epochs = 5
    path = tmp_path / "saved.yaml"
    config_module.save_config(config, path)
    assert load_config(path) == config


SECTIONS = [field.name for field in dataclasses.fields(Config)]
KEYS = ["epochs", "weights", "image_height", "learning_rate", "exclude", "backbone", "threshold", "root", "x"]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.one_of(
    VALUES,
    st.dictionaries(st.sampled_from(SECTIONS), st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3), max_size=3),
))
def test_fuzzed_yaml_configs_load_or_are_refused_by_name(tmp_path, document):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        config = load_config(path)
    except ValueError as error:
        assert str(path) in str(error)
    else:
        assert isinstance(config, Config)
        for section in dataclasses.asdict(config).values():
            for value in (section.values() if isinstance(section, dict) else ()):
                assert not isinstance(value, float) or math.isfinite(value)


def test_a_key_named_twice_is_refused_with_its_lines_and_merged_keys_may_be_overridden(tmp_path):
    """PyYAML keeps the last of two equal keys: the run would start another recipe than the
    one the reader sees. Keys merged from an anchor (<<: *base) may be overridden on purpose."""
    path = tmp_path / "c.yaml"
    path.write_text("seg:\n  epochs: 3\nreg:\n  epochs: 4\nseg:\n  epochs: 30\n")
    with pytest.raises(ValueError, match=r"(?s)c\.yaml: not valid YAML: .*found the key 'seg' twice \(first at line 1\)"):
        load_config(path)
    path.write_text("seg:\n  epochs: 3\n  batch_size: 2\n  epochs: 30\n")
    with pytest.raises(ValueError, match=r"found the key 'epochs' twice \(first at line 2\)"):
        load_config(path)
    path.write_text("seg: &phase {epochs: 3, batch_size: 2}\nreg:\n  <<: *phase\n  epochs: 5\n")
    config = load_config(path)
    assert (config.seg.epochs, config.reg.epochs, config.reg.batch_size) == (3, 5, 2)


def test_utf16_with_a_byte_order_mark_loads_and_other_encodings_are_refused_by_name(tmp_path):
    text = "seg:\n  epochs: 3\ndata:\n  root: /données\n"
    path = tmp_path / "c.yaml"
    path.write_bytes(text.encode("utf-8"))
    expected = load_config(path)
    for encoded in (text.encode("utf-16"), b"\xef\xbb\xbf" + text.encode("utf-8")):  # BOMs
        path.write_bytes(encoded)
        assert load_config(path) == expected
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=r"(?s)c\.yaml: not valid YAML: .*invalid continuation byte"):
        load_config(path)


SAMPLE_CONFIGS = [(CONFIGS / name).read_bytes() for name in ("smoke.yaml", "aasce_cpu.yaml", "demo.yaml")]
# YAML features a hostile or careless file may use: anchors and merges, tags (safe and not),
# several documents, flow style, odd scalars, deep nesting, non-mapping documents
SNIPPETS = [b"\nseg: &a {epochs: 1}\n", b"\nreg: *a\n", b"\n<<: {seg: {epochs: 2}}\n", b"\nseg: !!python/object:os.system {}\n",
            b"\nseg: {epochs: !!binary aGk=}\n", b"\n---\nseg: {}\n", b"\n...\n", b"\n? [a, b]\n: 1\n", b"\nseg: {epochs: !!float .nan}\n",
            b"\n- 1\n- 2\n", b"\n" + b"[" * 200 + b"]" * 200 + b"\n", b"\ndata: {root: !custom x}\n", b"\nseg: {epochs: 0x10}\n",
            b"\nseg: {epochs: 1_000}\n", b"\ninference: {angles: yes}\n", b"\n\t\n", b"\x00", b"\nseg: {epochs: 3}\nseg: {epochs: 4}\n"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.sampled_from(SAMPLE_CONFIGS),
    cuts=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 40)), max_size=2),
    inserts=st.lists(st.tuples(st.floats(0, 1), st.one_of(st.sampled_from(SNIPPETS), st.binary(max_size=12))), max_size=3),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]),
)
def test_byte_level_fuzzed_configs_load_or_are_refused_by_name(tmp_path, base, cuts, inserts, encoding):
    """Shipped configs cut, spliced with YAML features and random bytes, and re-encoded: each
    loads as a Config or is refused with a ValueError naming the file, never another error."""
    data = bytearray(base)
    for where, length in cuts:
        start = int(where * len(data))
        del data[start : start + length]
    for where, piece in inserts:
        start = int(where * len(data))
        data[start:start] = piece
    try:
        data = bytes(data).decode("utf-8").encode(encoding)
    except (UnicodeDecodeError, UnicodeEncodeError):
        data = bytes(data)  # random bytes that are no text in that encoding stay as they are
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    try:
        config = load_config(path)
    except ValueError as error:
        assert str(error).startswith(f"{path}: "), str(error)
    else:
        assert isinstance(config, Config)
