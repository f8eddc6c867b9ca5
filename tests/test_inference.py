"""The inference path on preprocessed images (`inference`): the routes' answers, N_S's
test-time flips, a batch against one image at a time, N_R absent."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.data import pipeline
from seg4reg_tf.geometric_readout import read_spine
from seg4reg_tf.inference import mask_probabilities, predict_images, segmenter_outputs
from seg4reg_tf.models.segment import segment
from seg4reg_tf.routes import ROUTES
from seg4reg_tf.vertebra_readout import read_vertebrae

pytestmark = pytest.mark.slow


def synthetic_images(exported, synthetic_root, count: int = 2) -> tf.Tensor:
    """(count, H, W, 1) training X-rays of the synthetic set, preprocessed as the export does."""
    paths = sorted((pathlib.Path(synthetic_root) / "data" / "training").glob("*.jpg"))[:count]
    return tf.stack([pipeline.preprocess_encoded(tf.constant(path.read_bytes()), "test", exported["config"].data) for path in paths])


def test_segmenter_flips_average_the_mask_with_the_mirror_images(exported, synthetic_root):
    """N_S's test-time flips (the benches' `--flips`): its probabilities (through the two-pass ROIE gate, α =
    0.5) averaged with those of the mirror image, mirrored back; mirroring the X-ray then
    mirrors the mask exactly, which N_S alone does not do."""
    segmenter, regressor, mode = exported["segmenter"], exported["regressor"], exported["config"].regressor.input_mode
    images = synthetic_images(exported, synthetic_root)
    mirror = images[:, :, ::-1]
    plain = segment(segmenter, regressor, images, mode)["mask"].numpy()
    by_hand = (plain + segment(segmenter, regressor, mirror, mode)["mask"].numpy()[:, :, ::-1]) / 2
    flipped = mask_probabilities(segmenter, regressor, images, mode, flips=True).numpy()
    np.testing.assert_allclose(flipped, by_hand, atol=1e-5)
    np.testing.assert_allclose(mask_probabilities(segmenter, regressor, images, mode).numpy(), plain, atol=1e-6)
    assert np.abs(plain - plain[:, :, ::-1]).max() > 1e-3  # N_S itself is not left-right symmetric
    # the tilt field of the mirror image is mirrored back with its tilts negated
    tilt = segment(segmenter, regressor, images, mode)["tilt"].numpy()
    mirrored_tilt = segment(segmenter, regressor, mirror, mode)["tilt"].numpy()[:, :, ::-1] * np.array([1.0, -1.0])
    drawn = segmenter_outputs(segmenter, regressor, images, mode, flips=True)
    np.testing.assert_allclose(drawn["tilt"].numpy(), (tilt + mirrored_tilt) / 2, atol=1e-5)
    np.testing.assert_allclose(mask_probabilities(segmenter, regressor, mirror, mode, flips=True).numpy(), flipped[:, :, ::-1], atol=1e-5)


def test_each_route_answers_with_its_own_reading_of_the_mask_and_tilt_field(exported, synthetic_root):
    """`cobb_angles` is the named route's column; the centre line's and the vertebra route's
    columns are `read_spine` and `read_vertebrae` on N_S's mask and tilt field, which
    predict_images traces once for both; the three differ on an untrained N_S."""
    segmenter, regressor, config = exported["segmenter"], exported["regressor"], exported["config"]
    images = synthetic_images(exported, synthetic_root)
    drawn = segmenter_outputs(segmenter, regressor, images, config.regressor.input_mode)
    centre = read_spine(drawn["mask"][..., 0], config.readout)
    vertebrae = read_vertebrae(drawn["mask"][..., 0], drawn["tilt"], config.readout)
    columns = {"regressor": "cobb_angles_regressor", "geometric": "cobb_angles_geometric", "vertebrae": "cobb_angles_vertebrae"}
    assert set(columns) == set(ROUTES)
    for route, column in columns.items():
        out = predict_images(segmenter, regressor, images, config, route)
        np.testing.assert_array_equal(out["cobb_angles"].numpy(), out[column].numpy())
    np.testing.assert_allclose(out["cobb_angles_geometric"].numpy(), centre["cobb_angles"].numpy(), atol=1e-4)
    np.testing.assert_allclose(out["landmarks"].numpy(), centre["landmarks"].numpy(), atol=1e-3)
    np.testing.assert_allclose(out["cobb_angles_vertebrae"].numpy(), vertebrae["cobb_angles"].numpy(), atol=1e-4)
    np.testing.assert_allclose(out["vertebra_landmarks"].numpy(), vertebrae["landmarks"].numpy(), atol=1e-3)
    assert centre["found"].numpy().all()
    answers = [out[column].numpy() for column in columns.values()]
    assert all(np.abs(a - b).max() > 0.1 for i, a in enumerate(answers) for b in answers[i + 1 :])
    with pytest.raises(ValueError, match="route must be one of"):
        predict_images(segmenter, regressor, images, config, "centre")


def test_a_batch_answers_as_its_images_one_at_a_time(exported, synthetic_root):
    segmenter, regressor, config = exported["segmenter"], exported["regressor"], exported["config"]
    images = synthetic_images(exported, synthetic_root, count=3)
    batch = predict_images(segmenter, regressor, images, config, "vertebrae")
    for i in range(3):
        one = predict_images(segmenter, regressor, images[i : i + 1], config, "vertebrae")
        for key in ("cobb_angles", "cobb_angles_regressor", "cobb_angles_geometric", "vertebra_landmarks", "vertebra_confidence"):
            np.testing.assert_allclose(one[key].numpy()[0], batch[key].numpy()[i], atol=2e-3, err_msg=key)


def test_without_n_r_its_angles_are_nan_and_the_cam_zero_while_the_mask_routes_answer(exported, synthetic_root):
    """A workdir after phase seg: an ungated N_S and no N_R."""
    from seg4reg_tf.models import build_segmenter, segmenter_layer

    config = exported["config"]
    segmenter = build_segmenter(config.segmenter, config.data.image_size)
    segmenter_layer(segmenter, "classifier").bias.assign(np.array([3.0], "float32"))  # a mask that covers the spine's region
    images = synthetic_images(exported, synthetic_root)
    out = predict_images(segmenter, None, images, config, "geometric")
    assert np.isnan(out["cobb_angles_regressor"].numpy()).all()
    assert out["cam"].shape == (2, config.data.image_height // 32, config.data.image_width // 32) and not out["cam"].numpy().any()
    assert np.isfinite(out["cobb_angles"].numpy()).all()
