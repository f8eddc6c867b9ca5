"""The organisers' algorithm in TF ops (seg4reg_tf/cobb_graph.py) against NumPy
(geometry.cobb_angles, the algorithm of ../shared/cobb_algorithm.md)."""

import numpy as np
import tensorflow as tf

from seg4reg_tf import cobb_graph, geometry
from tests.harness import drawn_spines


def synthetic_landmarks(count: int, seed: int = 3):
    """(count, 68, 2) drawn spines in original pixels and their image heights."""
    points, sizes = drawn_spines(count, seed, "readout-test")
    return points, sizes[:, 0].astype(np.float64)


def test_tf_cobb_angles_equal_the_numpy_algorithm_on_drawn_spines():
    points, heights = synthetic_landmarks(200)
    # some spines straight and some with equal end x (the S-test's divide-by-zero rule)
    points[0, :, 0] = np.round(points[0, :, 0])
    points[1, :, 0] = np.where(np.arange(68) % 2 == 0, 100.0, 140.0)
    out = cobb_graph.cobb_angles(tf.constant(points), tf.constant(heights))
    np.testing.assert_allclose(out["cobb_angles"].numpy(), geometry.cobb_angles(points, heights), atol=1e-9)


def test_tf_cobb_angles_equal_the_numpy_algorithm_on_aasce(aasce_root):
    from seg4reg_tf.data.aasce import read_split

    records = read_split(aasce_root, "training")
    points = np.stack([record.landmarks for record in records]).astype(np.float64)
    heights = np.array([record.height for record in records], np.float64)
    out = cobb_graph.cobb_angles(tf.constant(points), tf.constant(heights))["cobb_angles"].numpy()
    np.testing.assert_allclose(out, geometry.cobb_angles(points, heights), atol=1e-9)
    np.testing.assert_allclose(out, np.stack([record.angles for record in records]), atol=0.01)


def test_end_vertebrae_bound_each_angle():
    points, heights = synthetic_landmarks(100, seed=5)
    out = cobb_graph.cobb_angles(tf.constant(points), tf.constant(heights))
    matrix = geometry.angle_matrix(points)
    ends = out["end_vertebrae"].numpy()
    assert ends.min() >= 0 and ends.max() <= 16 and np.all(ends[..., 0] <= ends[..., 1])
    between = matrix[np.arange(100)[:, None], ends[..., 0], ends[..., 1]]
    np.testing.assert_allclose(between, out["cobb_angles"].numpy(), atol=1e-6)
