"""A decoder at output stride 4 for N_S (beyond the paper; DeepLabv3+'s, Chen et al. 2018).

PSPNet upsamples its classifier's map by the output stride in one bilinear step. At
output stride 8 on a 256×128 input that map is 32×16: a mask rebuilt from it cannot show
the 2–3-pixel intervertebral gaps, and its Dice against the true AASCE masks cannot
exceed 85.6% on average even for the best such map (least-squares fit of the true masks;
`bench/mask_ceiling.py`, docs/benchmarks.md). This decoder upsamples the pyramid's features to stride 4, joins them
with the backbone's stride-4 features (projected to few channels, so the pyramid's
context dominates) and fuses them with two 3×3 convolutions; the classifier then works at
stride 4 (ceiling 93.7%).
"""

from __future__ import annotations

import keras

from seg4reg_tf.layers.pyramid import apply_stack, build_stack, conv_bn_relu


@keras.saving.register_keras_serializable(package="seg4reg")
class LowLevelDecoder(keras.layers.Layer):
    """Pyramid features upsampled to the low-level features' grid, joined and fused.

    Args:
        filters: channels of the two fusing 3×3 convolutions (the output).
        low_level_filters: channels the low-level features are projected to (1×1).
        synchronized: synchronise BatchNorm statistics across replicas (tf.distribute).
        momentum: momentum of the BatchNorm moving statistics.

    Call:
        [features (B, h, w, C), low_level (B, H, W, C_low)] with H, W multiples of h, w.

    Returns:
        (B, H, W, filters).
    """

    def __init__(self, filters: int = 64, low_level_filters: int = 48, synchronized: bool = False, momentum: float = 0.99, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.low_level_filters = low_level_filters
        self.synchronized = synchronized
        self.momentum = momentum
        self.project = conv_bn_relu(low_level_filters, 1, "project", momentum, synchronized)
        self.fuse = conv_bn_relu(filters, 3, "fuse1", momentum, synchronized) + conv_bn_relu(filters, 3, "fuse2", momentum, synchronized)

    def build(self, input_shape):
        features_shape, low_shape = input_shape
        build_stack(self.project, low_shape)
        build_stack(self.fuse, (*low_shape[:-1], features_shape[-1] + self.low_level_filters))

    def call(self, inputs, training=None):
        features, low_level = inputs
        height, width = low_level.shape[1], low_level.shape[2]
        upsampled = keras.ops.image.resize(features, (height, width), interpolation="bilinear")
        joined = keras.ops.concatenate([upsampled, apply_stack(self.project, low_level, training)], axis=-1)
        return apply_stack(self.fuse, joined, training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[1][:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "low_level_filters": self.low_level_filters,
            "synchronized": self.synchronized, "momentum": self.momentum,
        })
        return config
