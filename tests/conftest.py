"""Shared fixtures: a small synthetic data set, and the real AASCE split when available."""

import os

import pytest

from seg4reg_tf.data import synthetic

SMALL = synthetic.SyntheticConfig(height_range=(300, 420))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A read-only synthetic data set: 6 training and 2 test images, 300–420 px high."""
    root = tmp_path_factory.mktemp("synthetic") / "set"
    return synthetic.generate_dataset(root, train=6, test=2, seed=3, config=SMALL)


@pytest.fixture(scope="session")
def aasce_root():
    """The real AASCE root from SEG4REG_AASCE_ROOT; tests using it skip when it is unset."""
    root = os.environ.get("SEG4REG_AASCE_ROOT")
    if not root:
        pytest.skip("SEG4REG_AASCE_ROOT is not set")
    if not os.path.isdir(root):
        pytest.fail(f"SEG4REG_AASCE_ROOT={root} is not a folder")
    return root
