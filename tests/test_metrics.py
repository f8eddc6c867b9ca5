"""SMAPE, MAE and segmentation scores against values worked out by hand; streaming == NumPy."""

import keras
import numpy as np
import pytest

from seg4reg_tf import metrics

GT = np.array([[10.0, 20.0, 30.0], [40.0, 0.0, 10.0], [0.0, 0.0, 0.0]])
PRED = np.array([[12.0, 18.0, 30.0], [38.0, 2.0, 10.0], [0.0, 0.0, 0.0]])


def test_aasce_smape_by_hand():
    # Image 1: 4 / 120; image 2 (a zero angle): 4 / 100; image 3: all zero → 0. No factor 2.
    assert metrics.smape(GT, PRED) == pytest.approx(100 * (4 / 120 + 4 / 100 + 0) / 3)
    assert metrics.smape(GT / 180, PRED / 180) == pytest.approx(metrics.smape(GT, PRED))  # unit-free


def test_mae_by_hand():
    per_angle, overall = metrics.mean_absolute_error(GT, PRED)
    np.testing.assert_allclose(per_angle, [4 / 3, 4 / 3, 0.0])
    assert overall == pytest.approx(8 / 9)


def masks():
    truth = np.zeros((1, 4, 4, 1))
    truth[0, 0, :4] = 1  # 4 spine pixels in row 0
    predicted = np.zeros((1, 4, 4, 1))
    predicted[0, 0, :2] = 0.9  # 2 hits
    predicted[0, 1, :2] = 0.8  # 2 false positives
    predicted[0, 2, 0] = 0.4  # below threshold
    return truth, predicted


def test_segmentation_scores_by_hand():
    # TP 2, FP 2, FN 2, TN 10.
    scores = metrics.segmentation_scores(*masks())
    expected = {"jaccard": 2 / 6, "dice": 4 / 8, "pixel_accuracy": 12 / 16, "sensitivity": 2 / 4, "specificity": 10 / 12}
    for name, value in expected.items():
        assert scores[name] == pytest.approx(100 * value, rel=1e-5), name
    empty = np.zeros((1, 4, 4, 1))
    assert metrics.segmentation_scores(empty, empty) == {name: 100.0 for name in metrics.SEGMENTATION_SCORES}
    assert metrics.segmentation_scores(empty, np.ones((1, 4, 4, 1)))["dice"] == 0.0


def test_streaming_metrics_equal_numpy_over_several_batches():
    smape = metrics.Smape()
    mae = metrics.AngleMAE()
    mae_first = metrics.AngleMAE(column=0)
    for rows in (slice(0, 2), slice(2, 3)):
        smape.update_state(GT[rows] / 180, PRED[rows] / 180)
        mae.update_state(GT[rows] / 180, PRED[rows] / 180)
        mae_first.update_state(GT[rows] / 180, PRED[rows] / 180)
    assert float(smape.result()) == pytest.approx(metrics.smape(GT, PRED), rel=1e-5)
    assert float(mae.result()) == pytest.approx(8 / 9, rel=1e-5)
    assert float(mae_first.result()) == pytest.approx(4 / 3, rel=1e-5)
    truth, predicted = masks()
    jaccard = metrics.SegmentationScore("jaccard")
    jaccard.update_state(truth, predicted)
    jaccard.update_state(np.zeros_like(truth), np.zeros_like(truth))
    assert float(jaccard.result()) == pytest.approx(100 * (2 / 6 + 1) / 2, rel=1e-5)
    jaccard.reset_state()
    assert float(jaccard.result()) == 0.0


def test_metric_configs_round_trip():
    for metric in (metrics.Smape(), metrics.AngleMAE(column=2), metrics.SegmentationScore("specificity", 0.3)):
        clone = keras.metrics.deserialize(keras.metrics.serialize(metric))
        assert type(clone) is type(metric) and clone.get_config() == metric.get_config()
    with pytest.raises(ValueError, match="unknown segmentation score"):
        metrics.SegmentationScore("recall")


def test_mean_angle_baseline_scores_the_constant_answer():
    truth = np.array([[40.0, 20.0, 10.0], [20.0, 10.0, 30.0]])
    figures = metrics.mean_angle_baseline(truth, [30.0, 15.0, 20.0])
    assert figures["mae_columns"] == [10.0, 5.0, 10.0] and figures["mae"] == pytest.approx(25.0 / 3)
    # image 1: (10 + 5 + 10) / (70 + 35 + 30); image 2: (10 + 5 + 10) / (50 + 25 + 50)
    assert figures["smape"] == pytest.approx(100 * (25 / 135 + 25 / 125) / 2)
