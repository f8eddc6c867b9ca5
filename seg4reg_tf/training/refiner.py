"""Training the tilt refiner (`models.tilt_refiner`) on the 68 landmarks alone: `train` runs
it after phase seg when `refiner.enabled` (it needs no N_S, so it can run at any time).

Each epoch cuts one crop per vertebra of every training X-ray (`vertebra_crops`) from the
X-ray letterboxed at `refiner.scale` times the model frame, at the true vertebra jittered as
the vertebra route's first estimate is wrong: turned by the true tilt plus a uniform error
in ±`JITTER_DEGREES`, centre moved by a normal error of 12% of the crop's side, side scaled
in [0.85, 1.2], and mirrored left-right half the time (which negates the residual). The
refiner learns the residual tilt (true − turn) in units of 5° under a Huber loss, with Adam
and a cosine-decayed step size. The validation figure is the RMS residual error in degrees on
the validation X-rays' vertebrae, cut the same way with a fixed seed, beside the RMS of the
turn's own error.

    <workdir>/refiner/tilt_refiner.keras, summary.json
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

from seg4reg_tf.config import Config
from seg4reg_tf.data import pipeline
from seg4reg_tf.files import atomic_write
from seg4reg_tf.models.tilt_refiner import MARGIN, RESIDUAL_UNIT_DEGREES, build_tilt_refiner
from seg4reg_tf.vertebra_crops import crop_vertebrae, true_frames
from seg4reg_tf.workdir import SUMMARY

# standard deviation of the training crops' centre error, in crop sides
CENTRE_JITTER = 0.12
SIDE_RANGE = (0.85, 1.2)
# the training turn's uniform error in ±degrees (the first estimate's error the refiner removes)
JITTER_DEGREES = 10.0
# Adam's starting step size, cosine-decayed to 0 over the run
LEARNING_RATE = 1e-3
# seed of the training crops' jitter (the validation crops use SEED + 1)
SEED = 0


def jittered_crops(fine, landmarks, settings, seed: int, margin: float = MARGIN) -> tuple[tf.Tensor, tf.Tensor]:
    """One jittered crop per vertebra and its residual tilt.

    Args:
        fine: (N, s·H, s·W, 1) fine images (`pipeline.fine_images`).
        landmarks: (N, 68, 2) true corners in model-frame pixels.
        settings: the `refiner:` section (crop size and scale).
        seed: the jitter's seed (the same seed, the same crops).
        margin: crop side over the vertebra's width.

    Returns:
        (crops (N·17, S, S, 1) float32, residuals (N·17, 1) float32 in units of
        `RESIDUAL_UNIT_DEGREES`).
    """
    frames = true_frames(tf.convert_to_tensor(landmarks, tf.float32))
    count = tf.size(frames["tilt"])
    rng = tf.random.Generator.from_seed(seed)
    jitter = math.radians(JITTER_DEGREES)
    turn = tf.reshape(frames["tilt"], [-1]) + rng.uniform([count], -jitter, jitter)
    side = 2.0 * tf.reshape(frames["half_width"], [-1]) * margin * rng.uniform([count], *SIDE_RANGE)
    centre = tf.reshape(frames["centre"], [-1, 2]) + rng.normal([count, 2]) * CENTRE_JITTER * side[:, None]
    image_index = tf.repeat(tf.range(tf.shape(landmarks)[0]), tf.shape(frames["tilt"])[1])
    crops = crop_vertebrae(fine, image_index, centre, turn, side, settings.crop_size, settings.scale)
    residual = tf.reshape(frames["tilt"], [-1]) - turn
    residual = tf.atan2(tf.sin(residual), tf.cos(residual))  # within (−π, π]; the jitter keeps it small
    mirror = rng.uniform([count]) < 0.5
    crops = tf.where(mirror[:, None, None, None], tf.reverse(crops, axis=[2]), crops)
    residual = tf.where(mirror, -residual, residual)
    return crops, (residual * (180.0 / math.pi) / RESIDUAL_UNIT_DEGREES)[:, None]


def train_refiner(training, validation, config: Config, out: pathlib.Path, verbose: int = 2) -> dict:
    """Trains the refiner on the training records and writes it with its summary.

    Args:
        training, validation: AASCE-style records (image files and landmarks).
        config: `refiner:` settings and the model frame (`data`).
        out: the folder written (`<workdir>/refiner`).
        verbose: 0 silent, otherwise a line per epoch.

    Returns:
        The summary (also in `out/summary.json`): settings, seconds, the validation RMS
        residual error per epoch (degrees) and the turn's own RMS error.
    """
    settings = config.refiner
    started = time.perf_counter()
    fine = pipeline.fine_images(training, config.data, settings.scale)
    landmarks = pipeline.model_frame_landmarks(training, config.data)
    val_fine = pipeline.fine_images(validation, config.data, settings.scale) if validation else None
    val_crops, val_targets = (jittered_crops(val_fine, pipeline.model_frame_landmarks(validation, config.data), settings, SEED + 1)
                              if validation else (None, None))
    refiner = build_tilt_refiner(settings)
    steps = settings.epochs * max(1, (len(training) * 17) // settings.batch_size)
    refiner.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)),
                    loss=keras.losses.Huber(1.0))
    history = []
    for epoch in range(settings.epochs):
        crops, targets = jittered_crops(fine, landmarks, settings, SEED * 1000 + epoch + 2)
        fit = refiner.fit(crops, targets, batch_size=settings.batch_size, epochs=1, shuffle=True, verbose=0)
        row = {"epoch": epoch + 1, "loss": float(fit.history["loss"][-1])}
        if val_crops is not None:
            row["val_tilt_rms_degrees"] = residual_rms(refiner, val_crops, val_targets)
        history.append(row)
        if verbose:
            print("refiner epoch {epoch}/{total}: loss {loss:.4f}".format(total=settings.epochs, **row)
                  + (f", validation tilt RMS {row['val_tilt_rms_degrees']:.2f}°" if "val_tilt_rms_degrees" in row else ""), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / ".partial-tilt_refiner.keras"  # Keras wants the suffix
    refiner.save(temporary)
    summary = {
        "settings": dataclasses.asdict(settings),
        "seconds": round(time.perf_counter() - started, 1),
        "history": history,
        "validation_start_rms_degrees": float(np.sqrt(np.mean(np.square(val_targets.numpy() * RESIDUAL_UNIT_DEGREES)))) if validation else None,
    }
    temporary.replace(out / "tilt_refiner.keras")
    atomic_write(out / SUMMARY, json.dumps(summary, indent=2).encode())
    return summary


def residual_rms(refiner, crops, targets) -> float:
    """RMS (degrees) of the refiner's residual error on crops with known residuals."""
    predicted = refiner.predict(crops, batch_size=256, verbose=0)
    return float(np.sqrt(np.mean(np.square((predicted - targets.numpy()) * RESIDUAL_UNIT_DEGREES))))
