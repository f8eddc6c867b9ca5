"""N_S's vertebra tilt field (beyond the paper; the vertebra route's lever, after VLTENet's
per-vertebra tilt vectors): besides the mask, N_S draws at every pixel of the spine the
tilt of the vertebra there, as the doubled-angle vector (cos 2θ, sin 2θ), θ the tilt of
the line from the midpoint of a vertebra's left side to that of its right side (as the
organisers' algorithm reads it; image axes, y down). The doubled angle makes the target
the same for a direction and its reverse.

The target is defined on rows: between two vertebra centres, the two vertebrae's vectors
interpolated linearly by the row's y (clamped at T1 and L5), so that the field read
anywhere along the spine gives the tilt there (`vertebra_readout` reads it at 17 centres
along the centre line). The loss counts the pixels of the true mask dilated by
`TILT_BAND` pixels, so the field is also taught in the disc gaps and just outside the
bodies, where a reading position may fall.
"""

from __future__ import annotations

from keras import ops

from seg4reg_tf.geometry import NUM_VERTEBRAE

TILT_CHANNELS = 2
# pixels (chessboard) around the true mask where the tilt loss counts
TILT_BAND = 3


def vertebra_targets(landmarks, height: int, width: int):
    """Each vertebra's centre and doubled tilt: (B, 68, 2) (x, y) model-frame pixels, 4
    corners per vertebra (top-left, top-right, bottom-left, bottom-right) → (B, 17, 4):
    centre x / width, centre y / height, cos 2θ, sin 2θ, all in [−1, 1]."""
    corners = ops.reshape(ops.cast(landmarks, "float32"), (-1, NUM_VERTEBRAE, 4, 2))
    centre = ops.mean(corners, axis=2)
    left = (corners[:, :, 0] + corners[:, :, 2]) / 2.0
    right = (corners[:, :, 1] + corners[:, :, 3]) / 2.0
    dx, dy = right[..., 0] - left[..., 0], right[..., 1] - left[..., 1]
    squared = ops.maximum(dx * dx + dy * dy, 1e-6)
    return ops.stack([centre[..., 0] / width, centre[..., 1] / height, (dx * dx - dy * dy) / squared, 2.0 * dx * dy / squared], axis=-1)


def row_tilt_targets(landmarks, height: int, width: int):
    """The target field per row: (B, 68, 2) model-frame landmarks → (B, H, 2) (cos 2θ,
    sin 2θ), interpolated linearly in y between the 17 vertebra centres, clamped beyond."""
    targets = vertebra_targets(landmarks, height, width)  # (B, 17, 4)
    centre_y = targets[..., 1] * height
    order = ops.argsort(centre_y, axis=-1)  # annotations are top to bottom; sort to be sure
    centre_y = ops.take_along_axis(centre_y, order, axis=-1)
    vectors = ops.take_along_axis(targets[..., 2:], order[..., None], axis=1)  # (B, 17, 2)
    rows = ops.cast(ops.arange(height), "float32")[None, :, None]  # (1, H, 1)
    # hat weights of each vertebra at each row: linear interpolation between neighbours
    below = ops.concatenate([centre_y[:, :1] - 1e6, centre_y[:, :-1]], axis=1)[:, None]  # (B, 1, 17)
    above = ops.concatenate([centre_y[:, 1:], centre_y[:, -1:] + 1e6], axis=1)[:, None]
    y = ops.minimum(ops.maximum(rows, centre_y[:, None, :1]), centre_y[:, None, -1:])
    here = centre_y[:, None]
    rising = (y - below) / ops.maximum(here - below, 1e-3)
    falling = (above - y) / ops.maximum(above - here, 1e-3)
    weights = ops.clip(ops.where(y <= here, rising, falling), 0.0, 1.0)  # (B, H, 17)
    weights = weights / ops.maximum(ops.sum(weights, axis=-1, keepdims=True), 1e-6)
    return ops.einsum("bhk,bkc->bhc", weights, vectors)


def tilt_loss(landmarks, mask, tilt, band: int = TILT_BAND):
    """Mean |Δ| of the tilt field over the band around the true mask, per image then over
    the batch.

    Args:
        landmarks: (B, 68, 2) model-frame pixels.
        mask: (B, H, W, 1) true mask in {0, 1}.
        tilt: (B, H, W, 2) N_S's `tilt` output.
        band: dilation of the true mask in pixels.

    Returns:
        Scalar; an image with an empty mask counts 0.
    """
    height, width = tilt.shape[1], tilt.shape[2]
    target = row_tilt_targets(landmarks, height, width)[:, :, None, :]  # (B, H, 1, 2)
    size = 2 * band + 1
    region = ops.max_pool(ops.cast(mask, "float32"), pool_size=size, strides=1, padding="same")
    error = ops.sum(ops.abs(ops.cast(tilt, "float32") - target), axis=-1, keepdims=True) * region
    per_image = ops.sum(error, axis=(1, 2, 3)) / ops.maximum(ops.sum(region, axis=(1, 2, 3)), 1.0)
    return ops.mean(per_image) / TILT_CHANNELS


def mirror_tilt(tilt):
    """The tilt field of the left-right mirror image, mirrored back: (B, H, W, 2) → same;
    θ → −θ, so sin 2θ changes sign (for test-time flips)."""
    flipped = ops.flip(tilt, axis=2)
    return ops.concatenate([flipped[..., :1], -flipped[..., 1:]], axis=-1)

