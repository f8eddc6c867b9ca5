"""The mask's centre line, curve type (C / S / straight) and severity bands
(seg4reg_tf/curve.py)."""

import numpy as np
import pytest

from seg4reg_tf import curve


@pytest.mark.parametrize(
    "degrees, band",
    [(0.0, "none"), (9.99, "none"), (10.0, "mild"), (24.99, "mild"), (25.0, "moderate"),
     (40.0, "moderate"), (40.01, "severe"), (95.0, "severe")],
)  # fmt: skip
def test_severity_bands(degrees, band):
    assert curve.severity(degrees) == band


def test_severity_refuses_nan():
    with pytest.raises(ValueError, match="finite"):
        curve.severity(float("nan"))


def spine_mask(offset, height=128, width=64, half_width=4, top=10, bottom=118) -> np.ndarray:
    """A binary mask drawn along column(row) = width / 2 + offset(t), t = 0..1 over the spine."""
    mask = np.zeros((height, width), np.float32)
    for row in range(top, bottom):
        centre = width / 2 + offset((row - top) / (bottom - top - 1))
        mask[row, int(round(centre - half_width)) : int(round(centre + half_width)) + 1] = 1.0
    return mask


def test_centre_line_of_a_straight_bar_is_its_middle_column():
    mask = np.zeros((20, 10), np.float32)
    mask[3:15, 2:5] = 1.0  # columns 2, 3, 4 → centre 3
    mask[0, 9] = 1.0  # a speck that is not the largest component
    rows, columns = curve.centre_line(mask)
    np.testing.assert_array_equal(rows, np.arange(3, 15))
    np.testing.assert_allclose(columns, 3.0)


@pytest.mark.parametrize(
    "offset, expected",
    [
        (lambda t: 12 * np.sin(np.pi * t), "C"),
        (lambda t: -12 * np.sin(np.pi * t), "C"),
        (lambda t: 10 * np.sin(2 * np.pi * t), "S"),
        (lambda t: 0.0 * t, "straight"),
        (lambda t: 20 * (t - 0.5), "straight"),  # tilted but not bent
    ],
    ids=["C-right", "C-left", "S", "vertical", "tilted"],
)
def test_curve_type_on_constructed_masks(offset, expected):
    mask = spine_mask(offset)
    assert curve.curve_type(mask) == expected
    # Soft probabilities and a false-positive blob away from the spine change nothing.
    noisy = mask * 0.9
    noisy[2:6, 2:6] = 0.8
    assert curve.curve_type(noisy) == expected


def test_curve_type_of_an_empty_mask_is_unknown():
    assert curve.curve_type(np.zeros((64, 32))) == "unknown"
    assert curve.curve_type(spine_mask(lambda t: 0 * t, top=10, bottom=14)) == "unknown"
