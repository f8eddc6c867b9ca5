"""Region-of-interest enhancement gate of N_S (paper Eq. 2).

f'_m = α · (C ∘ f_m) + f_m: the regressor's class activation map C re-weights the
segmenter's middle feature map f_m. α is a learnable scalar initialised to 0, so a gated
segmenter computes exactly what the ungated one did until training moves α.
"""

from __future__ import annotations

import keras
from keras import ops

from seg4reg_tf.layers.cam import resize_maps


@keras.saving.register_keras_serializable(package="seg4reg")
class ROIEGate(keras.layers.Layer):
    """f' = α·(CAM ∘ f) + f with the CAM resized to f's grid.

    Call:
        inputs: [features (B, H, W, C), cam (B, h, w, 1)] — the CAM in [0, 1], any size;
            it is bilinearly resized to H × W and broadcast over the C channels.

    Returns:
        (B, H, W, C) gated features.
    """

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(), initializer="zeros")

    def call(self, inputs):
        features, cam = inputs
        shape = ops.shape(features)
        cam = resize_maps(cam, shape[1], shape[2])
        return self.alpha * (cam * features) + features

    def compute_output_shape(self, input_shape):
        return input_shape[0]
