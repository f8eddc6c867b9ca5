"""The curves in TF ops (curves_graph) equal the NumPy reference (clinical_reading): on the
drawn spines of every Lenke type, on random spines, as a batch and one at a time; spines
not found and spines with NaN corners get no curve."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf import clinical_reading, curves_graph
from seg4reg_tf.geometry import VERTEBRA_NAMES
from tests.harness import drawn_spine
from tests.test_clinical_reading import CASES


def reference(landmarks) -> list[tuple]:
    """NumPy's curves as (upper, lower, apex, region code, Cobb, image side)."""
    curves = clinical_reading.find_curves(landmarks, image_right="right")  # "right" = the image's right
    return [(c.upper, c.lower, c.apex, curves_graph.REGION_CODES.index(c.region), c.cobb_degrees, 1 if c.convexity == "right" else -1, c.major)
            for c in curves]


def from_graph(out, i) -> list[tuple]:
    count = int(np.sum(out["curve_region"][i] >= 0))
    rows = []
    for k in range(count):
        upper, lower = out["curve_end_vertebrae"][i, k]
        rows.append((int(upper), int(lower), float(out["curve_apex"][i, k]), int(out["curve_region"][i, k]),
                     float(out["curve_cobb_angles"][i, k]), int(out["curve_side"][i, k]), k == int(out["major_curve"][i])))
    return rows


def random_spine(rng) -> np.ndarray:
    knots = sorted(rng.choice(np.arange(1, 16), size=rng.integers(1, 5), replace=False))
    names = ["T1", *[VERTEBRA_NAMES[k] for k in knots], "L5"]
    return drawn_spine({name: float(rng.uniform(-30, 30)) for name in names})


def assert_same(got, expected):
    assert [g[:4] + g[5:] for g in got] == [e[:4] + e[5:] for e in expected]
    np.testing.assert_allclose([g[4] for g in got], [e[4] for e in expected], atol=1e-4)


def test_tf_equals_numpy_on_drawn_and_random_spines():
    rng = np.random.default_rng(7)
    spines = [drawn_spine(case[0]) for case in CASES.values()] + [random_spine(rng) for _ in range(40)]
    batch = np.stack(spines).astype(np.float32)
    out = {key: value.numpy() for key, value in curves_graph.find_curves(tf.constant(batch)).items()}
    for i, landmarks in enumerate(batch):
        assert_same(from_graph(out, i), reference(landmarks.astype(np.float64)))
        one = {key: value.numpy() for key, value in curves_graph.find_curves(tf.constant(batch[i : i + 1])).items()}
        assert from_graph(one, 0) == from_graph(out, i)  # a batch equals one image at a time
    assert out["curve_end_vertebrae"].shape == (len(spines), curves_graph.MAX_CURVES, 2)


def test_no_spine_and_nan_corners_give_no_curve():
    landmarks = np.stack([drawn_spine(CASES["double major (3)"][0])] * 3).astype(np.float32)
    landmarks[2, 5, 0] = np.nan
    out = {key: value.numpy() for key, value in curves_graph.find_curves(tf.constant(landmarks), tf.constant([True, False, True])).items()}
    assert (out["curve_region"][0] >= 0).sum() == 2 and out["major_curve"][0] >= 0
    for i in (1, 2):
        assert (out["curve_region"][i] == -1).all() and (out["curve_end_vertebrae"][i] == -1).all()
        assert np.isnan(out["curve_cobb_angles"][i]).all() and out["major_curve"][i] == -1


@pytest.mark.parametrize("name", CASES)
def test_the_graph_reads_each_lenke_case(name):
    pivots, expected, _ = CASES[name]
    out = {key: value.numpy() for key, value in curves_graph.find_curves(tf.constant(drawn_spine(pivots)[None].astype(np.float32))).items()}
    regions = [curves_graph.REGION_CODES[r] for r in out["curve_region"][0] if r >= 0]
    assert regions == [e[0] for e in expected]
