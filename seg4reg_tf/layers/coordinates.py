"""Coordinate channels (CoordConv, Liu et al. 2018) for N_R's input.

The Cobb algorithm's S-test and position test depend on where a curve lies in the image,
while a trunk ending in global average pooling sees features with little absolute position.
Appending the pixel's row and column as two extra input channels lets the convolutions
use position directly. This is beyond the paper (a config option, off by default).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="seg4reg")
class CoordinateChannels(keras.layers.Layer):
    """(B, H, W, C) → (B, H, W, C + 2): appends y and x, each running 0 → 1 across the
    image (pixel centres), in the inputs' dtype."""

    def call(self, inputs):
        shape = ops.shape(inputs)
        height, width = shape[1], shape[2]
        rows = (ops.cast(ops.arange(height), inputs.dtype) + 0.5) / ops.cast(height, inputs.dtype)
        cols = (ops.cast(ops.arange(width), inputs.dtype) + 0.5) / ops.cast(width, inputs.dtype)
        y = ops.broadcast_to(rows[None, :, None, None], (shape[0], height, width, 1))
        x = ops.broadcast_to(cols[None, None, :, None], (shape[0], height, width, 1))
        return ops.concatenate([inputs, y, x], axis=-1)

    def compute_output_shape(self, input_shape):
        channels = None if input_shape[-1] is None else input_shape[-1] + 2
        return (*input_shape[:-1], channels)
