"""Test-time augmentation: the angles of an image averaged over views that cannot change them.

Cobb angles are invariant to a left-right flip and to isotropic scaling (x and y alike), so a
model that had learned the task perfectly would give every view the same angles; how far its
views disagree is a cheap measure of its uncertainty on that image. Views are drawn in the
model frame, about the image centre, with the training pipeline's own affine warp.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from seg4reg_tf.config import PredictConfig
from seg4reg_tf.data import transforms


def views(settings: PredictConfig) -> list[tuple[float, float]]:
    """(mirror ±1, scale) of every view, the identity first; just the identity without TTA."""
    if not settings.tta:
        return [(1.0, 1.0)]
    scales = [1.0] + [scale for scale in settings.tta_scales if scale != 1.0]
    mirrors = [1.0, -1.0]
    return [(mirror, scale) for mirror in mirrors for scale in scales]


def augment(image: tf.Tensor, chosen: list[tuple[float, float]]) -> tf.Tensor:
    """One preprocessed image → its views.

    Args:
        image: (H, W, 1) float32 in [0, 1], in the model frame.
        chosen: (mirror, scale) per view, as from `views`.

    Returns:
        (V, H, W, 1) float32; zeros where a zoomed-out view leaves the frame. The identity
        view is the image itself, not a resampling of it.
    """
    identity = [view == (1.0, 1.0) for view in chosen]
    if all(identity):
        return tf.repeat(image[None], len(chosen), axis=0)
    height, width = int(image.shape[0]), int(image.shape[1])
    mirror = tf.constant([view[0] for view in chosen], tf.float32)
    scale = tf.constant([view[1] for view in chosen], tf.float32)
    matrices = transforms.affine_matrices(tf.zeros_like(scale), scale, mirror, height, width)
    batch = tf.repeat(image[None], len(chosen), axis=0)
    warped = transforms.warp(batch, matrices, "BILINEAR")
    keep = tf.constant(identity)[:, None, None, None]
    return tf.where(keep, batch, warped)


def aggregate(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) angles of the views in degrees → (mean (3,), spread (3,) = max − min), degrees."""
    angles = np.asarray(angles, dtype="float64")
    return angles.mean(axis=0), angles.max(axis=0) - angles.min(axis=0)
