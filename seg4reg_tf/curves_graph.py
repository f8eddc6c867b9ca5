"""The clinical reading's curves in TensorFlow ops, for the serving graph.

The same steps as `clinical_reading.find_curves` (NumPy, the reference; its docstring has
the definitions): mid-line tilts, turning points with a 10° reversal threshold, the apex
farthest from the chord, the region by the apex, the major curve (MT before TL/L before PT
on a tie). Batched and traceable, unrolled over the 17 vertebrae: it runs inside the
exported SavedModel. What needs the file's metadata stays outside the graph: the patient's
side (the graph gives the image side) and the Lenke type's wording.

Outputs are padded to `MAX_CURVES` curves (17 vertebrae have at most 16); an absent curve
has end vertebrae −1, apex −1, region −1, side 0 and a NaN angle.
"""

from __future__ import annotations

import tensorflow as tf

from seg4reg_tf.clinical_reading import MIN_CURVE_DEGREES, MT_FROM, TLL_FROM
from seg4reg_tf.cobb_graph import NUM_VERTEBRAE, midline_vectors, take

MAX_CURVES = NUM_VERTEBRAE - 1
REGION_CODES = ("PT", "MT", "TL/L")  # curve_region 0, 1, 2
_RANK = (2, 0, 1)  # ties of the major curve: MT, then TL/L, then PT
_NONE = 99


def vertebra_tilts(landmarks: tf.Tensor) -> tf.Tensor:
    """(B, 68, 2) corners → (B, 17) mid-line tilts in degrees (image axes, y down)."""
    vectors = midline_vectors(tf.cast(landmarks, tf.float64))
    return tf.atan2(vectors[..., 1], vectors[..., 0]) * (180.0 / 3.141592653589793)


def turning_points(tilts: tf.Tensor, threshold: float = MIN_CURVE_DEGREES) -> tf.Tensor:
    """`clinical_reading.turning_points` on a batch: (B, 17) degrees → (B, 17) bool, True at
    the turning points."""
    batch = tf.shape(tilts)[0]
    zeros = tf.zeros([batch], tf.int32)
    high = low = extreme = trend = zeros
    pivots = tf.zeros_like(tilts, tf.bool)

    def mark(pivots, where, index):
        return pivots | (where[:, None] & tf.equal(tf.range(NUM_VERTEBRAE)[None], index[:, None]))

    for i in range(1, NUM_VERTEBRAE):
        value = tilts[:, i]
        here = tf.fill([batch], i)
        waiting = tf.equal(trend, 0)
        # no trend yet: track the extremes until they are a threshold apart
        high = tf.where(waiting & (value > take(tilts, high)), here, high)
        low = tf.where(waiting & (value < take(tilts, low)), here, low)
        start = waiting & (take(tilts, high) - take(tilts, low) >= threshold)
        pivots = mark(pivots, start, tf.minimum(high, low))
        started_trend = tf.where(high > low, 1, -1)
        # a trend: follow its extreme, or turn where the tilt came back a threshold
        sign = tf.cast(trend, tilts.dtype)
        further = ~waiting & (sign * (value - take(tilts, extreme)) > 0)
        turn = ~waiting & ~further & (sign * (take(tilts, extreme) - value) >= threshold)
        pivots = mark(pivots, turn, extreme)
        extreme = tf.where(start, tf.maximum(high, low), tf.where(further | turn, here, extreme))
        trend = tf.where(start, started_trend, tf.where(turn, -trend, trend))
    return mark(pivots, ~tf.equal(trend, 0), extreme)


def _centres(landmarks: tf.Tensor) -> tf.Tensor:
    """(B, 68, 2) → (B, 33, 2): vertebra centres at 2i, disc centres at 2i + 1."""
    quads = tf.reshape(tf.cast(landmarks, tf.float64), [-1, NUM_VERTEBRAE, 4, 2])
    upper, lower = tf.reduce_mean(quads[:, :, :2], axis=2), tf.reduce_mean(quads[:, :, 2:], axis=2)
    bodies = (upper + lower) / 2.0
    discs = (lower[:, :-1] + upper[:, 1:]) / 2.0
    interleaved = tf.reshape(tf.stack([bodies[:, :-1], discs], axis=2), [-1, 2 * (NUM_VERTEBRAE - 1), 2])
    return tf.concat([interleaved, bodies[:, -1:]], axis=1)


def find_curves(landmarks: tf.Tensor, found: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """The curves of a batch of spines.

    Args:
        landmarks: (B, 68, 2) corners of T1–L5 in pixels (y down).
        found: (B,) bool, or None for all; spines not found get no curve.

    Returns:
        {"curve_end_vertebrae" (B, 16, 2) int32 (0 = T1 … 16 = L5), "curve_apex" (B, 16)
        float32 (a vertebra index, or i + 0.5 for the disc below vertebra i),
        "curve_region" (B, 16) int32 (`REGION_CODES`), "curve_cobb_angles" (B, 16) float32
        degrees, "curve_side" (B, 16) int32 (+1: the apex lies toward the image's right, −1
        its left), "major_curve" (B,) int32 (the index of the major curve, −1 for none)}.
    """
    landmarks = tf.cast(landmarks, tf.float64)
    tilts = vertebra_tilts(landmarks)
    finite = tf.reduce_all(tf.math.is_finite(tilts), axis=1)
    usable = finite if found is None else finite & tf.cast(found, tf.bool)
    pivots = turning_points(tf.where(tf.math.is_finite(tilts), tilts, 0.0)) & usable[:, None]
    index = tf.range(NUM_VERTEBRAE)[None]
    ordered = tf.sort(tf.where(pivots, index, _NONE), axis=1)
    upper, lower = ordered[:, :MAX_CURVES], ordered[:, 1:]
    valid = lower < _NONE
    upper, lower = tf.where(valid, upper, 0), tf.where(valid, lower, 0)
    cobb = tf.abs(take(tilts, lower) - take(tilts, upper))
    # the apex: the centre (vertebra or disc) farthest from the chord of the end centres
    centres = _centres(landmarks)  # (B, 33, 2)
    start, end = take(centres, 2 * upper), take(centres, 2 * lower)  # (B, K, 2)
    chord = end - start
    chord = chord / tf.maximum(tf.norm(chord, axis=-1, keepdims=True), 1e-9)
    normal = tf.stack([chord[..., 1], -chord[..., 0]], axis=-1)
    distance = tf.einsum("bkpd,bkd->bkp", centres[:, None] - start[:, :, None], normal)  # (B, K, 33)
    position = tf.range(2 * NUM_VERTEBRAE - 1)[None, None]
    inside = (position >= 2 * upper[..., None]) & (position <= 2 * lower[..., None])
    best = tf.argmax(tf.where(inside, tf.abs(distance), -1.0), axis=-1, output_type=tf.int32)
    apex = tf.cast(best, tf.float32) / 2.0
    side = tf.where(tf.gather(distance, best, axis=2, batch_dims=2) > 0, 1, -1)
    region = tf.where(apex < MT_FROM, 0, tf.where(apex < TLL_FROM, 1, 2))
    # the major curve: the largest angle (to a millionth of a degree), MT before TL/L before PT
    rounded = tf.round(cobb * 1e6) / 1e6
    rank = tf.gather(tf.constant(_RANK), region)
    score = tf.where(valid, rounded * 10.0 - tf.cast(rank, tf.float64) * 1e-7, -1.0)
    major = tf.where(tf.reduce_any(valid, axis=1), tf.argmax(score, axis=1, output_type=tf.int32), -1)
    return {
        "curve_end_vertebrae": tf.where(valid[..., None], tf.stack([upper, lower], axis=-1), -1),
        "curve_apex": tf.where(valid, apex, -1.0),
        "curve_region": tf.where(valid, region, -1),
        "curve_cobb_angles": tf.where(valid, tf.cast(rounded, tf.float32), float("nan")),
        "curve_side": tf.where(valid, side, 0),
        "major_curve": major,
    }
