"""The vertebra route (seg4reg_tf/vertebra_readout.py) and the tilt field it reads
(seg4reg_tf/tilt_field.py): against the landmarks' own angles on drawn spines, against a
NumPy reference, and on broken masks."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf import geometry
from seg4reg_tf.config import ReadoutConfig
from seg4reg_tf.data import transforms
from seg4reg_tf.geometric_readout import read_spine, read_spine_traced, trace_spine
from seg4reg_tf.tilt_field import mirror_tilt, row_tilt_targets, tilt_loss
from seg4reg_tf.vertebra_readout import WEIGHT_FLOOR, pointing_right, read_vertebrae, vertebra_frames
from tests.harness import drawn_spines as generated_spines

SETTINGS = ReadoutConfig()
HEIGHT, WIDTH = 256, 128


def drawn_spines(count: int, seed: int = 5):
    """count exact drawn spines at 256×128: masks (N, H, W) float32, landmarks (N, 68, 2)
    in the model frame, true Cobb angles (N, 3) of those landmarks, true tilt fields (N, H, W, 2)."""
    points, sizes = generated_spines(count, seed, "vertebra-test")
    landmarks = transforms.letterbox_landmarks(points, sizes[:, 0], sizes[:, 1], HEIGHT, WIDTH).numpy()
    masks = np.stack([geometry.landmarks_to_mask(p, HEIGHT, WIDTH) for p in landmarks])[..., None]
    angles = geometry.cobb_angles(landmarks.astype(np.float64), HEIGHT)
    field = np.tile(row_tilt_targets(landmarks.astype(np.float32), HEIGHT, WIDTH).numpy()[:, :, None], (1, 1, WIDTH, 1))
    return masks[..., 0].astype(np.float32), landmarks, angles, field


@pytest.fixture(scope="module")
def spines():
    return drawn_spines(48)


def reference_tilts(mask, field, corners):
    """NumPy: per vertebra, the doubled-angle vectors sampled bilinearly at 5 points across
    its middle, weighted by the mask probability + WEIGHT_FLOOR → θ (17,) radians."""
    quads = corners.reshape(17, 4, 2).astype(np.float64)
    upper, lower = (quads[:, 0] + quads[:, 1]) / 2, (quads[:, 2] + quads[:, 3]) / 2
    centre = (upper + lower) / 2
    across = quads[:, 1] - quads[:, 0]
    half = np.linalg.norm(across, axis=1) / 2
    unit = across / (2 * half[:, None])
    height, width = mask.shape

    def sample(image, x, y):
        x, y = np.clip(x, 0, width - 1), np.clip(y, 0, height - 1)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
        fx, fy = x - x0, y - y0
        return (image[y0, x0] * (1 - fx) + image[y0, x1] * fx) * (1 - fy) + (image[y1, x0] * (1 - fx) + image[y1, x1] * fx) * fy

    thetas = []
    for k in range(17):
        total, weight = np.zeros(2), 0.0
        for offset in np.linspace(-0.5, 0.5, 5):
            x, y = centre[k] + offset * half[k] * unit[k]
            w = sample(mask, x, y) + WEIGHT_FLOOR
            total += w * sample(field, x, y)
            weight += w
        thetas.append(0.5 * np.arctan2(total[1] / weight, total[0] / weight))
    return np.array(thetas)


def midline_tilts(landmarks):
    vectors = geometry.midline_vectors(np.asarray(landmarks, np.float64).reshape(-1, 68, 2))
    return np.arctan2(vectors[..., 1], vectors[..., 0])


def test_the_tilt_target_is_each_vertebras_tilt_at_its_centre(spines):
    _, landmarks, _, field = spines
    centres = landmarks.reshape(-1, 17, 4, 2).mean(axis=2)
    rows = np.round(centres[..., 1]).astype(int)
    read = np.stack([0.5 * np.arctan2(field[i, rows[i], 0, 1], field[i, rows[i], 0, 0]) for i in range(len(field))])
    # the target is exact at the centre row; rounding the row to a pixel moves it by < 1°
    np.testing.assert_allclose(np.degrees(read), np.degrees(midline_tilts(landmarks)), atol=1.0)


def test_the_tilt_loss_is_zero_for_the_true_field_and_counts_only_the_band(spines):
    masks, landmarks, _, field = spines
    mask = masks[:4, ..., None]
    assert float(tilt_loss(landmarks[:4], mask, field[:4])) < 1e-6
    wrong_outside = np.where(mask > 0, field[:4], 5.0).astype(np.float32)
    far = tf.nn.max_pool2d(tf.constant(mask), 9, 1, "SAME").numpy() == 0  # beyond the 3-pixel band
    wrong_outside = np.where(far, 5.0, field[:4]).astype(np.float32)
    assert float(tilt_loss(landmarks[:4], mask, wrong_outside)) < 1e-6
    assert float(tilt_loss(landmarks[:4], mask, -field[:4])) > 0.5


def test_mirroring_the_field_negates_the_tilt(spines):
    field = spines[3][:2]
    mirrored = mirror_tilt(tf.constant(field)).numpy()
    np.testing.assert_allclose(mirrored[..., 0], field[:, :, ::-1, 0])
    np.testing.assert_allclose(mirrored[..., 1], -field[:, :, ::-1, 1])


def test_on_exact_drawn_spines_the_route_reads_the_landmarks_angles(spines):
    masks, landmarks, angles, field = spines
    out = read_vertebrae(tf.constant(masks), tf.constant(field), SETTINGS)
    assert out["found"].numpy().all()
    error = np.abs(out["cobb_angles"].numpy() - angles)
    # measured: mean 0.76°, largest 4.4° over the 48 spines; tilt RMS 0.87°; vertebra
    # centres 1.9 pixels off (median), 5.1 at most. The route's positions are the centre
    # line's, so a vertebra's tilt is read slightly off its centre, and corners are not
    # within a pixel of the true ones.
    assert error.mean() < 1.0 and error.max() < 5.0
    tilts = np.degrees(midline_tilts(out["landmarks"].numpy()) - midline_tilts(landmarks))
    assert np.sqrt(np.mean(tilts**2)) < 1.2
    offsets = out["landmarks"].numpy().reshape(-1, 17, 4, 2).mean(axis=2) - landmarks.reshape(-1, 17, 4, 2).mean(axis=2)
    assert np.median(np.linalg.norm(offsets, axis=-1)) < 2.5 and np.linalg.norm(offsets, axis=-1).max() < 6.0


def test_tf_equals_the_numpy_reference_and_a_batch_equals_single_images(spines):
    masks, _, _, field = spines
    # a field that is not the exact one: the reference must follow the interpolation too
    rng = np.random.default_rng(0)
    noisy = (field[:6] + rng.normal(0, 0.3, field[:6].shape)).astype(np.float32)
    soft = np.clip(masks[:6] * 0.8 + rng.uniform(0, 0.3, masks[:6].shape), 0, 1).astype(np.float32)
    out = read_vertebrae(tf.constant(soft), tf.constant(noisy), SETTINGS)
    positions, _ = trace_spine(tf.constant(soft), SETTINGS)
    frames = vertebra_frames(positions)
    for i in range(6):
        theta = reference_tilts(soft[i], noisy[i], positions[i].numpy())
        np.testing.assert_allclose(midline_tilts(out["landmarks"][i].numpy())[0], theta, atol=2e-4)
        np.testing.assert_allclose(
            (out["landmarks"][i].numpy().reshape(17, 4, 2).mean(axis=1)), frames["centre"][i].numpy(), atol=1e-3
        )
        one = read_vertebrae(tf.constant(soft[i : i + 1]), tf.constant(noisy[i : i + 1]), SETTINGS)
        for key in ("cobb_angles", "landmarks", "confidence"):
            np.testing.assert_allclose(one[key].numpy()[0], out[key].numpy()[i], atol=1e-3)


def test_tilt_gain_scales_the_tilts(spines):
    masks, _, _, field = spines
    plain = read_vertebrae(tf.constant(masks[:4]), tf.constant(field[:4]), SETTINGS)
    gained = read_vertebrae(tf.constant(masks[:4]), tf.constant(field[:4]), dataclasses.replace(SETTINGS, tilt_gain=1.1))
    np.testing.assert_allclose(midline_tilts(gained["landmarks"].numpy()), 1.1 * midline_tilts(plain["landmarks"].numpy()), atol=1e-4)


def test_the_centre_line_share_mixes_the_two_routes_angles_and_keeps_the_routes_vertebrae(spines):
    masks, _, _, field = spines
    mask, tilt = tf.constant(masks[:6]), tf.constant(field[:6])
    centre = read_spine(mask, SETTINGS)["cobb_angles"].numpy()
    alone = read_vertebrae(mask, tilt, SETTINGS)
    assert np.abs(alone["cobb_angles"].numpy() - centre).max() > 1.0  # the routes differ
    for share in (0.3, 1.0):
        mixed = read_vertebrae(mask, tilt, dataclasses.replace(SETTINGS, centre_line_share=share))
        np.testing.assert_allclose(mixed["cobb_angles"].numpy(), (1 - share) * alone["cobb_angles"].numpy() + share * centre, atol=1e-3)
        for key in ("landmarks", "end_vertebrae", "confidence", "found"):
            np.testing.assert_array_equal(mixed[key].numpy(), alone[key].numpy())
        # A caller that has the centre line's reading passes it in and gets the same answer;
        # its angles are the ones mixed in (a stand-in of zeros shows they are used).
        positions, reading = read_spine_traced(mask, SETTINGS)
        settings = dataclasses.replace(SETTINGS, centre_line_share=share)
        given = read_vertebrae(mask, tilt, settings, centre_line=(positions, reading))
        for key in mixed:
            np.testing.assert_allclose(given[key].numpy(), mixed[key].numpy(), atol=1e-4)
        zeros = read_vertebrae(mask, tilt, settings, centre_line=(positions, {**reading, "cobb_angles": tf.zeros_like(centre)}))
        np.testing.assert_allclose(zeros["cobb_angles"].numpy(), (1 - share) * alone["cobb_angles"].numpy(), atol=1e-3)


def test_a_tilt_past_the_vertical_is_turned_to_point_right():
    theta = tf.constant([[0.3, -0.2, 1.7, -1.8, np.pi / 2]])
    np.testing.assert_allclose(pointing_right(theta).numpy(), [[0.3, -0.2, 1.7 - np.pi, np.pi - 1.8, np.pi / 2]], atol=1e-6)


def test_an_empty_mask_gives_nan_and_not_found():
    out = read_vertebrae(tf.zeros((2, HEIGHT, WIDTH)), tf.zeros((2, HEIGHT, WIDTH, 2)), SETTINGS)
    assert not out["found"].numpy().any()
    assert np.isnan(out["cobb_angles"].numpy()).all() and np.isnan(out["landmarks"].numpy()).all()
    assert (out["end_vertebrae"].numpy() == -1).all() and (out["confidence"].numpy() == 0).all()


def test_a_speck_or_a_blob_beside_the_spine_moves_no_angle_by_more_than_a_degree(spines):
    masks, _, _, field = spines
    clean = read_vertebrae(tf.constant(masks[:8]), tf.constant(field[:8]), SETTINGS)["cobb_angles"].numpy()
    for i in range(8):
        columns = np.nonzero(masks[i].any(axis=0))[0]
        far = 4 if columns.min() > WIDTH - columns.max() else WIDTH - 12  # the side farther from the spine
        speck, blob = masks[i].copy(), masks[i].copy()
        speck[120:122, far : far + 2] = 1.0
        blob[100:130, far : far + 8] = 1.0
        for damaged in (speck, blob):
            angles = read_vertebrae(tf.constant(damaged[None]), tf.constant(field[i : i + 1]), SETTINGS)["cobb_angles"].numpy()[0]
            assert np.abs(angles - clean[i]).max() <= 1.0


def test_merged_broken_and_missing_bodies_still_answer_and_lower_the_confidence_there(spines):
    masks, landmarks, _, field = spines
    mask = masks[0].copy()
    corners = landmarks[0].reshape(17, 4, 2)
    merged = mask.copy()
    gap_top, gap_bottom = int(corners[8, 2:, 1].max()), int(corners[9, :2, 1].min()) + 1
    merged[gap_top - 1 : gap_bottom + 1] = np.maximum(merged[gap_top - 1 : gap_bottom + 1], merged[gap_top - 2 : gap_top - 1])  # T9–T10 joined
    broken = mask.copy()
    y0, y1 = int(corners[5, :, 1].min()), int(corners[5, :, 1].max()) + 1
    broken[y0:y1] = 0.0  # T6 missing
    missing = mask.copy()
    missing[int(corners[16, :, 1].min()) - 1 :] = 0.0  # L5 gone
    batch = np.stack([mask, merged, broken, missing])
    out = read_vertebrae(tf.constant(batch), tf.constant(np.repeat(field[:1], 4, axis=0)), SETTINGS)
    assert out["found"].numpy().all() and np.isfinite(out["cobb_angles"].numpy()).all()
    confidence = out["confidence"].numpy()
    assert confidence[0].min() > 0.5
    # the vertebra read where T6 was lost is the one the route is least sure of
    centres = out["landmarks"].numpy()[2].reshape(17, 4, 2).mean(axis=1)
    unsure = int(np.argmin(confidence[2]))
    assert y0 - 8 <= centres[unsure, 1] <= y1 + 8 and confidence[2, unsure] < 0.5


def test_the_vertebra_routes_settings_are_checked():
    from seg4reg_tf.config import config_from_dict

    with pytest.raises(ValueError, match="tilt_gain"):
        config_from_dict({"readout": {"tilt_gain": 3.0}})
    for share in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="centre_line_share"):
            config_from_dict({"readout": {"centre_line_share": share}})
    with pytest.raises(ValueError, match="tilt_weight"):
        config_from_dict({"segmenter": {"tilt_weight": -1.0}})
