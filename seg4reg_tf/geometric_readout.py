"""The geometric readout: Cobb angles read off N_S's spine probabilities, no regressor.

A Cobb angle is geometry, so it can be measured on the predicted spine with the organisers'
own algorithm (`cobb_graph.cobb_angles`). From the probabilities (B, H, W):

1. pixels above `THRESHOLD` count with their probability;
2. a robust centre per row (the weighted median of a Gaussian band of rows around it),
   smoothed along y; only pixels within `WINDOW` of it are kept, so a false-positive blob
   beside the spine drops out;
3. rows holding spine are joined across gaps up to `GAP` (discs, broken masks) into runs;
   the run with the most probability mass is the spine (blobs above or below drop out);
4. the centre line: the mean x of each of its rows, Gaussian-smoothed along y;
5. 17 pseudo vertebrae along it: their 34 endplate centres at the arc-length fractions of
   `ENDPLATE_PROFILE` (the mean over the AASCE training landmarks), each endplate
   perpendicular to the chord between its vertebra's two endplate centres and as wide as
   the smoothed spine width there;
6. those 68 pseudo corners, mapped to the original image through the letterbox, go through
   the organisers' algorithm (the position test needs the original frame).

Everything is TensorFlow ops: batched, traceable, saved inside the SavedModel. An image
without a spine (nothing above threshold, a spine shorter than `MIN_LENGTH`, or kept pixels
whose mean probability is below `readout.min_confidence`) gets
`found` false, NaN angles and landmarks and end vertebrae −1; it never raises.
"""

from __future__ import annotations

import math

import tensorflow as tf

from seg4reg_tf import cobb_graph
from seg4reg_tf.config import ReadoutConfig

NUM_VERTEBRAE = cobb_graph.NUM_VERTEBRAE
# Arc-length positions of the 34 endplate centres (upper and lower endplate of T1 … L5) along
# the polyline through them, as fractions of its length: the mean over the 385 images of the
# AASCE training part (validation_fraction 0.2, seed 0).
ENDPLATE_PROFILE = (
    0.0000, 0.0273, 0.0393, 0.0698, 0.0824, 0.1158, 0.1290, 0.1651, 0.1785, 0.2164, 0.2298, 0.2688,
    0.2825, 0.3221, 0.3359, 0.3761, 0.3902, 0.4316, 0.4467, 0.4900, 0.5068, 0.5523, 0.5707, 0.6181,
    0.6384, 0.6873, 0.7094, 0.7582, 0.7820, 0.8329, 0.8567, 0.9085, 0.9501, 1.0000,
)  # fmt: skip
# The readout's shape constants, tuned once on the training part of AASCE (seed 0, 80%).
# Lengths are fractions of the model input's height (or width), so they serve every size.
THRESHOLD = 0.5          # pixels whose probability is at most this are ignored; above it they count with it
SMOOTHING = 0.036        # standard deviation of the Gaussian smoothing the centre line along y (of the height)
WIDTH_SMOOTHING = 0.01   # the same for the spine's width profile
TRIM = 0.02              # share of the centre line's arc length left out at each end
GAP = 0.06               # vertical gaps (discs, broken masks) up to this are bridged; the spine is the
                         # bridged run of rows with the most probability mass
WINDOW = 0.15            # pixels farther than this (of the width) from the robust centre line are ignored
MIN_LENGTH = 0.2         # a spine shorter than this (of the height) is "not found"
# Standard deviation, as a fraction of the height, of the band of rows whose pooled weighted
# median gives the robust centre: wide enough that a blob beside the spine is outvoted.
ROBUST_BAND = 0.08
_TINY = 1e-9
_MIN_HALF_WIDTH = 0.5  # pixels: keeps every mid-line of non-zero length


def gaussian_matrix(size: int, sigma: float) -> tf.Tensor:
    """(size, size) float32: K[i, j] = exp(−½((i − j)/σ)²) for |i − j| ≤ ⌊3σ⌋ + 1, else 0."""
    radius = int(3 * sigma) + 1
    offsets = tf.cast(tf.range(size)[:, None] - tf.range(size)[None, :], tf.float32)
    kernel = tf.exp(-0.5 * tf.square(offsets / sigma))
    return tf.where(tf.abs(offsets) <= radius, kernel, 0.0)


def smooth_rows(values: tf.Tensor, weights: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Normalised Gaussian smoothing along rows: (B, H) values and weights → (B, H);
    Σ_j k(i−j) w_j v_j / Σ_j k(i−j) w_j, so rows of weight 0 are interpolated."""
    return tf.matmul(values * weights, kernel) / tf.maximum(tf.matmul(weights, kernel), _TINY)


def spine_rows(mass: tf.Tensor, gap: int) -> tf.Tensor:
    """The spine's rows: (B, H) probability mass per row → (B, H) bool, the run of rows with
    mass (gaps of ≤ `gap` empty rows bridged) holding the most mass."""
    height = mass.shape[1]
    active = mass > 0.5
    counts = tf.pad(tf.cumsum(tf.cast(active, tf.int32), axis=1), [[0, 0], [1, 0]])  # (B, H + 1)
    rows = tf.range(height)
    before = tf.gather(counts, rows + 1, axis=1) - tf.gather(counts, tf.maximum(rows - gap, 0), axis=1) > 0
    after = tf.gather(counts, tf.minimum(rows + gap + 1, height), axis=1) - tf.gather(counts, rows, axis=1) > 0
    bridged = before & after
    starts = bridged & ~tf.pad(bridged[:, :-1], [[0, 0], [1, 0]])
    labels = tf.cumsum(tf.cast(starts, tf.int32), axis=1) * tf.cast(bridged, tf.int32)
    run_mass = tf.reduce_sum(tf.one_hot(labels, height + 1) * mass[..., None], axis=1)[:, 1:]
    best = cobb_graph.first_argmax(run_mass) + 1
    return tf.equal(labels, best[:, None]) & bridged


def safe_norm(vectors: tf.Tensor) -> tf.Tensor:
    """Euclidean norm over the last axis, (..., D) → (...), with gradient 0 instead of NaN
    at the zero vector (tf.norm's gradient there is 0/0, which TCL through the readout
    met at every zero-length segment of the centre line)."""
    squared = tf.reduce_sum(tf.square(vectors), axis=-1)
    nonzero = squared > 0.0
    return tf.where(nonzero, tf.sqrt(tf.where(nonzero, squared, 1.0)), 0.0)


def interpolate_polyline(nodes: tf.Tensor, arc: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Points at given arc lengths: nodes (B, N, 2), their cumulative arc length (B, N)
    (non-decreasing), targets (B, K) → (B, K, 2), clamped to the ends."""
    count = tf.shape(nodes)[1]
    start = tf.clip_by_value(tf.searchsorted(arc, targets, side="right") - 1, 0, count - 2)
    s0 = tf.gather(arc, start, batch_dims=1)
    s1 = tf.gather(arc, start + 1, batch_dims=1)
    p0 = tf.gather(nodes, start, batch_dims=1)
    p1 = tf.gather(nodes, start + 1, batch_dims=1)
    fraction = tf.clip_by_value((targets - s0) / tf.maximum(s1 - s0, _TINY), 0.0, 1.0)
    return p0 + fraction[..., None] * (p1 - p0)


def centre_line(weights: tf.Tensor, rows: tf.Tensor, kernel: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The smoothed centre line as a polyline in the model frame.

    Args:
        weights: (B, H, W) pixel weights (probabilities above threshold, inside the window).
        rows: (B, H) bool, the spine's rows (from `spine_rows`).
        kernel: (H, H) smoothing matrix.

    Returns:
        (nodes (B, H + 2, 2) (x, y) pixels, arc (B, H + 2) cumulative length): from the top
        edge of the first spine row through each row's centre to the bottom edge of the
        last; rows outside the spine repeat the nearest end (zero-length segments).
    """
    height, width = weights.shape[1], weights.shape[2]
    mass = tf.reduce_sum(weights, axis=2)
    columns = tf.range(width, dtype=tf.float32)
    centre = tf.reduce_sum(weights * columns, axis=2) / tf.maximum(mass, _TINY)
    smoothed = smooth_rows(centre, tf.cast(rows, tf.float32) * mass, kernel)
    index = tf.range(height)
    with_mass = rows & (mass > 0.5)
    top = tf.reduce_min(tf.where(with_mass, index, height - 1), axis=1)
    bottom = tf.reduce_max(tf.where(with_mass, index, 0), axis=1)
    bottom = tf.maximum(bottom, top)  # no spine row: a zero-length line at the last row
    clamped = tf.minimum(tf.maximum(index[None], top[:, None]), bottom[:, None])
    x = tf.gather(smoothed, clamped, batch_dims=1)
    y = tf.cast(clamped, tf.float32)
    first = tf.stack([x[:, 0], tf.cast(top, tf.float32) - 0.5], axis=-1)[:, None]
    last = tf.stack([x[:, -1], tf.cast(bottom, tf.float32) + 0.5], axis=-1)[:, None]
    nodes = tf.concat([first, tf.stack([x, y], axis=-1), last], axis=1)
    steps = safe_norm(nodes[:, 1:] - nodes[:, :-1])
    arc = tf.pad(tf.cumsum(steps, axis=1), [[0, 0], [1, 0]])
    return nodes, arc


def pseudo_vertebrae(nodes, arc, width_profile, trim: float) -> tf.Tensor:
    """17 pseudo vertebrae along the centre line: (B, 68, 2) corners (TL, TR, BL, BR each)
    in the model frame. width_profile: (B, H) spine width per row in pixels."""
    height = width_profile.shape[1]
    length = arc[:, -1:]
    profile = tf.constant(ENDPLATE_PROFILE, tf.float32)[None]
    targets = length * (trim + (1.0 - 2.0 * trim) * profile)
    centres = interpolate_polyline(nodes, arc, targets)  # (B, 34, 2)
    y = tf.clip_by_value(centres[..., 1], 0.0, height - 1.0)
    y0 = tf.floor(y)
    fraction = y - y0
    y0 = tf.cast(y0, tf.int32)
    w0 = tf.gather(width_profile, y0, batch_dims=1)
    w1 = tf.gather(width_profile, tf.minimum(y0 + 1, height - 1), batch_dims=1)
    widths = w0 + fraction * (w1 - w0)  # (B, 34)
    upper, lower = centres[:, 0::2], centres[:, 1::2]  # (B, 17, 2)
    direction = lower - upper
    direction = direction / tf.maximum(safe_norm(direction)[..., None], _TINY)
    across = tf.stack([-direction[..., 1], direction[..., 0]], axis=-1)
    across = tf.where(across[..., :1] < 0, -across, across)  # pointing to the image's right
    half = tf.maximum((widths[:, 0::2] + widths[:, 1::2]) / 4.0, _MIN_HALF_WIDTH)[..., None]
    corners = tf.stack([upper - across * half, upper + across * half, lower - across * half, lower + across * half], axis=2)
    return tf.reshape(corners, [-1, 4 * NUM_VERTEBRAE, 2])


def to_original(points: tf.Tensor, letterbox: tf.Tensor | None, height: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Model-frame points (B, N, 2) → (original pixels (B, N, 2), original height (B,)).

    letterbox: (B, 3) scale, offset_y, offset_x as `serving_default` returns it, or None
    when the model frame is the image itself."""
    if letterbox is None:
        return points, tf.fill(tf.shape(points)[:1], float(height))
    letterbox = tf.cast(letterbox, tf.float32)
    scale, offset_y, offset_x = letterbox[:, 0], letterbox[:, 1], letterbox[:, 2]
    offset = tf.stack([offset_x, offset_y], axis=-1)[:, None]
    original = (points + 0.5 - offset) / scale[:, None, None] - 0.5
    return original, (height - 2.0 * offset_y) / scale


def trace_spine(probabilities, settings: ReadoutConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Steps 1–5 on a batch of N_S outputs: (B, H, W) probabilities in the model frame
    (static H, W) → (corners (B, 68, 2) of the 17 pseudo vertebrae in the model frame, AASCE
    order; found (B,) bool). The vertebra route (`vertebra_readout`) reads its tilts at
    these positions."""
    probabilities = tf.cast(probabilities, tf.float32)
    height, width = probabilities.shape[1], probabilities.shape[2]
    kernel = gaussian_matrix(height, SMOOTHING * height)
    weights = tf.where(probabilities > THRESHOLD, probabilities, 0.0)
    columns = tf.range(width, dtype=tf.float32)

    # the robust centre: per row, the weighted median column of a band of rows around it
    band = tf.einsum("ij,bjx->bix", gaussian_matrix(height, ROBUST_BAND * height), weights)
    cumulative = tf.cumsum(band, axis=2)
    median = tf.reduce_sum(tf.cast(cumulative < cumulative[..., -1:] / 2.0, tf.float32), axis=2)
    mass = tf.reduce_sum(weights, axis=2)
    robust = smooth_rows(median, tf.cast(mass > 0.5, tf.float32), kernel)
    weights *= tf.cast(tf.abs(columns[None, None] - robust[..., None]) <= WINDOW * width, tf.float32)

    mass = tf.reduce_sum(weights, axis=2)
    rows = spine_rows(mass, max(1, int(GAP * height)))
    nodes, arc = centre_line(weights, rows, kernel)
    span = tf.reduce_sum(tf.cast(rows & (mass > 0.5), tf.float32), axis=1)
    extent = nodes[:, -1, 1] - nodes[:, 0, 1]
    kept = weights * tf.cast(rows, tf.float32)[..., None]
    confidence = tf.reduce_sum(kept, axis=(1, 2)) / tf.maximum(tf.reduce_sum(tf.cast(kept > 0, tf.float32), axis=(1, 2)), 1.0)
    found = (span > 0) & (extent >= MIN_LENGTH * height) & (confidence >= settings.min_confidence)

    width_kernel = gaussian_matrix(height, max(WIDTH_SMOOTHING * height, 0.5))
    width_profile = smooth_rows(mass, tf.cast(rows, tf.float32), width_kernel)
    return pseudo_vertebrae(nodes, arc, width_profile, TRIM), found


def read_corners(corners, found, letterbox, height: int) -> dict[str, tf.Tensor]:
    """Step 6, shared by both geometric routes: model-frame corners (B, 68, 2) and found
    (B,) → the organisers' algorithm in the original frame; the dict `read_spine` returns."""
    landmarks, original_height = to_original(corners, letterbox, height)
    safe = tf.where(found[:, None, None], landmarks, _straight_spine(tf.shape(landmarks)[0]))
    cobb = cobb_graph.cobb_angles(safe, tf.where(found, original_height, 1.0))
    nan = tf.constant(math.nan, tf.float32)
    return {
        "cobb_angles": tf.where(found[:, None], tf.cast(cobb["cobb_angles"], tf.float32), nan),
        "landmarks": tf.where(found[:, None, None], landmarks, nan),
        "end_vertebrae": tf.where(found[:, None, None], cobb["end_vertebrae"], -1),
        "found": found,
    }


def read_spine(probabilities, settings: ReadoutConfig, letterbox=None) -> dict[str, tf.Tensor]:
    """The readout on a batch of N_S outputs.

    Args:
        probabilities: (B, H, W) spine probabilities in the model frame (static H, W).
        settings: the `readout:` config section.
        letterbox: (B, 3) scale, offset_y, offset_x placing each original in the model frame,
            or None when the model frame is the original.

    Returns:
        {"cobb_angles": (B, 3) float32 degrees, "landmarks": (B, 68, 2) float32 pseudo
        corners in original pixels (AASCE order), "end_vertebrae": (B, 3, 2) int32 upper and
        lower end vertebra of each angle (0 = T1 … 16 = L5), "found": (B,) bool}; NaN and
        −1 where nothing was found.
    """
    return read_spine_traced(probabilities, settings, letterbox)[1]


def read_spine_traced(probabilities, settings: ReadoutConfig, letterbox=None) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """`read_spine` and the 17 pseudo vertebrae it read: ((B, 68, 2) `trace_spine`'s corners
    in the model frame, `read_spine`'s dict), for a caller that reads them again (the
    vertebra route)."""
    corners, found = trace_spine(probabilities, settings)
    return corners, read_corners(corners, found, letterbox, probabilities.shape[1])


def _straight_spine(batch) -> tf.Tensor:
    """(B, 68, 2) corners of an upright spine: a valid stand-in where nothing was found."""
    k = tf.range(NUM_VERTEBRAE, dtype=tf.float32)
    corners = tf.stack(
        [tf.stack([tf.zeros_like(k), 2 * k], -1), tf.stack([tf.ones_like(k), 2 * k], -1),
         tf.stack([tf.zeros_like(k), 2 * k + 1], -1), tf.stack([tf.ones_like(k), 2 * k + 1], -1)], axis=1,
    )  # fmt: skip
    return tf.tile(tf.reshape(corners, [1, 4 * NUM_VERTEBRAE, 2]), [batch, 1, 1])
