"""Square crops of single vertebrae, turned upright by a first estimate of their tilt: the
input of the tilt refiner (`models.tilt_refiner`, the vertebra route's second, sharper look).

A crop is `size` × `size` pixels sampled bilinearly from a fine image (the X-ray letterboxed
at `scale` times the model frame, `data.pipeline.fine_images`) on a square grid centred on the vertebra,
with its rows along the estimated tilt φ: the crop's x axis is d = (cos φ, sin φ), its
y axis n = (−sin φ, cos φ) (image axes, y down), and its side is `side` model-frame pixels.
A vertebra whose tilt is exactly φ lies level in its crop; the refiner reads what is left.

The same function cuts the training crops (from true landmarks, jittered) and the serving
crops (from the vertebra route's frames), so the two cannot drift apart. TensorFlow ops only.
"""

from __future__ import annotations

import tensorflow as tf

from seg4reg_tf.cobb_graph import NUM_VERTEBRAE, midline_vectors

_TINY = 1e-6


def crop_vertebrae(images: tf.Tensor, image_index: tf.Tensor, centre: tf.Tensor, phi: tf.Tensor,
                   side: tf.Tensor, size: int, scale: float) -> tf.Tensor:
    """Rotated square crops, sampled bilinearly and clamped to the image's edges.

    Args:
        images: (N, H·scale, W·scale, 1) float32 fine images.
        image_index: (K,) int32, the image each crop is cut from.
        centre: (K, 2) float32 crop centres (x, y) in model-frame pixels (pixel (i, j) has
            its centre at x = j, y = i).
        phi: (K,) float32 radians, the crops' x axis direction (image axes, y down).
        side: (K,) float32 crop side in model-frame pixels.
        size: crop side in pixels (static).
        scale: fine image pixels per model-frame pixel.

    Returns:
        (K, size, size, 1) float32.
    """
    steps = (tf.range(size, dtype=tf.float32) + 0.5) / size - 0.5  # (size,) in sides
    direction = tf.stack([tf.cos(phi), tf.sin(phi)], axis=-1)[:, None, None, :]
    down = tf.stack([-tf.sin(phi), tf.cos(phi)], axis=-1)[:, None, None, :]
    span = side[:, None, None, None]
    points = (centre[:, None, None, :]
              + steps[None, None, :, None] * span * direction
              + steps[None, :, None, None] * span * down)  # (K, size, size, 2) model frame
    fine = (points + 0.5) * scale - 0.5
    return sample_at(images, image_index, fine)


def sample_at(images: tf.Tensor, image_index: tf.Tensor, points: tf.Tensor) -> tf.Tensor:
    """Bilinear samples of images at sub-pixel points, clamped to the edges; non-finite points
    (a spine not found) read pixel (0, 0).

    Args:
        images: (N, H, W, C) float32; pixel (row i, column j) has its centre at (x=j, y=i).
        image_index: (K,) int32, the image each row of points reads.
        points: (K, ..., 2) (x, y) pixels.

    Returns:
        (K, ..., C) float32.
    """
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    points = tf.where(tf.math.is_finite(points), points, 0.0)
    x = tf.clip_by_value(points[..., 0], 0.0, tf.cast(width - 1, tf.float32))
    y = tf.clip_by_value(points[..., 1], 0.0, tf.cast(height - 1, tf.float32))
    x0, y0 = tf.floor(x), tf.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, width - 1), tf.minimum(y0 + 1, height - 1)
    index = tf.reshape(tf.cast(image_index, tf.int32), tf.concat([[-1], tf.ones([tf.rank(x0) - 1], tf.int32)], 0))
    index = tf.broadcast_to(index, tf.shape(x0))

    def at(row, column):
        return tf.gather_nd(images, tf.stack([index, row, column], axis=-1))

    top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx
    return top * (1.0 - fy) + bottom * fy


def true_frames(landmarks: tf.Tensor) -> dict[str, tf.Tensor]:
    """Each vertebra's centre, half-width and tilt from its four corners (the AASCE mid-line:
    left-side midpoint → right-side midpoint).

    Args:
        landmarks: (B, 68, 2) float32 (x, y) model-frame pixels, TL, TR, BL, BR per vertebra.

    Returns:
        {"centre" (B, 17, 2), "half_width" (B, 17) pixels, "tilt" (B, 17) radians, y down}.
    """
    landmarks = tf.cast(landmarks, tf.float32)
    quads = tf.reshape(landmarks, [tf.shape(landmarks)[0], NUM_VERTEBRAE, 4, 2])
    midline = midline_vectors(landmarks)
    return {
        "centre": tf.reduce_mean(quads, axis=2),
        "half_width": tf.maximum(tf.norm(midline, axis=-1) / 2.0, _TINY),
        "tilt": tf.atan2(midline[..., 1], midline[..., 0]),
    }
