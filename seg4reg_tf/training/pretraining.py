"""Pretraining N_R on synthetic spine masks: a stand-in for ImageNet weights (not in the paper;
command: `python -m seg4reg_tf.pretrain`).

ImageNet weights cannot be downloaded everywhere, and an EfficientNet-B1 trained from scratch
on a few hundred radiographs learns nothing beyond the mean angles. Spines drawn by
`data.synthetic.draw_spine` cost ~2 ms each without rendering a radiograph, and their Cobb
angles are exact (`geometry.cobb_angles` of the drawn corners), so N_R can first learn to
read angles from tens of thousands of spine masks — the mask route of the method — and
start phase `reg` from there:

    python -m seg4reg_tf.pretrain --config configs/aasce_cpu.yaml --out weights/nr_masks.weights.h5
    # then, in the config:  regressor: {weights: weights/nr_masks.weights.h5}

The masks are drawn at the config's input size, letterboxed like real radiographs and
augmented like phase `reg` (flip, rotation, isotropic scale). N_R trains on SMAPE (Eq. 3)
with `training.phases.RegressionPhase` on ground-truth masks. The file written is the trunk in the
format `regressor.weights` reads. For EfficientNet-B1 that is the stock
`keras.applications.EfficientNetB1(include_top=False)`: its first convolution holds the
one-channel mask filters split evenly over RGB, so loading sums them back exactly for the
"mask" input; for "image+mask" each of the two channels starts with half the mask filters.
For the plain CNN (`regressor.backbone: plain_cnn`) it is the trunk's own weights, which
load into an N_R on the mask with the same coordinate channels, or on image ⊕ mask with
zero first-layer filters for the image channel (`models.regressor.load_plain_trunk`). The output layer is not kept:
phase `reg` starts it at the training-mean angles. A JSON file beside the weights records
the settings and the validation figures next to the mean-angle baseline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

from seg4reg_tf import geometry, metrics
from seg4reg_tf.config import PRETRAINABLE, Config, DataConfig
from seg4reg_tf.data import pipeline, synthetic, transforms
from seg4reg_tf.files import atomic_write
from seg4reg_tf.models import build_regressor, copy_weights_by_name, start_at_mean_angles
from seg4reg_tf.training import loop
from seg4reg_tf.training.phases import RegressionPhase, learning_rate

_LOG = logging.getLogger(__name__)

# Keeps pretraining spines apart from the embedded data set's (splits "training", "test").
_SPLIT = "pretrain"


def draw_masks(count: int, start: int, seed: int, data: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Draws spines `start`..`start + count − 1` and rasterises them in the model frame.

    Args:
        count: number of spines.
        start: index of the first; spine i depends only on (seed, i).
        seed: generator seed.
        data: uses `image_height` and `image_width`.

    Returns:
        (masks (count, H, W, 1) uint8 in {0, 1}, angles (count, 3) float32 degrees).
    """
    generator = synthetic.SyntheticConfig()
    landmarks, sizes, angles = [], [], []
    for index in range(start, start + count):
        rng = synthetic.image_rng(seed, _SPLIT, index)
        height, width = synthetic.draw_image_size(rng, generator)
        spine = synthetic.draw_spine(rng, height, width, generator)
        landmarks.append(spine.landmarks)
        sizes.append((height, width))
        angles.append(geometry.cobb_angles(spine.landmarks, height))
    sizes = np.array(sizes)
    frame = transforms.letterbox_landmarks(
        np.stack(landmarks), sizes[:, 0], sizes[:, 1], data.image_height, data.image_width
    ).numpy()
    masks = np.stack([geometry.landmarks_to_mask(points, data.image_height, data.image_width) for points in frame])
    return masks[..., None], np.stack(angles).astype(np.float32)


def mask_dataset(
    masks: np.ndarray, angles: np.ndarray, data: DataConfig, batch_size: int, training: bool, seed: int = 0, drop_remainder: bool | None = None
):
    """Batches of {"image", "mask", "angles"} for `training.phases.RegressionPhase` on ground truth.

    Args:
        masks: (N, H, W, 1) uint8.
        angles: (N, 3) degrees.
        data: angle scale and, when training, the augmentation settings.
        batch_size: masks per batch.
        training: shuffle each epoch and augment (drops the last partial batch).
        seed: shuffle and augmentation seed.
        drop_remainder: drop a last partial batch; defaults to `training` (under a
            strategy, validation drops it too).

    Returns:
        A tf.data.Dataset; "image" is the mask as float32 (warped bilinearly when training;
        N_R on the mask reads "mask").
    """
    scaled = transforms.scale_angles(angles).numpy()
    dataset = tf.data.Dataset.from_tensor_slices({"mask": masks, "angles": scaled})
    drop_remainder = training if drop_remainder is None else drop_remainder
    return pipeline.batches(dataset, len(masks), batch_size, drop_remainder, training, seed, data,
                            prepare=lambda batch: {**batch, "image": tf.cast(batch["mask"], tf.float32)})


def pretraining_config(config: Config) -> Config:
    """The run's config turned into what pretraining trains: N_R on the mask alone, from
    scratch, on ground-truth masks, no AR (both branches would see the mask), with phase
    reg's weight decay."""
    settings = config.pretrain
    if config.regressor.backbone not in PRETRAINABLE:
        raise ValueError(
            f"pretraining writes the trunk of {' or '.join(PRETRAINABLE)}; regressor.backbone is {config.regressor.backbone} "
            "(train it from scratch, or choose one of those)"
        )
    regressor = dataclasses.replace(config.regressor, input_mode="mask", weights="none")
    reg = dataclasses.replace(
        config.reg, epochs=settings.epochs, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        ar_weight=0.0,
    )
    return dataclasses.replace(config, regressor=regressor, reg=reg)


def trunk(regressor):
    """The backbone model nested in N_R (EfficientNet-B1, ResNet-18 or the plain CNN)."""
    return next(layer for layer in regressor.layers if isinstance(layer, keras.Model))


def save_trunk(regressor, path: str | os.PathLike[str], backbone: str) -> None:
    """Writes N_R's trunk in the format `regressor.weights` reads, atomically.

    Args:
        regressor: N_R. An EfficientNet-B1 trunk is written as stock
            `EfficientNetB1(include_top=False)` weights (any input mode; the first
            convolution is spread over RGB); a plain CNN trunk as its own weights.
        path: output file; must end in ".weights.h5" (Keras' weights format).
        backbone: N_R's `regressor.backbone`, one of `config.PRETRAINABLE`.
    """
    path = pathlib.Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: the weights file name must end in '.weights.h5'")
    if backbone not in PRETRAINABLE:
        raise ValueError(f"only the trunks of {' and '.join(PRETRAINABLE)} can be written, not {backbone}")
    written = trunk(regressor)
    if backbone == "efficientnet_b1":
        written = keras.applications.EfficientNetB1(include_top=False, weights=None, input_shape=(224, 224, 3))
        copy_weights_by_name(trunk(regressor), written, adapt=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{os.getpid()}-{path.name}")
    try:
        written.save_weights(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def pretrain(
    config: Config, out: str | os.PathLike[str], verbose: int = 2, log_dir: str | None = None, run_eagerly: bool = False, strategy=None
) -> dict:
    """Draws the masks, trains N_R on them, writes the trunk to `out` and a summary beside it.

    Args:
        config: `pretrain` settings, input size and augmentation of `data`, N_R's head.
        out: weights file, ending in ".weights.h5".
        verbose: Keras progress output (0, 1 bar, 2 a line per epoch).
        log_dir: TensorBoard folder, or None.
        run_eagerly: no tf.function (tiny runs, where tracing dominates).
        strategy: a `tf.distribute` strategy to train under (`training.loop`), or None.

    Returns:
        The summary (also written to `<out without .weights.h5>.json`): settings, seconds,
        validation SMAPE / MAE per epoch and at the end, and the training-mean baseline.
    """
    settings, data = config.pretrain, config.data
    run = pretraining_config(config)
    started = time.perf_counter()
    masks, angles = draw_masks(settings.count, 0, data.seed, data)
    val_masks, val_angles = draw_masks(settings.validation_count, settings.count, data.seed, data)
    _LOG.info("drew %d + %d spine masks in %.0f s", settings.count, settings.validation_count, time.perf_counter() - started)
    distributed = loop.splits_batches(strategy)
    with loop.scope(strategy):
        regressor = build_regressor(run.regressor, run.data.image_size, synchronized=distributed)
        mean = angles.mean(axis=0)
        start_at_mean_angles(regressor, mean / transforms.ANGLE_SCALE_DEGREES)
        trainer = RegressionPhase(None, regressor, run, name="pretrain")
        step_size = learning_rate(settings, settings.count)
        trainer.compile(optimizer=keras.optimizers.Adam(step_size, weight_decay=run.reg.weight_decay or None), run_eagerly=run_eagerly)
    callbacks = [keras.callbacks.TensorBoard(log_dir)] if log_dir else []
    history = loop.Loop(trainer, strategy, run_eagerly).fit(
        mask_dataset(masks, angles, data, settings.batch_size, training=True, seed=data.seed),
        validation_data=mask_dataset(val_masks, val_angles, data, settings.batch_size, training=False, drop_remainder=distributed),
        epochs=settings.epochs, callbacks=callbacks, verbose=verbose,
    )
    save_trunk(regressor, out, run.regressor.backbone)
    summary = {
        "weights": str(out),
        "input": [data.image_height, data.image_width],
        "settings": dataclasses.asdict(settings),
        "seconds": round(time.perf_counter() - started, 1),
        "validation": {key: [float(v) for v in history.history[key]] for key in ("val_smape", "val_mae")},
        "baseline": metrics.mean_angle_baseline(val_angles, mean),
    }
    atomic_write(summary_path(out), json.dumps(summary, indent=2).encode())
    return summary


def summary_path(out: str | os.PathLike[str]) -> pathlib.Path:
    """`x.weights.h5` → `x.json`."""
    out = pathlib.Path(out)
    return out.with_name(out.name.removesuffix(".weights.h5") + ".json")
