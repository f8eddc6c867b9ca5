"""Prediction overlays: the X-ray with N_S's spine outline, the vertebrae, the curves' end
plates and the angles on it (N_R's CAM on request).

The mask and CAM live in the model frame (the letterboxed input); they are mapped back onto
the original radiograph with the letterbox transform the export reports, so the overlay is
drawn at the radiograph's own aspect ratio (downscaled for display).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from seg4reg_tf import files
from seg4reg_tf.geometry import OUTLINE_ORDER, VERTEBRA_NAMES

MASK_COLOUR = (60, 220, 60)  # BGR green: the predicted spine outline
ENDPLATE_COLOUR = (0, 215, 255)  # BGR amber: the end plates of each curve
VERTEBRA_COLOUR = (255, 200, 0)  # BGR sky blue: the vertebrae the vertebra route fitted
CAM_OPACITY = 0.35


def model_to_display(letterbox, display_scale: float) -> np.ndarray:
    """(2, 3) affine map from display pixels to model-frame pixels.

    A display pixel centre u = (x + ½)·d − ½ of the original pixel x (display scale d) lies at
    m = (x + ½)·s + t − ½ in the model frame (letterbox scale s, offset t), so
    m = (u + ½)·s/d + t − ½.

    Args:
        letterbox: (scale, offset_y, offset_x) of the export's `letterbox` output.
        display_scale: display pixels per original pixel.
    """
    scale, offset_y, offset_x = (float(value) for value in letterbox)
    ratio = scale / display_scale
    return np.array(
        [[ratio, 0.0, 0.5 * ratio + offset_x - 0.5], [0.0, ratio, 0.5 * ratio + offset_y - 0.5]], np.float64
    )


def display_scale_for(height: int, max_height: int = 1024, min_height: int = 512) -> float:
    """Display pixels per original pixel: the radiograph drawn `max_height` rows high at
    most, `min_height` at least (small images enlarged so text stays readable)."""
    return min(max_height, max(min_height, height)) / height


def to_display_points(points, display_scale: float) -> np.ndarray:
    """Original-pixel points (..., 2) → display pixels (pixel centres kept aligned)."""
    return (np.asarray(points, np.float64) + 0.5) * display_scale - 0.5


def to_display(image, letterbox, display_scale: float, size: tuple[int, int]) -> np.ndarray:
    """A model-frame map (h, w) → the display grid (size = (columns, rows)), bilinear;
    display_scale 1 with the original's size gives the original's own pixel grid."""
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(np.asarray(image, np.float32), model_to_display(letterbox, display_scale), size, flags=flags)


def render(pixels, mask, cam, letterbox, lines: list[str], max_height: int = 1024, min_height: int = 512, landmarks=None, curves=(),
           vertebrae=None) -> np.ndarray:
    """Draws one overlay.

    Args:
        pixels: (H, W) float in [0, 1], the original radiograph.
        mask: (h, w) spine probabilities in the model frame.
        cam: None (the default of predict: N_R's CAM is a few coarse bands that tell a reader
            little), or (h/32, w/32) class activation map in [0, 1] in the model frame, drawn
            as a heat map inside the spine's outline only (`predict --cam`).
        letterbox: (scale, offset_y, offset_x) mapping the original into the model frame.
        lines: text written on a band above the image (ASCII: OpenCV's fonts have no "°").
        max_height, min_height: the radiograph is drawn this many rows high at most / at
            least (small images are enlarged so the caption stays readable).
        landmarks: None, or (68, 2) corners of the answering route's 17 vertebrae, original
            pixels, on which `curves` are drawn.
        curves: ((upper, lower) end vertebra indices, label) per curve, e.g. ((5, 11),
            "MT 40.0 deg"): drawn the way a clinician marks a Cobb measurement (see
            `draw_cobb_lines`); a curve whose end vertebrae repeat one drawn, or are unknown
            (−1), is skipped.
        vertebrae: None, or (68, 2) corners of the 17 vertebrae the vertebra route fitted,
            original pixels: each drawn as its outline.

    Returns:
        (rows, columns, 3) uint8 BGR image.
    """
    height, width = pixels.shape
    display_scale = display_scale_for(height, max_height, min_height)
    size = (max(1, round(width * display_scale)), max(1, round(height * display_scale)))
    gray = cv2.resize(np.asarray(pixels, np.float32), size, interpolation=cv2.INTER_AREA)
    canvas = cv2.cvtColor(np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    mask_h, mask_w = np.asarray(mask).shape
    mask_display = to_display(mask, letterbox, display_scale, size)
    if cam is not None:
        cam_full = cv2.resize(np.asarray(cam, np.float32), (mask_w, mask_h), interpolation=cv2.INTER_LINEAR)
        cam_display = to_display(cam_full, letterbox, display_scale, size)
        heat = cv2.applyColorMap(np.round(np.clip(cam_display, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
        tinted = cv2.addWeighted(canvas, 1.0 - CAM_OPACITY, heat, CAM_OPACITY, 0.0)
        canvas = np.where((mask_display > 0.5)[..., None], tinted, canvas)
    contours, _ = cv2.findContours((mask_display > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, MASK_COLOUR, max(1, size[0] // 300))
    if vertebrae is not None:
        draw_vertebrae(canvas, vertebrae, display_scale)
    drawn = set()
    for ends, label in curves if landmarks is not None else ():
        key = tuple(int(v) for v in ends)
        if key not in drawn and min(key) >= 0 and key[0] != key[1]:
            draw_cobb_lines(canvas, landmarks, ends, label, display_scale)
            drawn.add(key)
    return _with_caption(canvas, lines)


def draw_vertebrae(canvas: np.ndarray, landmarks, display_scale: float) -> None:
    """Draws the outlines of 17 vertebrae ((68, 2) corners, original pixels; TL, TR, BL, BR
    each) on the display image, in place."""
    corners = to_display_points(np.asarray(landmarks, np.float64).reshape(17, 4, 2), display_scale)
    outlines = [np.round(quad[list(OUTLINE_ORDER)]).astype(np.int32) for quad in corners]
    cv2.polylines(canvas, outlines, True, VERTEBRA_COLOUR, max(1, canvas.shape[1] // 400), cv2.LINE_AA)


def draw_cobb_lines(canvas: np.ndarray, landmarks, ends, label: str, display_scale: float) -> None:
    """Draws the upper end plate of the upper end vertebra and the lower end plate of the
    lower one, each extended to both sides, the curve's label and the end vertebrae's
    names, in place.

    Args:
        canvas: (rows, columns, 3) uint8 BGR display image.
        landmarks: (68, 2) corners in original pixels (TL, TR, BL, BR per vertebra).
        ends: (upper, lower) vertebra indices 0–16.
        label: ASCII text written beside the lower line, e.g. "MT 40.0 deg".
        display_scale: display pixels per original pixel.
    """
    corners = to_display_points(np.asarray(landmarks, np.float64).reshape(17, 4, 2), display_scale)
    upper, lower = (int(index) for index in ends)
    thickness = max(1, canvas.shape[1] // 250)
    reach = 0.35 * canvas.shape[1]
    for start, end in ((corners[upper, 0], corners[upper, 1]), (corners[lower, 2], corners[lower, 3])):
        direction = (end - start) / max(np.linalg.norm(end - start), 1e-9)
        middle = (start + end) / 2
        a, b = (middle + direction * inside_reach(middle, side * direction, canvas.shape, reach) * side for side in (-1.0, 1.0))
        cv2.line(canvas, tuple(int(round(v)) for v in a), tuple(int(round(v)) for v in b), ENDPLATE_COLOUR, thickness, cv2.LINE_AA)
    # the label left of the lower end vertebra (its name goes on the right)
    scale = 0.4 + thickness * 0.15
    (text_width, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    text_at = corners[lower, 2] - np.array([text_width + 6.0 * thickness, 4.0 * thickness])
    x = int(min(max(text_at[0], 0), canvas.shape[1] - text_width))
    y = int(min(max(text_at[1], 14), canvas.shape[0] - 2))
    outlined_text(canvas, label, (x, y), scale, thickness)
    for index, corner in ((upper, corners[upper, 1]), (lower, corners[lower, 3])):  # the end vertebrae's names, on their right
        at = (int(min(corner[0] + 4 * thickness, canvas.shape[1] - 30)), int(min(max(corner[1], 12), canvas.shape[0] - 2)))
        outlined_text(canvas, VERTEBRA_NAMES[index], at, 0.35 + thickness * 0.1, thickness)


def inside_reach(point, direction, shape, reach: float) -> float:
    """How far (≤ `reach` pixels) one can go from `point` along the unit `direction` and stay
    on an image of `shape` (rows, columns, ...): end-plate lines end at the image's edge."""
    limits = []
    for axis, size in ((0, shape[1] - 1), (1, shape[0] - 1)):
        if direction[axis] > 1e-9:
            limits.append((size - point[axis]) / direction[axis])
        elif direction[axis] < -1e-9:
            limits.append(-point[axis] / direction[axis])
    return float(max(0.0, min([reach, *limits])))


def outlined_text(canvas: np.ndarray, text: str, at: tuple[int, int], scale: float, thickness: int) -> None:
    """Amber text with a black outline, readable on any background, in place."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, text, at, font, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, at, font, scale, ENDPLATE_COLOUR, thickness, cv2.LINE_AA)


def _with_caption(canvas: np.ndarray, lines: list[str]) -> np.ndarray:
    """Adds a black band with `lines` of white text above `canvas`, the font sized so the
    longest line fits its width."""
    width = canvas.shape[1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    widest = max(cv2.getTextSize(text, font, 1.0, 2)[0][0] for text in lines)
    font_scale = min(1.0, (width - 12) / widest)
    thickness = 2 if font_scale > 0.6 else 1
    line_height = int(30 * font_scale) + 6
    band = np.zeros((line_height * len(lines) + 6, width, 3), np.uint8)
    for row, text in enumerate(lines):
        baseline = line_height * (row + 1)
        cv2.putText(band, text, (6, baseline), font, font_scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return np.concatenate([band, canvas], axis=0)


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Writes a (rows, columns, 3) uint8 BGR image as PNG, atomically."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"{path}: PNG encoding failed")
    files.atomic_write(path, encoded.tobytes())
