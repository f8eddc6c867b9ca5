"""Class activation map of the regressor N_R (paper §2, after Zhou et al. 2016).

For a regressor ending in global average pooling and a linear layer with weights w_kj,
the CAM of output j is C_j = Σ_k w_kj F_k over the last convolutional feature maps F_k, and
mean_hw(C_j) + b_j is exactly the output's logit. `ClassActivationMap` is that output
layer: it owns the weights, so the logits and the maps come from the same numbers and the
maps stay differentiable for the attention-regularisation loss (Eq. 4).

Beyond the paper, `pooling="position"` gives every position of the feature map its own
weights w_hwkj, so that logit_j = mean_hw C_j(h, w) + b_j with C_j(h, w) = Σ_k w_hwkj F_k(h, w):
the map is still the exact per-position contribution to the output, and the output can use
where a feature fires (average pooling discards it; the Cobb angles' S-test and position
test depend on it).
"""

from __future__ import annotations

import keras
from keras import ops

POOLINGS = ("average", "position")
# Keeps a nearly constant map (early in training) from amplifying float noise to [0, 1].
_EPSILON = 1e-3


def _per_position_glorot(channels: int, units: int):
    """Glorot-uniform limits of a (channels, units) kernel, for a kernel of any shape."""
    limit = (6.0 / (channels + units)) ** 0.5
    return keras.initializers.RandomUniform(-limit, limit)


def normalize_maps(maps):
    """Min-max normalises each map of each image to [0, 1], differentiably.

    Args:
        maps: (B, h, w, C) float.

    Returns:
        (B, h, w, C); a constant map becomes 0.
    """
    low = ops.min(maps, axis=(1, 2), keepdims=True)
    high = ops.max(maps, axis=(1, 2), keepdims=True)
    return (maps - low) / (high - low + _EPSILON)


def resize_maps(maps, height: int, width: int):
    """Bilinearly resizes (B, h, w, C) maps to (B, height, width, C)."""
    return ops.image.resize(maps, (height, width), interpolation="bilinear")


@keras.saving.register_keras_serializable(package="seg4reg")
class ClassActivationMap(keras.layers.Layer):
    """Linear output layer over pooled features that also returns its class activation maps.

    Args:
        units: number of outputs (3 Cobb angles).
        dropout: dropout rate on the pooled features (on the features for
            `pooling="position"`) during training.
        normalize: return maps min-max normalised per image (True) or the raw Σ_k w_k F_k.
        pooling: "average" (the paper's: one weight per channel, logits from the mean over
            positions) or "position" (one weight per position and channel, logits still
            from the mean over positions; needs a static h × w).

    Call:
        features: (B, h, w, K) last convolutional feature maps.

    Returns:
        (logits (B, units), maps (B, h, w, units + 1)): one map per output and, last, their
        mean.
    """

    def __init__(self, units: int = 3, dropout: float = 0.0, normalize: bool = True, pooling: str = "average", **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown CAM pooling {pooling!r}; expected one of {POOLINGS}")
        self.units = units
        self.dropout = dropout
        self.normalize = normalize
        self.pooling = pooling
        self.dropout_layer = keras.layers.Dropout(dropout)

    def build(self, features_shape):
        _, height, width, channels = features_shape
        shape, initializer = (channels, self.units), "glorot_uniform"
        if self.pooling == "position":
            if height is None or width is None:
                raise ValueError(f"pooling 'position' needs a static feature map size, got {features_shape}")
            # Each position's weights start as the average head's: under the mean over
            # positions an Adam step then moves a logit as much as it moves the paper's head
            # (a sum would move it h·w times more and saturate the sigmoid in one step).
            shape, initializer = (height, width, *shape), _per_position_glorot(channels, self.units)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=initializer)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, features, training=None):
        if self.pooling == "position":
            maps = ops.einsum("bhwk,hwkj->bhwj", features, self.kernel)
            dropped = maps  # the maps themselves (for the AR loss and the gate) stay without dropout
            if self.dropout:
                dropped = ops.einsum("bhwk,hwkj->bhwj", self.dropout_layer(features, training=training), self.kernel)
            logits = ops.mean(dropped, axis=(1, 2)) + self.bias
        else:
            pooled = self.dropout_layer(ops.mean(features, axis=(1, 2)), training=training)
            logits = ops.matmul(pooled, self.kernel) + self.bias
            maps = ops.einsum("bhwk,kj->bhwj", features, self.kernel)
        maps = ops.concatenate([maps, ops.mean(maps, axis=-1, keepdims=True)], axis=-1)
        if self.normalize:
            maps = normalize_maps(maps)
        return logits, maps

    def compute_output_shape(self, features_shape):
        batch, height, width, _ = features_shape
        return (batch, self.units), (batch, height, width, self.units + 1)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "dropout": self.dropout, "normalize": self.normalize, "pooling": self.pooling})
        return config
