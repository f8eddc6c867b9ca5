"""A NumPy reference of the geometric readout, one image at a time, written from the method's
description (seg4reg_tf/geometric_readout.py) with NumPy's own tools (np.convolve,
np.searchsorted, np.interp, loops) rather than the TF code's matrix formulations."""

from __future__ import annotations

import numpy as np

from seg4reg_tf import geometric_readout, geometry
from seg4reg_tf.geometric_readout import ENDPLATE_PROFILE, ROBUST_BAND


def _kernel(sigma: float) -> np.ndarray:
    radius = int(3 * sigma) + 1
    return np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)


def smooth(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian convolution of a 1-D signal (kernel truncated at ⌊3σ⌋ + 1)."""
    kernel = _kernel(sigma)
    numerator = np.convolve(values * weights, kernel, mode="same")[: len(values)]
    denominator = np.convolve(weights, kernel, mode="same")[: len(values)]
    return numerator / np.maximum(denominator, 1e-9)


def readout(probabilities: np.ndarray, settings, letterbox=None):
    """(H, W) probabilities → (angles (3,), landmarks (68, 2), found) in original pixels, or
    (NaN angles, NaN landmarks, False) when no spine is found."""
    height, width = probabilities.shape
    nothing = (np.full(3, np.nan), np.full((68, 2), np.nan), False)
    w = np.where(probabilities > geometric_readout.THRESHOLD, probabilities, 0.0).astype(np.float64)
    xs = np.arange(width, dtype=np.float64)
    sigma = geometric_readout.SMOOTHING * height

    mass = w.sum(1)
    band = np.stack([np.convolve(column, _kernel(ROBUST_BAND * height), mode="same")[:height] for column in w.T], axis=1)
    median = np.array([np.searchsorted(np.cumsum(row), row.sum() / 2) for row in band], np.float64)
    robust = smooth(median, (mass > 0.5).astype(np.float64), sigma)
    w = w * (np.abs(xs[None] - robust[:, None]) <= geometric_readout.WINDOW * width)
    mass = w.sum(1)
    active = mass > 0.5

    # runs of rows with mass, gaps of up to `gap` rows bridged; keep the heaviest run
    gap = max(1, int(geometric_readout.GAP * height))
    bridged = np.array([active[max(0, y - gap) : y + 1].any() and active[y : y + gap + 1].any() for y in range(height)])
    runs, current = [], None
    for y in range(height):
        if bridged[y] and current is None:
            current = [y]
        elif bridged[y]:
            current.append(y)
        if not bridged[y] and current is not None:
            runs.append(current)
            current = None
    if current is not None:
        runs.append(current)
    if not runs:
        return nothing
    run = max(runs, key=lambda r: (mass[r].sum(), -r[0]))
    selected = np.zeros(height, bool)
    selected[run] = True
    rows = np.nonzero(selected & active)[0]
    if len(rows) == 0:
        return nothing
    top, bottom = rows[0], rows[-1]
    if bottom + 1 - top < geometric_readout.MIN_LENGTH * height:
        return nothing

    centre = (w * xs).sum(1) / np.maximum(mass, 1e-9)
    smoothed = smooth(centre, selected * mass, sigma)
    line_y = np.r_[top - 0.5, np.arange(top, bottom + 1), bottom + 0.5]
    line_x = np.r_[smoothed[top], smoothed[top : bottom + 1], smoothed[bottom]]
    arc = np.r_[0.0, np.cumsum(np.hypot(np.diff(line_x), np.diff(line_y)))]
    length = arc[-1]
    targets = length * (geometric_readout.TRIM + (1 - 2 * geometric_readout.TRIM) * np.asarray(ENDPLATE_PROFILE))
    ex, ey = np.interp(targets, arc, line_x), np.interp(targets, arc, line_y)
    widths = np.interp(ey, np.arange(height), smooth(mass, selected.astype(np.float64), max(geometric_readout.WIDTH_SMOOTHING * height, 0.5)))

    corners = []
    for k in range(17):
        upper, lower = np.array([ex[2 * k], ey[2 * k]]), np.array([ex[2 * k + 1], ey[2 * k + 1]])
        direction = (lower - upper) / max(np.linalg.norm(lower - upper), 1e-9)
        across = np.array([-direction[1], direction[0]])
        if across[0] < 0:
            across = -across
        half = max((widths[2 * k] + widths[2 * k + 1]) / 4, 0.5)
        corners += [upper - across * half, upper + across * half, lower - across * half, lower + across * half]
    corners = np.array(corners)
    original_height = height
    if letterbox is not None:
        scale, offset_y, offset_x = np.asarray(letterbox, np.float64)
        corners = (corners + 0.5 - np.array([offset_x, offset_y])) / scale - 0.5
        original_height = (height - 2 * offset_y) / scale
    return geometry.cobb_angles(corners, original_height), corners, True
