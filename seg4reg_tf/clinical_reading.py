"""The clinical reading of 17 vertebrae: curves named by region, their end and apex
vertebrae, the side of their convexity, the major curve and a provisional Lenke type.

The three AASCE columns (`geometry.cobb_angles`) are what the challenge scores; they are
not the curves a clinician names. This module reads the curves from the same 68 corners
(T1–L5, TL, TR, BL, BR each) with the SRS definitions:

- **Tilt** of a vertebra: the angle of its mid-line (left-side midpoint → right-side
  midpoint, as the AASCE angles use it), degrees, image axes (y down).
- **Curves**: the tilt along the spine rises and falls; a curve runs between two
  consecutive turning points of the tilt, its **end vertebrae** (the most tilted at each
  end). Turning points are found with a reversal threshold of `MIN_CURVE_DEGREES` (10°,
  the SRS definition of scoliosis): a swing smaller than that is not a curve, and a wiggle
  smaller than that inside a curve does not end it. The curve's **Cobb angle** is the
  difference of its end vertebrae's tilts.
- **Apex**: the vertebra or disc (between two vertebrae) whose centre lies farthest from
  the straight line joining the end vertebrae's centres (the chord, not a vertical line:
  T1–L5 show no sacrum for a central sacral vertical line, and the chord does not move
  when the patient leans or the film is turned).
- **Region** by the apex (Lenke/SRS): proximal thoracic (PT) T3–T5, main thoracic (MT) T6
  to the T11–T12 disc, thoracolumbar/lumbar (TL/L) T12 to L4. The positions those ranges
  leave out are given to the nearest region: T1, T2 and the T5–T6 disc to PT, the L4–L5
  disc and L5 to TL/L.
- **Major curve**: the largest Cobb angle (MT when MT and TL/L tie, as Lenke does).
- **Convexity**: the side of the patient toward which the apex lies. A DICOM's
  PatientOrientation says which patient side the image's columns run toward; without it
  (JPEG, PNG, a DICOM lacking it) the standard display is assumed: the patient's right on
  the viewer's left. The reading says which convention it used.
- **Provisional Lenke curve type (1–6)** from the standing AP film alone. Lenke's
  structural criteria need side-bending films (and the sagittal profile), which are not
  available: here the major curve and every minor curve of at least `STRUCTURAL_DEGREES`
  (25°) count as structural. No lumbar or sagittal modifier is given; the AP film cannot
  give them. Patterns outside Lenke's six (e.g. a PT major curve) give no type.
- **Severity** per curve with `curve.severity`'s bands (< 10° none, 10–25° mild,
  25–40° moderate, > 40° severe).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from seg4reg_tf.curve import severity
from seg4reg_tf.geometry import NUM_VERTEBRAE, VERTEBRA_NAMES, midline_vectors

MIN_CURVE_DEGREES = 10.0
STRUCTURAL_DEGREES = 25.0
REGIONS = ("PT", "MT", "TL/L")
REGION_NAMES = {"PT": "proximal thoracic", "MT": "main thoracic", "TL/L": "thoracolumbar/lumbar"}
# apex positions (0 = T1 … 16 = L5, i + 0.5 = the disc below vertebra i) where MT begins
# (T6) and TL/L begins (T12)
MT_FROM, TLL_FROM = 5.0, 11.0
STANDARD_DISPLAY = "assumed the standard display: the patient's right on the viewer's left"
SEVERITY_NOTE = "severity bands: < 10 deg none, 10-25 mild, 25-40 moderate, > 40 severe"
LENKE_NOTE = (
    "provisional Lenke type from the standing AP film alone: without bending films every minor "
    f"curve of {STRUCTURAL_DEGREES:g} deg or more counts as structural; no lumbar or sagittal modifier"
)


@dataclasses.dataclass(frozen=True)
class Curve:
    """One curve.

    Attributes:
        upper, lower: end vertebra indices (0 = T1 … 16 = L5), upper < lower.
        apex: the apex position, a vertebra index, or i + 0.5 for the disc below vertebra i.
        cobb_degrees: the difference of the end vertebrae's tilts, degrees.
        region: "PT", "MT" or "TL/L".
        convexity: "right" or "left", the patient's side toward which the apex lies.
        major: the largest curve of the spine.
    """
    upper: int
    lower: int
    apex: float
    cobb_degrees: float
    region: str
    convexity: str
    major: bool = False

    @property
    def levels(self) -> str:
        """The end vertebrae, e.g. "T6–T12"."""
        return f"{VERTEBRA_NAMES[self.upper]}–{VERTEBRA_NAMES[self.lower]}"

    @property
    def apex_name(self) -> str:
        """The apex vertebra ("T9") or disc ("T9–T10")."""
        return position_name(self.apex)

    @property
    def severity(self) -> str:
        """The curve's severity band (`curve.severity`)."""
        return severity(self.cobb_degrees)

    def as_dict(self) -> dict:
        """The curve as a JSON-ready dict."""
        return {
            "region": self.region, "region_name": REGION_NAMES[self.region], "cobb_deg": round(float(self.cobb_degrees), 4),
            "upper_end_vertebra": VERTEBRA_NAMES[self.upper], "lower_end_vertebra": VERTEBRA_NAMES[self.lower],
            "apex": self.apex_name, "convexity": self.convexity, "severity": self.severity, "major": self.major,
        }  # fmt: skip


def position_name(position: float) -> str:
    """0 → "T1", 8 → "T9", 8.5 → "T9–T10" (the disc below T9)."""
    index = int(np.floor(position))
    if position == index:
        return VERTEBRA_NAMES[index]
    return f"{VERTEBRA_NAMES[index]}–{VERTEBRA_NAMES[index + 1]}"


def region_of(apex: float) -> str:
    """The region ("PT", "MT", "TL/L") of an apex position (see the module docstring)."""
    if apex < MT_FROM:
        return "PT"
    return "MT" if apex < TLL_FROM else "TL/L"


def vertebra_tilts(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) corners in pixels → (17,) mid-line tilts in degrees (image axes, y down:
    positive when the mid-line falls to the right)."""
    vectors = midline_vectors(np.asarray(landmarks, np.float64)[None])[0]
    return np.degrees(np.arctan2(vectors[:, 1], vectors[:, 0]))


def turning_points(tilts: np.ndarray, threshold: float = MIN_CURVE_DEGREES) -> list[int]:
    """Indices of the alternating extremes of a tilt sequence whose consecutive swings are
    each at least `threshold` degrees (a zigzag with that reversal threshold): (N,) → the
    sorted indices, none or at least two."""
    pivots: list[int] = []
    high = low = 0
    trend, extreme = 0, 0
    for i in range(1, len(tilts)):
        if trend == 0:
            high = i if tilts[i] > tilts[high] else high
            low = i if tilts[i] < tilts[low] else low
            if tilts[high] - tilts[low] >= threshold:
                trend = 1 if high > low else -1
                pivots.append(min(high, low))
                extreme = max(high, low)
        elif trend * (tilts[i] - tilts[extreme]) > 0:
            extreme = i
        elif trend * (tilts[extreme] - tilts[i]) >= threshold:
            pivots.append(extreme)
            trend, extreme = -trend, i
    if trend != 0:
        pivots.append(extreme)
    return pivots


def _centres(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) → (33, 2): vertebra centres at even positions 2i, disc centres (lower
    endplate centre of vertebra i and upper endplate centre of i + 1) at 2i + 1."""
    quads = np.asarray(landmarks, np.float64).reshape(NUM_VERTEBRAE, 4, 2)
    upper_plate, lower_plate = quads[:, :2].mean(axis=1), quads[:, 2:].mean(axis=1)
    points = np.empty((2 * NUM_VERTEBRAE - 1, 2))
    points[0::2] = (upper_plate + lower_plate) / 2.0
    points[1::2] = (lower_plate[:-1] + upper_plate[1:]) / 2.0
    return points


def _apex(centres: np.ndarray, upper: int, lower: int) -> tuple[float, float]:
    """The apex position between two end vertebrae and its signed distance from their chord
    (pixels, positive toward the image's right)."""
    start, end = centres[2 * upper], centres[2 * lower]
    chord = (end - start) / max(np.linalg.norm(end - start), 1e-9)
    normal = np.array([chord[1], -chord[0]])  # the chord turned toward +x for a downward chord
    inside = centres[2 * upper : 2 * lower + 1]
    distance = (inside - start) @ normal
    best = int(np.argmax(np.abs(distance)))
    return upper + best / 2.0, float(distance[best])


def image_right_side(patient_orientation) -> tuple[str, str]:
    """Which side of the patient the image's right is, and the convention used.

    Args:
        patient_orientation: DICOM PatientOrientation (0020,0020), e.g. ("L", "F"): the
            patient direction of the rows (toward increasing column) and of the columns;
            None or empty when the file has none.

    Returns:
        ("left" or "right", a sentence naming the convention).
    """
    values = [str(value).upper() for value in (patient_orientation or ())]
    if len(values) == 2:
        row = values[0]
        if "L" in row and "R" not in row:
            return "left", "from the DICOM PatientOrientation (rows run toward the patient's left)"
        if "R" in row and "L" not in row:
            return "right", "from the DICOM PatientOrientation (rows run toward the patient's right)"
    return "left", STANDARD_DISPLAY


def find_curves(landmarks: np.ndarray, image_right: str = "left", threshold: float = MIN_CURVE_DEGREES) -> list[Curve]:
    """The curves of one spine.

    Args:
        landmarks: (68, 2) corners of T1–L5 in pixels (any frame with y down).
        image_right: the patient's side the image's right is ("left" on the standard display).
        threshold: the smallest curve in degrees.

    Returns:
        The curves from top to bottom, the major one marked.
    """
    tilts = vertebra_tilts(landmarks)
    centres = _centres(landmarks)
    other = {"left": "right", "right": "left"}[image_right]
    curves = []
    pivots = turning_points(tilts, threshold)
    for upper, lower in zip(pivots[:-1], pivots[1:]):
        apex, distance = _apex(centres, upper, lower)
        side = image_right if distance > 0 else other
        # to a millionth of a degree, so float round-off cannot move a curve across a severity band
        cobb = round(abs(float(tilts[lower] - tilts[upper])), 6)
        curves.append(Curve(upper, lower, apex, cobb, region_of(apex), side))
    if curves:
        # the largest; MT before TL/L (and PT) on a tie
        rank = {"MT": 0, "TL/L": 1, "PT": 2}
        major = min(range(len(curves)), key=lambda i: (-curves[i].cobb_degrees, rank[curves[i].region]))
        curves[major] = dataclasses.replace(curves[major], major=True)
    return curves


def lenke_type(curves: list[Curve]) -> tuple[int | None, str]:
    """The provisional Lenke curve type (see the module docstring).

    Returns:
        (type 1–6, or None; a short reason when None, else "").
    """
    if not curves:
        return None, f"no curve of {MIN_CURVE_DEGREES:g} deg or more"
    major = next(curve for curve in curves if curve.major)
    structural = {region: any(c.region == region and (c.major or c.cobb_degrees >= STRUCTURAL_DEGREES) for c in curves) for region in REGIONS}
    pt, mt, tll = structural["PT"], structural["MT"], structural["TL/L"]
    if major.region == "MT":
        return {(False, False): 1, (True, False): 2, (False, True): 3, (True, True): 4}[(pt, tll)], ""
    if major.region == "TL/L":
        found = {(False, False): 5, (False, True): 6, (True, True): 4}.get((pt, mt))
        return (found, "") if found else (None, "structural PT curve with a TL/L major and no structural MT curve: not a Lenke pattern")
    return None, "the major curve is proximal thoracic: not a Lenke pattern"


def read_spine(landmarks: np.ndarray, patient_orientation=None) -> dict:
    """The clinical reading of one spine, JSON-ready.

    Args:
        landmarks: (68, 2) corners of T1–L5, original pixels.
        patient_orientation: the DICOM PatientOrientation, or None (see `image_right_side`).

    Returns:
        {"curves": [Curve.as_dict()...], "major_curve": region or None, "lenke_type_provisional":
        1–6 or None, "lenke_note": str, "convexity_convention": str, "severity_bands": str}.
    """
    image_right, convention = image_right_side(patient_orientation)
    curves = find_curves(landmarks, image_right)
    lenke, reason = lenke_type(curves)
    return {
        "curves": [curve.as_dict() for curve in curves],
        "major_curve": next((curve.region for curve in curves if curve.major), None),
        "lenke_type_provisional": lenke,
        "lenke_note": LENKE_NOTE + (f"; no type: {reason}" if reason else ""),
        "convexity_convention": convention,
        "severity_bands": SEVERITY_NOTE,
    }
