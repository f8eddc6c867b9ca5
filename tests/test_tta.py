"""Test-time augmentation: the views, the warped images and the mean and spread over views
(seg4reg_tf/serving/tta.py)."""

import numpy as np
import tensorflow as tf

from seg4reg_tf.config import PredictConfig
from seg4reg_tf.serving import tta


def test_tta_views():
    assert tta.views(PredictConfig(tta=False)) == [(1.0, 1.0)]
    views = tta.views(PredictConfig(tta=True, tta_scales=(0.9, 1.1)))
    assert views[0] == (1.0, 1.0) and len(views) == 6 and len(set(views)) == 6
    assert tta.views(PredictConfig(tta=True, tta_scales=(1.0, 0.8))) == [(1.0, 1.0), (1.0, 0.8), (-1.0, 1.0), (-1.0, 0.8)]


def test_tta_augment_flips_and_zooms_about_the_centre():
    image = np.random.default_rng(0).random((16, 8, 1)).astype(np.float32)
    views = tta.augment(tf.constant(image), [(1.0, 1.0), (-1.0, 1.0), (1.0, 0.5)]).numpy()
    np.testing.assert_array_equal(views[0], image)
    np.testing.assert_allclose(views[1], image[:, ::-1], atol=1e-5)
    # Zoomed out by 2: the border is empty, the centre pixel pair holds the image's mean
    # neighbourhood, and nothing is brighter than the image.
    assert np.all(views[2][:3] == 0) and np.all(views[2][:, :1] == 0)
    assert views[2].max() <= image.max() + 1e-6


def test_tta_aggregate():
    mean, spread = tta.aggregate([[10.0, 5.0, 1.0], [14.0, 5.0, 3.0], [12.0, 5.0, 2.0]])
    np.testing.assert_allclose(mean, [12.0, 5.0, 2.0])
    np.testing.assert_allclose(spread, [4.0, 0.0, 2.0])
