"""The synthetic generator: deterministic, AASCE layout, plausible spines, atomic writes."""

import filecmp
import os

import cv2
import numpy as np
import pytest
import scipy.io

from seg4reg_tf import geometry
from seg4reg_tf.data import aasce, synthetic
from tests.conftest import SMALL


def _all_files(root):
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
    )


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path, synthetic_root):
    again = synthetic.generate_dataset(tmp_path / "again", train=6, test=2, seed=3, config=SMALL)
    files = _all_files(synthetic_root)
    assert files == _all_files(again)
    _, mismatch, errors = filecmp.cmpfiles(synthetic_root, again, files, shallow=False)
    assert mismatch == [] and errors == []
    other = synthetic.generate_dataset(tmp_path / "other", train=6, test=2, seed=4, config=SMALL)
    images = [name for name in files if name.endswith(".jpg")]
    others = [name for name in _all_files(other) if name.endswith(".jpg")]  # named apart (seed 4), in the same order
    assert len(others) == len(images) and not set(others) & set(images)
    assert all(open(os.path.join(synthetic_root, a), "rb").read() != open(os.path.join(other, b), "rb").read() for a, b in zip(images, others))


def test_layout_is_aascel_and_reader_round_trips(synthetic_root):
    labels = os.path.join(synthetic_root, "labels", "training")
    for name in ("filenames.csv", "angles.csv", "landmarks.csv"):
        first_line = open(os.path.join(labels, name)).readline()
        assert not first_line[0].isalpha() or first_line.endswith(".jpg\n"), "no header row"
    records = aasce.read_split(synthetic_root, "training")
    assert len(records) == 6 and len(aasce.read_split(synthetic_root, "test")) == 2
    normalised = np.loadtxt(os.path.join(labels, "landmarks.csv"), delimiter=",")
    for row, record in zip(normalised, records):
        raw = scipy.io.loadmat(os.path.join(labels, record.name + ".mat"))["p2"]
        assert raw.dtype == np.uint16 and raw.shape == (68, 2)
        image = cv2.imread(record.image_path, cv2.IMREAD_UNCHANGED)
        assert image.ndim == 2 and image.dtype == np.uint8
        assert image.shape == (record.height, record.width)
        assert SMALL.height_range[0] <= record.height <= SMALL.height_range[1]
        assert 1.9 <= record.height / record.width <= 3.6
        # angles.csv holds cobb_angles of the stored landmarks to 5 significant digits.
        np.testing.assert_allclose(
            record.angles, geometry.cobb_angles(record.landmarks, record.height), rtol=1e-4, atol=1e-3
        )
        size = np.array([record.width, record.height])
        np.testing.assert_allclose(row.reshape(2, 68).T * size, record.landmarks, atol=0.02 * size.max() / 100)


def test_spine_is_brighter_than_its_surroundings(synthetic_root):
    # The labelled vertebral bodies are bone: brighter than the band of tissue beside them.
    for record in aasce.read_split(synthetic_root, "training"):
        image = cv2.imread(record.image_path, cv2.IMREAD_GRAYSCALE).astype(float)
        mask = geometry.landmarks_to_mask(record.landmarks, record.height, record.width)
        near = cv2.dilate(mask, np.ones((15, 15), np.uint8)) - mask
        assert image[mask > 0].mean() > image[near > 0].mean() + 5, record.name
        assert image.std() > 20


def test_angle_distribution_resembles_aasce():
    config = synthetic.SyntheticConfig()
    largest, s_shaped, growth = [], [], []
    for index in range(300):
        rng = synthetic.image_rng(0, "training", index)
        height, width = synthetic.draw_image_size(rng, config)
        spine = synthetic.draw_spine(rng, height, width, config)
        landmarks = np.round(spine.landmarks)
        assert landmarks.min() >= -1 and (landmarks.max(axis=0) <= [width, height]).all()
        largest.append(geometry.cobb_angles(landmarks, height)[0])
        s_shaped.append(geometry.is_s_shaped(landmarks[None])[0])
        growth.append(spine.heights[-1] / spine.heights[0])
    largest = np.array(largest)
    # AASCE training: mean 38.7°, median 36.9°, 5th percentile 11°, 95th 72°.
    assert 33 < largest.mean() < 45 and 30 < np.median(largest) < 43
    assert np.percentile(largest, 5) < 20 and np.percentile(largest, 95) > 60
    assert largest.max() <= synthetic.SyntheticConfig().max_largest_angle + 5
    assert 0.3 < np.mean(s_shaped) < 0.95
    assert min(growth) > 1.4  # L5 is much taller than T1


def test_existing_folder_is_kept_and_failure_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        synthetic.generate_dataset(out, train=1, test=0, config=SMALL)
    assert (out / "keep.txt").read_text() == "mine"

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "render_radiograph", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        synthetic.generate_dataset(out, train=2, test=0, config=SMALL, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["set"], "no staging folder left behind"


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["--out", str(out), "--train", "2", "--test", "1", "--seed", "5", "--min-height", "256", "--max-height", "300"]
    assert synthetic.main(args) == 0
    assert "wrote 2 training and 1 test images" in capsys.readouterr().out
    assert len(aasce.read_split(out, "test")) == 1
    assert synthetic.main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert synthetic.main(args + ["--overwrite"]) == 0


def test_every_stream_name_has_its_own_images():
    """The data splits keep their streams; other names (pretraining, warm-up) no longer share one."""
    first = {name: synthetic.image_rng(0, name, 0).random() for name in ("training", "test", "pretrain", "warmup")}
    assert len(set(first.values())) == 4
    assert synthetic.image_rng(0, "training", 3).random() == np.random.default_rng([0, 0, 3]).random()


def test_realistic_renderer_draws_the_same_spines_differently():
    """The renderer only draws: the spine, its size and its landmarks come first and do not
    change; the realistic radiograph differs, keeps its vertebrae brighter than the tissue
    beside them, and adds a bright abdomen below the diaphragm (the lower third brighter,
    relative to the image, than the plain renderer's)."""
    realistic = synthetic.SyntheticConfig(height_range=(300, 420), renderer="realistic")
    lifts = []
    for index in range(6):
        plain_image, plain_landmarks, _ = synthetic.make_example(1, "training", index, SMALL)
        image, landmarks, _ = synthetic.make_example(1, "training", index, realistic)
        np.testing.assert_array_equal(landmarks, plain_landmarks)
        assert image.shape == plain_image.shape and image.dtype == np.uint8
        assert np.abs(image.astype(int) - plain_image).mean() > 5
        mask = geometry.landmarks_to_mask(landmarks.astype(np.float64), *image.shape)
        near = cv2.dilate(mask, np.ones((9, 9), np.uint8)) - mask
        assert image[mask > 0].mean() > image[near > 0].mean() + 3, index
        third = image.shape[0] // 3
        lifts.append(image[-third:].mean() / image.mean() - plain_image[-third:].mean() / plain_image.mean())
    assert np.mean(lifts) > 0
    with pytest.raises(ValueError, match="'renderer' must be one of"):
        synthetic.SyntheticConfig(renderer="fancy")


def test_command_line_renderer(tmp_path):
    args = ["--train", "1", "--test", "0", "--min-height", "256", "--max-height", "300"]
    assert synthetic.main(["--out", str(tmp_path / "plain")] + args) == 0
    assert synthetic.main(["--out", str(tmp_path / "real"), "--renderer", "realistic"] + args) == 0
    (plain,) = aasce.read_split(tmp_path / "plain", "training")
    (real,) = aasce.read_split(tmp_path / "real", "training")
    np.testing.assert_array_equal(plain.landmarks, real.landmarks)
    assert not filecmp.cmp(plain.image_path, real.image_path, shallow=False)


def test_sets_of_different_seeds_never_share_a_file_name():
    """The demo's samples (seed 1) are other pictures than its evaluation set (seed 0): their
    names differ, so a report row cannot be mistaken for an evaluation image's."""
    names = {seed: {synthetic.example_name(seed, "test", index) for index in range(4)} for seed in (0, 1, 2)}
    assert names[0] == {f"synthetic-test-{index:04d} AP.jpg" for index in range(4)}  # the embedded set keeps its names
    assert not names[0] & names[1] and not names[1] & names[2]
