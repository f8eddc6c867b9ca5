"""Synthetic scoliotic AP radiographs written in the AASCE layout: the embedded data set.

Each image is drawn from a random spine: 17 vertebrae T1–L5 growing in size downward, laid
along a C- or S-shaped curve whose largest Cobb angle follows a gamma distribution fitted to
AASCE (mean 39°, sd 19°), wedged and with pedicles and spinous process shifted like an
axially rotated vertebra near the apex. Around it: transverse processes, ribs, lungs,
clavicles, pelvis, a soft-tissue gradient, an occasional side marker, then blur, contrast
changes and noise. The labels are exact: the landmarks are the drawn vertebra corners and
the angles are `geometry.cobb_angles` of the stored (uint16) landmarks.

    python -m seg4reg_tf.data.synthetic --out DIR --train N --test M --seed S

writes DIR/data/{training,test}/*.jpg and DIR/labels/{training,test}/ with .jpg.mat files
(uint16 'p2') and headerless filenames.csv, angles.csv and landmarks.csv. The output is a
pure function of the seed and sizes; each image depends only on (seed, split, index).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import shutil
import sys
import tempfile
import zlib

import cv2
import numpy as np
import scipy.io

from seg4reg_tf import cli, geometry
from seg4reg_tf.data.synthetic_render import RENDERERS, Spine, render_radiograph

SPLITS = ("training", "test")
# AASCE largest Cobb angle: mean 38.7°, sd 19.2°, 5th–95th percentile 11°–72°.
_LARGEST_ANGLE_SHAPE = 4.2
_LARGEST_ANGLE_MEAN = 39.0
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by seg4reg_tf.data.synthetic"


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator.

    Attributes:
        height_range: image heights in pixels, drawn uniformly (AASCE: 973–3755).
        aspect_range: height / width, drawn uniformly (portrait; AASCE median 2.7).
        s_curve_probability: share of spines built from two opposite curves.
        max_largest_angle: cap on the drawn largest Cobb angle, degrees.
        jpeg_quality: JPEG quality of the written images.
        renderer: "plain" (the first renderer; `make demo`'s) or "realistic" (closer to
            AASCE's radiographs, for pretraining N_S; `synthetic_render`).
    """

    height_range: tuple[int, int] = (1000, 2000)
    aspect_range: tuple[float, float] = (2.0, 3.5)
    s_curve_probability: float = 0.8
    max_largest_angle: float = 95.0
    jpeg_quality: int = 92
    renderer: str = "plain"

    def __post_init__(self) -> None:
        if self.renderer not in RENDERERS:
            raise ValueError(f"'renderer' must be one of {RENDERERS}, got {self.renderer!r}")


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of one image: independent of how many images are made.

    Each stream name has its own seed: the splits their index (as data sets were always
    drawn), any other name (pretraining, warm-up requests, benchmarks) its CRC-32.
    """
    stream = SPLITS.index(split) if split in SPLITS else zlib.crc32(split.encode("utf-8"))
    return np.random.default_rng([seed, stream, index])


def draw_image_size(rng: np.random.Generator, config: SyntheticConfig) -> tuple[int, int]:
    """Draws (height, width) in pixels."""
    height = int(rng.integers(config.height_range[0], config.height_range[1] + 1))
    width = int(round(height / rng.uniform(*config.aspect_range)))
    return height, width


def tilt_profile(rng: np.random.Generator, config: SyntheticConfig) -> tuple[np.ndarray, str]:
    """Draws the 17 vertebra tilts in degrees; their spread is the largest Cobb angle.

    The curvature along the spine is one Gaussian lobe (C curve) or two of opposite sign (S
    curve); the tilt is its integral, centred so the head stays above the pelvis, and scaled
    so that max − min equals a gamma-distributed target. A jitter of ~1° per vertebra mimics
    real vertebrae and annotation.
    """
    t = np.linspace(0.0, 1.0, 161)
    curve = "S" if rng.uniform() < config.s_curve_probability else "C"
    if curve == "C":
        apex = rng.uniform(0.35, 0.7)
        curvature = _lobe(t, apex, rng.uniform(0.1, 0.2))
        # Compensatory curves above and below keep the head over the pelvis.
        if rng.uniform() < 0.8:
            curvature -= rng.uniform(0.2, 0.6) * _lobe(t, rng.uniform(0.0, apex - 0.25), rng.uniform(0.06, 0.12))
        if rng.uniform() < 0.8:
            curvature -= rng.uniform(0.2, 0.6) * _lobe(t, rng.uniform(apex + 0.25, 1.0), rng.uniform(0.06, 0.12))
    else:
        major = rng.uniform(0.4, 1.0)
        upper = _lobe(t, rng.uniform(0.25, 0.45), rng.uniform(0.07, 0.13))
        lower = _lobe(t, rng.uniform(0.6, 0.85), rng.uniform(0.07, 0.13))
        upper, lower = (upper, -major * lower) if rng.uniform() < 0.5 else (major * upper, -lower)
        curvature = upper + lower
        # Small end curves of opposite sign, so T1 and L5 are rarely end vertebrae.
        if rng.uniform() < 0.85:
            curvature -= np.sign(upper.sum()) * rng.uniform(0.2, 0.5) * _lobe(t, rng.uniform(0.0, 0.12), 0.06)
        if rng.uniform() < 0.5:
            curvature -= np.sign(lower.sum()) * rng.uniform(0.2, 0.5) * _lobe(t, rng.uniform(0.9, 1.0), 0.06)
    curvature *= rng.choice([-1.0, 1.0])
    tilt = np.cumsum(curvature)[:: len(t) // (geometry.NUM_VERTEBRAE - 1)]
    tilt -= tilt.mean()
    target = min(
        rng.gamma(_LARGEST_ANGLE_SHAPE, _LARGEST_ANGLE_MEAN / _LARGEST_ANGLE_SHAPE),
        config.max_largest_angle,
    )
    tilt *= target / max(np.ptp(tilt), 1e-9)
    return tilt + rng.normal(0.0, 1.0, tilt.shape) + rng.uniform(-4.0, 4.0), curve


def _lobe(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


def draw_spine(rng: np.random.Generator, height: int, width: int, config: SyntheticConfig) -> Spine:
    """Draws one spine and lays its 68 landmarks into a height × width image.

    Vertebra heights grow ~1.8× from T1 to L5, widths are ~1.6–1.9× the height, discs ~25–35%
    of the height. Vertebrae near the apex are wedged (the convex side taller) with the
    mid-line kept, so wedging changes the look but not the Cobb angles. The chain is scaled
    to span 80–93% of the image height and is shrunk if a large curve would leave the image.
    """
    tilts, curve = tilt_profile(rng, config)
    k = np.arange(geometry.NUM_VERTEBRAE) / (geometry.NUM_VERTEBRAE - 1)
    heights = (1.0 + 0.8 * k**1.2) * rng.uniform(0.95, 1.05, k.shape)
    widths = heights * rng.uniform(1.6, 1.9) * (1.0 - 0.12 * k) * rng.uniform(0.96, 1.04, k.shape)
    gaps = heights * (0.25 + 0.1 * k)
    change = np.gradient(np.radians(tilts))  # tilt change per vertebra, radians
    rotation = np.clip(change / max(np.abs(change).max(), 1e-9), -1.0, 1.0) * rng.uniform(0.3, 1.0)
    wedge = widths * np.tan(rng.uniform(0.2, 0.5) * change / 2.0)

    centres, axes, mids = _chain(np.radians(tilts), heights, gaps)
    corners = _corners(centres, axes, mids, heights, widths, wedge)
    span = rng.uniform(0.80, 0.93) * height
    top = rng.uniform(0.02, 0.07) * height
    scale = span / np.ptp(corners[..., 1])
    spread = np.ptp(corners[..., 0]) * scale
    if spread > 0.85 * width:  # a very large curve: shrink rather than leave the image
        scale *= 0.85 * width / spread
    corners = corners * scale
    spread = np.ptp(corners[..., 0])
    margin = (width - spread) / 2  # >= 0.075 * width after the shrink above
    centre_x = width / 2 + rng.uniform(-0.1, 0.1) * width
    centre_x = float(np.clip(centre_x, spread / 2 + 0.3 * margin, width - spread / 2 - 0.3 * margin))
    corners[..., 0] += centre_x - (corners[..., 0].min() + corners[..., 0].max()) / 2.0
    corners[..., 1] += top - corners[..., 1].min()
    return Spine(
        landmarks=corners.reshape(geometry.NUM_LANDMARKS, 2),
        tilts=tilts,
        rotation=rotation,
        heights=heights * scale,
        widths=widths * scale,
        curve=curve,
    )


def _chain(tilts: np.ndarray, heights: np.ndarray, gaps: np.ndarray):
    """Centres (17, 2), downward axes (17, 2) and mid-line directions (17, 2) of the chain."""
    mids = np.stack([np.cos(tilts), np.sin(tilts)], axis=1)
    axes = np.stack([-np.sin(tilts), np.cos(tilts)], axis=1)
    centres = np.zeros((len(tilts), 2))
    for i in range(1, len(tilts)):
        step = axes[i - 1] + axes[i]
        step /= np.linalg.norm(step)
        centres[i] = centres[i - 1] + step * (heights[i - 1] / 2 + gaps[i - 1] + heights[i] / 2)
    return centres, axes, mids


def _corners(centres, axes, mids, heights, widths, wedge) -> np.ndarray:
    """(17, 4, 2) corners TL, TR, BL, BR; `wedge` makes the right side taller by 2×wedge."""
    half_w = (widths / 2)[:, None] * mids
    left_h = ((heights - wedge) / 2)[:, None] * axes
    right_h = ((heights + wedge) / 2)[:, None] * axes
    return np.stack(
        [
            centres - half_w - left_h,
            centres + half_w - right_h,
            centres - half_w + left_h,
            centres + half_w + right_h,
        ],
        axis=1,
    )


def make_example(seed: int, split: str, index: int, config: SyntheticConfig = SyntheticConfig()):
    """Makes one radiograph.

    Returns:
        (image (H, W) uint8, landmarks (68, 2) uint16 pixels, spine) — the stored landmarks
        are the rounded drawn corners, as AASCE stores integers.
    """
    rng = image_rng(seed, split, index)
    height, width = draw_image_size(rng, config)
    spine = draw_spine(rng, height, width, config)
    image = render_radiograph(spine, height, width, rng, config.renderer)
    upper = np.array([width - 1, height - 1])
    landmarks = np.clip(np.round(spine.landmarks), 0, upper).astype(np.uint16)
    return image, landmarks, spine


def mat_bytes(landmarks: np.ndarray) -> bytes:
    """A MATLAB 5 file holding 'p2', with a fixed header so the bytes depend only on data."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"p2": landmarks}, format="5")
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")  # scipy writes the creation time here
    return bytes(data)


def example_name(seed: int, split: str, index: int) -> str:
    """The file name of one generated image: "synthetic-test-0000 AP.jpg" for seed 0 (the
    embedded data set), "synthetic-seed1-test-0000 AP.jpg" for seed 1, so sets of different
    seeds (the demo's samples and its evaluation images) never share a name."""
    seeded = f"seed{seed}-" if seed else ""
    return f"synthetic-{seeded}{split}-{index:04d} AP.jpg"


def write_split(out: str, split: str, count: int, seed: int, config: SyntheticConfig) -> None:
    """Writes `count` images of one split into the AASCE layout under `out`."""
    image_dir = os.path.join(out, "data", split)
    label_dir = os.path.join(out, "labels", split)
    os.makedirs(image_dir)
    os.makedirs(label_dir)
    names, angle_rows, landmark_rows = [], [], []
    for index in range(count):
        image, landmarks, _ = make_example(seed, split, index, config)
        name = example_name(seed, split, index)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        if not ok:
            raise RuntimeError(f"could not encode {name}")
        with open(os.path.join(image_dir, name), "wb") as handle:
            handle.write(encoded.tobytes())
        with open(os.path.join(label_dir, name + ".mat"), "wb") as handle:
            handle.write(mat_bytes(landmarks))
        height, width = image.shape
        angles = geometry.cobb_angles(landmarks.astype(np.float64), height)
        names.append(name)
        angle_rows.append(",".join(f"{value:.5g}" for value in angles))
        normalised = np.concatenate([landmarks[:, 0] / width, landmarks[:, 1] / height])
        landmark_rows.append(",".join(f"{value:.5g}" for value in normalised))
    for file_name, rows in (
        ("filenames.csv", names),
        ("angles.csv", angle_rows),
        ("landmarks.csv", landmark_rows),
    ):
        with open(os.path.join(label_dir, file_name), "w", encoding="utf-8", newline="\n") as handle:
            handle.write("".join(row + "\n" for row in rows))


def generate_dataset(
    out: str | os.PathLike[str],
    train: int,
    test: int,
    seed: int = 0,
    config: SyntheticConfig = SyntheticConfig(),
    overwrite: bool = False,
) -> str:
    """Writes a synthetic data set in the AASCE layout, atomically.

    Everything is written into a temporary folder beside `out` and renamed into place at the
    end, so an interrupted run leaves no half-written data set and an existing one is only
    replaced (with `overwrite`) once the new one is complete.

    Args:
        out: destination folder.
        train, test: number of images per split (0 leaves the split out).
        seed: the data set is a pure function of seed, sizes and `config`.
        config: generator settings.
        overwrite: replace an existing non-empty `out`.

    Returns:
        `out` as a string.

    Raises:
        FileExistsError: `out` exists, is not empty, and `overwrite` is False.
        ValueError: negative counts or no images at all.
    """
    out = os.path.abspath(os.fspath(out))
    if train < 0 or test < 0 or train + test == 0:
        raise ValueError(f"need a positive number of images, got train={train} test={test}")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty (pass overwrite to replace it)")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    try:
        for split, count in zip(SPLITS, (train, test)):
            if count:
                write_split(staging, split, count, seed, config)
        if os.path.exists(out):
            shutil.rmtree(out) if os.path.isdir(out) else os.remove(out)
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m seg4reg_tf.data.synthetic --out DIR --train N --test M --seed S`."""
    parser = argparse.ArgumentParser(
        prog="python -m seg4reg_tf.data.synthetic",
        description="Write synthetic scoliotic AP radiographs in the AASCE layout.",
    )
    parser.add_argument("--out", required=True, help="destination folder")
    parser.add_argument("--train", type=int, default=200, help="training images (default 200)")
    parser.add_argument("--test", type=int, default=50, help="test images (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--min-height", type=int, default=SyntheticConfig.height_range[0])
    parser.add_argument("--max-height", type=int, default=SyntheticConfig.height_range[1])
    parser.add_argument("--renderer", choices=RENDERERS, default="plain",
                        help="plain (default; make demo's) or realistic (closer to AASCE)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    args = cli.parse(parser, argv)
    if not 64 <= args.min_height <= args.max_height:
        parser.error("need 64 <= --min-height <= --max-height")
    config = SyntheticConfig(height_range=(args.min_height, args.max_height), renderer=args.renderer)
    try:
        out = generate_dataset(args.out, args.train, args.test, args.seed, config, args.overwrite)
    except (FileExistsError, ValueError) as error:
        return cli.fail(error)
    print(f"wrote {args.train} training and {args.test} test images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
