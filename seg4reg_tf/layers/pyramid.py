"""PSPNet's pyramid module with dilated convolutions in place of pooling (Seg4Reg, §2).

PSPNet pools the backbone features into 1×1, 2×2, 3×3 and 6×6 bins to see context at
several scales; Seg4Reg replaces the pooling by parallel 3×3 convolutions with growing
dilation rates (a 1×1 convolution for rate 1), which keep the full resolution. The branches
are concatenated with the input features and fused by a 3×3 convolution.
"""

from __future__ import annotations

import keras
from keras import layers


def conv_bn_relu(filters: int, size: int, name: str, momentum: float, synchronized: bool, rate: int = 1) -> list:
    """[Conv2D (same padding, no bias), BatchNormalization, ReLU] named `<name>_conv/_bn/_relu`:
    the unit of the pyramid and the decoder."""
    return [
        layers.Conv2D(filters, size, padding="same", dilation_rate=rate, use_bias=False, name=f"{name}_conv"),
        layers.BatchNormalization(momentum=momentum, synchronized=synchronized, name=f"{name}_bn"),
        layers.ReLU(name=f"{name}_relu"),
    ]


def build_stack(stack: list, shape) -> tuple:
    """Builds the layers of `stack` in order from input `shape`; returns the output shape."""
    for layer in stack:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


def apply_stack(stack: list, x, training):
    """Runs `stack` on `x`, passing `training` to its BatchNormalization layers."""
    for layer in stack:
        x = layer(x, training=training) if isinstance(layer, layers.BatchNormalization) else layer(x)
    return x


@keras.saving.register_keras_serializable(package="seg4reg")
class DilatedPyramid(keras.layers.Layer):
    """Parallel dilated convolution branches, concatenated with the input and fused.

    Args:
        filters: channels of each branch and of the fused output.
        dilations: one branch per rate; rate 1 is a 1×1 convolution.
        synchronized: synchronise BatchNorm statistics across replicas (tf.distribute).
        momentum: momentum of the BatchNorm moving statistics.

    Call:
        features: (B, H, W, C).

    Returns:
        (B, H, W, filters).
    """

    def __init__(self, filters: int = 512, dilations=(1, 6, 12, 18), synchronized: bool = False, momentum: float = 0.99, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.dilations = tuple(dilations)
        self.synchronized = synchronized
        self.momentum = momentum
        self.branches = [
            conv_bn_relu(filters, 1 if rate == 1 else 3, f"branch{rate}", momentum, synchronized, rate) for rate in self.dilations
        ]
        self.fuse = conv_bn_relu(filters, 3, "fuse", momentum, synchronized)

    def build(self, input_shape):
        for stack in self.branches:
            build_stack(stack, input_shape)
        build_stack(self.fuse, (*input_shape[:-1], input_shape[-1] + self.filters * len(self.dilations)))

    def call(self, features, training=None):
        outputs = [features] + [apply_stack(stack, features, training) for stack in self.branches]
        return apply_stack(self.fuse, keras.ops.concatenate(outputs, axis=-1), training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "dilations": list(self.dilations), "synchronized": self.synchronized, "momentum": self.momentum})
        return config
