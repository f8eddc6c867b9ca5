"""The workdir's layout (seg4reg_tf/workdir.py): which file each phase writes and needs, which
networks the system has after each phase, and the errors that name what to train."""

import pathlib

import pytest

from seg4reg_tf.config import config_from_dict, load_config, save_config
from seg4reg_tf.workdir import PHASES, final_networks, missing_predecessor, network_path, phase_dir, phase_monitor, phase_sources

SMOKE = load_config(pathlib.Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml")


def touch(workdir, phase: str, network: str) -> pathlib.Path:
    """An (empty) network file where `phase` writes `network`."""
    path = network_path(workdir, phase, network)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_the_networks_after_each_phase_are_the_latest_written_up_to_it(tmp_path):
    seg, reg, roie, tcl = (touch(tmp_path, *pair) for pair in (("seg", "segmenter"), ("reg", "regressor"), ("roie", "segmenter"), ("tcl", "segmenter")))
    assert phase_sources(tmp_path, "seg") == {"segmenter": seg, "regressor": None}
    assert phase_sources(tmp_path, "reg") == {"segmenter": seg, "regressor": reg}
    assert phase_sources(tmp_path, "roie") == {"segmenter": roie, "regressor": reg}
    # refine has not run: N_R is still reg's
    assert phase_sources(tmp_path, "refine") == {"segmenter": tcl, "regressor": reg}


def test_a_phase_names_the_first_file_it_lacks(tmp_path):
    assert missing_predecessor(tmp_path, "seg") is None
    assert missing_predecessor(tmp_path, "roie") == ("seg", network_path(tmp_path, "seg", "segmenter"))
    touch(tmp_path, "seg", "segmenter")
    assert missing_predecessor(tmp_path, "roie") == ("reg", network_path(tmp_path, "reg", "regressor"))
    touch(tmp_path, "reg", "regressor")
    assert missing_predecessor(tmp_path, "roie") is None
    assert missing_predecessor(tmp_path, "tcl") == ("roie", network_path(tmp_path, "roie", "segmenter"))


def test_the_monitor_is_the_tables_unless_the_phase_says_readout():
    assert phase_monitor("seg", SMOKE) == ("val_dice", "max")
    assert phase_monitor("reg", SMOKE) == ("val_smape", "min")
    readout = config_from_dict({**SMOKE.to_dict(), "roie": {**SMOKE.to_dict()["roie"], "monitor": "readout"}})
    assert phase_monitor("roie", readout) == ("val_readout_smape", "min")
    assert phase_monitor("seg", readout) == ("val_dice", "max")


def test_an_unknown_phase_is_refused():
    with pytest.raises(ValueError, match="unknown phase 'segment'"):
        phase_dir("w", "segment")
    assert [phase_dir("w", phase).name for phase in PHASES] == ["seg", "reg", "roie", "tcl", "refine"]


def test_final_networks_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a training workdir"):
        final_networks(tmp_path)
    save_config(SMOKE, tmp_path / "config.yaml")
    with pytest.raises(FileNotFoundError, match="no trained segmenter .*train phase 'seg' first"):
        final_networks(tmp_path)
    touch(tmp_path, "seg", "segmenter")
    with pytest.raises(FileNotFoundError, match="no trained regressor .*train phase 'reg' first"):
        final_networks(tmp_path)


def earlier_layout(segmenter):
    """`segmenter`'s layers side by side, as N_S files were saved before N_S had an encoder and a
    head (the smoke config's N_S: no decoder, no tilt head; gated)."""
    import keras

    encoder, head = segmenter.get_layer("encoder"), segmenter.get_layer("head")
    inputs = {"image": keras.Input(encoder.input.shape[1:], name="image"), "cam": keras.Input(segmenter.input["cam"].shape[1:], name="cam")}
    features = encoder.layers[-1](encoder.get_layer("preprocess")(inputs["image"]))  # the backbone
    features = head.get_layer("roie_gate")([features, inputs["cam"]])
    logits = head.get_layer("mask_logits")(head.get_layer("classifier")(head.get_layer("pyramid_dropout")(head.get_layer("pyramid")(features))))
    return keras.Model(inputs, {"mask": head.get_layer("mask")(logits), "mask_logits": logits}, name="segmenter")


def test_an_n_s_of_the_earlier_layout_loads_in_todays_with_its_weights_and_alone_is_refused(tmp_path):
    import numpy as np

    from seg4reg_tf.models import build_segmenter, segmenter_layer
    from seg4reg_tf.workdir import load_network

    config = SMOKE
    segmenter = build_segmenter(config.segmenter, config.data.image_size, with_roie=True)
    segmenter_layer(segmenter, "roie_gate").alpha.assign(0.4)
    segmenter_layer(segmenter, "classifier").bias.assign(np.array([0.7], "float32"))
    flat = earlier_layout(segmenter)
    assert "encoder" not in [layer.name for layer in flat.layers] and "pyramid" in [layer.name for layer in flat.layers]
    path = network_path(tmp_path, "roie", "segmenter")
    path.parent.mkdir(parents=True)
    save_config(config, tmp_path / "config.yaml")
    flat.save(path)
    loaded = load_network(path)
    assert [layer.name for layer in loaded.layers] == ["image", "cam", "encoder", "head"]
    assert float(segmenter_layer(loaded, "roie_gate").alpha.numpy()) == np.float32(0.4)
    inputs = {"image": np.random.default_rng(0).random((2, *config.data.image_size, 1)).astype("float32"),
              "cam": np.random.default_rng(1).random((2, *segmenter.input["cam"].shape[1:])).astype("float32")}
    for key, value in flat(inputs).items():
        np.testing.assert_allclose(loaded(inputs)[key].numpy(), value.numpy(), atol=1e-6)
    alone = tmp_path / "elsewhere" / "alone" / "segmenter.keras"
    alone.parent.mkdir(parents=True)
    flat.save(alone)
    with pytest.raises(ValueError, match=r"alone/segmenter.keras: an N_S of the layout before encoder and head, outside a workdir"):
        load_network(alone)
