"""Where N_S loses Dice (`bench/segmentation_errors.py`): per-image Dice at a threshold, and
the points lost split into false positives above, inside or below the rows the true spine
spans, and false negatives (100 − Dice = 100·(FP + FN) / (2·TP + FP + FN) per image)."""

from __future__ import annotations

import numpy as np

from seg4reg_tf.metrics import segmentation_per_image


def dice(truth: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(N,) per-image Dice (%) of (N, H, W) masks and probabilities (`metrics.segmentation_per_image`)."""
    return 100.0 * np.asarray(segmentation_per_image(truth[..., None], probabilities[..., None], "dice", threshold))


def lost_points(truth: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Mean over images of the Dice points lost (%): false positives above, inside and below
    the rows the true spine spans, and false negatives. The parts sum to 100 − mean Dice."""
    predicted = probabilities > 0.5
    positive = truth > 0.5
    rows = np.any(positive, axis=2)  # (N, H)
    index = np.arange(rows.shape[1])[None]
    top = np.where(rows.any(axis=1), rows.argmax(axis=1), rows.shape[1])[:, None]
    bottom = np.where(rows.any(axis=1), rows.shape[1] - 1 - rows[:, ::-1].argmax(axis=1), -1)[:, None]
    regions = {
        "above the spine's rows": index < top,
        "inside them": (index >= top) & (index <= bottom),
        "below them": index > bottom,
    }
    denominator = 2 * np.sum(predicted & positive, axis=(1, 2)) + np.sum(predicted ^ positive, axis=(1, 2))
    denominator = np.maximum(denominator, 1)
    parts = {}
    for where, region in regions.items():
        wrong = predicted & ~positive & region[:, :, None]
        parts[f"false positives, {where}"] = float(np.mean(100.0 * np.sum(wrong, axis=(1, 2)) / denominator))
    # false negatives are true pixels, so all of them lie inside the true spine's rows
    parts["false negatives"] = float(np.mean(100.0 * np.sum(~predicted & positive, axis=(1, 2)) / denominator))
    return parts
