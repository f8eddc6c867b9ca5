"""The vertebra route: the Cobb angles of 17 vertebrae whose tilts N_S draws (beyond the
paper; after VLTENet's per-vertebra tilt vectors).

The centre-line readout (`geometric_readout`) finds where the 17 vertebrae lie well, but
gives each the direction of the centre line, which is not the tilt of the vertebra. This
route keeps its positions and reads each vertebra's tilt off N_S's tilt field
(`tilt_field`, the `tilt` output, (cos 2θ, sin 2θ) per pixel):

1. the 17 pseudo vertebrae of `geometric_readout.trace_spine` give each vertebra a centre
   c (midway between its endplate centres), a half-width w and a half-height h;
2. the field is sampled (bilinearly) at `SAMPLES` points across the vertebra, from
   c − ½w·a to c + ½w·a (a: the pseudo vertebra's left-to-right direction), and the
   samples are averaged, each weighted by the mask probability there;
3. θ = ½·atan2(mean sin 2θ, mean cos 2θ), times `readout.tilt_gain` (a calibration fitted
   on the training part); the vertebra's corners are
   c ∓ w·d ∓ h·n with d = (cos θ, sin θ), n = (−sin θ, cos θ) (image axes, y down): its
   mid-line has the read tilt, its endplate centres stay where the centre line put them;
4. those 68 corners go through the organisers' algorithm like the centre line's;
5. with `readout.centre_line_share` s > 0 the route answers (1 − s) × its angles + s × the
   centre line's at the same positions (the two readings' errors are partly independent, so
   the mix beats both); its corners and end vertebrae stay its own.

A vertebra's confidence is the length of its mean doubled-angle vector (1 when the samples
agree, near 0 when they cancel) times the mean mask probability under them. Everything is
TensorFlow ops, traced into the SavedModel; where no spine is found the angles and corners
are NaN, `found` false, end vertebrae −1, and nothing raises.
"""

from __future__ import annotations

import math

import tensorflow as tf

from seg4reg_tf.config import ReadoutConfig
from seg4reg_tf.geometric_readout import NUM_VERTEBRAE, read_corners, read_spine_traced, safe_norm
from seg4reg_tf.vertebra_crops import sample_at

# points sampled across each vertebra's middle
SAMPLES = 5
# added to the mask probability in a sample's weight: a centre that falls in a disc gap
# (probability near 0 on a sharp mask) still reads the field there
WEIGHT_FLOOR = 0.05
_TINY = 1e-6


def sample_bilinear(field: tf.Tensor, points: tf.Tensor) -> tf.Tensor:
    """Bilinear samples of a field at sub-pixel points, clamped to the edges
    (`vertebra_crops.sample_at`, each image's points on itself).

    Args:
        field: (B, H, W, C) float32; pixel (row i, column j) has its centre at (x=j, y=i).
        points: (B, N, 2) (x, y) pixels.

    Returns:
        (B, N, C) float32.
    """
    return sample_at(field, tf.range(tf.shape(field)[0]), points)


def vertebra_frames(corners: tf.Tensor) -> dict[str, tf.Tensor]:
    """Centres, half-widths, half-heights and left-to-right directions of pseudo
    vertebrae: (B, 68, 2) corners (TL, TR, BL, BR each) → {"centre" (B, 17, 2), "half_width"
    (B, 17), "half_height" (B, 17), "across" (B, 17, 2) unit vectors}."""
    quads = tf.reshape(corners, [-1, NUM_VERTEBRAE, 4, 2])
    upper = (quads[:, :, 0] + quads[:, :, 1]) / 2.0
    lower = (quads[:, :, 2] + quads[:, :, 3]) / 2.0
    across = quads[:, :, 1] - quads[:, :, 0]
    half_width = safe_norm(across) / 2.0
    return {
        "centre": (upper + lower) / 2.0,
        "half_width": half_width,
        "half_height": safe_norm(lower - upper) / 2.0,
        "across": across / tf.maximum(2.0 * half_width, _TINY)[..., None],
    }


def read_tilts(tilt: tf.Tensor, probabilities: tf.Tensor, frames: dict) -> tuple[tf.Tensor, tf.Tensor]:
    """Each vertebra's tilt off the field: (B, H, W, 2) field, (B, H, W) probabilities and
    `vertebra_frames` → (θ (B, 17) radians, image axes, y down; confidence (B, 17) in [0, 1])."""
    batch = tf.shape(tilt)[0]
    offsets = tf.linspace(-0.5, 0.5, SAMPLES)  # in half-widths: c − ½w·a … c + ½w·a
    points = frames["centre"][:, :, None] + offsets[None, None, :, None] * frames["half_width"][..., None, None] * frames["across"][:, :, None]
    points = tf.reshape(points, [batch, NUM_VERTEBRAE * SAMPLES, 2])
    vectors = tf.reshape(sample_bilinear(tf.cast(tilt, tf.float32), points), [batch, NUM_VERTEBRAE, SAMPLES, 2])
    probability = tf.reshape(sample_bilinear(tf.cast(probabilities, tf.float32)[..., None], points), [batch, NUM_VERTEBRAE, SAMPLES, 1])
    weights = probability + WEIGHT_FLOOR
    mean = tf.reduce_sum(vectors * weights, axis=2) / tf.reduce_sum(weights, axis=2)
    theta = 0.5 * tf.atan2(mean[..., 1], mean[..., 0])
    agreement = tf.minimum(safe_norm(mean), 1.0)
    return theta, agreement * tf.reduce_mean(probability[..., 0], axis=2)


def pointing_right(theta: tf.Tensor) -> tf.Tensor:
    """Tilts (B, 17) radians modulo π, into [−π/2, π/2]: a tilt read off the doubled-angle
    field has no arrow, and a gained or refined one may pass the vertical; the organisers'
    algorithm needs mid-lines that point to the image's right, as the centre line's do."""
    return theta - math.pi * tf.round(theta / math.pi)


def tilted_corners(frames: dict, theta: tf.Tensor) -> tf.Tensor:
    """Corners of vertebrae with the given tilts: `vertebra_frames` and θ (B, 17) radians
    → (B, 68, 2) (TL, TR, BL, BR each)."""
    direction = tf.stack([tf.cos(theta), tf.sin(theta)], axis=-1)
    down = tf.stack([-tf.sin(theta), tf.cos(theta)], axis=-1)
    along = frames["half_width"][..., None] * direction
    vertical = frames["half_height"][..., None] * down
    centre = frames["centre"]
    quads = tf.stack([centre - along - vertical, centre + along - vertical, centre - along + vertical, centre + along + vertical], axis=2)
    return tf.reshape(quads, [-1, 4 * NUM_VERTEBRAE, 2])


def read_vertebrae(probabilities, tilt, settings: ReadoutConfig, letterbox=None, refine=None, centre_line=None) -> dict[str, tf.Tensor]:
    """The vertebra route on a batch of N_S outputs.

    Args:
        probabilities: (B, H, W) spine probabilities in the model frame (static H, W).
        tilt: (B, H, W, 2) N_S's tilt field, (cos 2θ, sin 2θ).
        settings: the `readout:` config section (where the vertebrae lie, as for the centre line).
        letterbox: (B, 3) scale, offset_y, offset_x of each original in the model frame, or None.
        refine: None, or a second look: (`vertebra_frames`, θ (B, 17) radians read off the
            field) → θ (B, 17) radians (`inference.refined_tilts`, the tilt refiner).
        centre_line: the centre line's reading of the same mask, when the caller has it
            (`geometric_readout.read_spine_traced`'s pair); None: read here.

    Returns:
        {"cobb_angles" (B, 3) float32 degrees (with `centre_line_share`, mixed with the
        centre line's), "landmarks" (B, 68, 2) the 17 vertebrae's
        corners in original pixels (AASCE order), "end_vertebrae" (B, 3, 2) int32,
        "found" (B,) bool, "confidence" (B, 17) in [0, 1]}; NaN, −1 and 0 where nothing was found.
    """
    probabilities = tf.cast(probabilities, tf.float32)
    positions, centre = read_spine_traced(probabilities, settings, letterbox) if centre_line is None else centre_line
    found = centre["found"]
    frames = vertebra_frames(positions)
    theta, confidence = read_tilts(tilt, probabilities, frames)
    theta = settings.tilt_gain * theta
    if refine is not None:
        theta = refine(frames, theta)
    reading = read_corners(tilted_corners(frames, pointing_right(theta)), found, letterbox, probabilities.shape[1])
    share = settings.centre_line_share
    if share > 0.0:
        reading["cobb_angles"] = (1.0 - share) * reading["cobb_angles"] + share * centre["cobb_angles"]
    return {**reading, "confidence": tf.where(found[:, None], confidence, 0.0)}
