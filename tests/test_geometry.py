"""Cobb angles and masks on constructed spines whose answers are worked out by hand here."""

import numpy as np
import pytest

from seg4reg_tf import geometry

WIDTH, HEIGHT, PITCH = 40.0, 20.0, 30.0


def rectangle_spine(tilts_degrees, xs=None, top=50.0):
    """Landmarks of 17 rectangles W×H, vertebra k centred at (xs[k], top + k·PITCH), its
    mid-line tilted by tilts_degrees[k] (positive: right side lower). Corner order
    TL, TR, BL, BR as in AASCE."""
    tilts = np.radians(np.asarray(tilts_degrees, dtype=np.float64))
    xs = np.full(17, 100.0) if xs is None else np.asarray(xs, dtype=np.float64)
    points = []
    for k in range(17):
        mid = np.array([np.cos(tilts[k]), np.sin(tilts[k])])
        down = np.array([-np.sin(tilts[k]), np.cos(tilts[k])])
        centre = np.array([xs[k], top + k * PITCH])
        for vertical, horizontal in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            points.append(centre + horizontal * WIDTH / 2 * mid + vertical * HEIGHT / 2 * down)
    return np.array(points)


def test_straight_spine_has_zero_angles():
    angles = geometry.cobb_angles(rectangle_spine(np.zeros(17)), 1000)
    np.testing.assert_allclose(angles, [0.0, 0.0, 0.0], atol=1e-6)


def test_single_tilted_block_both_s_branches():
    # Vertebra 5 tilted 10°, all others level, spine vertical: x_0 == x_N-1 -> "S".
    # Largest = 10; u = 0 (first column holding 10), l = 5.
    tilts = np.zeros(17)
    tilts[5] = 10.0
    landmarks = rectangle_spine(tilts)
    assert geometry.is_s_shaped(landmarks[None])[0]
    # Tall image: y(c[1]) + y(c[11]) < H -> col2 = max_{j<=0} A[0, j] = 0,
    # col3 = max_{j>=5} A[5, j] = 10.
    np.testing.assert_allclose(geometry.cobb_angles(landmarks, 5000), [10, 0, 10], atol=1e-5)
    # Short image: col2 = 0 with m = 0, col3 = max_{j<=0} A[0, j] = 0.
    np.testing.assert_allclose(geometry.cobb_angles(landmarks, 100), [10, 0, 0], atol=1e-5)


def c_curve():
    # Tilt rises to 10° at T3, falls to -20° at L1 (k=12), then eases.
    tilts = [5, 8, 10, 7, 4, 1, -2, -5, -8, -11, -14, -17, -20, -19, -18, -16, -15]
    # Positions integrate the tilt so the spine bends one way only.
    xs = 100 - PITCH * np.cumsum(np.tan(np.radians(tilts)))
    return rectangle_spine(tilts, xs)


def test_c_curve():
    landmarks = c_curve()
    assert not geometry.is_s_shaped(landmarks[None])[0]
    # Largest = 10 - (-20) = 30 between T3 (u=2) and L1 (l=12); not S:
    # col2 = A[0, u] = |5 - 10| = 5, col3 = A[16, l] = |-15 - (-20)| = 5.
    np.testing.assert_allclose(geometry.cobb_angles(landmarks, 1000), [30, 5, 5], atol=1e-5)


def s_curve():
    tilts = [0, 10, 20, 15, 5, -5, -15, -10, 0, 10, 20, 25, 20, 10, 0, -5, -10]
    xs = 100 - PITCH * np.cumsum(np.tan(np.radians(tilts)))
    return rectangle_spine(tilts, xs)


def test_s_curve_end_vertebrae_in_upper_half_branch():
    landmarks = s_curve()
    assert geometry.is_s_shaped(landmarks[None])[0]
    # Largest = 25 - (-15) = 40, u = 6, l = 11. Tall image -> step 8:
    # col2 = max_{j<=6} |-15 - t_j| = 35 (j=2), col3 = max_{j>=11} |25 - t_j| = 35 (j=16).
    np.testing.assert_allclose(geometry.cobb_angles(landmarks, 10_000), [40, 35, 35], atol=1e-5)


def test_s_curve_otherwise_branch():
    landmarks = s_curve()
    # y(c[13]) + y(c[23]) is far above H = 100 -> step 9: col2 = 35 with m = 2,
    # col3 = max_{j<=2} |20 - t_j| = 20 (j=0).
    np.testing.assert_allclose(geometry.cobb_angles(landmarks, 100), [40, 35, 20], atol=1e-5)


def test_height_test_uses_lower_endplates_of_end_vertebrae():
    # u = 6, l = 11. Lower endplate centres: y = 50 + 6·30 + 10·cos 15° = 239.659 and
    # 50 + 11·30 + 10·cos 25° = 389.063, sum 628.72 (upper endplates: 591.28).
    # H = 610 lies between: the lower-endplate sum is not < H -> step 9.
    np.testing.assert_allclose(geometry.cobb_angles(s_curve(), 610), [40, 35, 20], atol=1e-5)
    np.testing.assert_allclose(geometry.cobb_angles(s_curve(), 629), [40, 35, 35], atol=1e-5)


def bow(shift_first=0.0):
    # Level end vertebrae centred at x = 100 (so x_0 == x_N-1 exactly), bowed in between.
    tilts = [0, 8, 10, 8, 6, 4, 2, 0, -2, -4, -6, -8, -10, -8, -6, -3, 0]
    xs = 100 + 30 * np.sin(np.pi * np.arange(17) / 16)
    xs[0], xs[16] = 100 + shift_first, 100
    return rectangle_spine(tilts, xs)


def test_vertical_end_points_count_as_s_shaped():
    # Largest = 20 (u = 2, l = 12). With x_0 == x_N-1 the organisers' code divides by
    # zero and takes the S branch: short image -> col2 = 10 with m = 0, col3 = A[0, 0] = 0.
    landmarks = bow()
    assert geometry.is_s_shaped(landmarks[None])[0]
    np.testing.assert_allclose(geometry.cobb_angles(landmarks, 100), [20, 10, 0], atol=1e-5)
    # Moving the first vertebra 1 px makes the same bow an ordinary C:
    # col2 = A[0, 2] = 10, col3 = A[16, 12] = 10.
    shifted = bow(shift_first=1.0)
    assert not geometry.is_s_shaped(shifted[None])[0]
    np.testing.assert_allclose(geometry.cobb_angles(shifted, 100), [20, 10, 10], atol=1e-5)


def test_angles_above_ninety_degrees_are_not_clipped():
    tilts = np.zeros(17)
    tilts[16] = 120.0
    angles = geometry.cobb_angles(rectangle_spine(tilts), 1000)
    assert angles[0] == pytest.approx(120.0, abs=1e-5)


def test_batch_equals_one_by_one_and_accepts_uint16():
    spines = [c_curve(), s_curve(), bow(), bow(1.0)]
    heights = np.array([1000, 100, 100, 5000])
    batch = geometry.cobb_angles(np.stack(spines), heights)
    assert batch.shape == (4, 3)
    for spine, height, row in zip(spines, heights, batch):
        np.testing.assert_array_equal(geometry.cobb_angles(spine, height), row)
    # Integer landmarks stored as uint16 (AASCE) must give the float64 answer.
    rounded = np.round(s_curve())
    np.testing.assert_array_equal(
        geometry.cobb_angles(rounded.astype(np.uint16), 100), geometry.cobb_angles(rounded, 100)
    )


def test_invalid_landmarks_name_the_vertebra():
    with pytest.raises(ValueError, match=r"shape \(68, 2\)"):
        geometry.cobb_angles(np.zeros((67, 2)), 100)
    nan = rectangle_spine(np.zeros(17))
    nan[4 * 3 + 2, 1] = np.nan
    with pytest.raises(ValueError, match="vertebra T4 .*NaN"):
        geometry.cobb_angles(nan, 100)
    flat = rectangle_spine(np.zeros(17))
    flat[4 * 13 + 1] = flat[4 * 13]  # TR on TL and BR on BL: no left-to-right extent
    flat[4 * 13 + 3] = flat[4 * 13 + 2]
    with pytest.raises(ValueError, match="vertebra L2 .*zero-length mid-line"):
        geometry.cobb_angles(flat, 100)
    with pytest.raises(ValueError, match="image_height"):
        geometry.cobb_angles(rectangle_spine(np.zeros(17)), 0)


def test_mask_fills_each_vertebra_and_nothing_else():
    landmarks = rectangle_spine(np.zeros(17))
    mask = geometry.landmarks_to_mask(landmarks, 620, 200)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    # 17 rectangles 40×20 = 13,600 px; the rasteriser may add up to the boundary pixels.
    assert 17 * WIDTH * HEIGHT <= mask.sum() <= 17 * (WIDTH + 1) * (HEIGHT + 1)
    for k in range(17):
        y = int(50 + k * PITCH)
        assert mask[y, 100] == 1 and mask[y, 100 - 19] == 1 and mask[y, 100 + 19] == 1
        assert mask[y + 15, 100] == 0  # the disc between vertebrae
    assert mask[:, :79].sum() == 0 and mask[:, 122:].sum() == 0


def test_mask_follows_transformed_landmarks_and_ignores_corner_order():
    landmarks = s_curve()
    mask = geometry.landmarks_to_mask(landmarks, 620, 300)
    flipped = landmarks.copy()
    flipped[:, 0] = 299 - flipped[:, 0]
    flipped_mask = geometry.landmarks_to_mask(flipped, 620, 300)
    agreement = (flipped_mask & mask[:, ::-1]).sum() / (flipped_mask | mask[:, ::-1]).sum()
    assert agreement > 0.97
    shuffled = landmarks.reshape(17, 4, 2)[:, [3, 0, 2, 1]].reshape(68, 2)
    np.testing.assert_array_equal(geometry.landmarks_to_mask(shuffled, 620, 300), mask)
