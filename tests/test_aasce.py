"""The AASCE reader on the real split (when available) and on every kind of bad input."""

import os
import shutil

import cv2
import numpy as np
import pytest
import scipy.io

from seg4reg_tf import geometry
from seg4reg_tf.data import aasce


def test_real_split_reads_481_records_and_reproduces_the_official_angles(aasce_root):
    records = aasce.read_split(aasce_root, "training")
    assert len(records) == 481
    assert len({record.name for record in records}) == 481
    landmarks = np.stack([record.landmarks for record in records])
    assert landmarks.dtype == np.float64
    heights = np.array([record.height for record in records])
    official = np.stack([record.angles for record in records])
    computed = geometry.cobb_angles(landmarks, heights)
    assert np.abs(computed - official).max() < 0.01
    # A name with spaces and names of another pattern survive (a header-aware CSV reader would
    # also have eaten the first row).
    assert records[0].name == "sunhl-1th-02-Jan-2017-162 A AP.jpg"
    assert any("coronal" in record.name for record in records)
    assert official.max() > 150  # training image 480's annotation outlier is kept


def _interior_points(quad):
    """Points well inside a quadrilateral: 60% of the way from its centroid to each corner."""
    centre = quad.mean(axis=0)
    return np.vstack([centre, centre + 0.6 * (quad - centre)])


@pytest.mark.slow
def test_real_masks_cover_all_17_vertebrae_and_nothing_else(aasce_root):
    rng = np.random.default_rng(0)
    for record in aasce.read_split(aasce_root, "training"):
        mask = geometry.landmarks_to_mask(record.landmarks, record.height, record.width)
        quads = geometry.vertebra_outlines(record.landmarks)
        for k, quad in enumerate(quads):
            x, y = np.round(_interior_points(quad)).astype(int).T
            inside = (x >= 0) & (x < record.width) & (y >= 0) & (y < record.height)
            assert mask[y[inside], x[inside]].all(), f"{record.name}: vertebra {k} not covered"
        # Every sampled spine pixel lies inside (or within a pixel of) some vertebra's hull.
        # Hulls, because about 11 annotations break the corner order.
        hulls = [cv2.convexHull(quad.astype(np.float32)) for quad in quads]
        ys, xs = np.nonzero(mask)
        for i in rng.choice(len(xs), size=100):
            point = (float(xs[i]), float(ys[i]))
            distance = max(cv2.pointPolygonTest(hull, point, True) for hull in hulls)
            assert distance >= -1.5, f"{record.name}: mask pixel {point} outside every vertebra"


@pytest.fixture
def copy_root(synthetic_root, tmp_path):
    """A writable copy of the small synthetic set, to be damaged by a test."""
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    return root


def _labels(root):
    return root / "labels" / "training"


def _first_name(root):
    return (_labels(root) / "filenames.csv").read_text().splitlines()[0]


def test_synthetic_copy_reads(copy_root):
    assert len(aasce.read_split(copy_root, "training")) == 6
    assert len(aasce.read_split(copy_root, "test")) == 2


def test_missing_image_is_named(copy_root):
    name = _first_name(copy_root)
    os.remove(copy_root / "data" / "training" / name)
    with pytest.raises(FileNotFoundError, match="image file not found: .*" + name):
        aasce.read_split(copy_root)


def test_missing_mat_is_named(copy_root):
    name = _first_name(copy_root)
    os.remove(_labels(copy_root) / (name + ".mat"))
    with pytest.raises(FileNotFoundError, match="landmark file not found: .*" + name + ".mat"):
        aasce.read_split(copy_root)


@pytest.mark.parametrize("csv_name", ["angles.csv", "landmarks.csv", "filenames.csv"])
def test_row_count_mismatch_names_the_csv(copy_root, csv_name):
    path = _labels(copy_root) / csv_name
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    expected = "angles.csv" if csv_name == "filenames.csv" else csv_name
    with pytest.raises(ValueError, match=f"{expected}: \\d+ rows, but filenames.csv"):
        aasce.read_split(copy_root)


def test_malformed_angle_row_is_named(copy_root):
    path = _labels(copy_root) / "angles.csv"
    lines = path.read_text().splitlines()
    lines[2] = "12.5,abc,3"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="angles.csv: line 3: not numbers"):
        aasce.read_split(copy_root)
    lines[2] = "12.5,3"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="angles.csv: line 3: expected 3 columns, got 2"):
        aasce.read_split(copy_root)


def test_duplicate_name_is_refused(copy_root):
    path = _labels(copy_root) / "filenames.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="listed twice"):
        aasce.read_split(copy_root)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[: len(data) // 2], "truncated JPEG"),
        (lambda data: b"", "empty image file"),
        (lambda data: b"this is not an image at all", "not a JPEG or PNG"),
        (lambda data: data[:2] + b"\x00" * 40, "corrupt JPEG header"),
    ],
)
def test_unreadable_image_is_named(copy_root, damage, message):
    path = copy_root / "data" / "training" / _first_name(copy_root)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=f"{_first_name(copy_root)}: {message}"):
        aasce.read_split(copy_root)


@pytest.mark.parametrize(
    "contents, message",
    [
        (None, "not a readable MATLAB file"),
        ({"p3": np.zeros((68, 2), np.uint16)}, "no 'p2'"),
        ({"p2": np.zeros((34, 2), np.uint16)}, r"expected shape \(68, 2\)"),
        ({"p2": np.zeros((68, 2), np.uint16)}, "vertebra T1 .*zero-length mid-line"),
    ],
)
def test_bad_mat_is_named(copy_root, contents, message):
    path = _labels(copy_root) / (_first_name(copy_root) + ".mat")
    if contents is None:
        path.write_bytes(b"garbage" * 20)
    else:
        scipy.io.savemat(path, contents)
    with pytest.raises(ValueError, match=message):
        aasce.read_split(copy_root)
    with pytest.raises(ValueError, match=str(path).replace("(", r"\(").replace(")", r"\)")):
        aasce.read_split(copy_root)


def test_missing_folders_are_named(tmp_path, copy_root):
    with pytest.raises(FileNotFoundError, match="AASCE root folder not found"):
        aasce.read_split(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="split folder not found: .*validation"):
        aasce.read_split(copy_root, "validation")
