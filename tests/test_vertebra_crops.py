"""Rotated vertebra crops (seg4reg_tf/vertebra_crops.py): against SciPy's bilinear sampling,
and on drawn tilted bodies, which a crop turned by their tilt shows level."""

import math

import cv2
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from seg4reg_tf.vertebra_crops import crop_vertebrae, true_frames

SCALE, SIZE = 3, 32


def tilted_body(tilt_degrees: float, centre=(40.0, 60.0), half_width=12.0, half_height=6.0):
    """A bright tilted rectangle on a (360, 240) fine image (a model frame of 120 × 80 at
    scale 3) and its 4 corners (TL, TR, BL, BR) in model-frame pixels."""
    theta = math.radians(tilt_degrees)
    across = np.array([math.cos(theta), math.sin(theta)])
    down = np.array([-math.sin(theta), math.cos(theta)])
    c = np.array(centre)
    corners = np.stack([c - half_width * across - half_height * down, c + half_width * across - half_height * down,
                        c - half_width * across + half_height * down, c + half_width * across + half_height * down])
    image = np.zeros((360, 240), np.float32)
    fine = (corners + 0.5) * SCALE - 0.5
    cv2.fillConvexPoly(image, np.round(fine[[0, 1, 3, 2]] * 16).astype(np.int32), 1.0, lineType=cv2.LINE_AA, shift=4)
    return image, corners.astype(np.float32)


def principal_angle(crop: np.ndarray) -> float:
    """Degrees: the direction of a crop's intensity-weighted principal axis (x right, y down)."""
    rows, columns = np.mgrid[: crop.shape[0], : crop.shape[1]]
    weights = crop / crop.sum()
    mx, my = (weights * columns).sum(), (weights * rows).sum()
    cxx = (weights * (columns - mx) ** 2).sum()
    cyy = (weights * (rows - my) ** 2).sum()
    cxy = (weights * (columns - mx) * (rows - my)).sum()
    return math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy))


def test_crops_equal_scipy_bilinear_sampling():
    rng = np.random.default_rng(0)
    images = rng.random((2, 90, 60, 1)).astype(np.float32)
    centre = np.array([[10.0, 12.0], [15.5, 20.25], [1.0, 29.0]], np.float32)  # the last one runs off the edge
    phi = np.array([0.3, -0.7, 1.2], np.float32)
    side = np.array([8.0, 11.0, 6.0], np.float32)
    index = np.array([0, 1, 1], np.int32)
    crops = crop_vertebrae(tf.constant(images), tf.constant(index), tf.constant(centre), tf.constant(phi), tf.constant(side), SIZE, SCALE).numpy()
    steps = (np.arange(SIZE) + 0.5) / SIZE - 0.5
    for k in range(3):
        d = np.array([math.cos(phi[k]), math.sin(phi[k])])
        n = np.array([-math.sin(phi[k]), math.cos(phi[k])])
        points = centre[k] + steps[None, :, None] * side[k] * d + steps[:, None, None] * side[k] * n
        fine = (points + 0.5) * SCALE - 0.5
        expected = ndimage.map_coordinates(images[index[k], ..., 0], [fine[..., 1], fine[..., 0]], order=1, mode="nearest")
        np.testing.assert_allclose(crops[k, ..., 0], expected, atol=1e-5)


@pytest.mark.parametrize("tilt", [-17.0, -4.0, 0.0, 9.0, 23.0])
def test_a_crop_turned_by_the_tilt_shows_the_body_level(tilt):
    image, corners = tilted_body(tilt)
    frames = true_frames(tf.constant(corners[None].repeat(17, axis=0).reshape(1, 68, 2)))
    assert frames["tilt"].numpy()[0, 0] == pytest.approx(math.radians(tilt), abs=1e-5)
    assert frames["half_width"].numpy()[0, 0] == pytest.approx(12.0, abs=1e-4)
    images = tf.constant(image[None, ..., None])
    centre = frames["centre"][:, 0]
    side = tf.constant([2.0 * 12.0 * 1.3])
    level = crop_vertebrae(images, tf.constant([0]), centre, frames["tilt"][:, 0], side, 64, SCALE).numpy()[0, ..., 0]
    upright = crop_vertebrae(images, tf.constant([0]), centre, tf.constant([0.0]), side, 64, SCALE).numpy()[0, ..., 0]
    assert principal_angle(level) == pytest.approx(0.0, abs=0.5)
    if tilt:
        assert principal_angle(upright) == pytest.approx(tilt, abs=0.75)
    # the body sits in the middle of its crop: its mass centre within half a crop pixel
    rows, columns = np.mgrid[:64, :64]
    assert (level * columns).sum() / level.sum() == pytest.approx(31.5, abs=0.5)
    assert (level * rows).sum() / level.sum() == pytest.approx(31.5, abs=0.5)
