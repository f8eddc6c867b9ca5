"""`python -m seg4reg_tf.train`: predecessors, resume after interruption, all phases, strategies."""

import json
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from seg4reg_tf import train
from seg4reg_tf.config import config_from_dict, load_config
from seg4reg_tf.data.records import resolve_records
from seg4reg_tf.models import build_regressor, build_segmenter, segmenter_layer, segmenter_layers
from seg4reg_tf.models.precision import resolve_precision
from seg4reg_tf.training import run
from seg4reg_tf.workdir import PHASES, network_path, produced_path
from tests.harness import make_workdir

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
SMOKE = load_config(CONFIGS / "smoke.yaml")


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "data-home"
    monkeypatch.setenv("SEG4REG_DATA_HOME", str(home))
    return home


def test_without_config_train_runs_the_repositorys_demo_yaml(tmp_path, monkeypatch):
    """`make demo` runs `train --phase all` with no --config: it must find configs/demo.yaml
    of the checkout (the phase itself is replaced; this is about the config it gets)."""
    given = []
    monkeypatch.setattr(train, "train_phase", lambda phase, config, *args, **kwargs: given.append(config) or {"phase": phase, "validation": {}, "baseline": {}})
    monkeypatch.setattr(train, "record_workdir_routes", lambda workdir: None)
    assert train.main(["--phase", "seg", "--workdir", str(tmp_path / "w")]) == 0
    assert given == [load_config(CONFIGS / "demo.yaml")]
    assert load_config(tmp_path / "w" / "config.yaml") == given[0]


def test_missing_predecessor_names_the_phase_to_run_first(tmp_path, data_home, capsys):
    code = train.main(["--phase", "roie", "--config", str(CONFIGS / "smoke.yaml"), "--workdir", str(tmp_path / "run")])
    assert code == 2
    error = capsys.readouterr().err
    assert "phase 'roie' needs" in error and "--phase seg" in error
    assert not (data_home).exists(), "nothing is generated before the check"


def test_missing_weights_file_is_named_before_any_training(tmp_path, data_home, capsys):
    config = tmp_path / "pretrained.yaml"
    missing = tmp_path / "nr_masks.weights.h5"
    text = (CONFIGS / "smoke.yaml").read_text().replace("regressor:\n  weights: none", f"regressor:\n  weights: {missing}")
    assert str(missing) in text
    config.write_text(text)
    code = train.main(["--phase", "all", "--config", str(config), "--workdir", str(tmp_path / "run")])
    assert code == 2
    error = capsys.readouterr().err
    assert f"regressor.weights: file not found: {missing}" in error and "seg4reg_tf.pretrain" in error
    assert not data_home.exists() and not (tmp_path / "run" / "seg").exists(), "nothing trained or generated"


class Interrupt(keras.callbacks.Callback):
    """Stops the process-like run after `epochs` finished epochs, as a kill would."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt("killed")


@pytest.mark.slow
def test_interrupted_phase_resumes_from_its_last_epoch(tmp_path, data_home):
    # Graph mode (no run_eagerly): the path real runs take; ResNet-18 traces faster than 50.
    values = SMOKE.to_dict()
    config = config_from_dict({**values, "seg": {**values["seg"], "epochs": 3}, "segmenter": {**values["segmenter"], "backbone": "resnet18"}})
    workdir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run.train_phase("seg", config, workdir, verbose=0, extra_callbacks=[Interrupt(2)])
    assert not (workdir / "seg" / "summary.json").exists()
    assert json.loads((workdir / "seg" / "best.json").read_text())["epoch"] in (1, 2)
    summary = run.train_phase("seg", config, workdir, verbose=0)
    # Only the third epoch ran again; the optimizer kept counting from the first two.
    assert len(summary["history"]["loss"]) == 1
    segmenter = keras.saving.load_model(workdir / "seg" / "segmenter.keras", compile=False)
    assert segmenter.name == "segmenter"
    assert (workdir / "seg" / "summary.json").exists() and any((workdir / "seg" / "logs").iterdir())
    # Finished, the phase keeps its network and figures, not what only a resume needs.
    assert not (workdir / "seg" / "backup").exists() and not (workdir / "seg" / "best.weights.h5").exists()


def test_all_phases_end_to_end(smoke_ablation, capsys):
    # The ablation fixture ran Algorithm 1 through this command line, phase after phase, into
    # its + TCL workdir; `--phase all` there finds every phase done and reports them.
    workdir = smoke_ablation["out"] / "image+mask-ar"
    args = ["--phase", "all", "--config", str(workdir / "config.yaml"), "--workdir", str(workdir), "--run-eagerly"]
    capsys.readouterr()
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("already complete") == 5
    for phase in PHASES:
        assert produced_path(workdir, phase).exists()
        summary = json.loads((workdir / phase / "summary.json").read_text())
        assert summary["validation"] and summary["baseline"] and summary["history"]["loss"]
        assert f"{phase}: validation" in out
        assert (workdir / phase / "history.csv").read_text().count("\n") == 1 + summary["epochs"]
    assert "mean-angle baseline" in out and "mean-mask baseline" in out
    gated = keras.saving.load_model(workdir / "tcl" / "segmenter.keras", compile=False)
    assert float(segmenter_layer(gated, "roie_gate").alpha.numpy()) != 0.0
    # Another configuration in the same workdir is refused, and the workdir is left as it was.
    other = workdir.parent / "other.yaml"
    other.write_text((workdir / "config.yaml").read_text().replace("epochs: 1", "epochs: 2", 1))
    before = (workdir / "config.yaml").read_text()
    assert train.main(["--phase", "seg", "--config", str(other), "--workdir", str(workdir)]) == 2
    assert (workdir / "config.yaml").read_text() == before


@pytest.mark.slow
def test_mirrored_strategy_first_step_loss_equals_single_device(synthetic_root):
    script = textwrap.dedent(
        f"""
        import json
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from seg4reg_tf.training import phases
        from seg4reg_tf.training.loop import Loop
        from seg4reg_tf.config import load_config, config_from_dict
        from seg4reg_tf.data import pipeline
        from seg4reg_tf.data.aasce import read_split
        from seg4reg_tf.models import build_regressor, build_segmenter
        config = load_config({str(CONFIGS / "smoke.yaml")!r})
        # No dropout: replicas draw their own masks, which is not what this compares. The light
        # networks of configs/aasce_cpu.yaml trace in a fraction of ResNet-50's and
        # EfficientNet-B1's time; that every BatchNorm of those two is synchronised is
        # checked in tests/test_models.py.
        config = config_from_dict({{**config.to_dict(), "segmenter": {{**config.to_dict()["segmenter"], "dropout": 0.0, "backbone": "resnet18"}},
                                   "regressor": {{**config.to_dict()["regressor"], "backbone": "plain_cnn", "weights": "none", "batch_norm_momentum": 0.9}}}})
        records = read_split({str(synthetic_root)!r})[:4]
        batch = next(iter(pipeline.make_dataset(records, config.data, training=False, batch_size=4)))

        def first_loss(strategy, eager):
            keras.utils.set_random_seed(1)
            with strategy.scope():
                trainer = phases.make_trainer("seg", build_segmenter(config.segmenter, config.data.image_size, synchronized=True), None, config)
                trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=eager)
            data = tf.data.Dataset.from_tensors(batch)
            loop = Loop(trainer, None if strategy is tf.distribute.get_strategy() else strategy, eager)  # training.loop under a strategy
            return loop.fit(data, epochs=1, verbose=0).history["loss"][0]

        single = first_loss(tf.distribute.get_strategy(), True)
        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        print("LOSSES", json.dumps([single, first_loss(mirrored, False)]))

        # Phase reg: N_R's BatchNorms must see the global batch too. Dropout off, as replicas
        # draw their own masks.
        reg_config = config_from_dict({{**config.to_dict(), "regressor": {{**config.to_dict()["regressor"], "dropout": 0.0}}}})

        def first_reg_loss(strategy, eager, synchronized):
            keras.utils.set_random_seed(1)
            with strategy.scope():
                regressor = build_regressor(reg_config.regressor, reg_config.data.image_size, synchronized=synchronized)
                trainer = phases.make_trainer("reg", None, regressor, reg_config)  # on the true masks
                trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=eager)
            data = tf.data.Dataset.from_tensors(batch)
            loop = Loop(trainer, None if strategy is tf.distribute.get_strategy() else strategy, eager)
            return loop.fit(data, epochs=1, verbose=0).history["loss"][0]

        print("REG", json.dumps([first_reg_loss(tf.distribute.get_strategy(), True, False),
                                 first_reg_loss(mirrored, False, True), first_reg_loss(mirrored, False, False)]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    single, mirrored = json.loads(result.stdout.split("LOSSES", 1)[1].splitlines()[0])
    assert mirrored == pytest.approx(single, rel=1e-4)
    single, synchronized, unsynchronized = json.loads(result.stdout.split("REG", 1)[1].splitlines()[0])
    assert synchronized == pytest.approx(single, rel=1e-4)
    assert unsynchronized != pytest.approx(single, rel=1e-4), "per-replica statistics change the loss"
    # a whole phase under a strategy (train_phase through training.loop): tests/test_multiworker.py


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [("flags\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n", "bfloat16"), ("flags : fpu avx512_bf16\n", "bfloat16"),
     ("flags\t: fpu sse avx2 avx512f\n", "float32"), (None, "float32")],
)
def test_precision_auto_is_bfloat16_only_where_the_cpu_computes_it(tmp_path, cpuinfo, expected):
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    assert resolve_precision("auto", str(path)) == expected
    assert resolve_precision("float32", str(path)) == "float32" and resolve_precision("bfloat16", str(path)) == "bfloat16"


def test_excluded_images_appear_in_no_split_and_the_others_keep_theirs(synthetic_root):
    from seg4reg_tf.data.aasce import read_split

    names = [record.name for record in read_split(synthetic_root, "training")]
    base = {"data": {"root": str(synthetic_root), "validation_fraction": 0.34}}
    training, validation, _ = resolve_records(config_from_dict(base))
    dropped = {training[0].name, validation[0].name}
    excluded = config_from_dict({"data": {**base["data"], "exclude": sorted(dropped)}})
    kept_training, kept_validation, _ = resolve_records(excluded)
    assert not dropped & {record.name for record in kept_training + kept_validation}
    assert [r.name for r in kept_training] == [r.name for r in training if r.name not in dropped]
    assert [r.name for r in kept_validation] == [r.name for r in validation if r.name not in dropped]
    assert len(kept_training) + len(kept_validation) == len(names) - 2
    with pytest.raises(ValueError, match="data.exclude names images that are not in .*: nope.png"):
        resolve_records(config_from_dict({"data": {**base["data"], "exclude": ["nope.png"]}}))


def test_the_embedded_synthetic_set_is_generated_once_in_a_folder_named_for_it(data_home):
    data = {"synthetic_train": 2, "synthetic_test": 0, "validation_fraction": 0.5}
    training, validation, plain = resolve_records(config_from_dict({"data": data}))
    assert pathlib.Path(plain).name == "synthetic-seed0-2-0", "make demo's cached set keeps its name"
    assert len(training) == len(validation) == 1
    image = next(pathlib.Path(plain, "data", "training").glob("*.jpg"))
    stamp = image.stat().st_mtime_ns
    assert resolve_records(config_from_dict({"data": data}))[2] == plain and image.stat().st_mtime_ns == stamp


def test_cosine_schedule_decays_over_the_phase_steps():
    assert SMOKE.seg.schedule == "constant" and run.learning_rate(SMOKE.seg, 100) == SMOKE.seg.learning_rate
    settings = config_from_dict({**SMOKE.to_dict(), "seg": {**SMOKE.to_dict()["seg"], "schedule": "cosine", "epochs": 3, "batch_size": 4, "learning_rate": 0.01}}).seg
    schedule = run.learning_rate(settings, 10)  # 2 full batches per epoch: 6 steps
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(3)) == pytest.approx(0.005, rel=1e-5)  # half-way down the half cosine
    assert float(schedule(6)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="key 'seg.schedule' must be one of 'constant', 'cosine', got 'step'"):
        config_from_dict({"seg": {"schedule": "step"}})


class SetClassifier(keras.callbacks.Callback):
    """After every step, sets N_S's classifier to a constant logit `bias` (zero kernel): a
    mask that is all spine (+) or all background (−), whatever the step did."""

    def __init__(self, bias):
        super().__init__()
        self.bias = bias

    def on_train_batch_end(self, batch, logs=None):
        set_constant_mask(self.model.segmenter, self.bias)


def set_constant_mask(segmenter, bias):
    classifier = segmenter_layer(segmenter, "classifier")
    classifier.kernel.assign(np.zeros(classifier.kernel.shape, "float32"))
    classifier.bias.assign(np.full(classifier.bias.shape, bias, "float32"))


@pytest.mark.parametrize(
    "monitor, start_bias, epoch_bias, expected_epoch, precision",
    [("dice", 5.0, -50.0, 0, "float32"), ("dice", -50.0, 5.0, 1, "float32"), ("readout", 5.0, -50.0, 1, "bfloat16")],
    ids=["start-kept", "better-epoch-kept", "by-readout-in-bfloat16"],
)
def test_keep_start_unless_beaten_keeps_the_starting_network_only_when_no_epoch_beats_it(
    synthetic_root, tmp_path, monitor, start_bias, epoch_bias, expected_epoch, precision
):
    # N_S's masks are all spine or all background by construction, so which of the start
    # and epoch 1 scores better on roie's monitor is known: by Dice the all-spine mask
    # (Dice > 0 against 0); by the readout the all-background one, whose missing spine
    # scores the training-mean angles, while the whole frame reads as a straight spine
    # (angles near 0, SMAPE near 100%). One case trains in bfloat16 (`roie.precision`): N_S
    # computes in bfloat16 while it trains and is saved computing in float32.
    values = SMOKE.to_dict()
    config = config_from_dict({
        **values, "data": {**values["data"], "root": str(synthetic_root)},
        "roie": {**values["roie"], "keep_start_unless_beaten": True, "monitor": monitor, "precision": precision},
    })
    workdir = make_workdir(tmp_path / "run")  # writes reg/regressor.keras
    segmenter = build_segmenter(config.segmenter, config.data.image_size)
    set_constant_mask(segmenter, start_bias)
    network_path(workdir, "seg", "segmenter").parent.mkdir()
    segmenter.save(network_path(workdir, "seg", "segmenter"))
    seen = []

    class Policies(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append({layer.compute_dtype for layer in segmenter_layers(self.model.segmenter) if layer.weights})

    callbacks = [SetClassifier(epoch_bias), Policies()]
    summary = run.train_phase("roie", config, workdir, verbose=0, run_eagerly=True, extra_callbacks=callbacks)
    assert summary["best_epoch"] == expected_epoch
    assert seen[0] == {precision} and summary["precision"] == precision
    assert ("N_S trained in bfloat16" in run.report(summary)) == (precision == "bfloat16")
    written = keras.saving.load_model(produced_path(workdir, "roie"), compile=False)
    assert {layer.compute_dtype for layer in segmenter_layers(written)} == {"float32"}
    assert np.isfinite(summary["history"]["loss"]).all() and 0.0 <= summary["validation"]["dice"] <= 100.0
    image = np.random.default_rng(0).uniform(size=(1, *written.input["image"].shape[1:])).astype("float32")
    cam = np.zeros((1, *written.input["cam"].shape[1:]), "float32")
    assert written({"image": image, "cam": cam})["mask"].dtype == "float32"
    kept_bias = start_bias if expected_epoch == 0 else epoch_bias
    np.testing.assert_allclose(segmenter_layer(written, "classifier").bias.numpy(), kept_bias)
    assert ("kept its starting network" in run.report(summary)) == (expected_epoch == 0)
    assert summary["monitor"] == {"dice": "val_dice", "readout": "val_readout_smape"}[monitor]
    if expected_epoch == 0:
        assert summary["best"] > summary["history"]["val_dice"][0], "the start scored better than epoch 1"
    else:
        assert summary["best"] == pytest.approx(summary["history"][summary["monitor"]][0])


def test_keep_start_unless_beaten_needs_a_validation_split():
    with pytest.raises(ValueError, match=r"roie.keep_start_unless_beaten needs a validation split"):
        config_from_dict({"data": {"validation_fraction": 0.0}, "roie": {"keep_start_unless_beaten": True}})


def test_regressor_weights_pretrain_pretrains_into_the_workdir_once_and_phase_reg_starts_from_it(tmp_path, data_home, monkeypatch):
    values = SMOKE.to_dict()
    config = config_from_dict({
        **values,
        "regressor": {**values["regressor"], "backbone": "plain_cnn", "weights": "pretrain", "input_mode": "mask"},
        "pretrain": {**values["pretrain"], "count": 8, "validation_count": 4, "epochs": 1, "batch_size": 4},
    })
    workdir = tmp_path / "run"
    network_path(workdir, "seg", "segmenter").parent.mkdir(parents=True)
    build_segmenter(config.segmenter, config.data.image_size).save(network_path(workdir, "seg", "segmenter"))  # phase seg's N_S, untrained
    summary = run.train_phase("reg", config, workdir, verbose=0, run_eagerly=True)
    trunk_file = workdir / "pretrain" / "regressor_trunk.weights.h5"
    assert trunk_file.is_file()
    assert summary["pretraining"] == json.loads((workdir / "pretrain" / "regressor_trunk.json").read_text())
    assert summary["pretraining"]["settings"]["count"] == 8
    assert "from a trunk pretrained on synthetic masks" in run.report(summary)
    # Phase reg builds N_R on that trunk ...
    from_file = config_from_dict({**config.to_dict(), "regressor": {**config.to_dict()["regressor"], "weights": str(trunk_file)}})
    expected = [w.numpy() for w in build_regressor(from_file.regressor, from_file.data.image_size).get_layer("plain_cnn").weights]
    built = run.load_networks(workdir, "reg", config, synchronized=False)[1].get_layer("plain_cnn").weights
    assert all(np.array_equal(w.numpy(), e) for w, e in zip(built, expected, strict=True))
    untrained = config_from_dict({**from_file.to_dict(), "regressor": {**from_file.to_dict()["regressor"], "weights": "none"}})
    fresh = build_regressor(untrained.regressor, untrained.data.image_size)
    assert not all(np.array_equal(w.numpy(), e) for w, e in zip(fresh.get_layer("plain_cnn").weights, expected))
    # ... and a second run (a resume) does not pretrain again.
    monkeypatch.setattr(run, "pretrain", lambda *args, **kwargs: pytest.fail("pretrained twice"))
    assert run.ensure_pretrained_trunk(config, workdir) == summary["pretraining"]
    # Outside a workdir the keyword names nothing: building from it is refused.
    with pytest.raises(ValueError, match="regressor.weights: pretrain names the trunk `train` pretrains into its workdir"):
        build_regressor(config.regressor, config.data.image_size)


def test_weights_pretrain_is_refused_where_nothing_pretrains():
    with pytest.raises(ValueError, match="'weights: pretrain' exists for backbones efficientnet_b1, plain_cnn, not resnet18"):
        config_from_dict({"regressor": {"backbone": "resnet18", "weights": "pretrain"}})
    with pytest.raises(ValueError, match="'weights: pretrain' exists only for the regressor"):
        config_from_dict({"segmenter": {"weights": "pretrain"}})
    assert config_from_dict({"regressor": {"weights": "pretrain"}}).regressor.weights == "pretrain"  # EfficientNet-B1


def test_phases_after_seg_do_not_read_segmenter_weights(tmp_path):
    """segmenter.weights is phase seg's start: once seg has run, a later phase neither
    needs that file (it may be gone) nor copies it over seg's N_S."""
    missing = tmp_path / "gone" / "segmenter.keras"
    config = config_from_dict({**SMOKE.to_dict(), "segmenter": {**SMOKE.to_dict()["segmenter"], "weights": str(missing)}})
    workdir = tmp_path / "run"
    keras.utils.set_random_seed(1)
    trained = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size)
    for phase, network, model in (("seg", "segmenter", trained), ("reg", "regressor", build_regressor(SMOKE.regressor, SMOKE.data.image_size))):
        network_path(workdir, phase, network).parent.mkdir(parents=True)
        model.save(network_path(workdir, phase, network))
    run.check_weight_files(config, ["roie", "tcl", "refine"])
    with pytest.raises(FileNotFoundError, match=f"segmenter.weights: file not found: {missing}"):
        run.check_weight_files(config, ["seg"])
    gated, _ = run.load_networks(workdir, "roie", config, synchronized=False)
    assert float(segmenter_layer(gated, "roie_gate").alpha.numpy()) == 0.0
    for layer in segmenter_layers(trained):
        for got, expected in zip(segmenter_layer(gated, layer.name).weights, layer.weights, strict=True):
            np.testing.assert_array_equal(got.numpy(), expected.numpy())
