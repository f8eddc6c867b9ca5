"""Checks every custom layer and model gets: config round-trip and .keras reload."""

import keras
import numpy as np


def assert_same_outputs(first, second, atol=1e-4):
    flat_a, flat_b = keras.tree.flatten(first), keras.tree.flatten(second)
    assert len(flat_a) == len(flat_b)
    for a, b in zip(flat_a, flat_b):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=atol)


def assert_layer_config_round_trip(layer, inputs):
    """A layer rebuilt from its config, given the same weights, computes the same outputs."""
    expected = layer(inputs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    assert_same_outputs(expected, clone(inputs))
    assert clone.get_config() == layer.get_config()


def assert_keras_file_round_trip(model, inputs, path):
    """model.save(.keras) → keras.saving.load_model → equal outputs (inference mode)."""
    expected = model(inputs, training=False)
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert_same_outputs(expected, loaded(inputs, training=False))
    return loaded
