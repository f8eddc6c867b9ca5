"""Evaluation metrics: Cobb-angle SMAPE and MAE, segmentation JA/Dice/AC/SE/SP.

Per-image formulas are written once with keras.ops; the NumPy functions (for evaluation
tables) and the streaming Keras metrics (for validation during training) both use them.

SMAPE is the AASCE challenge's: per image Σ_j |gt_j − pred_j| / Σ_j (gt_j + pred_j) over the
3 angles, mean over images, × 100, without the factor 2 of other SMAPE definitions. It does
not depend on the angle unit, so degrees or [0, 1]-scaled angles give the same value.
Segmentation scores are per-image then averaged; a ratio with a zero denominator (e.g. Dice
of an empty prediction on an empty mask) counts as 1, perfect agreement on nothing.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from seg4reg_tf.data.transforms import ANGLE_SCALE_DEGREES

SEGMENTATION_SCORES = ("jaccard", "dice", "pixel_accuracy", "sensitivity", "specificity")


def _ratio(numerator, denominator):
    """numerator / denominator, and 1 where the denominator is 0."""
    safe = ops.where(denominator > 0, denominator, ops.ones_like(denominator))
    return ops.where(denominator > 0, numerator / safe, ops.ones_like(numerator))


def smape_per_image(gt, pred):
    """(B, 3), (B, 3) angles → (B,) Σ|gt − pred| / Σ(gt + pred); 0 when both are all zero."""
    error = ops.sum(ops.abs(gt - pred), axis=-1)
    total = ops.sum(gt + pred, axis=-1)
    return 1.0 - _ratio(total - error, total)


def segmentation_per_image(gt, pred, score: str, threshold: float = 0.5):
    """One segmentation score per image.

    Args:
        gt: (B, H, W, 1) masks in {0, 1}.
        pred: (B, H, W, 1) probabilities or masks; positive where > threshold.
        score: one of SEGMENTATION_SCORES.

    Returns:
        (B,) float32.
    """
    if score not in SEGMENTATION_SCORES:
        raise ValueError(f"unknown segmentation score {score!r}; expected one of {SEGMENTATION_SCORES}")
    truth = ops.cast(ops.cast(gt, "float32") > 0.5, "float32")
    predicted = ops.cast(ops.cast(pred, "float32") > threshold, "float32")
    axes = tuple(range(1, len(truth.shape)))
    tp = ops.sum(truth * predicted, axis=axes)
    fp = ops.sum((1 - truth) * predicted, axis=axes)
    fn = ops.sum(truth * (1 - predicted), axis=axes)
    tn = ops.sum((1 - truth) * (1 - predicted), axis=axes)
    numerator, denominator = {
        "jaccard": (tp, tp + fp + fn),
        "dice": (2 * tp, 2 * tp + fp + fn),
        "pixel_accuracy": (tp + tn, tp + tn + fp + fn),
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
    }[score]
    return _ratio(numerator, denominator)


def smape(gt_degrees, pred_degrees) -> float:
    """AASCE SMAPE in percent over (N, 3) angle arrays."""
    gt, pred = np.asarray(gt_degrees, np.float64), np.asarray(pred_degrees, np.float64)
    return float(100.0 * np.mean(ops.convert_to_numpy(smape_per_image(gt, pred))))


def mean_absolute_error(gt_degrees, pred_degrees) -> tuple[np.ndarray, float]:
    """(per-angle MAE (3,), overall MAE) in degrees over (N, 3) arrays."""
    error = np.abs(np.asarray(gt_degrees, np.float64) - np.asarray(pred_degrees, np.float64))
    return error.mean(axis=0), float(error.mean())


def mean_angle_baseline(gt_degrees, mean_degrees) -> dict:
    """Figures of the image-blind predictor answering `mean_degrees` (3,) (the training
    split's mean angles) for every image of (N, 3) `gt_degrees`: {"smape" %, "mae" °,
    "mae_columns" [3] °} — the floor an angle route must beat."""
    constant = np.broadcast_to(np.asarray(mean_degrees, np.float64), np.shape(gt_degrees))
    per_angle, overall = mean_absolute_error(gt_degrees, constant)
    return {"smape": smape(gt_degrees, constant), "mae": overall, "mae_columns": per_angle.tolist()}


def segmentation_scores(gt_masks, pred_masks, threshold: float = 0.5) -> dict[str, float]:
    """Paper Table 2's five scores in percent, each the mean of per-image scores."""
    return {
        score: float(100.0 * np.mean(ops.convert_to_numpy(segmentation_per_image(gt_masks, pred_masks, score, threshold))))
        for score in SEGMENTATION_SCORES
    }


class _PerImageMean(keras.metrics.Metric):
    """Streaming mean of a per-image value: keeps a sum and a count."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def per_image(self, y_true, y_pred):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = ops.cast(self.per_image(y_true, y_pred), "float32")
        self.total.assign_add(ops.sum(values))
        self.count.assign_add(ops.cast(ops.shape(values)[0], "float32"))

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package="seg4reg")
class Smape(_PerImageMean):
    """Streaming AASCE SMAPE in percent (any angle unit)."""

    def __init__(self, name: str = "smape", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_image(self, y_true, y_pred):
        return 100.0 * smape_per_image(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"))


@keras.saving.register_keras_serializable(package="seg4reg")
class AngleMAE(_PerImageMean):
    """Streaming mean absolute error in degrees, of one angle column or of all three.

    Outputs in [0, 1] are turned back into degrees by `ANGLE_SCALE_DEGREES`.

    Args:
        column: 0, 1 or 2 for one AASCE column; None for all three.
    """

    def __init__(self, column: int | None = None, name: str | None = None, **kwargs):
        super().__init__(name=name or ("mae" if column is None else f"mae_{column + 1}"), **kwargs)
        self.column = column

    def per_image(self, y_true, y_pred):
        error = ops.abs(ops.cast(y_true, "float32") - ops.cast(y_pred, "float32")) * ANGLE_SCALE_DEGREES
        return ops.mean(error, axis=-1) if self.column is None else error[:, self.column]

    def get_config(self):
        return {**super().get_config(), "column": self.column}


@keras.saving.register_keras_serializable(package="seg4reg")
class SegmentationScore(_PerImageMean):
    """Streaming per-image segmentation score in percent (`score` in SEGMENTATION_SCORES)."""

    def __init__(self, score: str = "dice", threshold: float = 0.5, name: str | None = None, **kwargs):
        if score not in SEGMENTATION_SCORES:
            raise ValueError(f"unknown segmentation score {score!r}; expected one of {SEGMENTATION_SCORES}")
        super().__init__(name=name or score, **kwargs)
        self.score = score
        self.threshold = threshold

    def per_image(self, y_true, y_pred):
        return 100.0 * segmentation_per_image(y_true, y_pred, self.score, self.threshold)

    def get_config(self):
        return {**super().get_config(), "score": self.score, "threshold": self.threshold}
