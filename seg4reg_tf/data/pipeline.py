"""Records → `tf.data.Dataset` of batched sample dicts, the only way data reach the networks.

Per record, once: the image file is checked (header and end marker, in Python, so a bad file
is named before TensorFlow starts), landmarks are moved into the model frame, decoded and
letterboxed images and rasterised masks are cached (memory or files, `DataConfig.cache`).
Per epoch: a seeded shuffle, batching, and the joint flip/rotation/scale augmentation on
whole batches. Evaluation order is
the record order.

Batches are dicts: `image` (B, H, W, 1) float32 in [0, 1], `mask` (B, H, W, 1) uint8,
`angles` (B, 3) float32 in [0, 1] (degrees / `transforms.ANGLE_SCALE_DEGREES`), `landmarks`
(B, 68, 2) float32 model-frame pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from seg4reg_tf import geometry
from seg4reg_tf.config import DataConfig
from seg4reg_tf.data import decoding, transforms
from seg4reg_tf.data.aasce import Record
from seg4reg_tf.data.admission import image_size


def split_records(records: Sequence[Record], fraction: float, seed: int) -> tuple[list, list]:
    """Draws a reproducible validation subset from the training records.

    Args:
        records: all training records.
        fraction: share held out, in [0, 1); at least one record when positive.
        seed: the same seed and records give the same split.

    Returns:
        (training records, validation records), each in the original order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    count = len(records)
    held_out = 0 if fraction == 0 else min(max(1, round(count * fraction)), count - 1)
    chosen = set(np.random.default_rng(seed).permutation(count)[:held_out].tolist())
    training = [record for i, record in enumerate(records) if i not in chosen]
    validation = [record for i, record in enumerate(records) if i in chosen]
    return training, validation


def check_image_files(records: Sequence[Record]) -> None:
    """Raises `ValueError`/`FileNotFoundError` naming the first missing, empty, foreign or
    truncated image file, or one whose size disagrees with its record."""
    for record in records:
        size = image_size(record.image_path)
        if size != (record.height, record.width):
            raise ValueError(
                f"{record.image_path}: image is {size[0]}x{size[1]} but its record says "
                f"{record.height}x{record.width} (file replaced after reading?)"
            )


def model_frame_landmarks(records: Sequence[Record], config: DataConfig) -> np.ndarray:
    """(N, 68, 2) float32 landmarks moved into the letterboxed model frame."""
    landmarks = np.stack([record.landmarks for record in records])
    heights = np.array([record.height for record in records])
    widths = np.array([record.width for record in records])
    moved = transforms.letterbox_landmarks(
        landmarks, heights, widths, config.image_height, config.image_width
    )
    return moved.numpy()


def model_frame_masks(records: Sequence[Record], config: DataConfig) -> np.ndarray:
    """(N, H, W, 1) uint8 ground-truth spine masks in the letterboxed model frame."""
    rasterise = _rasterise(config)
    return np.stack([rasterise(points) for points in model_frame_landmarks(records, config)])


def mean_mask(records: Sequence[Record], config: DataConfig) -> np.ndarray:
    """(H, W, 1) float32: 1 where most of the records' masks are spine, in the model frame —
    the image-blind segmentation baseline."""
    return (model_frame_masks(records, config).mean(axis=0) > 0.5).astype(np.float32)


def _rasterise(config: DataConfig):
    def rasterise(landmarks: np.ndarray) -> np.ndarray:
        mask = geometry.landmarks_to_mask(landmarks, config.image_height, config.image_width)
        return mask[..., None]

    return rasterise


def preprocess_encoded(data: tf.Tensor, name, config: DataConfig, max_pixels: int | None = None) -> tf.Tensor:
    """Encoded file → the network's input, identically for training, evaluation and serving:
    check, decode, aspect-preserving resize with padding, optional CLAHE.

    Args:
        data: scalar tf.string, a JPEG or PNG (8/16-bit, gray or colour).
        name: scalar tf.string naming the image in errors.
        config: model size and CLAHE settings.
        max_pixels: refuse images whose header declares more pixels (None: no limit).

    Returns:
        (image_height, image_width, 1) float32 in [0, 1].
    """
    return prepare_decoded(decoding.decode_checked(data, name, max_pixels), config)


def prepare_decoded(image: tf.Tensor, config: DataConfig) -> tf.Tensor:
    """A decoded (h, w, 1) float32 image in [0, 1] → the network's input: aspect-preserving
    resize with padding to (image_height, image_width, 1), optional CLAHE."""
    height, width = config.image_height, config.image_width
    shape = tf.shape(image)
    resized = transforms.resize_with_pad(image, height, width)
    if config.clahe:
        valid = transforms.content_mask(shape[0], shape[1], height, width)
        resized = transforms.clahe(resized, valid)
    return resized


def fine_frame(config: DataConfig, scale: int) -> DataConfig:
    """The tilt refiner's fine image: the model frame's preprocessing at `scale` times its size."""
    return dataclasses.replace(config, image_height=config.image_height * scale, image_width=config.image_width * scale)


def fine_images(records: Sequence[Record], config: DataConfig, scale: int) -> tf.Tensor:
    """The records' X-rays preprocessed at `scale` times the model frame (`fine_frame`):
    (N, scale·H, scale·W, 1) float32 in [0, 1]."""
    fine = fine_frame(config, scale)
    return tf.stack([preprocess_encoded(tf.io.read_file(record.image_path), record.image_path, fine) for record in records])


def _loader(config: DataConfig):
    """The per-record map: read, preprocess, rasterise the mask."""
    height, width = config.image_height, config.image_width
    rasterise = _rasterise(config)

    def load(element: dict) -> dict:
        resized = preprocess_encoded(tf.io.read_file(element["path"]), element["path"], config)
        mask = tf.numpy_function(rasterise, [element["landmarks"]], tf.uint8, stateful=False)
        mask = tf.ensure_shape(mask, [height, width, 1])
        return {
            "image": resized,
            "mask": mask,
            "angles": element["angles"],
            "landmarks": element["landmarks"],
        }

    return load


def _cache(dataset: tf.data.Dataset, records: Sequence[Record], config: DataConfig, role: str):
    """Caches in memory, not at all, or in files named after the records and preprocessing."""
    if config.cache == "none":
        return dataset
    if config.cache == "memory":
        return dataset.cache()
    os.makedirs(config.cache, exist_ok=True)
    key = hashlib.sha256()
    for record in records:
        key.update(f"{record.image_path}|{record.height}|{record.width}\n".encode())
    key.update(repr((config.image_height, config.image_width, config.clahe,
                     transforms.CLAHE_CLIP_LIMIT, transforms.CLAHE_GRID)).encode())
    return dataset.cache(os.path.join(config.cache, f"{role}-{key.hexdigest()[:16]}"))


def make_dataset(
    records: Sequence[Record],
    config: DataConfig,
    training: bool,
    batch_size: int,
    *,
    seed: int | None = None,
    drop_remainder: bool | None = None,
) -> tf.data.Dataset:
    """Builds the input pipeline for one set of records.

    Args:
        records: the records to serve (e.g. one side of `split_records`).
        config: sizes, augmentation, cache and CLAHE settings.
        training: shuffle each epoch and augment; otherwise record order, no augmentation.
        batch_size: samples per batch (the global batch under a strategy: `training.loop` splits it).
        seed: shuffle and augmentation seed; defaults to `config.seed`.
        drop_remainder: drop a last partial batch; defaults to `training` (a partial batch
            leaves a replica empty under MirroredStrategy).

    Returns:
        A dataset of batch dicts (see module docstring).

    Raises:
        ValueError / FileNotFoundError: no records, or an image file that is missing,
            empty, not JPEG/PNG, truncated or resized since reading; the file is named.
    """
    if not records:
        raise ValueError("make_dataset needs at least one record")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_image_files(records)
    seed = config.seed if seed is None else seed
    drop_remainder = training if drop_remainder is None else drop_remainder
    angles = np.stack([record.angles for record in records])
    elements = {
        "path": [record.image_path for record in records],
        "landmarks": model_frame_landmarks(records, config),
        "angles": transforms.scale_angles(angles).numpy(),
    }
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    dataset = dataset.map(_loader(config), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = _cache(dataset, records, config, "train" if training else "eval")
    return batches(dataset, len(records), batch_size, drop_remainder, training, seed, config)


def batches(dataset, count: int, batch_size: int, drop_remainder: bool, training: bool, seed: int, config: DataConfig, prepare=None):
    """The tail of every training pipeline: with `training`, shuffled each epoch; batched;
    each batch through `prepare` (None: as it is); with `training`, augmented jointly
    (`transforms.augment`, `config`'s settings) with a fresh seed pair per batch; prefetched.

    Args:
        dataset: elements of one sample each (dicts with "image", "mask", ...).
        count: the number of elements (the shuffle buffer holds them all).
    """
    if training:
        dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if prepare is not None:
        dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda batch, pair: transforms.augment(batch, pair, config.rotation_degrees, config.scale_range, config.flip),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)

