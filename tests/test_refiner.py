"""The tilt refiner: its training crops (seg4reg_tf/training/refiner.py), its training run,
and its second look in the vertebra route (`inference.refined_tilts`)."""

import dataclasses
import math
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.config import ReadoutConfig, RefinerConfig, config_from_dict, load_config
from seg4reg_tf.data.records import resolve_records
from seg4reg_tf.inference import refined_tilts
from seg4reg_tf.models.tilt_refiner import RESIDUAL_UNIT_DEGREES, build_tilt_refiner
from seg4reg_tf.training.refiner import jittered_crops, train_refiner
from seg4reg_tf.vertebra_readout import read_vertebrae
from tests.test_vertebra_crops import SCALE, principal_angle, tilted_body
from tests.test_vertebra_readout import drawn_spines

# crops sampled at about the fine image's own resolution (a crop that shrinks the image by much
# more than 1.5 aliases the bilinear samples, and its body's principal axis drifts by a degree)
SMALL = RefinerConfig(enabled=True, scale=SCALE, crop_size=96)
MARGIN = 1.6  # a wider crop than the route's, so more bodies lie whole in theirs


def test_a_training_crop_shows_its_body_tilted_by_the_residual():
    """17 copies of one drawn body, each cut with its own jitter: wherever the body lies whole
    in its crop, the crop shows it tilted by the residual the crop is labelled with (the
    mirrored ones too, whose residual is negated)."""
    image, corners = tilted_body(14.0)
    landmarks = np.tile(corners[None], (17, 1, 1)).reshape(1, 68, 2)
    crops, residuals = jittered_crops(tf.constant(image[None, ..., None]), landmarks, SMALL, seed=3, margin=MARGIN)
    crops, residuals = crops.numpy()[..., 0], residuals.numpy()[:, 0] * RESIDUAL_UNIT_DEGREES
    assert np.all(np.abs(residuals) <= 10.0 + 1e-4) and residuals.std() > 2.0
    whole = [k for k in range(17) if max(np.abs(crops[k, [0, -1]]).max(), np.abs(crops[k, :, [0, -1]]).max()) < 1e-3]
    assert len(whole) >= 5
    for k in whole:
        assert principal_angle(crops[k]) == pytest.approx(residuals[k], abs=0.5)


def test_the_same_seed_cuts_the_same_crops():
    image, corners = tilted_body(-6.0)
    landmarks = np.tile(corners[None], (17, 1, 1)).reshape(1, 68, 2)
    first = jittered_crops(tf.constant(image[None, ..., None]), landmarks, SMALL, seed=1)
    again = jittered_crops(tf.constant(image[None, ..., None]), landmarks, SMALL, seed=1)
    other = jittered_crops(tf.constant(image[None, ..., None]), landmarks, SMALL, seed=2)
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    assert not np.allclose(first[1].numpy(), other[1].numpy())


def constant_refiner(settings: RefinerConfig, residual: float):
    """A refiner that answers `residual` (in its units) for every crop."""
    refiner = build_tilt_refiner(settings)
    layer = refiner.get_layer("residual")
    layer.kernel.assign(np.zeros(layer.kernel.shape, "float32"))
    layer.bias.assign(np.array([residual], "float32"))
    return refiner


def midline_degrees(landmarks):
    quads = np.asarray(landmarks, np.float64).reshape(len(landmarks), 17, 4, 2)
    vectors = (quads[:, :, 1] + quads[:, :, 3]) / 2 - (quads[:, :, 0] + quads[:, :, 2]) / 2
    return np.degrees(np.arctan2(vectors[..., 1], vectors[..., 0]))


def test_the_second_look_adds_the_refiners_residual_to_every_vertebra():
    masks, _, _, field = drawn_spines(3, seed=11)
    settings = dataclasses.replace(SMALL, crop_size=16, scale=2)
    fine = tf.zeros((3, masks.shape[1] * 2, masks.shape[2] * 2, 1))
    refine = refined_tilts(constant_refiner(settings, 0.4), fine, settings)  # 0.4 × 5° = 2°
    plain = read_vertebrae(tf.constant(masks), tf.constant(field), ReadoutConfig())
    refined = read_vertebrae(tf.constant(masks), tf.constant(field), ReadoutConfig(), refine=refine)
    turned = midline_degrees(refined["landmarks"].numpy()) - midline_degrees(plain["landmarks"].numpy())
    np.testing.assert_allclose(turned, 0.4 * RESIDUAL_UNIT_DEGREES, atol=1e-3)
    np.testing.assert_array_equal(refined["found"].numpy(), plain["found"].numpy())


def test_no_spine_gives_nan_angles_through_the_refiner_and_never_raises():
    settings = dataclasses.replace(SMALL, crop_size=16, scale=2)
    empty = tf.zeros((2, 256, 128))
    field = tf.zeros((2, 256, 128, 2))
    refine = refined_tilts(constant_refiner(settings, 0.4), tf.zeros((2, 512, 256, 1)), settings)
    out = read_vertebrae(empty, field, ReadoutConfig(), refine=refine)
    assert not out["found"].numpy().any()
    assert np.isnan(out["cobb_angles"].numpy()).all()


def test_the_refiner_needs_its_fine_images():
    with pytest.raises(ValueError, match="fine images"):
        refined_tilts(constant_refiner(dataclasses.replace(SMALL, crop_size=16), 0.0), None, SMALL)


def test_a_training_run_writes_a_refiner_that_loads_and_its_summary(synthetic_root, tmp_path):
    values = load_config("configs/smoke.yaml").to_dict()
    config = config_from_dict({**values, "data": {**values["data"], "root": synthetic_root},
                               "refiner": {"enabled": True, "crop_size": 16, "scale": 2, "epochs": 2, "batch_size": 32}})
    training, validation, _ = resolve_records(config)
    summary = train_refiner(training, validation, config, tmp_path / "refiner", verbose=0)
    assert [row["epoch"] for row in summary["history"]] == [1, 2]
    assert all(math.isfinite(row["loss"]) and math.isfinite(row["val_tilt_rms_degrees"]) for row in summary["history"])
    assert summary["validation_start_rms_degrees"] == pytest.approx(10.0 / math.sqrt(3.0), rel=0.35)  # uniform in ±10°
    assert sorted(p.name for p in (tmp_path / "refiner").iterdir()) == ["summary.json", "tilt_refiner.keras"]
    loaded = keras.saving.load_model(tmp_path / "refiner" / "tilt_refiner.keras", compile=False)
    crops = tf.random.stateless_uniform((4, 16, 16, 1), seed=(1, 2))
    np.testing.assert_allclose(loaded(crops).numpy(), loaded(crops).numpy())
    assert loaded.output_shape == (None, 1)


@pytest.mark.parametrize("section, message", [
    ({"crop_size": 20}, "crop_size"),
    ({"margin": 1.6}, r"'refiner.margin' was removed \(a constant of the tilt refiner.*models.tilt_refiner.MARGIN"),
    ({"scale": 0}, "scale"),
    ({"jitter_degrees": 5.0}, r"'refiner.jitter_degrees' was removed .*training.refiner.JITTER_DEGREES"),
    ({"crop": 64}, "crop"),
])
def test_bad_refiner_settings_are_refused(section, message):
    values = load_config("configs/smoke.yaml").to_dict()
    with pytest.raises(ValueError, match=message):
        config_from_dict({**values, "refiner": {**values["refiner"], **section}})


def test_predict_from_a_workdir_with_the_refiner_answers_as_in_memory(synthetic_root, tmp_path):
    """predict decodes each file into both frames and gives the refiner the fine views of its
    test-time augmentation, warped like the model-frame views: with TTA off its row is the
    in-memory refined route, and with TTA on, the identity view's angles are among the views'."""
    from seg4reg_tf.config import PredictConfig
    from seg4reg_tf.data import radiographs
    from seg4reg_tf.inference import predict_images
    from seg4reg_tf.serving import analysis, loaded_system
    from seg4reg_tf.serving.report import ANGLE_FIELDS
    from seg4reg_tf.workdir import final_networks, load_refiner
    from tests.harness import make_workdir

    workdir = make_workdir(tmp_path / "workdir", segmenter={"tilt_weight": 1.0}, refiner={"enabled": True, "crop_size": 16, "scale": 2},
                           inference={"angles": "vertebrae"})
    model = loaded_system.load_workdir(str(workdir))
    path = sorted((pathlib.Path(synthetic_root) / "data" / "training").glob("*.jpg"))[0]
    radiograph = radiographs.read_radiograph(str(path))
    row = analysis.predict_radiograph(model, radiograph, PredictConfig())
    image, letterbox, fine = model.decode(radiograph.encoded, str(path))
    assert fine.shape == (128, 64, 1)
    config, segmenter, regressor, sources = final_networks(workdir)
    expected = predict_images(segmenter, regressor, image[None], config, "vertebrae", letterbox[None], load_refiner(sources), fine[None])
    angles = keras.ops.convert_to_numpy(expected["cobb_angles"])[0]
    assert row["route"] == "vertebrae"
    np.testing.assert_allclose([row[field] for field in ANGLE_FIELDS], angles, atol=1e-3)
    with_views = analysis.predict_radiograph(model, radiograph, PredictConfig(tta=True))
    assert with_views["views"] > 1 and all(np.isfinite(with_views[field]) for field in ANGLE_FIELDS)


def test_train_trains_the_refiner_once_before_phase_reg(synthetic_root, tmp_path, capsys):
    from seg4reg_tf.training import run
    from seg4reg_tf.workdir import refiner_path

    values = load_config("configs/smoke.yaml").to_dict()
    config = config_from_dict({**values, "data": {**values["data"], "root": synthetic_root},
                               "refiner": {"enabled": True, "crop_size": 16, "scale": 2, "epochs": 1}})
    first = run.ensure_refiner(config, tmp_path)
    assert refiner_path(tmp_path).is_file() and "tilt refiner" in capsys.readouterr().out
    stamp = refiner_path(tmp_path).stat().st_mtime_ns
    again = run.ensure_refiner(config, tmp_path)
    assert again == first and refiner_path(tmp_path).stat().st_mtime_ns == stamp  # read back, not retrained
    line = run.report({"phase": "reg", "validation": {"smape": 30.0, "mae": 9.0}, "baseline": {"smape": 35.0, "mae": 10.0},
                       "seconds": 5.0, "refiner": first})
    assert "tilt refiner trained in" in line
    assert run.ensure_refiner(dataclasses.replace(config, refiner=RefinerConfig()), tmp_path / "off") is None
