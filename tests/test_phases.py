"""Each phase of Algorithm 1: what is frozen stays bit-identical, what trains moves."""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf import losses
from seg4reg_tf.config import config_from_dict, load_config
from seg4reg_tf.data import pipeline
from seg4reg_tf.data.aasce import read_split
from seg4reg_tf.models import build_regressor, build_segmenter, copy_segmenter_weights, segmenter_layer, start_at_mean_angles
from seg4reg_tf.models.precision import set_precision
from seg4reg_tf.models.segment import segment
from seg4reg_tf.training import phases

# Eager steps: tracing ResNet-50 + EfficientNet-B1 into a graph takes far longer than a few
# eager steps at 64×32. Graph mode is exercised end to end in tests/test_train.py.
EAGER = True
SMOKE = load_config(pathlib.Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml")


@pytest.fixture(autouse=True)
def seeded():
    """Same initial weights and dropout masks on every run: no test depends on luck."""
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def batch(synthetic_root):
    records = read_split(synthetic_root, "training")[:4]
    dataset = pipeline.make_dataset(records, SMOKE.data, training=False, batch_size=4)
    return next(iter(dataset))


def networks(phase):
    segmenter = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size, with_roie=phase in ("roie", "tcl", "refine"))
    regressor = build_regressor(SMOKE.regressor, SMOKE.data.image_size) if phase != "seg" else None
    return segmenter, regressor


def snapshot(model):
    return {v.path: v.numpy().copy() for v in model.weights} if model is not None else {}


def changed(before, model):
    return {v.path for v in model.weights if not np.array_equal(before[v.path], v.numpy())}


@pytest.mark.parametrize("phase, trained, frozen", [
    ("seg", "segmenter", None),
    ("reg", "regressor", "segmenter"),
    ("roie", "segmenter", "regressor"),
    ("tcl", "segmenter", "regressor"),
    ("refine", "regressor", "segmenter"),
])
def test_frozen_stays_bit_identical_and_trained_moves(phase, trained, frozen, batch):
    segmenter, regressor = networks(phase)
    if phase == "tcl":
        segmenter_layer(segmenter, "roie_gate").alpha.assign(0.1)  # as after the roie phase
    models = {"segmenter": segmenter, "regressor": regressor}
    trainer = phases.make_trainer(phase, segmenter, regressor, SMOKE)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=EAGER)
    before = {name: snapshot(model) for name, model in models.items()}
    logs = trainer.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"])
    moved = changed(before[trained], models[trained])
    trainable = {v.path for v in models[trained].trainable_weights}
    assert len(moved & trainable) > 0.9 * len(trainable), f"{phase}: trainable weights did not move"
    if frozen is not None:
        assert changed(before[frozen], models[frozen]) == set(), f"{phase}: frozen {frozen} changed"
        assert not any(v.path in {w.path for w in models[frozen].weights} for v in trainer.trainable_variables)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_roie_moves_alpha_off_zero(precision, batch):
    """α (Eq. 2) gets a gradient through the roie trainer, also when N_S computes in
    bfloat16 (`roie.precision`, set as `training.run.train_phase` sets it): α stays a
    float32 variable and moves."""
    segmenter, regressor = networks("roie")
    set_precision(segmenter, precision)
    trainer = phases.make_trainer("roie", segmenter, regressor, SMOKE)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=EAGER)
    alpha = segmenter_layer(segmenter, "roie_gate").alpha
    assert float(alpha) == 0.0 and alpha.dtype == "float32"
    assert segmenter_layer(segmenter, "roie_gate").compute_dtype == precision
    logs = trainer.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert float(alpha) != 0.0


def test_gated_two_pass_equals_ungated_at_alpha_zero(batch):
    plain = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size)
    gated = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size, with_roie=True)
    copy_segmenter_weights(plain, gated, "plain N_S")
    regressor = build_regressor(SMOKE.regressor, SMOKE.data.image_size)
    expected = segment(plain, None, batch["image"], "image+mask")["mask"]
    actual = segment(gated, regressor, batch["image"], "image+mask")["mask"]
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), atol=1e-6)


def test_inference_skips_an_idle_gate_and_only_an_idle_one(batch):
    """At α = 0 `skip_idle_gate` gives the two-pass mask in one pass, without N_R (None
    here: a CAM pass would fail); at α ≠ 0 it changes nothing."""
    gated = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size, with_roie=True)
    regressor = build_regressor(SMOKE.regressor, SMOKE.data.image_size)
    two_pass = segment(gated, regressor, batch["image"], "image+mask")["mask"]
    one_pass = segment(gated, None, batch["image"], "image+mask", skip_idle_gate=True)["mask"]
    np.testing.assert_allclose(one_pass.numpy(), two_pass.numpy(), atol=1e-6)
    traced = tf.function(lambda x: segment(gated, None, x, "image+mask", skip_idle_gate=True)["mask"])  # as exports trace it
    np.testing.assert_allclose(traced(batch["image"]).numpy(), two_pass.numpy(), atol=1e-6)
    segmenter_layer(gated, "roie_gate").alpha.assign(0.5)
    two_pass = segment(gated, regressor, batch["image"], "image+mask")["mask"]
    kept = segment(gated, regressor, batch["image"], "image+mask", skip_idle_gate=True)["mask"]
    np.testing.assert_array_equal(kept.numpy(), two_pass.numpy())
    with pytest.raises((TypeError, AttributeError)):
        segment(gated, None, batch["image"], "image+mask", skip_idle_gate=True)


# tcl is left out: an untrained N_R reads every mask alike (its loss starts near 1e-6);
# that gradients reach N_S through it is shown by the frozen/trained test above.
@pytest.mark.slow
def test_segmenter_loss_drops_when_overfitting_a_fixed_batch(batch):
    segmenter, _ = networks("seg")
    first, last = losses_over_steps("seg", segmenter, None, SMOKE, batch, 12, 3e-3)
    assert last < 0.9 * first, f"seg: {first:.4f} -> {last:.4f}"


def losses_over_steps(phase, segmenter, regressor, config, batch, steps: int, learning_rate: float):
    """(first, last) training loss of `steps` Adam steps of `phase` on one fixed batch."""
    trainer = phases.make_trainer(phase, segmenter, regressor, config)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate), run_eagerly=EAGER)
    first = trainer.train_on_batch(batch, return_dict=True)["loss"]
    for _ in range(steps - 1):
        last = trainer.train_on_batch(batch, return_dict=True)["loss"]
    return first, last


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regressor_overfits_a_fixed_batch_from_the_mean_predictor(batch, seed):
    """N_R with the aasce_cpu options (plain CNN trunk with coordinate channels, position
    head, BatchNorm momentum 0.9, no dropout, L1) starts as the exact mean predictor, then
    overfits one batch of masks in 60 steps (0.31×, 0.22× and 0.14× the start for seeds 0, 1
    and 2 on the development machine), and its answers, identical at the start, spread like
    the true angles. From a random head kernel the same run ended above the mean's loss
    (docs/benchmarks.md)."""
    values = SMOKE.to_dict()
    config = config_from_dict({
        **values,
        "regressor": {**values["regressor"], "backbone": "plain_cnn", "batch_norm_momentum": 0.9, "dropout": 0.0,
                      "input_mode": "mask", "coordinate_channels": True, "head_pooling": "position"},
        "reg": {**values["reg"], "loss": "l1", "ar_weight": 0.0},
    })
    keras.utils.set_random_seed(seed)  # the same start whatever ran before in this process
    segmenter, regressor = None, build_regressor(config.regressor, config.data.image_size)  # N_R on the true masks
    truth = batch["angles"].numpy()
    start_at_mean_angles(regressor, truth.mean(axis=0))
    masks = tf.cast(batch["mask"], tf.float32)
    spread = lambda: regressor(masks, training=False)["angles"].numpy().std(axis=0)  # noqa: E731
    assert np.all(spread() < 1e-6), "the mean predictor answers the same for every mask"
    first, last = losses_over_steps("reg", segmenter, regressor, config, batch, 60, 1e-3)
    assert first == pytest.approx(np.abs(truth - truth.mean(axis=0)).mean(), rel=1e-4), "the first loss is the mean's"
    assert last < 0.4 * first, f"reg: {first:.4f} -> {last:.4f}"
    assert np.all(spread() > 0.5 * truth.std(axis=0)), f"answers spread {spread()} against the truth's {truth.std(axis=0)}"


def test_without_a_segmenter_reg_reads_the_true_masks_and_with_one_its_masks(batch):
    """N_R's pretraining runs phase reg's trainer with no N_S, on the true masks."""
    segmenter, regressor = networks("reg")
    mask = phases.make_trainer("reg", None, regressor, SMOKE).masks(batch)
    np.testing.assert_array_equal(mask.numpy(), tf.cast(batch["mask"], tf.float32).numpy())
    predicted = phases.make_trainer("reg", segmenter, regressor, SMOKE).masks(batch).numpy()
    np.testing.assert_allclose(predicted, segment(segmenter, regressor, batch["image"], SMOKE.regressor.input_mode)["mask"].numpy(), atol=1e-6)
    assert not np.array_equal(predicted, mask.numpy())


def test_no_ar_weight_trains_the_plain_regressor(batch):
    config = config_from_dict({**SMOKE.to_dict(), "reg": {**SMOKE.to_dict()["reg"], "ar_weight": 0.0}})
    segmenter, regressor = networks("reg")
    trainer = phases.make_trainer("reg", segmenter, regressor, config)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=EAGER)
    logs = trainer.train_on_batch(batch, return_dict=True)
    # only the terms this config makes non-zero are logged, named for what they are
    assert {"loss_ar", "loss_angles_mask", "loss_vertebrae", "ar", "smape_mask", "smape_image"}.isdisjoint(logs)
    assert logs["loss"] == pytest.approx(logs["loss_angles"])


@pytest.mark.parametrize("mode", ["image", "mask"])
def test_tcl_trains_the_segmenter_for_every_regressor_input(mode, batch):
    # With N_R on the image alone, r(x) does not depend on the mask: TCL must feed the masks
    # to N_R (in its image channel) or N_S gets no gradient at all.
    config = config_from_dict({**SMOKE.to_dict(), "regressor": {**SMOKE.to_dict()["regressor"], "input_mode": mode}})
    segmenter = build_segmenter(config.segmenter, config.data.image_size, with_roie=True)
    segmenter_layer(segmenter, "roie_gate").alpha.assign(0.1)
    trainer = phases.make_trainer("tcl", segmenter, build_regressor(config.regressor, config.data.image_size), config)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=EAGER)
    before = snapshot(segmenter)
    logs = trainer.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    trainable = {v.path for v in segmenter.trainable_weights}
    assert len(changed(before, segmenter) & trainable) > 0.9 * len(trainable)


def with_setting(section: str, key: str, value):
    """SMOKE with one setting changed."""
    return config_from_dict({**SMOKE.to_dict(), section: {**SMOKE.to_dict()[section], key: value}})


def one_step_moves(phase: str, config, batch) -> None:
    """One step of `phase` built from `config`: a finite loss, and the trained network moves."""
    segmenter = build_segmenter(config.segmenter, config.data.image_size)
    regressor = build_regressor(config.regressor, config.data.image_size) if phase != "seg" else None
    trainer = phases.make_trainer(phase, segmenter, regressor, config)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=EAGER)
    trained = segmenter if phase == "seg" else regressor
    before = snapshot(trained)
    logs = trainer.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and changed(before, trained)


@pytest.mark.parametrize("loss", ["l1"])
def test_reg_phase_trains_with_each_angle_loss(loss, batch):
    one_step_moves("reg", with_setting("reg", "loss", loss), batch)


def test_seg_phase_steps_with_a_resnet18_backbone(batch):
    one_step_moves("seg", with_setting("segmenter", "backbone", "resnet18"), batch)


def test_seg_phase_steps_with_the_stride_4_decoder(batch):
    one_step_moves("seg", with_setting("segmenter", "decoder", "low_level"), batch)


def test_seg_phase_steps_from_a_trained_segmenter_file(batch, tmp_path):
    trained = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size)
    trained.save(tmp_path / "segmenter.keras")
    one_step_moves("seg", with_setting("segmenter", "weights", str(tmp_path / "segmenter.keras")), batch)


@pytest.mark.parametrize("backbone", ["plain_cnn", "resnet18"])
def test_reg_phase_steps_with_a_lighter_regressor(backbone, batch):
    one_step_moves("reg", with_setting("regressor", "backbone", backbone), batch)


@pytest.mark.parametrize("ar_weight", [0.0, 1.0])
def test_reg_phase_terms_add_up_to_its_loss(ar_weight, batch):
    """Eq. 3 on branch A, and with AR (Eq. 4) Eq. 3 on branch B and L_AR weighted."""
    values = SMOKE.to_dict()
    config = config_from_dict({**values, "regressor": {**values["regressor"], "backbone": "plain_cnn"}, "reg": {**values["reg"], "ar_weight": ar_weight}})
    trainer = phases.make_trainer("reg", build_segmenter(config.segmenter, config.data.image_size), build_regressor(config.regressor, config.data.image_size), config)
    loss, terms, _ = trainer.compute(batch, training=False)
    assert set(terms) == ({"loss_angles", "loss_angles_mask", "loss_ar"} if ar_weight else {"loss_angles"})
    expected = float(terms["loss_angles"]) + (float(terms["loss_angles_mask"]) + ar_weight * float(terms["loss_ar"]) if ar_weight else 0.0)
    assert float(loss) == pytest.approx(expected, rel=1e-5) and float(loss) > 0


def test_reg_phase_steps_with_the_position_head(batch):
    one_step_moves("reg", with_setting("regressor", "head_pooling", "position"), batch)


def test_seg_phase_weights_the_outline_band(batch):
    """`segmenter.boundary_weight` reaches the seg phase's loss: it grows by the extra
    cross-entropy on the band (λ·weight·mean of the band's CE), and a step trains N_S."""
    config = with_setting("segmenter", "boundary_weight", 4.0)
    segmenter = build_segmenter(config.segmenter, config.data.image_size)
    plain = phases.make_trainer("seg", segmenter, None, SMOKE).compute(batch, training=False)[0]
    weighted = phases.make_trainer("seg", segmenter, None, config).compute(batch, training=False)[0]
    logits = segment(segmenter, None, batch["image"], config.regressor.input_mode)["mask_logits"]
    band_ce = losses.weighted_cross_entropy(batch["mask"], logits, boundary_weight=1.0) - losses.weighted_cross_entropy(batch["mask"], logits)
    assert float(band_ce) > 0
    assert float(weighted) == pytest.approx(float(plain) + config.segmenter.ce_weight * 4.0 * float(band_ce), rel=1e-4)
    one_step_moves("seg", config, batch)


def test_seg_phase_steps_with_the_segmenter_batch_norm_momentum(batch):
    one_step_moves("seg", with_setting("segmenter", "batch_norm_momentum", 0.9), batch)


def test_reg_phase_steps_with_a_downsampled_input(synthetic_root):
    values = SMOKE.to_dict()
    config = config_from_dict({
        **values, "data": {**values["data"], "image_height": 128, "image_width": 64},
        "regressor": {**values["regressor"], "backbone": "plain_cnn", "input_downsample": 2},
    })
    records = read_split(synthetic_root, "training")[:2]
    one_step_moves("reg", config, next(iter(pipeline.make_dataset(records, config.data, training=False, batch_size=2))))


@pytest.mark.parametrize("decoder", ["none", "low_level"])
def test_inference_shares_one_backbone_run_between_the_gated_passes(decoder, batch, monkeypatch):
    """segment(training=False) equals the two full N_S passes of Eq. 2 at α ≠ 0, and runs
    the backbone once (with the decoder, its stride-4 features come from that one run)."""
    decoded = with_setting("segmenter", "decoder", decoder)
    gated = build_segmenter(decoded.segmenter, decoded.data.image_size, with_roie=True)
    segmenter_layer(gated, "roie_gate").alpha.assign(0.7)
    regressor = build_regressor(SMOKE.regressor, SMOKE.data.image_size)
    image = batch["image"]
    zero = tf.zeros((image.shape[0], *gated.input["cam"].shape[1:]))
    first = gated({"image": image, "cam": zero}, training=False)["mask"]
    cam = regressor(tf.concat([image, first], axis=-1), training=False)["cam"][..., -1:]
    expected = gated({"image": image, "cam": cam}, training=False)["mask"]
    backbone = segmenter_layer(gated, "dilated_resnet50")
    calls = []
    original = type(backbone).__call__
    monkeypatch.setattr(type(backbone), "__call__", lambda self, *a, **k: (calls.append(self.name) if self is backbone else None, original(self, *a, **k))[1])
    actual = segment(gated, regressor, image, "image+mask")
    assert calls.count("dilated_resnet50") == 1
    np.testing.assert_allclose(actual["mask"].numpy(), expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(actual["cam"].numpy(), cam.numpy(), atol=1e-6)
    assert np.abs(expected.numpy() - gated({"image": image, "cam": zero}, training=False)["mask"].numpy()).max() > 1e-4  # the CAM matters


def readout_tcl_step(batch, bias: float):
    """One tcl step through the geometric readout, N_S's classifier bias set to `bias`
    (+3: most of the frame is spine, so the readout finds one; −10: it finds none)."""
    config = with_setting("tcl", "through", "readout")
    segmenter = build_segmenter(config.segmenter, config.data.image_size, with_roie=True)
    segmenter_layer(segmenter, "roie_gate").alpha.assign(0.1)
    segmenter_layer(segmenter, "classifier").bias.assign(np.array([bias], "float32"))
    trainer = phases.make_trainer("tcl", segmenter, build_regressor(config.regressor, config.data.image_size), config)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=EAGER)
    before = snapshot(segmenter)
    logs = trainer.train_on_batch(batch, return_dict=True)
    weights_finite = all(np.isfinite(v.numpy()).all() for v in segmenter.weights)
    return logs, changed(before, segmenter), weights_finite


def test_tcl_through_the_readout_trains_the_segmenter(batch):
    assert SMOKE.tcl.through == "regressor"  # the paper's TCL unless asked
    logs, moved, finite = readout_tcl_step(batch, 3.0)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0 and finite
    assert any("conv" in path for path in moved)  # the gradient reaches N_S's convolutions


def test_tcl_through_the_readout_skips_images_without_a_spine_and_keeps_eq1(batch):
    """Nothing above threshold: no reading, so the consistency term is 0 and the loss is
    Eq. 1 on the true mask (the anchor that keeps TCL from erasing the masks)."""
    logs, _, finite = readout_tcl_step(batch, -10.0)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0 and finite
    config = with_setting("tcl", "through", "readout")
    segmenter = build_segmenter(config.segmenter, config.data.image_size, with_roie=True)
    segmenter_layer(segmenter, "classifier").bias.assign(np.array([-10.0], "float32"))
    trainer = phases.make_trainer("tcl", segmenter, build_regressor(config.regressor, config.data.image_size), config)
    loss, _, out = trainer.compute(batch, training=False)
    settings = config.segmenter
    anchor = losses.segmentation_loss(batch["mask"], out["mask_logits"], settings.ce_weight)
    np.testing.assert_allclose(float(loss), float(anchor), rtol=1e-6)


@pytest.mark.parametrize("phase", ["seg", "tcl"])
def test_readout_smape_scores_masks_without_a_spine_as_the_mean_angles(phase, batch):
    """N_S's masks all background: the readout finds no spine in any image, so the logged
    readout SMAPE is the training-mean angles' SMAPE (the score evaluation gives them)."""
    config = with_setting("tcl", "through", "readout")
    segmenter = build_segmenter(config.segmenter, config.data.image_size, with_roie=phase == "tcl")
    segmenter_layer(segmenter, "classifier").bias.assign(np.array([-10.0], "float32"))
    mean = np.array([0.2, 0.1, 0.15], "float32")  # angles / 180: 36°, 18°, 27°
    regressor = build_regressor(config.regressor, config.data.image_size) if phase == "tcl" else None
    trainer = phases.make_trainer(phase, segmenter, regressor, config, mean_angles=mean)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=EAGER)
    logs = trainer.test_on_batch(batch, return_dict=True)
    truth = batch["angles"].numpy()
    expected = 100 * np.mean(np.abs(truth - mean).sum(axis=1) / (truth + mean).sum(axis=1))
    key = "readout_smape" if phase == "seg" else "smape"
    np.testing.assert_allclose(logs[key], expected, rtol=1e-5)
