"""The clinical reading on drawn spines whose curves are known by construction.

A spine is drawn from the tilt of each of its 17 vertebrae (`harness.drawn_spine`). So the
end vertebrae are the given turning points, a curve's Cobb angle is the difference of
their tilts, and the spine bends toward the image's right where the tilt rises from one end
vertebra to the next (image axes, y down).
"""

from __future__ import annotations

import numpy as np
import pytest

from seg4reg_tf import clinical_reading
from seg4reg_tf.geometry import cobb_angles
from tests.harness import drawn_spine

# pivots, then the expected curves (region, levels, apex, Cobb, convexity on the standard
# display) and the provisional Lenke type. Each curve's tilt is linear from one end vertebra
# to the other, so turned by the mean of its end tilts the curve is mirror-symmetric about
# its middle: the apex (the farthest from the chord) is the middle position, a vertebra or
# a disc.
CASES = {
    "single main thoracic (1)": (
        {"T1": -12, "T5": -15, "T12": 15, "L5": 12},
        [("MT", "T5–T12", "T8–T9", 30.0, "left")],
        1,
    ),
    "double thoracic (2)": (
        {"T1": 16, "T6": -14, "T12": 26, "L5": 22},
        [("PT", "T1–T6", "T3–T4", 30.0, "right"), ("MT", "T6–T12", "T9", 40.0, "left")],
        2,
    ),
    "double major (3)": (
        {"T1": -14, "T5": -20, "T11": 20, "L4": -20, "L5": -15},
        [("MT", "T5–T11", "T8", 40.0, "left"), ("TL/L", "T11–L4", "L1–L2", 40.0, "right")],
        3,
    ),
    "triple major (4)": (
        {"T1": 15, "T6": -15, "T12": 25, "L5": -15},
        [("PT", "T1–T6", "T3–T4", 30.0, "right"), ("MT", "T6–T12", "T9", 40.0, "left"),
         ("TL/L", "T12–L5", "L2–L3", 40.0, "right")],
        4,
    ),
    "thoracolumbar/lumbar (5)": (
        {"T1": 12, "T11": 17, "L4": -17, "L5": -14},
        [("TL/L", "T11–L4", "L1–L2", 34.0, "right")],
        5,
    ),
    "thoracolumbar/lumbar and structural main thoracic (6)": (
        {"T1": -10, "T4": -13, "T10": 13, "L4": -20, "L5": -18},
        [("MT", "T4–T10", "T7", 26.0, "left"), ("TL/L", "T10–L4", "L1", 33.0, "right")],
        6,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_the_drawn_curves_are_read(name):
    pivots, expected, lenke = CASES[name]
    reading = clinical_reading.read_spine(drawn_spine(pivots))
    got = [(c["region"], f"{c['upper_end_vertebra']}–{c['lower_end_vertebra']}", c["apex"], c["cobb_deg"], c["convexity"]) for c in reading["curves"]]
    assert [g[:3] + (g[4],) for g in got] == [e[:3] + (e[4],) for e in expected]
    np.testing.assert_allclose([g[3] for g in got], [e[3] for e in expected], atol=1e-6)
    assert reading["lenke_type_provisional"] == lenke
    largest = max(expected, key=lambda e: (e[3], e[0] == "MT"))
    assert reading["major_curve"] == largest[0]
    assert [c["major"] for c in reading["curves"]].count(True) == 1
    assert reading["convexity_convention"] == clinical_reading.STANDARD_DISPLAY


def test_the_major_curve_is_the_aasce_largest_angle():
    """On a spine with two curves, the major curve's Cobb angle is the AASCE column 1."""
    landmarks = drawn_spine(CASES["thoracolumbar/lumbar and structural main thoracic (6)"][0])
    reading = clinical_reading.read_spine(landmarks)
    major = next(c for c in reading["curves"] if c["major"])
    assert major["cobb_deg"] == pytest.approx(cobb_angles(landmarks[None], 2000.0)[0, 0], abs=1e-4)


def test_a_straight_spine_has_no_curve_and_no_lenke_type():
    reading = clinical_reading.read_spine(drawn_spine({"T1": 3, "T8": -4, "L5": 2}))
    assert reading["curves"] == [] and reading["major_curve"] is None
    assert reading["lenke_type_provisional"] is None
    assert "no curve of 10 deg" in reading["lenke_note"]


def test_a_wiggle_below_the_threshold_does_not_end_a_curve():
    """A 6° reversal inside a 36° curve leaves one curve with the same end vertebrae."""
    reading = clinical_reading.read_spine(drawn_spine({"T1": -15, "T4": -18, "T8": -2, "T9": -8, "L1": 18, "L5": 16}))
    assert [(c["upper_end_vertebra"], c["lower_end_vertebra"]) for c in reading["curves"]] == [("T4", "L1")]
    assert reading["curves"][0]["cobb_deg"] == pytest.approx(36.0)


def test_a_major_proximal_curve_is_not_a_lenke_pattern():
    reading = clinical_reading.read_spine(drawn_spine({"T1": 20, "T6": -20, "T12": -5, "L5": -8}))
    assert reading["major_curve"] == "PT" and reading["lenke_type_provisional"] is None
    assert "proximal thoracic" in reading["lenke_note"]


def test_the_dicom_orientation_decides_the_side():
    landmarks = drawn_spine(CASES["single main thoracic (1)"][0])
    standard = clinical_reading.read_spine(landmarks, ("L", "F"))
    mirrored = clinical_reading.read_spine(landmarks, ("R", "F"))
    assert standard["curves"][0]["convexity"] == "left" and mirrored["curves"][0]["convexity"] == "right"
    assert "PatientOrientation" in standard["convexity_convention"]
    for absent in (None, (), ("A", "F")):  # no attribute, or a lateral view's: the standard display, said so
        assert clinical_reading.read_spine(landmarks, absent)["convexity_convention"] == clinical_reading.STANDARD_DISPLAY


def test_a_mirrored_spine_is_convex_to_the_other_side():
    landmarks = drawn_spine(CASES["double major (3)"][0])
    mirrored = landmarks.reshape(17, 4, 2)[:, [1, 0, 3, 2]].copy()
    mirrored[..., 0] = 600.0 - mirrored[..., 0]
    sides = [c["convexity"] for c in clinical_reading.read_spine(landmarks)["curves"]]
    mirrored_sides = [c["convexity"] for c in clinical_reading.read_spine(mirrored.reshape(68, 2))["curves"]]
    assert mirrored_sides == [{"left": "right", "right": "left"}[side] for side in sides]


@pytest.mark.parametrize(("apex", "region"), [(0, "PT"), (2, "PT"), (4, "PT"), (4.5, "PT"), (5, "MT"), (10.5, "MT"), (11, "TL/L"), (15, "TL/L"), (16, "TL/L")])
def test_regions_by_apex(apex, region):
    assert clinical_reading.region_of(apex) == region


def test_severity_per_curve_uses_the_stated_bands():
    reading = clinical_reading.read_spine(drawn_spine(CASES["double thoracic (2)"][0]))
    assert [c["severity"] for c in reading["curves"]] == ["moderate", "moderate"]
    assert "10-25 mild" in reading["severity_bands"]
