"""N_S and N_R: shapes, output stride, ROIE gate identity, .keras reload, weight options."""

import pathlib
import urllib.error

import keras
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.config import config_from_dict, load_config
from seg4reg_tf.models import (
    build_regressor,
    build_segmenter,
    copy_segmenter_weights,
    mask_branch_inputs,
    regressor_inputs,
    segmenter_layer,
    segmenter_layers,
    start_at_mean_angles,
    synchronize_batch_norm,
)
from tests.harness import assert_keras_file_round_trip, assert_same_outputs

SMOKE = load_config(pathlib.Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml")
RNG = np.random.default_rng(0)


def images(batch=2, height=64, width=32, channels=1):
    return RNG.random((batch, height, width, channels)).astype("float32")


def with_mode(config, mode):
    return config_from_dict({**config.to_dict(), "regressor": {**config.to_dict()["regressor"], "input_mode": mode}})


def test_segmenter_shapes_and_output_stride_8():
    model = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size)
    out = model({"image": images()})
    assert out["mask"].shape == (2, 64, 32, 1) and out["mask_logits"].shape == (2, 64, 32, 1)
    assert 0.0 <= float(tf.reduce_min(out["mask"])) <= float(tf.reduce_max(out["mask"])) <= 1.0
    assert segmenter_layer(model, "dilated_resnet50").output.shape == (None, 64 // 8, 32 // 8, 2048)


@pytest.mark.slow
def test_paper_size_shapes():
    config = config_from_dict({"segmenter": {"weights": "none"}, "regressor": {"weights": "none"}})
    segmenter = build_segmenter(config.segmenter, config.data.image_size)
    assert segmenter_layer(segmenter, "dilated_resnet50").output.shape == (None, 64, 32, 2048)
    assert segmenter({"image": images(1, 512, 256)})["mask"].shape == (1, 512, 256, 1)
    out = build_regressor(config.regressor, config.data.image_size)(images(1, 512, 256, 2))
    assert out["angles"].shape == (1, 3) and out["cam"].shape == (1, 16, 8, 4)
    assert out["features"].shape == (1, 16, 8, 1280)


@pytest.mark.parametrize("mode, channels", [("image", 1), ("mask", 1), ("image+mask", 2)])
def test_regressor_modes(mode, channels):
    config = with_mode(SMOKE, mode)
    model = build_regressor(config.regressor, config.data.image_size)
    assert model.input.shape == (None, 64, 32, channels)
    image, mask = images(), (images() > 0.5).astype("float32")
    out = model(regressor_inputs(image, mask, mode))
    assert out["angles"].shape == (2, 3) and out["cam"].shape == (2, 2, 1, 4)
    assert 0 < float(tf.reduce_min(out["angles"])) and float(tf.reduce_max(out["angles"])) < 1
    # The AR branches share this one network: branch B has the same channel layout.
    assert mask_branch_inputs(mask, mode).shape == (2, 64, 32, channels)
    if mode == "image+mask":
        np.testing.assert_array_equal(mask_branch_inputs(mask, mode)[..., 0], 0.0)


def test_regressor_can_start_as_the_mean_predictor():
    model = build_regressor(SMOKE.regressor, SMOKE.data.image_size)
    mean = np.array([38.7, 19.7, 18.5]) / 180.0
    inputs = images(channels=2)
    kernel = model.get_layer("head").kernel.numpy().copy()
    start_at_mean_angles(model, mean, keep_kernel=True)  # the bias only: the kernel is kept
    np.testing.assert_array_equal(model.get_layer("head").kernel.numpy(), kernel)
    start_at_mean_angles(model, mean)
    angles = keras.ops.convert_to_numpy(model(inputs)["angles"])
    np.testing.assert_allclose(angles, np.broadcast_to(mean, (2, 3)), rtol=1e-5)


def test_gated_segmenter_at_alpha_zero_equals_the_ungated_one():
    plain = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size)
    gated = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size, with_roie=True)
    copy_segmenter_weights(plain, gated, "plain N_S")
    x = images()
    cam = RNG.random((2, 2, 1, 1)).astype("float32")
    expected = plain({"image": x}, training=False)
    assert_same_outputs(expected, gated({"image": x, "cam": cam}, training=False), atol=1e-6)
    alpha = segmenter_layer(gated, "roie_gate").alpha
    with tf.GradientTape() as tape:
        out = gated({"image": x, "cam": cam}, training=False)
        loss = tf.reduce_mean(tf.square(out["mask"] - 1.0))
    gradient = tape.gradient(loss, alpha)
    assert gradient is not None and float(tf.abs(gradient)) > 0
    alpha.assign(1.0)
    changed = gated({"image": x, "cam": cam}, training=False)["mask"]
    assert np.abs(changed.numpy() - expected["mask"].numpy()).max() > 1e-4


def test_models_survive_keras_files(tmp_path):
    gated = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size, with_roie=True)
    segmenter_layer(gated, "roie_gate").alpha.assign(0.3)
    inputs = {"image": images(), "cam": RNG.random((2, 2, 1, 1)).astype("float32")}
    assert_keras_file_round_trip(gated, inputs, tmp_path / "segmenter.keras")
    # 128×64 input: a 4×2 CAM (a 2×1 one is too small for its min-max normalisation).
    larger = config_from_dict({**SMOKE.to_dict(), "data": {**SMOKE.to_dict()["data"], "image_height": 128, "image_width": 64}})
    regressor = build_regressor(larger.regressor, larger.data.image_size)
    assert_keras_file_round_trip(regressor, images(2, 128, 64, 2), tmp_path / "regressor.keras")


def batch_norms(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def test_batch_norm_synchronised_on_request_and_kept_in_keras_files(tmp_path):
    regressor = build_regressor(SMOKE.regressor, SMOKE.data.image_size, synchronized=True)
    assert len(batch_norms(regressor)) > 50 and all(layer.synchronized for layer in batch_norms(regressor))
    assert not any(layer.synchronized for layer in batch_norms(build_regressor(SMOKE.regressor, SMOKE.data.image_size)))
    # A segmenter saved unsynchronised (trained outside a strategy), synchronised after loading:
    # the backbone's and the pyramid's BatchNorms, and the pyramid's own config.
    segmenter = build_segmenter(SMOKE.segmenter, SMOKE.data.image_size)
    assert not any(layer.synchronized for layer in batch_norms(segmenter))
    segmenter.save(tmp_path / "segmenter.keras")
    loaded = keras.saving.load_model(tmp_path / "segmenter.keras")
    assert synchronize_batch_norm(loaded) == len(batch_norms(loaded))
    pyramid = segmenter_layer(loaded, "pyramid")
    assert pyramid.get_config()["synchronized"] and all(layer.synchronized for layer in batch_norms(pyramid))
    loaded.save(tmp_path / "synchronized.keras")
    again = keras.saving.load_model(tmp_path / "synchronized.keras")
    assert all(layer.synchronized for layer in batch_norms(again))
    inputs = {"image": images()}
    np.testing.assert_allclose(again(inputs, training=False)["mask"], segmenter(inputs, training=False)["mask"], atol=1e-5)


def test_segmenter_batch_norm_momentum_option_reaches_backbone_and_pyramid_and_survives_keras_files(tmp_path):
    assert SMOKE.segmenter.batch_norm_momentum == 0.99  # Keras' unless asked
    assert all(layer.momentum == 0.99 for layer in batch_norms(build_segmenter(SMOKE.segmenter, SMOKE.data.image_size)))
    values = SMOKE.to_dict()
    config = config_from_dict({**values, "segmenter": {**values["segmenter"], "backbone": "resnet18", "batch_norm_momentum": 0.9}})
    segmenter = build_segmenter(config.segmenter, config.data.image_size, with_roie=True)
    assert len(batch_norms(segmenter_layer(segmenter, "pyramid"))) == 3 and len(batch_norms(segmenter)) > 20
    assert all(layer.momentum == 0.9 for layer in batch_norms(segmenter))
    inputs = {"image": images(), "cam": RNG.random((2, 2, 1, 1)).astype("float32")}
    loaded = assert_keras_file_round_trip(segmenter, inputs, tmp_path / "segmenter.keras")
    assert all(layer.momentum == 0.9 for layer in batch_norms(loaded))
    with pytest.raises(ValueError, match=r"'batch_norm_momentum' must be in \[0, 1\), got 1.0"):
        config_from_dict({"segmenter": {"batch_norm_momentum": 1.0}})


def test_local_weights_files_load_by_name_with_channel_adaptation(tmp_path):
    stock_resnet = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    stock_resnet.save_weights(tmp_path / "resnet.weights.h5")
    stock_effnet = keras.applications.EfficientNetB1(include_top=False, weights=None, input_shape=(64, 64, 3))
    stock_effnet.save_weights(tmp_path / "effnet.weights.h5")
    config = config_from_dict({
        **SMOKE.to_dict(),
        "segmenter": {**SMOKE.to_dict()["segmenter"], "weights": str(tmp_path / "resnet.weights.h5")},
        "regressor": {**SMOKE.to_dict()["regressor"], "weights": str(tmp_path / "effnet.weights.h5")},
    })
    backbone = segmenter_layer(build_segmenter(config.segmenter, config.data.image_size), "dilated_resnet50")
    stock_kernel = stock_resnet.get_layer("conv1_conv").kernel.numpy()
    np.testing.assert_allclose(backbone.get_layer("conv1_conv").kernel.numpy()[:, :, 0], stock_kernel.sum(axis=2), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(backbone.get_layer("conv5_block3_3_conv").kernel.numpy(), stock_resnet.get_layer("conv5_block3_3_conv").kernel.numpy())
    trunk = build_regressor(config.regressor, config.data.image_size).get_layer("efficientnetb1")
    stem = stock_effnet.get_layer("stem_conv").kernel.numpy()
    np.testing.assert_allclose(trunk.get_layer("stem_conv").kernel.numpy(), stem[:, :, :2] * 1.5, rtol=1e-6)
    np.testing.assert_array_equal(trunk.get_layer("top_conv").kernel.numpy(), stock_effnet.get_layer("top_conv").kernel.numpy())


def test_bad_weights_options_are_named(tmp_path, monkeypatch):
    missing = config_from_dict({"segmenter": {"weights": str(tmp_path / "nope.h5")}, "data": {"image_height": 64, "image_width": 32}})
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        build_segmenter(missing.segmenter, missing.data.image_size)
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not weights")
    bad = config_from_dict({"regressor": {"weights": str(garbage)}, "data": {"image_height": 64, "image_width": 32}})
    with pytest.raises(ValueError, match="garbage.weights.h5 does not fit"):
        build_regressor(bad.regressor, bad.data.image_size)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    with pytest.raises(ValueError, match="ImageNet weights could not be downloaded.*'none'"):
        imagenet = config_from_dict({"data": {"image_height": 64, "image_width": 32}})
        build_segmenter(imagenet.segmenter, imagenet.data.image_size)


def test_regressor_batch_norm_momentum_and_stochastic_depth_options_survive_keras_files(tmp_path):
    config = config_from_dict({**SMOKE.to_dict(), "regressor": {**SMOKE.to_dict()["regressor"], "batch_norm_momentum": 0.9, "stochastic_depth": False}})
    regressor = build_regressor(config.regressor, config.data.image_size)
    drops = [layer for layer in regressor._flatten_layers() if isinstance(layer, keras.layers.Dropout) and layer.name.startswith("block")]
    assert len(drops) > 10 and all(layer.rate == 0.0 for layer in drops)
    assert all(layer.momentum == 0.9 for layer in batch_norms(regressor))
    default = build_regressor(SMOKE.regressor, SMOKE.data.image_size)
    assert all(layer.momentum == 0.99 for layer in batch_norms(default))
    assert any(layer.rate > 0 for layer in default._flatten_layers() if isinstance(layer, keras.layers.Dropout) and layer.name.startswith("block"))
    regressor.save(tmp_path / "regressor.keras")
    loaded = keras.saving.load_model(tmp_path / "regressor.keras")
    assert all(layer.momentum == 0.9 for layer in batch_norms(loaded))
    assert all(layer.rate == 0.0 for layer in loaded._flatten_layers() if isinstance(layer, keras.layers.Dropout) and layer.name.startswith("block"))
    with pytest.raises(ValueError, match="batch_norm_momentum"):
        config_from_dict({"regressor": {"batch_norm_momentum": 1.0}})


@pytest.mark.parametrize("backbone, channels", [("resnet18", 512), ("resnet34", 512)])
def test_lighter_segmenter_backbones_keep_the_output_stride_and_survive_keras_files(backbone, channels, tmp_path):
    config = config_from_dict({**SMOKE.to_dict(), "segmenter": {**SMOKE.to_dict()["segmenter"], "backbone": backbone}})
    segmenter = build_segmenter(config.segmenter, config.data.image_size, with_roie=True)
    assert segmenter_layer(segmenter, f"dilated_{backbone}").output.shape == (None, 64 // 8, 32 // 8, channels)
    assert segmenter.count_params() < build_segmenter(SMOKE.segmenter, SMOKE.data.image_size).count_params()
    segmenter_layer(segmenter, "roie_gate").alpha.assign(0.3)
    inputs = {"image": images(), "cam": RNG.random((2, 2, 1, 1)).astype("float32")}
    assert_keras_file_round_trip(segmenter, inputs, tmp_path / "segmenter.keras")
    # A weights file of the same network loads; ImageNet weights do not exist for it.
    segmenter_layer(segmenter, f"dilated_{backbone}").save_weights(tmp_path / "backbone.weights.h5")
    from_file = config_from_dict({**config.to_dict(), "segmenter": {**config.to_dict()["segmenter"], "weights": str(tmp_path / "backbone.weights.h5")}})
    loaded = segmenter_layer(build_segmenter(from_file.segmenter, from_file.data.image_size), f"dilated_{backbone}")
    np.testing.assert_array_equal(loaded.get_layer("conv1_conv").kernel.numpy(), segmenter_layer(segmenter, f"dilated_{backbone}").get_layer("conv1_conv").kernel.numpy())
    with pytest.raises(ValueError, match="imagenet' exists only for backbone resnet50"):
        config_from_dict({"segmenter": {"backbone": backbone}})
    with pytest.raises(ValueError, match="'backbone' must be one of resnet50, resnet34, resnet18, got 'vgg'"):
        config_from_dict({"segmenter": {"backbone": "vgg", "weights": "none"}})


@pytest.mark.parametrize("output_stride", [8, 16])
def test_decoder_option_classifies_at_stride_4_and_survives_keras_files(output_stride, tmp_path):
    settings = {**SMOKE.to_dict()["segmenter"], "decoder": "low_level", "decoder_filters": 8, "output_stride": output_stride}
    config = config_from_dict({**SMOKE.to_dict(), "segmenter": settings})
    assert SMOKE.segmenter.decoder == "none"  # the paper's PSPNet unless asked
    segmenter = build_segmenter(config.segmenter, config.data.image_size, with_roie=True)
    assert segmenter_layer(segmenter, "dilated_resnet50").output[0].shape[1:3] == (64 // output_stride, 32 // output_stride)
    assert segmenter_layer(segmenter, "dilated_resnet50").output[1].shape == (None, 64 // 4, 32 // 4, 256)
    assert segmenter_layer(segmenter, "classifier").output.shape == (None, 64 // 4, 32 // 4, 1)
    assert segmenter_layer(segmenter, "decoder").output.shape == (None, 16, 8, 8)
    segmenter_layer(segmenter, "roie_gate").alpha.assign(0.3)
    inputs = {"image": images(), "cam": RNG.random((2, 2, 1, 1)).astype("float32")}
    loaded = assert_keras_file_round_trip(segmenter, inputs, tmp_path / "segmenter.keras")
    assert segmenter_layer(loaded, "decoder").filters == 8
    # An N_S without the decoder cannot start this one (`segmenter.weights`): named.
    build_segmenter(SMOKE.segmenter, SMOKE.data.image_size).save(tmp_path / "pspnet.keras")
    started = config_from_dict({**config.to_dict(), "segmenter": {**config.to_dict()["segmenter"], "weights": str(tmp_path / "pspnet.keras")}})
    with pytest.raises(ValueError, match="pspnet.keras has no layer 'decoder'"):
        build_segmenter(started.segmenter, started.data.image_size)
    with pytest.raises(ValueError, match="'decoder' must be one of none, low_level, got 'unet'"):
        config_from_dict({"segmenter": {"decoder": "unet"}})
    with pytest.raises(ValueError, match="'decoder_filters' must be positive"):
        config_from_dict({"segmenter": {"decoder": "low_level", "decoder_filters": 0}})


def test_segmenter_starts_from_a_trained_segmenter_file_of_another_input_size(tmp_path):
    # Fine-tuning (e.g. an N_S trained on the synthetic generator): every layer is copied,
    # whatever the input size it was trained at; a gated source's gate is not.
    small = config_from_dict({**SMOKE.to_dict(), "segmenter": {**SMOKE.to_dict()["segmenter"], "backbone": "resnet18", "weights": "none"}})
    trained = build_segmenter(small.segmenter, small.data.image_size, with_roie=True)
    segmenter_layer(trained, "roie_gate").alpha.assign(0.5)
    for weight in trained.weights:  # BatchNorm statistics included
        weight.assign(RNG.normal(0.0, 0.1, weight.shape).astype("float32") + (1.0 if "variance" in weight.path else 0.0))
    trained.save(tmp_path / "segmenter.keras")
    options = {**small.to_dict()["segmenter"], "weights": str(tmp_path / "segmenter.keras")}
    larger = config_from_dict({**small.to_dict(), "segmenter": options, "data": {**small.to_dict()["data"], "image_height": 128, "image_width": 64}})
    started = build_segmenter(larger.segmenter, larger.data.image_size)
    assert started.input["image"].shape == (None, 128, 64, 1)
    for layer in segmenter_layers(started):
        for ours, theirs in zip(layer.weights, segmenter_layer(trained, layer.name).weights if layer.weights else []):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=f"{layer.name}: {ours.path}")
    assert float(segmenter_layer(build_segmenter(larger.segmenter, larger.data.image_size, with_roie=True), "roie_gate").alpha.numpy()) == 0.0
    assert_keras_file_round_trip(started, {"image": images(1, 128, 64)}, tmp_path / "started.keras")
    # Another pyramid (or backbone) does not fit, and says which layer; a missing or foreign
    # file is named.
    wider = config_from_dict({**larger.to_dict(), "segmenter": {**options, "pyramid_filters": 2 * small.segmenter.pyramid_filters}})
    with pytest.raises(ValueError, match="segmenter.keras: layer 'pyramid' has other shapes"):
        build_segmenter(wider.segmenter, wider.data.image_size)
    deeper = config_from_dict({**larger.to_dict(), "segmenter": {**options, "backbone": "resnet34"}})
    with pytest.raises(ValueError, match="segmenter.keras has no layer 'dilated_resnet34'"):
        build_segmenter(deeper.segmenter, deeper.data.image_size)
    with pytest.raises(FileNotFoundError, match="trained N_S file not found: .*nope.keras"):
        missing_file = config_from_dict({**larger.to_dict(), "segmenter": {**options, "weights": str(tmp_path / "nope.keras")}})
        build_segmenter(missing_file.segmenter, missing_file.data.image_size)
    (tmp_path / "garbage.keras").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="garbage.keras is not a loadable N_S"):
        foreign_file = config_from_dict({**larger.to_dict(), "segmenter": {**options, "weights": str(tmp_path / "garbage.keras")}})
        build_segmenter(foreign_file.segmenter, foreign_file.data.image_size)


def test_regressor_coordinate_channels_option_survives_keras_files(tmp_path):
    config = config_from_dict({**SMOKE.to_dict(), "regressor": {**SMOKE.to_dict()["regressor"], "coordinate_channels": True}})
    assert not SMOKE.regressor.coordinate_channels  # off unless asked (beyond the paper)
    regressor = build_regressor(config.regressor, config.data.image_size)
    assert regressor.input.shape == (None, 64, 32, 2)  # callers still pass the mode's channels
    assert regressor.get_layer("coordinates").output.shape == (None, 64, 32, 4)
    larger = config_from_dict({**config.to_dict(), "data": {**config.to_dict()["data"], "image_height": 128, "image_width": 64}})
    assert_keras_file_round_trip(build_regressor(larger.regressor, larger.data.image_size), images(2, 128, 64, 2), tmp_path / "regressor.keras")


def test_regressor_position_head_option_survives_keras_files(tmp_path):
    assert SMOKE.regressor.head_pooling == "average"  # the paper's CAM unless asked
    config = config_from_dict({**SMOKE.to_dict(), "regressor": {**SMOKE.to_dict()["regressor"], "head_pooling": "position"}})
    regressor = build_regressor(config.regressor, config.data.image_size)
    assert regressor.get_layer("head").kernel.shape == (2, 1, 1280, 3)  # one weight per position of the 2×1 map
    assert_keras_file_round_trip(regressor, images(2, 64, 32, 2), tmp_path / "regressor.keras")
    with pytest.raises(ValueError, match="key 'regressor.head_pooling' must be one of 'average', 'position', got 'max'"):
        config_from_dict({"regressor": {"head_pooling": "max", "weights": "none"}})


def test_regressor_input_downsample_option_reads_pooled_inputs_keeps_the_cam_grid_and_survives_keras_files(tmp_path):
    assert SMOKE.regressor.input_downsample == 1  # the paper's full resolution unless asked
    values = SMOKE.to_dict()
    config = config_from_dict({
        **values, "data": {**values["data"], "image_height": 128, "image_width": 64},
        "regressor": {**values["regressor"], "backbone": "plain_cnn", "coordinate_channels": True, "head_pooling": "position", "input_downsample": 2},
    })
    regressor = build_regressor(config.regressor, config.data.image_size)
    inputs = images(2, 128, 64, 2)
    out = regressor(inputs, training=False)
    assert out["features"].shape == (2, 2, 1, 512)  # the trunk reads 64×32
    assert out["cam"].shape == (2, 4, 2, 4)  # back on the (H/32, W/32) grid the ROIE gate takes
    cam = keras.ops.convert_to_numpy(out["cam"])
    assert cam.min() >= 0 and cam.max() <= 1 + 1e-6
    # What N_R reads is the 2×2 block mean: replacing every block by its mean changes nothing,
    # while another input changes the answer.
    blocks = inputs.reshape(2, 64, 2, 32, 2, 2).mean(axis=(2, 4))
    pooled = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)
    assert_same_outputs(regressor(pooled, training=False), out, atol=1e-5)
    assert not np.allclose(regressor(images(2, 128, 64, 2), training=False)["logits"], out["logits"], atol=1e-5)
    assert_keras_file_round_trip(regressor, inputs, tmp_path / "regressor.keras")
    with pytest.raises(ValueError, match="'input_downsample' must be 1, 2, 3 or 4, got 5"):
        config_from_dict({"regressor": {"input_downsample": 5, "weights": "none"}})
    with pytest.raises(ValueError, match="input_downsample 3 needs data.image_height and image_width to be multiples of 96, got 128×64"):
        config_from_dict({**values, "data": {**values["data"], "image_height": 128, "image_width": 64}, "regressor": {**values["regressor"], "input_downsample": 3}})
    thirds = config_from_dict({
        **config.to_dict(), "data": {**values["data"], "image_height": 192, "image_width": 96},
        "regressor": {**config.to_dict()["regressor"], "input_downsample": 3},
    })
    out = build_regressor(thirds.regressor, thirds.data.image_size)(images(1, 192, 96, 2), training=False)
    assert out["features"].shape == (1, 2, 1, 512)  # the trunk reads 64×32
    assert out["cam"].shape == (1, 6, 3, 4)
    with pytest.raises(ValueError, match="input_downsample 2 needs data.image_height and image_width to be multiples of 64, got 64×32"):
        config_from_dict({**values, "regressor": {**values["regressor"], "input_downsample": 2}})


def test_plain_cnn_regressor_option_gives_the_same_outputs_and_survives_keras_files(tmp_path):
    config = config_from_dict({**SMOKE.to_dict(), "regressor": {**SMOKE.to_dict()["regressor"], "backbone": "plain_cnn", "batch_norm_momentum": 0.9}})
    larger = config_from_dict({**config.to_dict(), "data": {**config.to_dict()["data"], "image_height": 128, "image_width": 64}})
    regressor = build_regressor(larger.regressor, larger.data.image_size)
    out = regressor(images(2, 128, 64, 2))
    assert out["angles"].shape == (2, 3) and out["cam"].shape == (2, 4, 2, 4) and out["features"].shape == (2, 4, 2, 512)
    assert regressor.count_params() < build_regressor(SMOKE.regressor, SMOKE.data.image_size).count_params()
    assert all(layer.momentum == 0.9 for layer in batch_norms(regressor))
    assert_keras_file_round_trip(regressor, images(2, 128, 64, 2), tmp_path / "regressor.keras")
    with pytest.raises(ValueError, match="imagenet' exists only for backbone efficientnet_b1"):
        config_from_dict({"regressor": {"backbone": "plain_cnn"}})


def test_resnet18_regressor_option_gives_the_same_outputs_and_survives_keras_files(tmp_path):
    values = SMOKE.to_dict()
    config = config_from_dict({**values, "regressor": {**values["regressor"], "backbone": "resnet18", "batch_norm_momentum": 0.9}})
    regressor = build_regressor(config.regressor, config.data.image_size)
    out = regressor(images(2, 64, 32, 2))
    assert out["angles"].shape == (2, 3) and out["cam"].shape == (2, 2, 1, 4) and out["features"].shape == (2, 2, 1, 512)
    assert any(layer.name == "dilated_resnet18" for layer in regressor.layers)
    assert batch_norms(regressor) and all(layer.momentum == 0.9 for layer in batch_norms(regressor))
    assert_keras_file_round_trip(regressor, images(2, 64, 32, 2), tmp_path / "regressor.keras")
    with pytest.raises(ValueError, match="imagenet' exists only for backbone efficientnet_b1, not resnet18"):
        config_from_dict({"regressor": {"backbone": "resnet18"}})
