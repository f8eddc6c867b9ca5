"""Pure TensorFlow transforms on samples: aspect-preserving resize, CLAHE, augmentation
(decoding encoded images is `data/decoding.py`).

A sample is a dict of tensors: `image` (H, W, 1) float32 in [0, 1], `mask` (H, W, 1) uint8
in {0, 1}, `angles` (3,) float32 and, where present, `landmarks` (68, 2) float32 (x, y)
pixels with pixel centres at integers. Augmentation works on batches (leading axis B).

Every geometric step is isotropic (x and y scaled alike) because Cobb angles are invariant
to rotation, flips and isotropic scaling but not to stretching: resizing a 2360×854 X-ray
straight to 512×256 would change the true angles by degrees. Image and mask go through the
same transform; landmarks through the same matrix.

The functions run eagerly, inside `tf.data`, and inside an exported serving graph (the
serving signature reuses `resize_with_pad`), so training and serving
preprocess identically.
"""

from __future__ import annotations

import math

import tensorflow as tf


def letterbox(height, width, target_height: int, target_width: int):
    """Scale and offsets that fit an image into the target size without stretching.

    The image is scaled by s = min(target_height / height, target_width / width) in both
    axes and centred; a pixel centre (x, y) moves to ((x + ½)·s + tx − ½, (y + ½)·s + ty − ½).

    Args:
        height, width: original size in pixels (scalars or (B,) tensors).
        target_height, target_width: model input size in pixels.

    Returns:
        (scale, ty, tx) float32 tensors shaped like `height`.
    """
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    scale = tf.minimum(target_height / height, target_width / width)
    ty = (target_height - height * scale) / 2.0
    tx = (target_width - width * scale) / 2.0
    return scale, ty, tx


def resize_with_pad(image: tf.Tensor, target_height: int, target_width: int) -> tf.Tensor:
    """Aspect-preserving, antialiased resize into the target size with zero padding.

    Args:
        image: (H, W, C) float32.
        target_height, target_width: output size in pixels.

    Returns:
        (target_height, target_width, C) float32.
    """
    shape = tf.shape(image)
    scale, ty, tx = letterbox(shape[0], shape[1], target_height, target_width)
    resized = tf.raw_ops.ScaleAndTranslate(
        images=image[None],
        size=[target_height, target_width],
        scale=tf.stack([scale, scale]),
        translation=tf.stack([ty, tx]),
        kernel_type="triangle",
        antialias=True,
    )[0]
    return tf.ensure_shape(resized, [target_height, target_width, image.shape[-1]])


def letterbox_landmarks(landmarks, height, width, target_height: int, target_width: int) -> tf.Tensor:
    """Moves landmarks of the original image into the frame `resize_with_pad` produces.

    Args:
        landmarks: (..., 68, 2) (x, y) pixels of the original image.
        height, width: original size, shaped like landmarks' leading axes.

    Returns:
        (..., 68, 2) float32 pixels in the model frame.
    """
    scale, ty, tx = letterbox(height, width, target_height, target_width)
    scale = tf.convert_to_tensor(scale)[..., None, None]
    offset = tf.stack([tx, ty], axis=-1)[..., None, :]
    return (tf.cast(landmarks, tf.float32) + 0.5) * scale + offset - 0.5


def content_mask(height, width, target_height: int, target_width: int) -> tf.Tensor:
    """(target_height, target_width, 1) float32: 1 where `resize_with_pad` put image content."""
    scale, ty, tx = letterbox(height, width, target_height, target_width)
    rows = tf.range(target_height, dtype=tf.float32)[:, None]
    cols = tf.range(target_width, dtype=tf.float32)[None, :]
    inside = (
        (rows + 0.5 >= ty)
        & (rows + 0.5 <= ty + tf.cast(height, tf.float32) * scale)
        & (cols + 0.5 >= tx)
        & (cols + 0.5 <= tx + tf.cast(width, tf.float32) * scale)
    )
    return tf.cast(inside, tf.float32)[..., None]


# CLAHE's contrast limit (OpenCV's clipLimit) and tiles along (height, width): 8 × 4 divides
# every input size the config allows (multiples of 32)
CLAHE_CLIP_LIMIT = 2.0
CLAHE_GRID = (8, 4)


def clahe(image: tf.Tensor, valid: tf.Tensor, clip_limit: float = CLAHE_CLIP_LIMIT, grid=CLAHE_GRID) -> tf.Tensor:
    """Contrast-limited adaptive histogram equalisation (as OpenCV's CLAHE), in TensorFlow.

    Each of grid[0] × grid[1] tiles gets a 256-bin histogram of its valid pixels, clipped
    at clip_limit × the mean bin count with the excess spread over all bins; its CDF is the
    tile's intensity mapping, and each pixel interpolates bilinearly between the mappings of
    the four nearest tile centres. Padding (valid = 0) neither counts nor changes.

    Args:
        image: (H, W, 1) float32 in [0, 1]; H and W divisible by grid.
        valid: (H, W, 1) float32, 1 on image content, 0 on padding.
        clip_limit: contrast limit (OpenCV's clipLimit).
        grid: tiles along (height, width).

    Returns:
        (H, W, 1) float32 in [0, 1].
    """
    height, width = image.shape[0], image.shape[1]
    rows, cols = grid
    if height % rows or width % cols:
        raise ValueError(f"CLAHE grid {grid} must divide the image size {height}x{width}")
    tile_h, tile_w = height // rows, width // cols
    bins = tf.cast(tf.clip_by_value(image[..., 0], 0.0, 1.0) * 255.0 + 0.5, tf.int32)
    tile = (tf.range(height)[:, None] // tile_h) * cols + tf.range(width)[None, :] // tile_w
    weights = valid[..., 0]
    histogram = tf.math.bincount(
        tf.reshape(tile * 256 + bins, [-1]),
        weights=tf.reshape(weights, [-1]),
        minlength=rows * cols * 256,
        maxlength=rows * cols * 256,
    )
    histogram = tf.reshape(histogram, [rows * cols, 256])
    counts = tf.reduce_sum(histogram, axis=1, keepdims=True)
    limit = tf.maximum(clip_limit * counts / 256.0, 1.0)
    clipped = tf.minimum(histogram, limit)
    clipped += (counts - tf.reduce_sum(clipped, axis=1, keepdims=True)) / 256.0
    lut = tf.math.divide_no_nan(tf.cumsum(clipped, axis=1), counts)  # (tiles, 256)

    def neighbours(size, tile_size, count):
        position = (tf.range(size, dtype=tf.float32) + 0.5) / tile_size - 0.5
        low = tf.clip_by_value(tf.floor(position), 0.0, count - 1.0)
        high = tf.minimum(low + 1.0, count - 1.0)
        fraction = tf.clip_by_value(position - low, 0.0, 1.0)
        return tf.cast(low, tf.int32), tf.cast(high, tf.int32), fraction

    y0, y1, fy = neighbours(height, tile_h, rows)
    x0, x1, fx = neighbours(width, tile_w, cols)

    flat_lut = tf.reshape(lut, [-1])

    def lookup(tile_row, tile_col):
        return tf.gather(flat_lut, (tile_row[:, None] * cols + tile_col[None, :]) * 256 + bins)

    fy, fx = fy[:, None], fx[None, :]
    top = lookup(y0, x0) * (1 - fx) + lookup(y0, x1) * fx
    bottom = lookup(y1, x0) * (1 - fx) + lookup(y1, x1) * fx
    return ((top * (1 - fy) + bottom * fy) * weights)[..., None]


# N_R's outputs are angles in degrees over this, in [0, 1] (it ends in a sigmoid): 180 covers
# every angle the Cobb algorithm returns, including the 156° annotation outlier of AASCE
# training image 480
ANGLE_SCALE_DEGREES = 180.0


def scale_angles(angles_degrees) -> tf.Tensor:
    """Degrees → [0, 1] targets of the sigmoid output: angle / `ANGLE_SCALE_DEGREES`,
    clipped to [0, 1]. At 180° nothing is clipped (arccos never exceeds 180°).
    """
    return tf.clip_by_value(tf.cast(angles_degrees, tf.float32) / ANGLE_SCALE_DEGREES, 0.0, 1.0)


def random_affine(seed: tf.Tensor, batch: tf.Tensor, rotation_degrees: float, scale_range, flip: bool):
    """Draws one flip/rotation/isotropic-scale per sample with stateless randomness.

    Args:
        seed: (2,) int seed for `tf.random.stateless_uniform`.
        batch: number of samples B.
        rotation_degrees: rotation drawn uniformly in ±this.
        scale_range: (low, high) isotropic scale factors, drawn uniformly.
        flip: whether half of the samples are mirrored left-right.

    Returns:
        (theta radians, scale, mirror ±1), each (B,) float32.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    limit = rotation_degrees * math.pi / 180.0
    theta = tf.random.stateless_uniform([batch], seeds[0], -limit, limit)
    scale = tf.random.stateless_uniform([batch], seeds[1], scale_range[0], scale_range[1])
    coin = tf.random.stateless_uniform([batch], seeds[2])
    mirror = tf.where(coin < 0.5, -1.0, 1.0) if flip else tf.ones([batch])
    return theta, scale, mirror


def affine_matrices(theta, scale, mirror, height: int, width: int) -> tf.Tensor:
    """Forward maps x_out = c + scale·R(theta)·diag(mirror, 1)·(x_in − c) about the centre c.

    Args:
        theta, scale, mirror: (B,) float32 (radians, factor, ±1).
        height, width: image size; c = ((width − 1) / 2, (height − 1) / 2).

    Returns:
        (B, 2, 3) float32 [A | b] with x_out = A·x_in + b in pixel-centre coordinates.
    """
    cos, sin = tf.cos(theta) * scale, tf.sin(theta) * scale
    linear = tf.stack([tf.stack([cos * mirror, -sin], -1), tf.stack([sin * mirror, cos], -1)], -2)
    centre = tf.constant([(width - 1) / 2.0, (height - 1) / 2.0], tf.float32)
    offset = centre - tf.linalg.matvec(linear, tf.broadcast_to(centre, tf.shape(linear)[:-1]))
    return tf.concat([linear, offset[..., None]], axis=-1)


def transform_points(points: tf.Tensor, matrices: tf.Tensor) -> tf.Tensor:
    """Applies (B, 2, 3) affine maps to (B, N, 2) points."""
    return tf.einsum("bij,bnj->bni", matrices[..., :2], points) + matrices[:, None, :, 2]


def warp(images: tf.Tensor, matrices: tf.Tensor, interpolation: str) -> tf.Tensor:
    """Resamples (B, H, W, C) images under forward maps (B, 2, 3), zeros outside.

    Args:
        images: float32 or uint8 batch.
        matrices: forward affine maps, as from `affine_matrices`.
        interpolation: "BILINEAR" for images, "NEAREST" for masks.
    """
    linear, offset = matrices[..., :2], matrices[..., 2]
    inverse = tf.linalg.inv(linear)
    inverse_offset = -tf.linalg.matvec(inverse, offset)
    zeros = tf.zeros_like(inverse_offset[:, :1])
    transforms = tf.concat(
        [inverse[:, 0], inverse_offset[:, :1], inverse[:, 1], inverse_offset[:, 1:], zeros, zeros], axis=1
    )
    dtype = images.dtype
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )
    return tf.cast(warped, dtype)


def augment(batch: dict, seed: tf.Tensor, rotation_degrees: float, scale_range, flip: bool) -> dict:
    """Random flip, rotation and isotropic scale, applied jointly (paper §3).

    Args:
        batch: dict with `image` (B, H, W, 1) float32 in [0, 1], `mask` (B, H, W, 1) uint8
            and optionally `landmarks` (B, 68, 2); other keys (angles) pass through
            unchanged — Cobb angles are invariant to all of these transforms.
        seed: (2,) int stateless seed.
        rotation_degrees, scale_range, flip: as in `random_affine`.

    Returns:
        A new dict with the transformed tensors.
    """
    image = batch["image"]
    height, width = image.shape[1], image.shape[2]
    theta, scale, mirror = random_affine(seed, tf.shape(image)[0], rotation_degrees, scale_range, flip)
    matrices = affine_matrices(theta, scale, mirror, height, width)
    out = dict(batch)
    out["image"] = warp(image, matrices, "BILINEAR")
    out["mask"] = warp(batch["mask"], matrices, "NEAREST")
    if "landmarks" in batch:
        out["landmarks"] = transform_points(batch["landmarks"], matrices)
    return out
