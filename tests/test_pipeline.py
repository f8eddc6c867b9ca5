"""The tf.data pipeline: batches, caching, determinism, validation split, bad files, strategies."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf import geometry
from seg4reg_tf.config import DataConfig
from seg4reg_tf.data import pipeline
from seg4reg_tf.data.aasce import read_split

SMALL = DataConfig(image_height=64, image_width=32)


@pytest.fixture(scope="module")
def records(synthetic_root):
    return read_split(synthetic_root, "training")


def first(dataset):
    return {key: value.numpy() for key, value in next(iter(dataset)).items()}


def test_training_batches_have_the_documented_layout(records):
    batch = first(pipeline.make_dataset(records, SMALL, training=True, batch_size=4))
    assert batch["image"].shape == (4, 64, 32, 1) and batch["image"].dtype == np.float32
    assert batch["mask"].shape == (4, 64, 32, 1) and batch["mask"].dtype == np.uint8
    assert batch["angles"].shape == (4, 3) and 0 <= batch["angles"].min() <= batch["angles"].max() <= 1
    assert batch["landmarks"].shape == (4, 68, 2)
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert set(np.unique(batch["mask"])) <= {0, 1} and batch["mask"].sum() > 0
    # 6 records, batch 4, training: the partial last batch is dropped.
    assert sum(1 for _ in pipeline.make_dataset(records, SMALL, training=True, batch_size=4)) == 1


def test_evaluation_is_in_record_order_without_augmentation(records):
    batches = list(pipeline.make_dataset(records, SMALL, training=False, batch_size=4))
    assert [b["image"].shape[0] for b in batches] == [4, 2]
    landmarks = np.concatenate([b["landmarks"].numpy() for b in batches])
    np.testing.assert_allclose(landmarks, pipeline.model_frame_landmarks(records, SMALL))
    angles = np.concatenate([b["angles"].numpy() for b in batches])
    np.testing.assert_allclose(angles * 180.0, [r.angles for r in records], atol=1e-4)
    for batch in batches:
        for mask, points in zip(batch["mask"].numpy(), batch["landmarks"].numpy()):
            np.testing.assert_array_equal(mask[..., 0], geometry.landmarks_to_mask(points, 64, 32))


def test_same_seed_same_batches_and_epochs_differ(records):
    one = pipeline.make_dataset(records, SMALL, training=True, batch_size=3, seed=11)
    two = pipeline.make_dataset(records, SMALL, training=True, batch_size=3, seed=11)
    epoch_a, epoch_b = list(one), list(one)
    for a, b in zip(epoch_a, two):
        np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
    assert not np.array_equal(epoch_a[0]["image"].numpy(), epoch_b[0]["image"].numpy())


def test_masks_are_rasterised_once_with_a_cache(records, monkeypatch):
    calls = []
    original = geometry.landmarks_to_mask

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(geometry, "landmarks_to_mask", counting)
    dataset = pipeline.make_dataset(records, SMALL, training=True, batch_size=2)
    for _ in range(3):
        list(dataset)
    assert len(calls) == len(records)
    calls.clear()
    uncached = pipeline.make_dataset(records, DataConfig(**{**SMALL.__dict__, "cache": "none"}), training=True, batch_size=2)
    for _ in range(2):
        list(uncached)
    assert len(calls) == 2 * len(records)


def test_file_cache_is_written_and_reused(records, tmp_path):
    config = DataConfig(**{**SMALL.__dict__, "cache": str(tmp_path / "cache")})
    # Whole epochs: tf.data finalises a file cache (its .index) only at the end of an epoch,
    # and a half-read cache stays locked while its iterator is alive.
    expected = list(pipeline.make_dataset(records, config, training=False, batch_size=6))
    written = os.listdir(tmp_path / "cache")
    assert any(name.startswith("eval-") and name.endswith(".index") for name in written), written
    again = list(pipeline.make_dataset(records, config, training=False, batch_size=6))
    np.testing.assert_array_equal(expected[0]["image"], again[0]["image"])
    assert sorted(os.listdir(tmp_path / "cache")) == sorted(written)  # reused, not rewritten


def test_clahe_switch_changes_the_images(records):
    plain = first(pipeline.make_dataset(records, SMALL, training=False, batch_size=2))
    config = DataConfig(**{**SMALL.__dict__, "clahe": True})
    equalised = first(pipeline.make_dataset(records, config, training=False, batch_size=2))
    assert np.abs(plain["image"] - equalised["image"]).mean() > 0.01
    np.testing.assert_array_equal(plain["mask"], equalised["mask"])


def test_validation_split_is_reproducible_and_disjoint(records):
    train, validation = pipeline.split_records(records, 0.34, seed=1)
    assert len(validation) == 2 and len(train) == 4
    assert not {r.name for r in train} & {r.name for r in validation}
    again = pipeline.split_records(records, 0.34, seed=1)
    assert [r.name for r in again[1]] == [r.name for r in validation]
    assert pipeline.split_records(records, 0.0, seed=1)[1] == []
    with pytest.raises(ValueError, match="validation fraction"):
        pipeline.split_records(records, 1.0, seed=1)


@pytest.fixture
def damaged(synthetic_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    return read_split(root, "training")


def test_truncated_image_is_named_before_tensorflow_starts(damaged):
    path = damaged[2].image_path
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{path}: truncated JPEG"):
        pipeline.make_dataset(damaged, SMALL, training=True, batch_size=2)


def test_file_corrupted_after_the_dataset_was_built_is_named(damaged):
    dataset = pipeline.make_dataset(damaged, SMALL, training=False, batch_size=2)
    path = damaged[3].image_path
    open(path, "wb").write(b"not an image any more")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)not a JPEG or PNG image.*" + os.path.basename(path)):
        list(dataset)


def test_replaced_image_of_another_size_is_named(damaged):
    shutil.copyfile(damaged[0].image_path, damaged[1].image_path)
    with pytest.raises(ValueError, match=damaged[1].name + ".*but its record says"):
        pipeline.make_dataset(damaged, SMALL, training=False, batch_size=2)


def test_a_strategy_splits_each_global_batch_across_its_replicas(synthetic_root):
    # Logical devices must be configured before TensorFlow starts: run in a fresh process.
    script = textwrap.dedent(
        f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from seg4reg_tf.config import DataConfig
        from seg4reg_tf.data import pipeline
        from seg4reg_tf.data.aasce import read_split
        from seg4reg_tf.training.loop import distribute
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        records = read_split({str(synthetic_root)!r}, "training")
        config = DataConfig(image_height=64, image_width=32)
        batches = list(distribute(strategy, pipeline.make_dataset(records, config, True, 4)))
        parts = strategy.experimental_local_results(batches[0]["image"])
        # the replicas' halves are the single device's batch: the same images, augmented alike
        whole = next(iter(pipeline.make_dataset(records, config, True, 4)))["image"]
        same = bool(tf.reduce_all(tf.concat(parts, axis=0) == whole))
        print("RESULT", strategy.num_replicas_in_sync, len(batches), [t.shape[0] for t in parts], same)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RESULT 2 1 [2, 2] True" in result.stdout
