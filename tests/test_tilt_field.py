"""The tilt field's per-vertebra targets (`tilt_field.vertebra_targets`): each vertebra's
centre and doubled tilt from its four corners."""

import numpy as np

from seg4reg_tf.tilt_field import vertebra_targets


def spine(tilts_degrees, height=64.0, width=32.0):
    """(68, 2) landmarks: 17 vertebrae 2 px high and 8 px wide, stacked down the middle,
    each rotated by its tilt about its centre; corners TL, TR, BL, BR."""
    points = []
    for index, tilt in enumerate(np.radians(tilts_degrees)):
        centre = np.array([width / 2, 4.0 + 3.0 * index])
        rotation = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
        for corner in ((-4, -1), (4, -1), (-4, 1), (4, 1)):
            points.append(centre + rotation @ np.array(corner, float))
    return np.array(points, "float32")


def test_targets_are_each_vertebras_centre_and_doubled_tilt():
    tilts = np.linspace(-40, 40, 17)
    targets = np.asarray(vertebra_targets(spine(tilts)[None], 64, 32))[0]
    assert targets.shape == (17, 4)
    np.testing.assert_allclose(targets[:, 0], 16 / 32, atol=1e-6)
    np.testing.assert_allclose(targets[:, 1], (4.0 + 3.0 * np.arange(17)) / 64, atol=1e-6)
    doubled = np.radians(2 * tilts)
    np.testing.assert_allclose(targets[:, 2], np.cos(doubled), atol=1e-5)
    np.testing.assert_allclose(targets[:, 3], np.sin(doubled), atol=1e-5)


def test_tilt_targets_ignore_which_side_is_stored_first_and_a_mirror_negates_the_tilt():
    landmarks = spine(np.linspace(-30, 20, 17))
    swapped = landmarks.reshape(17, 4, 2)[:, [1, 0, 3, 2]].reshape(68, 2)  # right side stored first
    mirrored = landmarks * np.array([-1.0, 1.0], "float32") + np.array([31.0, 0.0], "float32")
    original, reversed_, flipped = (np.asarray(vertebra_targets(points[None], 64, 32))[0] for points in (landmarks, swapped, mirrored))
    np.testing.assert_allclose(reversed_, original, atol=1e-6)
    np.testing.assert_allclose(flipped[:, 2], original[:, 2], atol=1e-5)
    np.testing.assert_allclose(flipped[:, 3], -original[:, 3], atol=1e-5)
