"""The organisers' Cobb-angle algorithm in TensorFlow ops, for the serving graph.

The same steps as `geometry.cobb_angles` (NumPy, the reference; see its docstring and
docs/data.md): float64 throughout, cosines rounded to 8 decimals before arccos, first
arg-max on ties, the S-test with its divide-by-zero rule, the position test against the
original image height. Batched and traceable: it runs inside the exported SavedModel.
It also returns which vertebrae end each angle, which the NumPy version does not.
"""

from __future__ import annotations

import tensorflow as tf

NUM_VERTEBRAE = 17


def first_argmax(values: tf.Tensor) -> tf.Tensor:
    """Index of the first maximum along the last axis (tf.argmax does not promise the
    first on ties): (..., N) → (...,) int32. NaN-free input assumed; −inf entries allowed."""
    size = tf.shape(values)[-1]
    index = tf.range(size)
    is_max = values >= tf.reduce_max(values, axis=-1, keepdims=True)
    return tf.reduce_min(tf.where(is_max, index, size), axis=-1)


def take(values: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """values (B, N, ...) indexed per batch row by index (B,) or (B, K) → (B, ...) / (B, K, ...)."""
    return tf.gather(values, index, axis=1, batch_dims=1)


def midline_vectors(points: tf.Tensor) -> tf.Tensor:
    """(B, 68, 2) pixels → (B, 17, 2): each vertebra's left-side midpoint to its right-side
    midpoint (`geometry.midline_vectors`)."""
    corners = tf.reshape(points, [-1, NUM_VERTEBRAE, 4, 2])
    return (corners[:, :, 1] + corners[:, :, 3]) / 2.0 - (corners[:, :, 0] + corners[:, :, 2]) / 2.0


def angle_matrix(points: tf.Tensor) -> tf.Tensor:
    """(B, 68, 2) float64 pixels → (B, 17, 17) degrees between vertebra mid-lines."""
    vectors = midline_vectors(points)
    norms = tf.norm(vectors, axis=-1)
    cosine = tf.einsum("bid,bjd->bij", vectors, vectors) / (norms[:, :, None] * norms[:, None, :])
    return _rounded_acos_degrees(cosine)


_DEGREES = 180.0 / 3.141592653589793


@tf.custom_gradient
def _rounded_acos_degrees(cosine: tf.Tensor):
    """arccos(round(cosine, 8)) in degrees, as the organisers compute it (np.round(x, 8):
    scale, round half to even, unscale). The gradient is that of arccos(cosine) with
    1 − cosine² floored at 1e-12: rounding has no gradient of its own, and parallel
    mid-lines (every vertebra with itself) would otherwise give 0 · ∞ = NaN."""
    rounded = tf.round(cosine * 1e8) / 1e8

    def gradient(upstream):
        return upstream * (-_DEGREES / tf.sqrt(tf.maximum(1.0 - tf.square(cosine), 1e-12)))

    return tf.acos(rounded) * _DEGREES, gradient


def is_s_shaped(points: tf.Tensor) -> tf.Tensor:
    """The organisers' S-test on the 34 endplate centres: (B, 68, 2) float64 → (B,) bool."""
    centres = (points[:, 0::2] + points[:, 1::2]) / 2.0
    x, y = centres[..., 0], centres[..., 1]
    vertical = tf.equal(x[:, 0], x[:, -1])
    d = (y[:, :-2] - y[:, -1:]) / (y[:, :1] - y[:, -1:]) - (x[:, :-2] - x[:, -1:]) / (x[:, :1] - x[:, -1:])
    two_signs = tf.reduce_any(d > 0, axis=1) & tf.reduce_any(d < 0, axis=1)
    return vertical | two_signs


def cobb_angles(landmarks: tf.Tensor, image_height: tf.Tensor) -> dict[str, tf.Tensor]:
    """The three AASCE Cobb angles and the end vertebrae of each.

    Args:
        landmarks: (B, 68, 2) pixels of the original image (any float dtype; computed in
            float64). Mid-lines must have non-zero length (NaN angles otherwise).
        image_height: (B,) or scalar original height in pixels (the position test).

    Returns:
        {"cobb_angles": (B, 3) float64 degrees, "end_vertebrae": (B, 3, 2) int32, the upper
        and lower vertebra (0 = T1 … 16 = L5) between whose mid-lines each angle lies}.
    """
    points = tf.cast(landmarks, tf.float64)
    batch = tf.shape(points)[0]
    height = tf.broadcast_to(tf.cast(image_height, tf.float64), [batch])
    angles = angle_matrix(points)
    index = tf.range(NUM_VERTEBRAE)[None]
    low = tf.constant(-float("inf"), tf.float64)

    column_max = tf.reduce_max(angles, axis=1)
    largest = tf.reduce_max(column_max, axis=1)
    upper = first_argmax(column_max)
    lower = first_argmax(take(tf.transpose(angles, [0, 2, 1]), upper))  # column u of A

    above_upper = tf.where(index <= upper[:, None], take(angles, upper), low)
    upper_second = tf.reduce_max(above_upper, axis=1)
    m = first_argmax(above_upper)
    below_lower_row = tf.where(index >= lower[:, None], take(angles, lower), low)
    below_lower = tf.reduce_max(below_lower_row, axis=1)
    below_lower_end = first_argmax(below_lower_row)
    above_m_row = tf.where(index <= m[:, None], take(angles, m), low)
    above_m = tf.reduce_max(above_m_row, axis=1)
    above_m_end = first_argmax(above_m_row)

    centres_y = ((points[:, 0::2] + points[:, 1::2]) / 2.0)[..., 1]
    ends_in_upper_half = take(centres_y, 2 * upper + 1) + take(centres_y, 2 * lower + 1) < height
    s_shaped = is_s_shaped(points)

    first, last = tf.zeros_like(upper), tf.fill(tf.shape(upper), NUM_VERTEBRAE - 1)
    second = tf.where(s_shaped, upper_second, take(angles[:, 0], upper))
    second_ends = tf.where(s_shaped[:, None], tf.stack([m, upper], 1), tf.stack([first, upper], 1))
    third = tf.where(
        s_shaped, tf.where(ends_in_upper_half, below_lower, above_m), take(angles[:, NUM_VERTEBRAE - 1], lower)
    )
    third_ends = tf.where(
        s_shaped[:, None],
        tf.where(ends_in_upper_half[:, None], tf.stack([lower, below_lower_end], 1), tf.stack([above_m_end, m], 1)),
        tf.stack([lower, last], 1),
    )
    ends = tf.stack([tf.stack([upper, lower], 1), second_ends, third_ends], axis=1)
    return {
        "cobb_angles": tf.stack([largest, second, third], axis=1),
        "end_vertebrae": tf.sort(ends, axis=-1),
    }
