"""Dense supervision of N_R (beyond the paper; the regressor issue's lever, after VLTENet's
per-vertebra tilt vectors): besides the 3 Cobb angles, N_R's auxiliary head predicts each
of the 17 vertebrae's centre and tilt from the 68 landmarks, 68 targets per image instead
of 3, so that a from-scratch trunk learns where the vertebrae are and how they lean.

Per vertebra the targets are (centre x / width, centre y / height, cos 2θ, sin 2θ), θ the
tilt of the line from the midpoint of its left side to that of its right side (as the
organisers' algorithm reads it). The doubled angle makes the target the same for a
direction and its reverse, so a left-right flip of the augmentation, or the few AASCE
vertebrae whose corners are stored out of order, give the same tilt.
"""

from __future__ import annotations

from keras import ops

from seg4reg_tf.geometry import NUM_VERTEBRAE

VALUES_PER_VERTEBRA = 4


def vertebra_targets(landmarks, height: int, width: int):
    """(B, 68, 2) (x, y) model-frame pixels, 4 corners per vertebra (top-left, top-right,
    bottom-left, bottom-right) → (B, 17, 4): centre x / width, centre y / height, cos 2θ,
    sin 2θ, all in [−1, 1]."""
    corners = ops.reshape(ops.cast(landmarks, "float32"), (-1, NUM_VERTEBRAE, 4, 2))
    centre = ops.mean(corners, axis=2)
    left = (corners[:, :, 0] + corners[:, :, 2]) / 2.0
    right = (corners[:, :, 1] + corners[:, :, 3]) / 2.0
    dx, dy = right[..., 0] - left[..., 0], right[..., 1] - left[..., 1]
    squared = ops.maximum(dx * dx + dy * dy, 1e-6)
    return ops.stack([centre[..., 0] / width, centre[..., 1] / height, (dx * dx - dy * dy) / squared, 2.0 * dx * dy / squared], axis=-1)


def vertebra_loss(landmarks, predicted, height: int, width: int):
    """Mean |Δ| between N_R's `vertebrae` output (B, 17, 4) and the landmarks' targets."""
    targets = vertebra_targets(landmarks, height, width)
    return ops.mean(ops.abs(targets - ops.cast(predicted, "float32")))
