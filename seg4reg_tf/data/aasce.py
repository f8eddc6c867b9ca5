"""Reads a split of the AASCE 2019 layout (SpineWeb dataset 16) into validated records.

Layout (see ../shared/cobb_algorithm.md):

    <root>/data/<split>/<name>.jpg
    <root>/labels/<split>/<name>.jpg.mat      key 'p2': 68×2 uint16 (x, y) pixels
    <root>/labels/<split>/filenames.csv       one file name per row, no header
    <root>/labels/<split>/angles.csv          N×3 degrees, no header, same row order
    <root>/labels/<split>/landmarks.csv       N×136 normalised x then y, no header (optional)

The synthetic generator (`seg4reg_tf.data.synthetic`) writes the same layout, so one reader
serves real and synthetic data. Every problem is an error naming the file: an image is
never silently dropped.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np
import scipy.io

from seg4reg_tf import geometry
from seg4reg_tf.data.admission import image_size

ANGLE_COLUMNS = ("largest", "second", "third")


@dataclasses.dataclass(frozen=True, eq=False)
class Record:
    """One radiograph and its labels.

    Attributes:
        name: file name as listed in filenames.csv (may contain spaces).
        image_path: full path of the image file.
        landmarks: (68, 2) float64 (x, y) pixels of the original image.
        angles: (3,) float64 degrees: the AASCE columns (largest curve, then two others).
        height, width: original image size in pixels.
    """

    name: str
    image_path: str
    landmarks: np.ndarray
    angles: np.ndarray
    height: int
    width: int


def split_paths(root: str | os.PathLike[str], split: str) -> tuple[str, str]:
    """Returns (image folder, label folder) of `split`, checking both exist."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"AASCE root folder not found: {root}")
    folders = (os.path.join(root, "data", split), os.path.join(root, "labels", split))
    for folder in folders:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"AASCE split folder not found: {folder}")
    return folders


def read_split(root: str | os.PathLike[str], split: str = "training") -> list[Record]:
    """Reads and validates every record of one split, in filenames.csv order.

    Args:
        root: folder holding `data/` and `labels/`.
        split: "training" or "test" (or any folder name in that layout).

    Returns:
        One `Record` per row of filenames.csv.

    Raises:
        FileNotFoundError: a folder, CSV, image or .mat file is missing.
        ValueError: CSVs disagree in row count, a row is malformed, a name repeats, a .mat
            file lacks a valid 68×2 'p2', landmarks are invalid, or an image is not a
            complete JPEG/PNG. The message names the file.
    """
    image_dir, label_dir = split_paths(root, split)
    names = [row[0] for row in _read_csv(os.path.join(label_dir, "filenames.csv"), 1)]
    angles_path = os.path.join(label_dir, "angles.csv")
    angle_rows = _read_csv(angles_path, 3)
    _check_rows(angles_path, len(angle_rows), len(names))
    landmarks_path = os.path.join(label_dir, "landmarks.csv")
    if os.path.exists(landmarks_path):
        _check_rows(landmarks_path, len(_read_csv(landmarks_path, 136)), len(names))
    seen = set()
    for line, name in enumerate(names, start=1):
        if name in seen:
            raise ValueError(f"{label_dir}/filenames.csv: line {line}: '{name}' listed twice")
        seen.add(name)

    records = []
    for line, (name, angle_row) in enumerate(zip(names, angle_rows), start=1):
        angles = _parse_floats(angles_path, line, angle_row)
        image_path = os.path.join(image_dir, name)
        landmarks = read_landmarks(os.path.join(label_dir, name + ".mat"))
        height, width = image_size(image_path)
        records.append(Record(name, image_path, landmarks, angles, height, width))
    return records


def read_landmarks(mat_path: str) -> np.ndarray:
    """Reads the 'p2' landmarks of one .jpg.mat file as (68, 2) float64 pixels.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: unreadable file, no 'p2', wrong shape, or invalid landmarks.
    """
    if not os.path.isfile(mat_path):
        raise FileNotFoundError(f"landmark file not found: {mat_path}")
    try:
        contents = scipy.io.loadmat(mat_path)
    except Exception as error:  # scipy raises several unrelated types for bad files
        raise ValueError(f"{mat_path}: not a readable MATLAB file ({error})") from None
    if "p2" not in contents:
        raise ValueError(f"{mat_path}: no 'p2' landmark array (keys: {sorted(contents)})")
    # uint16 in AASCE: cast before any difference is taken, or it wraps around.
    return geometry.validate_landmarks(contents["p2"], context=mat_path)[0]


def _read_csv(path: str, columns: int) -> list[list[str]]:
    """Reads a headerless CSV, skipping blank lines, checking every row's column count."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    for line, row in enumerate(rows, start=1):
        if len(row) != columns:
            raise ValueError(f"{path}: line {line}: expected {columns} columns, got {len(row)}")
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _check_rows(path: str, count: int, expected: int) -> None:
    if count != expected:
        raise ValueError(
            f"{path}: {count} rows, but filenames.csv beside it lists {expected} images"
        )


def _parse_floats(path: str, line: int, row: list[str]) -> np.ndarray:
    try:
        values = np.array([float(cell) for cell in row], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: line {line}: not numbers: {row}") from None
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{path}: line {line}: non-finite value: {row}")
    return values
