"""The geometric readout (seg4reg_tf/geometric_readout.py) against NumPy: the reference
readout of tests/readout_reference.py and the landmarks' angles (geometry.cobb_angles)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf import metrics
from seg4reg_tf.config import DataConfig, ReadoutConfig, config_from_dict
from seg4reg_tf.geometric_readout import read_spine
from seg4reg_tf.training.pretraining import draw_masks
from tests.readout_reference import readout as reference_readout

SETTINGS = ReadoutConfig()


@pytest.fixture(scope="module")
def masks_128():
    """200 exact synthetic spine masks at 128×64 and their true Cobb angles."""
    masks, angles = draw_masks(200, 0, 11, DataConfig(image_height=128, image_width=64))
    return masks[..., 0].astype(np.float32), angles


def test_readout_reads_exact_synthetic_masks(masks_128):
    masks, angles = masks_128
    out = read_spine(masks, SETTINGS)
    predicted = out["cobb_angles"].numpy()
    assert out["found"].numpy().all()
    baseline = metrics.smape(angles, np.broadcast_to(angles.mean(axis=0), angles.shape))
    # measured: SMAPE 12.7% and largest-angle MAE 4.8° at 128×64 (the mean: 27.2%)
    assert metrics.smape(angles, predicted) <= 16.0 < baseline
    assert np.abs(predicted[:, 0] - angles[:, 0]).mean() <= 6.5


def test_tf_readout_equals_the_numpy_reference(masks_128):
    masks, _ = masks_128
    rng = np.random.default_rng(0)
    # soft probabilities: blurred masks with noise, and a letterbox with an offset
    soft = np.clip(masks[:24] * rng.uniform(0.6, 1.0, masks[:24].shape) + rng.uniform(0, 0.55, masks[:24].shape), 0, 1)
    letterbox = np.tile(np.array([[0.05, 0.0, 3.5]], np.float32), (24, 1))
    out = read_spine(soft.astype(np.float32), SETTINGS, letterbox)
    for index in range(24):
        angles, landmarks, found = reference_readout(soft[index].astype(np.float64), SETTINGS, letterbox[index])
        assert found == bool(out["found"][index])
        np.testing.assert_allclose(out["landmarks"][index].numpy(), landmarks, atol=2e-2 / 0.05)
        np.testing.assert_allclose(out["cobb_angles"][index].numpy(), angles, atol=0.02)


def test_a_batch_equals_one_image_at_a_time(masks_128):
    masks, _ = masks_128
    batch = read_spine(masks[:6], SETTINGS)
    for index in range(6):
        single = read_spine(masks[index : index + 1], SETTINGS)
        for key in ("cobb_angles", "landmarks", "end_vertebrae", "found"):
            # float32 matrix products differ in the last bits with the batch size
            np.testing.assert_allclose(single[key].numpy()[0], batch[key].numpy()[index], atol=1e-3)


def test_no_spine_gives_nan_and_not_found_without_raising():
    images = np.zeros((4, 64, 32), np.float32)
    images[1] = 0.4  # everything below the threshold
    images[2, 30:34, 10:14] = 1.0  # a speck much shorter than min_length
    images[3] = np.random.default_rng(1).random((64, 32)) ** 8  # sparse noise
    traced = tf.function(lambda p: read_spine(p, SETTINGS), input_signature=[tf.TensorSpec([None, 64, 32], tf.float32)])
    out = traced(images)
    assert not out["found"].numpy()[:3].any()
    assert np.isnan(out["cobb_angles"].numpy()[:3]).all() and np.isnan(out["landmarks"].numpy()[:3]).all()
    assert (out["end_vertebrae"].numpy()[:3] == -1).all()


def test_a_blob_beside_the_spine_moves_the_angles_less_than_a_degree(masks_128):
    masks, _ = masks_128
    clean = masks[:20]
    blobbed = clean.copy()
    for mask in blobbed:
        columns = np.nonzero(mask.any(axis=0))[0]
        left = columns.min() - 14 if columns.min() >= 20 else columns.max() + 6  # clear of the spine
        mask[50:62, left : left + 8] = 1.0
    reference = read_spine(clean, SETTINGS)["cobb_angles"].numpy()
    moved = read_spine(blobbed, SETTINGS)["cobb_angles"].numpy()
    assert np.abs(moved - reference).max() < 1.0


def test_a_blob_above_the_spine_is_not_the_spine(masks_128):
    masks, _ = masks_128
    clean = np.zeros_like(masks[:10])
    clean[:, 24:] = masks[:10, :-24]  # room above each spine
    blobbed = clean.copy()
    blobbed[:, 0:4, 16:48] = 1.0  # a band at the image's top, beyond the bridged gap
    np.testing.assert_allclose(read_spine(blobbed, SETTINGS)["cobb_angles"].numpy(), read_spine(clean, SETTINGS)["cobb_angles"].numpy(), atol=1.0)


def test_readout_settings_are_validated():
    for key, value in (("min_confidence", 1.0), ("min_confidence", -0.1), ("min_confidence", float("nan")), ("tilt_gain", 3.0)):
        with pytest.raises(ValueError, match=key):
            config_from_dict({"readout": {key: value}})
    config = config_from_dict({"readout": {"min_confidence": 0.5}, "inference": {"angles": "geometric"}})
    assert config.readout == dataclasses.replace(ReadoutConfig(), min_confidence=0.5) and config.inference.angles == "geometric"
    with pytest.raises(ValueError, match=r"'readout\.smoothing' was removed .*geometric_readout\.SMOOTHING"):
        config_from_dict({"readout": {"smoothing": 0.05}})
    with pytest.raises(ValueError, match="inference.angles"):
        config_from_dict({"inference": {"angles": "both"}})


def test_the_readout_is_differentiable_in_the_probabilities():
    """TCL through the readout needs d(angles)/d(probabilities): finite, and non-zero on the
    spine (the rounding of the organisers' algorithm passes the gradient straight through)."""
    height, width = 64, 32
    rows, columns = np.mgrid[0:height, 0:width]
    centre = 16 + 6 * np.sin(rows / height * np.pi * 1.5)
    probabilities = tf.Variable(((np.abs(columns - centre) < 4) * 0.9).astype("float32")[None])
    with tf.GradientTape() as tape:
        angles = read_spine(probabilities, ReadoutConfig())["cobb_angles"]
        total = tf.reduce_sum(angles)
    gradient = tape.gradient(total, probabilities).numpy()
    assert np.isfinite(angles.numpy()).all() and np.isfinite(gradient).all()
    assert np.abs(gradient).sum() > 1.0 and np.abs(gradient[0][np.abs(columns - centre) > 8]).max() == 0.0


def test_the_readouts_gradient_is_finite_where_the_spine_leaves_empty_rows():
    """Drawn spines leave rows above and below them, where the centre line repeats its end
    (zero-length segments): their gradient must be 0, not NaN (a NaN there turned every
    epoch of TCL through the readout into NaN weights)."""
    masks, _ = draw_masks(4, 0, 0, DataConfig(image_height=64, image_width=32))
    probabilities = tf.Variable(0.95 * masks[..., 0].astype("float32"))
    assert not masks[:, 0].any()  # empty rows above each spine
    with tf.GradientTape() as tape:
        out = read_spine(probabilities, ReadoutConfig())
        total = tf.reduce_sum(out["cobb_angles"])
    gradient = tape.gradient(total, probabilities).numpy()
    assert out["found"].numpy().all() and np.isfinite(gradient).all() and np.abs(gradient).sum() > 1.0


def test_a_weak_mask_is_no_spine_under_min_confidence():
    """N_S answers noise with weak probabilities: with `min_confidence` such a mask is "not
    found" (NaN angles), while the same spine drawn with confident probabilities is read."""
    height, width = 64, 32
    rows, columns = np.mgrid[0:height, 0:width]
    band = (np.abs(columns - (16 + 5 * np.sin(rows / height * np.pi))) < 4).astype("float32")
    weak, strong = band * 0.65, band * 0.95
    settings = ReadoutConfig(min_confidence=0.78)
    out = read_spine(tf.constant(np.stack([weak, strong])), settings)
    assert out["found"].numpy().tolist() == [False, True]
    assert np.isnan(out["cobb_angles"][0].numpy()).all() and np.isfinite(out["cobb_angles"][1].numpy()).all()
    assert read_spine(tf.constant(weak[None]), ReadoutConfig())["found"].numpy().tolist() == [True]  # off by default
