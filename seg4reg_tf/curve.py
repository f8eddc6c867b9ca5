"""Clinical reading of a prediction: curve type from the spine mask, severity from the angle.

Curve type. The predicted mask's largest connected component is traced row by row: the
centre line is the probability-weighted mean column of each row the spine occupies,
smoothed over a few rows. Its signed horizontal distance from the chord joining its two
ends says how the spine bends: to one side only is a C curve, to both sides an S curve (the
idea of the AASCE organisers' S-test, which does the same on the 34 endplate centres). A
bend smaller than `tolerance` × the chord's height is noise, not a curve; when neither side
bends that far the spine is "straight"; a mask too small to trace gives "unknown".

Severity of the largest Cobb angle, in the bands clinicians use:
    < 10° none · 10° ≤ θ < 25° mild · 25° ≤ θ ≤ 40° moderate · > 40° severe.
"""

from __future__ import annotations

import cv2
import numpy as np

SEVERITY_BANDS = (("none", 10.0), ("mild", 25.0), ("moderate", 40.0))
CURVE_TYPES = ("C", "S", "straight", "unknown")


def severity(largest_degrees: float) -> str:
    """The severity band of a largest Cobb angle in degrees ("none", "mild", "moderate",
    "severe"); 25° is moderate and 40° still moderate, 10° is mild."""
    if not np.isfinite(largest_degrees):
        raise ValueError(f"the largest angle must be a finite number of degrees, got {largest_degrees}")
    for band, upper in SEVERITY_BANDS[:2]:
        if largest_degrees < upper:
            return band
    return "moderate" if largest_degrees <= SEVERITY_BANDS[2][1] else "severe"


def largest_component(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(H, W) probabilities → (H, W) bool, the largest 8-connected region above `threshold`."""
    binary = (np.asarray(mask) > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return np.zeros(binary.shape, bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == biggest


def centre_line(mask: np.ndarray, threshold: float = 0.5, smoothing_rows: int = 5):
    """The spine's centre line in a mask.

    Args:
        mask: (H, W) spine probabilities in [0, 1] (or a binary mask).
        threshold: probability above which a pixel is spine.
        smoothing_rows: width in rows of the moving average applied to the columns.

    Returns:
        (rows (N,) float64, columns (N,) float64) pixel coordinates, top to bottom, of the
        rows the largest spine region occupies (N = 0 for an empty mask).
    """
    mask = np.asarray(mask, dtype="float64")
    region = largest_component(mask, threshold)
    weights = np.where(region, mask, 0.0)
    per_row = weights.sum(axis=1)
    rows = np.nonzero(per_row > 0)[0]
    if rows.size == 0:
        return np.zeros(0), np.zeros(0)
    columns = (weights[rows] @ np.arange(mask.shape[1], dtype="float64")) / per_row[rows]
    if smoothing_rows > 1 and rows.size >= smoothing_rows:
        kernel = np.ones(smoothing_rows) / smoothing_rows
        padded = np.pad(columns, smoothing_rows // 2, mode="edge")
        columns = np.convolve(padded, kernel, mode="valid")[: rows.size]
    return rows.astype("float64"), columns


def curve_type(mask: np.ndarray, threshold: float = 0.5, tolerance: float = 0.02, min_rows: int = 8) -> str:
    """C, S, straight or unknown, from a predicted spine mask (see the module docstring).

    Args:
        mask: (H, W) spine probabilities in the model frame (aspect ratio preserved).
        threshold: probability above which a pixel is spine.
        tolerance: smallest bend that counts, as a fraction of the centre line's height.
        min_rows: fewer traced rows than this give "unknown".

    Returns:
        One of `CURVE_TYPES`.
    """
    rows, columns = centre_line(mask, threshold)
    if rows.size < min_rows:
        return "unknown"
    top, bottom = rows[0], rows[-1]
    chord = columns[0] + (rows - top) * (columns[-1] - columns[0]) / (bottom - top)
    deviation = columns - chord
    limit = tolerance * (bottom - top)
    left, right = deviation.min() < -limit, deviation.max() > limit
    if left and right:
        return "S"
    if left or right:
        return "C"
    return "straight"
