"""N_R pretraining on synthetic spine masks (seg4reg_tf/training/pretraining.py) and atomic writes."""

import json
import os
import stat

import keras
import numpy as np
import pytest

from seg4reg_tf import pretrain
from seg4reg_tf.config import config_from_dict
from seg4reg_tf.files import atomic_write
from seg4reg_tf.models import build_regressor
from seg4reg_tf.models.backbone import PLAIN_CNN_FIRST_CONV
from seg4reg_tf.training import pretraining

TINY = {
    "data": {"image_height": 64, "image_width": 32},
    "regressor": {"weights": "none"},
    "pretrain": {"count": 16, "validation_count": 4, "epochs": 1, "batch_size": 8},
}


def tiny_config(**pretrain_settings):
    values = json.loads(json.dumps(TINY))
    values["pretrain"].update(pretrain_settings)
    return config_from_dict(values)


def test_masks_are_letterboxed_spines_with_their_angles():
    config = config_from_dict({"data": {"image_height": 192, "image_width": 96}})
    masks, angles = pretraining.draw_masks(6, 0, seed=3, data=config.data)
    assert masks.shape == (6, 192, 96, 1) and masks.dtype == np.uint8
    assert set(np.unique(masks)) == {0, 1}
    assert angles.shape == (6, 3) and angles.dtype == np.float32
    # Column 1 is the largest curve; the generator draws it between a few and 95 degrees.
    assert np.all(angles[:, 0] >= angles[:, 1]) and np.all(angles[:, 0] >= angles[:, 2])
    assert np.all((angles[:, 0] > 1) & (angles[:, 0] <= 100))
    # Synthetic images are at least twice as tall as wide, so the letterbox fills the height
    # and the spine spans 80–93% of it (up to a pixel of rasterisation either way).
    rows = np.nonzero(masks[..., 0].any(axis=2))
    for i in range(6):
        spanned = rows[1][rows[0] == i]
        assert 0.80 * 192 - 2 <= spanned.max() - spanned.min() + 1 <= 0.93 * 192 + 2


def test_each_mask_depends_only_on_seed_and_index():
    data = tiny_config().data
    masks, angles = pretraining.draw_masks(3, 0, seed=5, data=data)
    later, later_angles = pretraining.draw_masks(2, 1, seed=5, data=data)
    np.testing.assert_array_equal(masks[1:], later)
    np.testing.assert_array_equal(angles[1:], later_angles)
    other, _ = pretraining.draw_masks(3, 0, seed=6, data=data)
    assert not np.array_equal(masks, other)


def test_dataset_augments_masks_and_keeps_angles():
    config = tiny_config()
    masks, angles = pretraining.draw_masks(8, 0, seed=0, data=config.data)
    batch = next(iter(pretraining.mask_dataset(masks, angles, config.data, 8, training=True)))
    plain = next(iter(pretraining.mask_dataset(masks, angles, config.data, 8, training=False)))
    np.testing.assert_array_equal(plain["mask"].numpy(), masks)
    np.testing.assert_array_equal(plain["image"].numpy(), masks.astype(np.float32))
    np.testing.assert_allclose(plain["angles"].numpy(), angles / 180.0, rtol=1e-6)
    # Shuffled and warped: the batch's angles are a permutation, its masks are not the drawn ones.
    np.testing.assert_allclose(np.sort(batch["angles"].numpy(), axis=0), np.sort(plain["angles"].numpy(), axis=0), rtol=1e-6)
    assert not np.array_equal(batch["mask"].numpy(), masks)
    assert set(np.unique(batch["mask"].numpy())) <= {0, 1}


def trunk_outputs(regressor, inputs):
    return keras.ops.convert_to_numpy(pretraining.trunk(regressor)(inputs * 255.0, training=False))


def test_saved_trunk_loads_back_exactly_for_the_mask_input(tmp_path):
    config = tiny_config()
    run = pretraining.pretraining_config(config)
    source = build_regressor(run.regressor, run.data.image_size)
    path = tmp_path / "trunk.weights.h5"
    pretraining.save_trunk(source, path, "efficientnet_b1")
    mask_mode = config_from_dict({**TINY, "regressor": {"weights": str(path), "input_mode": "mask"}})
    loaded = build_regressor(mask_mode.regressor, mask_mode.data.image_size)
    inputs = np.random.default_rng(0).random((2, 64, 32, 1)).astype("float32")
    expected = trunk_outputs(source, inputs)
    tolerance = 1e-3 * np.abs(expected).max()  # an untrained trunk's features are ~1e-6
    np.testing.assert_allclose(trunk_outputs(loaded, inputs), expected, atol=tolerance)
    # A freshly initialised N_R computes something else: the comparison above can fail.
    other = build_regressor(run.regressor, run.data.image_size)
    assert not np.allclose(trunk_outputs(other, inputs), expected, atol=tolerance)
    # image+mask: each channel starts with half of the mask filters.
    two_channels = config_from_dict({**TINY, "regressor": {"weights": str(path), "input_mode": "image+mask"}})
    both = build_regressor(two_channels.regressor, two_channels.data.image_size)
    stem = pretraining.trunk(source).get_layer("stem_conv").get_weights()[0]
    stem2 = pretraining.trunk(both).get_layer("stem_conv").get_weights()[0]
    np.testing.assert_allclose(stem2, np.concatenate([stem / 2, stem / 2], axis=2), rtol=1e-5, atol=1e-7)


def test_save_trunk_refuses_a_name_keras_cannot_read(tmp_path):
    run = pretraining.pretraining_config(tiny_config())
    regressor = build_regressor(run.regressor, run.data.image_size)
    with pytest.raises(ValueError, match=r"trunk\.h5.*'\.weights\.h5'"):
        pretraining.save_trunk(regressor, tmp_path / "trunk.h5", "efficientnet_b1")
    with pytest.raises(ValueError, match="resnet18"):
        pretraining.save_trunk(regressor, tmp_path / "trunk.weights.h5", "resnet18")
    assert list(tmp_path.iterdir()) == []


def test_pretrain_writes_weights_that_phase_reg_can_start_from(tmp_path):
    out = tmp_path / "nr.weights.h5"
    summary = pretraining.pretrain(tiny_config(), out, verbose=0, run_eagerly=True)
    assert out.is_file()
    written = json.loads((tmp_path / "nr.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert len(written["validation"]["val_smape"]) == 1 and np.isfinite(written["validation"]["val_smape"][0])
    assert written["settings"]["count"] == 16 and written["input"] == [64, 32]
    assert 0 < written["baseline"]["smape"] < 100
    from_file = config_from_dict({**TINY, "regressor": {"weights": str(out), "input_mode": "mask"}})
    regressor = build_regressor(from_file.regressor, from_file.data.image_size)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(regressor(np.zeros((1, 64, 32, 1), "float32"))["angles"])))


PLAIN = {"backbone": "plain_cnn", "batch_norm_momentum": 0.9, "coordinate_channels": True, "head_pooling": "position"}


def test_plain_cnn_pretraining_runs_on_a_cosine_schedule_and_phase_reg_starts_from_its_trunk(tmp_path, monkeypatch):
    values = {**json.loads(json.dumps(TINY)), "regressor": {**PLAIN, "weights": "none", "input_mode": "image+mask"}}
    values["pretrain"].update(schedule="cosine", epochs=2)
    step_sizes = []
    adam = keras.optimizers.Adam
    monkeypatch.setattr(keras.optimizers, "Adam", lambda rate, **kw: step_sizes.append(rate) or adam(rate, **kw))
    out = tmp_path / "plain.weights.h5"
    summary = pretraining.pretrain(config_from_dict(values), out, verbose=0, run_eagerly=True)
    assert len(summary["validation"]["val_smape"]) == 2
    (rate,) = step_sizes
    assert isinstance(rate, keras.optimizers.schedules.CosineDecay) and rate.decay_steps == 2 * (16 // 8)
    # Its trunk loads exactly into N_R on the mask with the same coordinate channels ...
    source_path = tmp_path / "source.weights.h5"
    run = pretraining.pretraining_config(config_from_dict(values))
    source = build_regressor(run.regressor, run.data.image_size)
    pretraining.save_trunk(source, source_path, "plain_cnn")
    mask_mode = config_from_dict({**TINY, "regressor": {**PLAIN, "weights": str(source_path), "input_mode": "mask"}})
    loaded = build_regressor(mask_mode.regressor, mask_mode.data.image_size)
    inputs = np.random.default_rng(1).random((2, 64, 32, 3)).astype("float32")  # mask + row + column
    expected = trunk_outputs(source, inputs)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(trunk_outputs(loaded, inputs), expected, rtol=1e-5, atol=1e-6)
    run = pretraining.pretraining_config(config_from_dict(values))
    other = build_regressor(run.regressor, run.data.image_size)
    assert not np.allclose(trunk_outputs(other, inputs), expected, rtol=1e-5, atol=1e-6)
    # ... and phase reg's N_R reads the file pretraining wrote.
    from_file = config_from_dict({**TINY, "regressor": {**PLAIN, "weights": str(out), "input_mode": "mask"}})
    assert build_regressor(from_file.regressor, from_file.data.image_size)
    # For image ⊕ mask the image channel's first filters start at zero: whatever the image,
    # the trunk computes what the mask-mode trunk computes on the mask and coordinates.
    two_channels = config_from_dict({**TINY, "regressor": {**PLAIN, "weights": str(source_path), "input_mode": "image+mask"}})
    both = build_regressor(two_channels.regressor, two_channels.data.image_size)
    image = np.random.default_rng(2).random((2, 64, 32, 1)).astype("float32")
    np.testing.assert_allclose(trunk_outputs(both, np.concatenate([image, inputs], axis=-1)), expected, rtol=1e-5, atol=1e-6)
    kernel = pretraining.trunk(both).get_layer(PLAIN_CNN_FIRST_CONV).kernel.numpy()
    assert kernel.shape[2] == 4 and not kernel[:, :, 0].any() and kernel[:, :, 1:].any()
    # Another channel layout is refused, naming the file.
    with pytest.raises(ValueError, match=r"plain\.weights\.h5: not a plain CNN trunk for 1 input channels"):
        no_coordinates = config_from_dict({**TINY, "regressor": {**PLAIN, "coordinate_channels": False, "weights": str(out), "input_mode": "mask"}})
        build_regressor(no_coordinates.regressor, no_coordinates.data.image_size)


def test_cli_refuses_bad_names_existing_files_and_bad_configs(tmp_path, capsys):
    existing = tmp_path / "nr.weights.h5"
    existing.write_bytes(b"keep me")
    assert pretrain.main(["--out", str(existing)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep me"
    assert pretrain.main(["--out", str(tmp_path / "nr.h5")]) == 2
    assert "must end in '.weights.h5'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain: {count: 0}\n")
    assert pretrain.main(["--config", str(bad), "--out", str(tmp_path / "x.weights.h5")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "'count' must be >= 1" in err
    bad.write_text("pretrain: {epoch: 3}\n")
    assert pretrain.main(["--config", str(bad), "--out", str(tmp_path / "x.weights.h5")]) == 2
    assert "unknown key 'pretrain.epoch'" in capsys.readouterr().err
    bad.write_text("regressor: {backbone: resnet18, weights: none}\n")
    assert pretrain.main(["--config", str(bad), "--out", str(tmp_path / "x.weights.h5")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "writes the trunk of efficientnet_b1 or plain_cnn; regressor.backbone is resnet18" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "nr.weights.h5"]


def test_atomic_write_gives_the_permissions_open_would(tmp_path):
    path = tmp_path / "report.json"
    atomic_write(path, b"{}")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert path.read_bytes() == b"{}" and [p.name for p in tmp_path.iterdir()] == ["report.json"]
