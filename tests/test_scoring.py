"""Scoring a route's angles (seg4reg_tf/evaluation/scoring.py), by hand on small arrays."""

import numpy as np
import pytest

from seg4reg_tf.evaluation.scoring import angle_figures


def test_angle_figures_by_hand():
    truth = np.array([[40.0, 20.0, 10.0], [20.0, 10.0, 10.0]])
    predicted = np.array([[44.0, 20.0, 10.0], [30.0, 10.0, 10.0]])
    figures = angle_figures(truth, predicted)
    # SMAPE: mean over images of Σ|gt − pred| / Σ(gt + pred) × 100
    assert figures["smape"] == pytest.approx(100 * (4 / 144 + 10 / 90) / 2)
    assert figures["mae_columns"] == pytest.approx([7.0, 0.0, 0.0])
    assert figures["mae"] == pytest.approx(7.0 / 3)
    assert figures["within_5"] == pytest.approx(50.0)  # the largest angle: 4° off, then 10°
    assert figures["not_found"] == 0


def test_a_spine_not_found_is_scored_as_the_fallback_angles():
    truth = np.array([[40.0, 20.0, 10.0], [20.0, 10.0, 10.0]])
    fallback = np.array([30.0, 15.0, 10.0])
    figures = angle_figures(truth, np.array([[40.0, 20.0, 10.0], [np.nan] * 3]), fallback)
    assert figures["not_found"] == 1
    assert figures["smape"] == pytest.approx(100 * (0 + 15 / 95) / 2)


def test_a_nearly_constant_column_is_flagged_flat():
    rng = np.random.default_rng(0)
    truth = rng.uniform(5, 60, (50, 3))
    predicted = truth.copy()
    predicted[:, 2] = 12.0 + rng.normal(0, 0.1, 50)  # column 3 says the same whatever the truth
    assert angle_figures(truth, predicted)["flat_columns"] == [2]
