"""The realism figure: real radiographs of an AASCE-layout root above synthetic ones (a row
per renderer)."""

import cv2
import numpy as np

from seg4reg_tf import visualize
from seg4reg_tf.evaluation import figures


def assert_drawn(path, rows=3):
    """The PNG exists and is not blank: each of its rows holds X-ray-like content."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.shape[0] > 200
    for band in np.array_split(image, rows, axis=0):
        assert band.std() > 10


def test_real_vs_synthetic_figure_from_the_command(synthetic_root, tmp_path, capsys):
    # Any AASCE-layout root serves as "real" here (the suite's synthetic set): no AASCE pixels.
    assert visualize.main(["--real", str(synthetic_root), "--out", str(tmp_path), "--images", "3"]) == 0
    assert_drawn(tmp_path / "real_vs_synthetic.png")
    assert visualize.main(["--real", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err


def test_real_vs_synthetic_figure_on_aasce(aasce_root, tmp_path):
    """Written to a temporary folder only: AASCE pixels never enter the repository."""
    path = figures.real_and_synthetic(aasce_root, tmp_path / "real_vs_synthetic.png", count=4)
    assert_drawn(path)
    assert np.asarray(cv2.imread(str(path))).size > 0
