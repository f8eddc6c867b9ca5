"""Where N_S loses Dice (seg4reg_tf/evaluation/segmentation_errors.py, read by
bench/segmentation_errors.py): Dice and its split of the lost points, worked out by hand."""

import numpy as np
import pytest

from seg4reg_tf.evaluation import segmentation_errors as errors


def example():
    """A true spine on rows 2–5 × columns 1–2 (8 pixels); the prediction also paints row 1
    (2 false positives above) and misses pixel (3, 1) (1 false negative inside)."""
    truth = np.zeros((1, 8, 4), np.float32)
    truth[0, 2:6, 1:3] = 1.0
    probabilities = np.zeros((1, 8, 4), np.float32)
    probabilities[0, 1:6, 1:3] = 0.9
    probabilities[0, 3, 1] = 0.2
    return truth, probabilities


def test_dice_by_hand():
    truth, probabilities = example()
    # TP 7, predicted 9, true 8: 2·7 / 17
    np.testing.assert_allclose(errors.dice(truth, probabilities), [100 * 14 / 17], rtol=1e-6)
    np.testing.assert_allclose(errors.dice(truth, probabilities, threshold=0.1), [100 * 16 / 18], rtol=1e-6)
    np.testing.assert_allclose(errors.dice(np.zeros_like(truth), np.zeros_like(truth)), [100.0])


def test_lost_points_split_by_hand():
    truth, probabilities = example()
    parts = errors.lost_points(truth, probabilities)
    assert parts["false positives, above the spine's rows"] == pytest.approx(100 * 2 / 17)
    assert parts["false negatives"] == pytest.approx(100 * 1 / 17)
    others = {key: value for key, value in parts.items() if key not in ("false positives, above the spine's rows", "false negatives")}
    assert others and all(value == 0 for value in others.values())
    assert sum(parts.values()) == pytest.approx(100 - errors.dice(truth, probabilities)[0])
