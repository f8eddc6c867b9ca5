"""Eqs. 1, 3 and 4 against values worked out by hand."""

import math

import numpy as np
import pytest

from seg4reg_tf import losses


def column(values):
    """A (1, N, 1, 1) mask or map from a list."""
    return np.array(values, "float32").reshape(1, -1, 1, 1)


def test_dice_loss_by_hand():
    # overlap 1·1 + 1·0.5 = 1.5; Σy + Σp = 2 + 2 = 4 → Dice 3/4 → loss 1/4.
    assert float(losses.dice_loss(column([1, 1, 0, 0]), column([1, 0.5, 0.5, 0]))) == pytest.approx(0.25, abs=1e-5)
    assert float(losses.dice_loss(column([0, 0]), column([0, 0]))) == pytest.approx(0.0, abs=1e-6)  # empty on empty
    assert float(losses.dice_loss(column([1, 0]), column([0, 1]))) == pytest.approx(1.0, abs=1e-5)
    # Two images average: 0.25 and 1.0.
    batch_true = np.concatenate([column([1, 1, 0, 0]), column([1, 0, 0, 0])])
    batch_pred = np.concatenate([column([1, 0.5, 0.5, 0]), column([0, 1, 0, 0])])
    assert float(losses.dice_loss(batch_true, batch_pred)) == pytest.approx(0.625, abs=1e-5)


def test_weighted_cross_entropy_by_hand():
    # y = [1, 0], z = [0, 2]: (ln 2 + ln(1 + e²)) / 2.
    expected = (math.log(2) + math.log(1 + math.e**2)) / 2
    value = losses.weighted_cross_entropy(column([1, 0]), column([0.0, 2.0]))
    assert float(value) == pytest.approx(expected, rel=1e-5)
    # Huge logits stay finite.
    assert math.isfinite(float(losses.weighted_cross_entropy(column([1, 0]), column([-500.0, 500.0]))))


def test_segmentation_loss_is_dice_plus_lambda_ce():
    y, z = column([1, 0, 1]), column([2.0, -1.0, 0.5])
    p = 1 / (1 + np.exp(-np.array([2.0, -1.0, 0.5])))
    dice = 1 - 2 * (p[0] + p[2]) / (2 + p.sum())
    ce = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(-0.5))) / 3
    assert float(losses.segmentation_loss(y, z, ce_weight=0.5)) == pytest.approx(dice + 0.5 * ce, rel=1e-5)


def test_boundary_band_by_hand():
    # Spine rows 2–5 of 8, band half-width 1: dilated rows 1–6, eroded rows 3–4.
    band = np.asarray(losses.boundary_band(column([0, 0, 1, 1, 1, 1, 0, 0]), 1)).ravel()
    np.testing.assert_array_equal(band, [0, 1, 1, 0, 0, 1, 1, 0])
    # width 2: dilated rows 0–7, eroded nothing (rows 2–5 are within 2 of the edge).
    band = np.asarray(losses.boundary_band(column([0, 0, 1, 1, 1, 1, 0, 0]), 2)).ravel()
    np.testing.assert_array_equal(band, [1, 1, 1, 1, 1, 1, 1, 1])
    # No outline, no band: an empty mask and a full one (the image border is no outline).
    assert float(np.sum(losses.boundary_band(column([0, 0, 0]), 1))) == 0.0
    assert float(np.sum(losses.boundary_band(column([1, 1, 1]), 1))) == 0.0


def test_boundary_weight_scales_the_cross_entropy_on_the_band_only():
    # y = [0, 0, 1, 1, 1, 1, 0, 0]: band (width 1) on pixels 1, 2, 5, 6; weight 3 → ×4 there.
    y = column([0, 0, 1, 1, 1, 1, 0, 0])
    z = np.array([-1.0, 0.5, 0.2, 3.0, 2.0, -0.3, 1.0, -2.0], "float32")
    per_pixel = [math.log(1 + math.exp(-v)) if t else math.log(1 + math.exp(v)) for t, v in zip(y.ravel(), z)]
    factors = [1, 4, 4, 1, 1, 4, 4, 1]
    expected = sum(f * p for f, p in zip(factors, per_pixel)) / 8
    value = losses.weighted_cross_entropy(y, column(z), boundary_weight=3.0, boundary_width=1)
    assert float(value) == pytest.approx(expected, rel=1e-5)
    # Weight 0 is the plain cross-entropy of Eq. 1.
    plain = losses.weighted_cross_entropy(y, column(z), boundary_weight=0.0, boundary_width=1)
    assert float(plain) == pytest.approx(sum(per_pixel) / 8, rel=1e-5)


def test_smape_loss_by_hand_including_zero_angles():
    eps = 1e-6
    # |0.1−0.2| + 0 + |0.3−0.2| = 0.2 over (0.3 + 0.4 + 0.5 + 3ε).
    value = losses.smape_loss(np.array([[0.1, 0.2, 0.3]], "float32"), np.array([[0.2, 0.2, 0.2]], "float32"), eps)
    assert float(value) == pytest.approx(0.2 / (1.2 + 3 * eps), rel=1e-5)
    zeros = np.zeros((1, 3), "float32")
    assert float(losses.smape_loss(zeros, zeros, eps)) == 0.0  # ε keeps 0/0 away
    value = losses.smape_loss(np.array([[0.5, 0.0, 0.0]], "float32"), np.array([[0.5, 0.1, 0.0]], "float32"), eps)
    assert float(value) == pytest.approx(0.1 / 1.1, rel=1e-4)


def test_attention_regularisation_is_mean_l1():
    a = np.array([0.0, 0.5, 1.0, 1.0], "float32").reshape(1, 2, 2, 1)
    b = np.array([0.5, 0.5, 0.0, 1.0], "float32").reshape(1, 2, 2, 1)
    assert float(losses.attention_regularization_loss(a, b)) == pytest.approx(1.5 / 4)


def test_l1_angle_loss_by_hand_and_unknown_names():
    value = losses.angle_loss("l1", np.array([[0.1, 0.2, 0.3]], "float32"), np.array([[0.2, 0.2, 0.5]], "float32"))
    assert float(value) == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(ValueError, match="unknown angle loss"):
        losses.angle_loss("smape_detached", np.zeros((1, 3), "float32"), np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="unknown angle loss"):
        losses.angle_loss("mse", np.zeros((1, 3), "float32"), np.zeros((1, 3), "float32"))
