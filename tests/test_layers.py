"""CAM, ROIE gate, dilated pyramid and the stride-4 decoder: the paper's equations,
gradients, serialisation."""

import keras
import numpy as np
import tensorflow as tf

from seg4reg_tf.layers import ClassActivationMap, CoordinateChannels, DilatedPyramid, LowLevelDecoder, ROIEGate, normalize_maps, resize_maps
from tests.harness import assert_keras_file_round_trip, assert_layer_config_round_trip

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(2, 4, 3, 8)).astype("float32")


def test_cam_is_the_weighted_sum_of_feature_maps():
    layer = ClassActivationMap(units=3, normalize=False)
    logits, maps = (t.numpy() for t in layer(FEATURES))
    kernel, bias = (w.numpy() for w in layer.weights)
    assert maps.shape == (2, 4, 3, 4) and logits.shape == (2, 3)
    for b in range(2):
        for j in range(3):
            explicit = sum(kernel[k, j] * FEATURES[b, :, :, k] for k in range(8))  # Σ_k w_kj F_k
            np.testing.assert_allclose(maps[b, :, :, j], explicit, atol=1e-5)
            # The CAM identity: its spatial mean plus the bias is the logit.
            assert abs(explicit.mean() + bias[j] - logits[b, j]) < 1e-5
        np.testing.assert_allclose(maps[b, :, :, 3], maps[b, :, :, :3].mean(axis=-1), atol=1e-6)


def test_positional_cam_gives_each_position_its_own_weights():
    """pooling="position": C_j(h, w) = Σ_k w_hwkj F_k(h, w) and the logit is its mean plus
    the bias, so moving a feature to another position changes the output."""
    layer = ClassActivationMap(units=3, normalize=False, pooling="position")
    logits, maps = (t.numpy() for t in layer(FEATURES))
    kernel, bias = (w.numpy() for w in layer.weights)
    assert kernel.shape == (4, 3, 8, 3) and maps.shape == (2, 4, 3, 4)
    explicit = np.einsum("bhwk,hwkj->bhwj", FEATURES, kernel)
    np.testing.assert_allclose(maps[..., :3], explicit, atol=1e-5)
    np.testing.assert_allclose(logits, explicit.mean(axis=(1, 2)) + bias, atol=1e-5)
    spike = np.zeros((2, 4, 3, 8), "float32")
    spike[0, 0, 0, 0] = spike[1, 3, 2, 0] = 1.0  # one feature, at two places
    shifted = layer(spike)[0].numpy()
    assert np.abs(shifted[0] - shifted[1]).max() > 1e-3
    average = ClassActivationMap(units=3, normalize=False)(spike)[0].numpy()
    np.testing.assert_allclose(average[0], average[1], atol=1e-6)  # the paper's head cannot tell


def test_normalised_cam_is_in_unit_range_and_differentiable():
    layer = ClassActivationMap(units=3)
    features = tf.Variable(FEATURES)
    with tf.GradientTape() as tape:
        _, maps = layer(features)
        loss = tf.reduce_sum(maps[..., 0] * tf.constant(RNG.random((2, 4, 3)), tf.float32))
    per_image = maps.numpy().reshape(2, -1, 4)
    np.testing.assert_allclose(per_image.min(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(per_image.max(axis=1), 1.0, atol=2e-3)  # ε = 1e-3 over a range of ~5
    gradients = tape.gradient(loss, [features, layer.kernel])
    for gradient in gradients:
        assert gradient is not None and np.isfinite(gradient.numpy()).all() and np.abs(gradient.numpy()).sum() > 0
    assert normalize_maps(tf.ones((1, 2, 2, 1))).numpy().max() == 0.0  # constant map → 0


def test_cam_resizes_to_any_grid():
    assert resize_maps(tf.ones((2, 4, 3, 4)), 64, 32).shape == (2, 64, 32, 4)


def test_roie_gate_is_identity_at_alpha_zero_and_follows_eq_2():
    gate = ROIEGate()
    features = RNG.normal(size=(2, 8, 4, 5)).astype("float32")
    cam = np.full((2, 2, 1, 1), 0.3, "float32")
    np.testing.assert_array_equal(gate([features, cam]).numpy(), features)
    gate.alpha.assign(0.5)
    # Constant CAM 0.3 resizes to 0.3 everywhere: f' = 0.5·0.3·f + f = 1.15 f.
    np.testing.assert_allclose(gate([features, cam]).numpy(), 1.15 * features, rtol=1e-5)


def test_gradient_reaches_alpha_from_zero():
    gate = ROIEGate()
    features = tf.constant(RNG.normal(size=(2, 8, 4, 5)), tf.float32)
    cam = tf.constant(RNG.random((2, 2, 1, 1)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(gate([features, cam]) - 1.0))
    gradient = tape.gradient(loss, gate.alpha)
    assert gradient is not None and abs(float(gradient)) > 1e-3


def test_pyramid_keeps_resolution_and_sets_channels():
    pyramid = DilatedPyramid(filters=6, dilations=(1, 2, 3))
    out = pyramid(FEATURES)
    assert out.shape == (2, 4, 3, 6)
    assert {layer.dilation_rate for layer in pyramid.branches[2] if hasattr(layer, "dilation_rate")} == {(3, 3)}


def test_decoder_works_on_the_low_level_grid_and_uses_both_inputs():
    low_level = RNG.normal(size=(2, 16, 12, 5)).astype("float32")
    decoder = LowLevelDecoder(filters=6, low_level_filters=3)
    out = decoder([FEATURES, low_level], training=False).numpy()
    assert out.shape == (2, 16, 12, 6)
    # Each input reaches the output: the skip carries detail the coarse features lack.
    assert np.abs(decoder([FEATURES, 0 * low_level], training=False).numpy() - out).max() > 1e-3
    assert np.abs(decoder([0 * FEATURES, low_level], training=False).numpy() - out).max() > 1e-3


def test_layer_configs_round_trip():
    assert_layer_config_round_trip(ClassActivationMap(units=3, dropout=0.2), FEATURES)
    assert_layer_config_round_trip(ClassActivationMap(units=3, dropout=0.2, pooling="position"), FEATURES)
    assert_layer_config_round_trip(DilatedPyramid(filters=4, dilations=(1, 2)), FEATURES)
    assert_layer_config_round_trip(LowLevelDecoder(filters=4, low_level_filters=2, momentum=0.9), [FEATURES, RNG.normal(size=(2, 8, 6, 5)).astype("float32")])
    gate = ROIEGate()
    gate([FEATURES, np.ones((2, 2, 2, 1), "float32")])
    gate.alpha.assign(0.7)
    assert_layer_config_round_trip(gate, [FEATURES, RNG.random((2, 2, 2, 1)).astype("float32")])


def test_layers_survive_a_keras_file(tmp_path):
    features = keras.Input((4, 3, 8))
    cam_input = keras.Input((2, 2, 1))
    gated = ROIEGate(name="gate")([features, cam_input])
    pyramid = DilatedPyramid(filters=4, dilations=(1, 2), name="pyramid")(gated)
    logits, maps = ClassActivationMap(units=3, name="cam")(pyramid)
    model = keras.Model([features, cam_input], {"logits": logits, "maps": maps})
    model.get_layer("gate").alpha.assign(0.25)
    inputs = [FEATURES, RNG.random((2, 2, 2, 1)).astype("float32")]
    loaded = assert_keras_file_round_trip(model, inputs, tmp_path / "layers.keras")
    assert float(loaded.get_layer("gate").alpha.numpy()) == 0.25


def test_coordinate_channels_append_row_and_column():
    inputs = RNG.random((2, 4, 3, 1)).astype("float32")
    out = CoordinateChannels()(inputs).numpy()
    assert out.shape == (2, 4, 3, 3)
    np.testing.assert_array_equal(out[..., :1], inputs)
    np.testing.assert_allclose(out[1, :, 0, 1], [0.125, 0.375, 0.625, 0.875])  # row centres / 4
    np.testing.assert_allclose(out[0, 2, :, 2], [1 / 6, 0.5, 5 / 6], rtol=1e-6)  # column centres / 3
    assert np.ptp(out[..., 1], axis=2).max() == 0 and np.ptp(out[..., 2], axis=1).max() == 0
    assert_layer_config_round_trip(CoordinateChannels(name="coordinates"), inputs)
