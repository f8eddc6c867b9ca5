"""Rendering a drawn spine (`Spine`, drawn by `synthetic.draw_spine`) as an AP radiograph: vertebrae with
pedicles and processes, ribs, lungs, clavicles, pelvis, a soft-tissue gradient, an
occasional side marker, then blur, contrast changes and noise (the acquisition).

Two styles (`RENDERERS`):
- "plain", the first renderer, which `make demo` and the tests use;
- "realistic", which closes the gaps the real/synthetic figure (`python -m
  seg4reg_tf.visualize --real ROOT`) showed against AASCE: bone drawn dimmer and softer;
  lungs dark and wide; a heart shadow over the lower thoracic spine; a bright abdomen with
  bowel gas, its vertebrae in low contrast; exposure (gamma, window) varying strongly; the
  body wider than the field (the thoracolumbar crop). Meant for pretraining N_S before
  fine-tuning on real radiographs; on its own it made `make demo`'s system worse than the
  mean (docs/data.md).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from seg4reg_tf import geometry

RENDERERS = ("plain", "realistic")


@dataclasses.dataclass(frozen=True)
class _Style:
    """The ranges a renderer draws from (uniform (low, high) unless named otherwise)."""

    body_width: tuple[float, float]  # soft-tissue half-width / image width
    lung_offset: tuple[float, float]  # lung centre beside T6 / image width
    lung_width: tuple[float, float]  # lung half-axis / image width
    lung_depth: tuple[float, float]  # how much the lungs darken
    rib_level: tuple[float, float]
    bone_blur: float  # blur of ribs, clavicles and pelvis / median vertebra height
    body_level: tuple[float, float]  # vertebral body brightness
    gamma: tuple[float, float]  # the exposure's gamma
    log_uniform_gamma: bool  # drawn log-uniformly (symmetric in brightening and darkening)
    offset: tuple[float, float]
    gain: tuple[float, float]
    trunk: bool  # heart shadow, bright abdomen with bowel gas, dimmed lumbar bone


_STYLES = {
    "plain": _Style(
        body_width=(0.55, 0.8), lung_offset=(0.22, 0.32), lung_width=(0.14, 0.22), lung_depth=(0.08, 0.2),
        rib_level=(0.08, 0.14), bone_blur=0.15, body_level=(0.1, 0.22),
        gamma=(0.7, 1.4), log_uniform_gamma=False, offset=(0.0, 0.1), gain=(0.75, 0.95), trunk=False,
    ),
    "realistic": _Style(
        body_width=(0.6, 1.1), lung_offset=(0.2, 0.3), lung_width=(0.16, 0.26), lung_depth=(0.15, 0.35),
        rib_level=(0.05, 0.12), bone_blur=0.2, body_level=(0.07, 0.18),
        gamma=(0.5, 2.0), log_uniform_gamma=True, offset=(0.0, 0.15), gain=(0.6, 0.95), trunk=True,
    ),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Spine:
    """One drawn spine.

    Attributes:
        landmarks: (68, 2) float64 pixels, AASCE corner order (TL, TR, BL, BR).
        tilts: (17,) mid-line tilt of each vertebra, degrees (positive: right side lower).
        rotation: (17,) axial-rotation-like shift in [-1, 1] (pedicles toward the convexity).
        heights: (17,) vertebra heights in pixels.
        widths: (17,) vertebra widths in pixels.
        curve: "C" or "S", how the tilt profile was built.
    """

    landmarks: np.ndarray
    tilts: np.ndarray
    rotation: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    curve: str


def render_radiograph(
    spine: Spine, height: int, width: int, rng: np.random.Generator, renderer: str = "plain"
) -> np.ndarray:
    """Draws an AP radiograph around `spine`: (height, width) uint8, bone bright.

    `renderer` is one of `RENDERERS`; "plain" draws exactly what the first renderer drew.
    """
    if renderer not in _STYLES:
        raise ValueError(f"renderer must be one of {RENDERERS}, got {renderer!r}")
    style = _STYLES[renderer]
    corners = spine.landmarks.reshape(geometry.NUM_VERTEBRAE, 4, 2)
    centres = corners.mean(axis=1)
    scale = float(np.median(spine.heights))
    canvas = _soft_tissue(height, width, centres, rng, style)
    canvas += _lungs(height, width, centres, spine, rng, style)
    abdomen = None
    if style.trunk:
        canvas += _heart(height, width, centres, spine, rng)
        abdomen = _abdomen(height, width, centres, rng)
        canvas += rng.uniform(0.06, 0.2) * abdomen + _bowel_gas(height, width, centres, abdomen, rng)
    bone = np.zeros((height, width), np.float32)
    _draw_ribs(bone, centres, spine, rng, style)
    _draw_clavicles(bone, centres, width, scale, rng)
    _draw_pelvis(bone, corners, width, scale, rng)
    bone = cv2.GaussianBlur(bone, (0, 0), style.bone_blur * scale)
    _draw_vertebrae(bone, corners, spine, rng, style)
    if abdomen is not None:  # below the diaphragm thick soft tissue leaves bone little contrast
        bone *= 1.0 - rng.uniform(0.1, 0.45) * abdomen
    canvas += bone
    if rng.uniform() < 0.3:
        _draw_marker(canvas, rng)
    return _acquire(canvas, scale, rng, style)


def _soft_tissue(height, width, centres, rng, style: _Style) -> np.ndarray:
    """Body thicker in the middle and toward the abdomen: a smooth grey background."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    body_x = np.median(centres[:, 0]) + rng.uniform(-0.1, 0.1) * width
    across = np.clip(1.0 - ((x - body_x) / (rng.uniform(*style.body_width) * width)) ** 2, 0.0, 1.0)
    level = rng.uniform(0.18, 0.32)
    return level + rng.uniform(0.1, 0.22) * across + rng.uniform(0.0, 0.12) * y / height


def _lungs(height, width, centres, spine, rng, style: _Style) -> np.ndarray:
    """Two dark lung fields beside the thoracic spine, drawn small and blurred."""
    factor = 8
    small = np.zeros((height // factor + 1, width // factor + 1), np.float32)
    top, bottom = centres[0, 1] - spine.heights[0], centres[rng.integers(9, 12), 1]
    for side in (-1, 1):
        cx = centres[5, 0] + side * rng.uniform(*style.lung_offset) * width
        cy = (top + bottom) / 2
        axes = (rng.uniform(*style.lung_width) * width, max((bottom - top) / 2, 1.0))
        cv2.ellipse(
            small,
            (int(cx / factor), int(cy / factor)),
            (int(axes[0] / factor) + 1, int(axes[1] / factor) + 1),
            rng.uniform(-8, 8),
            0,
            360,
            1.0,
            -1,
        )
    small = cv2.GaussianBlur(small, (0, 0), max(width / factor * 0.05, 1.0))
    return -rng.uniform(*style.lung_depth) * cv2.resize(small, (width, height))


def _heart(height, width, centres, spine, rng) -> np.ndarray:
    """The heart shadow: a bright blurred ellipse over the lower thoracic spine, mostly on
    the image's right (the patient's left in an AP view)."""
    factor = 8
    small = np.zeros((height // factor + 1, width // factor + 1), np.float32)
    side = 1 if rng.uniform() < 0.85 else -1
    top, bottom = centres[rng.integers(4, 6), 1], centres[rng.integers(9, 11), 1]
    cx = centres[8, 0] + side * rng.uniform(0.05, 0.15) * width
    axes = (rng.uniform(0.15, 0.25) * width, max((bottom - top) / 2, 1.0))
    cv2.ellipse(
        small, (int(cx / factor), int((top + bottom) / 2 / factor)),
        (int(axes[0] / factor) + 1, int(axes[1] / factor) + 1), side * rng.uniform(10, 35), 0, 360, 1.0, -1,
    )
    small = cv2.GaussianBlur(small, (0, 0), max(width / factor * 0.06, 1.0))
    return rng.uniform(0.08, 0.2) * cv2.resize(small, (width, height))


def _abdomen(height, width, centres, rng) -> np.ndarray:
    """Where the abdomen is, (height, width) in [0, 1]: 1 below the diaphragm, whose domes
    sit near T10–T12, with a soft edge (computed at 1/8 size: it is smooth)."""
    factor = 8
    y, x = np.mgrid[0 : height // factor + 1, 0 : width // factor + 1].astype(np.float32) * factor
    level = centres[rng.integers(9, 12), 1]
    dome = rng.uniform(0.02, 0.06) * height * np.cos(np.pi * (x - centres[9, 0]) / width) ** 2
    edge = max(rng.uniform(0.01, 0.03) * height, 1.0)
    small = (1.0 / (1.0 + np.exp(-(y - level + dome) / edge))).astype(np.float32)
    return cv2.resize(small, (width, height))


def _bowel_gas(height, width, centres, abdomen, rng) -> np.ndarray:
    """Dark blurred pockets of bowel gas scattered over the abdomen (up to 8), drawn at 1/4 size."""
    factor = 4
    gas = np.zeros((height // factor + 1, width // factor + 1), np.float32)
    low = centres[11, 1]
    for _ in range(rng.integers(0, 9)):
        centre = (int(rng.uniform(0.1, 0.9) * width / factor), int(rng.uniform(low, height) / factor))
        axes = (max(int(rng.uniform(0.03, 0.1) * width / factor), 1), max(int(rng.uniform(0.01, 0.04) * height / factor), 1))
        cv2.ellipse(gas, centre, axes, rng.uniform(0, 180), 0, 360, rng.uniform(0.05, 0.15), -1)
    gas = cv2.GaussianBlur(gas, (0, 0), max(0.01 * width / factor, 1.0))
    return -cv2.resize(gas, (width, height)) * abdomen


def _draw_ribs(bone, centres, spine, rng, style: _Style) -> None:
    """Posterior ribs: 12 pairs of bright arcs leaving the thoracic vertebrae."""
    reach = rng.uniform(0.3, 0.45) * bone.shape[1]
    for k in range(12):
        for side in (-1, 1):
            drop = rng.uniform(0.8, 1.4) * spine.heights[k] * (2.0 + k / 6)
            u = np.linspace(0.0, 1.0, 16)
            x = centres[k, 0] + side * (spine.widths[k] * 0.45 + u * reach)
            y = centres[k, 1] - 0.3 * spine.heights[k] * np.sin(np.pi * u) + drop * u**2
            points = np.round(np.stack([x, y], 1) * 16).astype(np.int32)
            thick = max(int(0.35 * spine.heights[k]), 1)
            cv2.polylines(bone, [points], False, rng.uniform(*style.rib_level), thick, cv2.LINE_AA, 4)


def _draw_clavicles(bone, centres, width, scale, rng) -> None:
    """Two bright bands across the top, partly off the image when T1 sits high."""
    for side in (-1, 1):
        start = centres[0] + np.array([side * 0.6 * scale, -1.2 * scale])
        end = start + np.array([side * rng.uniform(0.4, 0.6) * width, -rng.uniform(0.5, 2.0) * scale])
        points = np.round(np.stack([start, (start + end) / 2 + [0, -0.4 * scale], end]) * 16)
        cv2.polylines(bone, [points.astype(np.int32)], False, 0.12, max(int(0.6 * scale), 1), cv2.LINE_AA, 4)


def _draw_pelvis(bone, corners, width, scale, rng) -> None:
    """Sacrum below L5 and the iliac wings either side, mostly below the image edge."""
    l5 = corners[-1]
    bottom = (l5[2] + l5[3]) / 2
    axis = bottom - (l5[0] + l5[1]) / 2
    axis /= np.linalg.norm(axis)
    apex = bottom + axis * rng.uniform(3.0, 4.0) * scale
    sacrum = np.stack([l5[2] + axis * 0.3 * scale, l5[3] + axis * 0.3 * scale, apex])
    cv2.fillConvexPoly(bone, np.round(sacrum * 16).astype(np.int32), 0.12, cv2.LINE_AA, 4)
    for side in (-1, 1):
        centre = bottom + np.array([side * rng.uniform(0.22, 0.3) * width, rng.uniform(1.5, 3.0) * scale])
        axes = (int(rng.uniform(0.15, 0.22) * width), int(rng.uniform(2.0, 3.0) * scale))
        tilt = side * rng.uniform(10, 30)
        cv2.ellipse(bone, tuple(int(v) for v in centre), axes, tilt, 0, 360, 0.08, -1, cv2.LINE_AA)
        cv2.ellipse(bone, tuple(int(v) for v in centre), axes, tilt, 180, 360, 0.16, max(int(0.3 * scale), 1), cv2.LINE_AA)


def _draw_vertebrae(bone, corners, spine, rng, style: _Style) -> None:
    """Vertebral bodies (the labelled polygons) with cortex, pedicles and processes."""
    body_level = rng.uniform(*style.body_level)
    for k, quad in enumerate(corners):
        outline = quad[list(geometry.OUTLINE_ORDER)]
        centre = quad.mean(axis=0)
        mid = (quad[1] + quad[3] - quad[0] - quad[2]) / 2
        mid /= np.linalg.norm(mid)
        down = np.array([-mid[1], mid[0]])
        w, h, turn = spine.widths[k], spine.heights[k], spine.rotation[k]
        # Transverse processes stick out sideways from the upper half (outside the label).
        for side in (-1, 1):
            root = centre + side * mid * 0.45 * w - down * 0.15 * h
            tip = root + side * mid * rng.uniform(0.2, 0.35) * w
            cv2.line(bone, _fixed(root), _fixed(tip), body_level * 0.6, max(int(0.22 * h), 1), cv2.LINE_AA, 4)
        cv2.fillConvexPoly(bone, _fixed(outline), body_level, cv2.LINE_AA, 4)
        cv2.polylines(bone, [_fixed(outline)], True, body_level * 0.6, max(int(0.08 * h), 1), cv2.LINE_AA, 4)
        # Axial rotation moves pedicles and the spinous process toward one side.
        for side in (-1, 1):
            pedicle = centre + mid * (side * 0.3 + 0.15 * turn) * w - down * 0.2 * h
            size = (max(int(0.09 * w * (1 - 0.4 * side * turn)), 1), max(int(0.16 * h), 1))
            cv2.ellipse(bone, _point(pedicle), size, 0, 0, 360, body_level * 0.7, max(int(0.05 * h), 1), cv2.LINE_AA)
        spinous = centre - mid * 0.2 * turn * w + down * 0.25 * h
        cv2.ellipse(bone, _point(spinous), (max(int(0.06 * w), 1), max(int(0.22 * h), 1)), 0, 0, 360, body_level * 0.4, -1, cv2.LINE_AA)


def _fixed(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates → OpenCV fixed point with 4 fractional bits."""
    return np.round(np.asarray(points) * 16).astype(np.int32)


def _point(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0])), int(round(point[1]))


def _draw_marker(canvas, rng) -> None:
    """A bright side marker letter in a corner, as radiographers place them."""
    height, width = canvas.shape
    size = width / 300
    x = int(rng.uniform(0.05, 0.2) * width) if rng.uniform() < 0.5 else int(rng.uniform(0.75, 0.85) * width)
    y = int(rng.uniform(0.03, 0.1) * height + 20 * size)
    layer = np.zeros(canvas.shape, np.uint8)  # putText draws on 8-bit images only
    cv2.putText(layer, str(rng.choice(["R", "L"])), (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, 255, max(int(2 * size), 1))
    canvas += layer.astype(np.float32) * (0.9 / 255.0)


def _acquire(canvas, scale, rng, style: _Style) -> np.ndarray:
    """Detector effects: blur, mottle, exposure (a random window and gamma), noise; returns uint8."""
    image = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.05, 0.2) * scale)
    height, width = image.shape
    mottle = cv2.resize(rng.normal(0, 1, (8, 4)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    image = image + rng.uniform(0.0, 0.04) * mottle
    low, high = np.percentile(image, [rng.uniform(0.5, 3), rng.uniform(97, 99.8)])
    image = np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0) ** _gamma(rng, style)
    image = rng.uniform(*style.offset) + rng.uniform(*style.gain) * image
    image += rng.normal(0.0, rng.uniform(0.01, 0.04), image.shape) * np.sqrt(image + 0.05)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _gamma(rng, style: _Style) -> float:
    """The exposure's gamma, drawn in `style.gamma` (one draw either way)."""
    if style.log_uniform_gamma:
        return float(np.exp(rng.uniform(*np.log(style.gamma))))
    return float(rng.uniform(*style.gamma))
