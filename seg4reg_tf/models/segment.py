"""s(x): N_S's mask, through the ROIE gate's two passes when N_S is gated (paper Eq. 2).

The circularity of the gate (the CAM needs a mask, the mask needs the CAM) is resolved by
two passes, in training and at inference alike: the gated N_S first runs with a zero CAM —
with which it computes exactly the ungated network, whatever α is — the frozen N_R turns
that mask into a CAM, and the gated N_S runs again with it. Used by the phase trainers and
by the inference path.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from seg4reg_tf.models.pspnet import decode_features, encoder_features, segmenter_layer
from seg4reg_tf.models.regressor import regressor_inputs


def is_gated(segmenter: keras.Model) -> bool:
    """Whether N_S has the ROIE gate (a `cam` input)."""
    return isinstance(segmenter.input, dict) and "cam" in segmenter.input


def gate_is_idle(segmenter: keras.Model) -> bool:
    """Whether N_S is gated with α = 0 (the gate as built, or kept so by an roie phase whose
    epochs did not beat its start): f' = f, so the second pass repeats the first."""
    if not is_gated(segmenter):
        return False
    with tf.init_scope():  # the variable's value now, also while a tf.function is traced
        return float(segmenter_layer(segmenter, "roie_gate").alpha.numpy()) == 0.0


def segment(segmenter, regressor, image, mode: str, training: bool = False, skip_idle_gate: bool = False):
    """s(x): N_S's mask probabilities (B, H, W, 1), with the two-pass CAM when gated.

    Args:
        segmenter: N_S, gated or not.
        regressor: N_R, used (frozen, inference mode) only for a gated N_S.
        image: (B, H, W, 1) in [0, 1].
        mode: N_R's input mode.
        training: training mode of the second (final) N_S pass. In inference the two
            passes share one encoder run (the image is the same; only the gate's CAM
            differs), which halves the cost of the backbone.
        skip_idle_gate: for fixed weights only (inference on loaded networks, exports): a
            gated N_S whose α is 0 when this is traced runs one pass with a zero CAM, which
            computes the same mask without N_R's CAM pass. Training must not set it: α moves.

    Returns:
        {"mask", "mask_logits"} of the final pass, and "cam" (B, h, w, 1) when gated.
    """
    if not is_gated(segmenter):
        return segmenter({"image": image}, training=training)
    cam_shape = segmenter.input["cam"].shape[1:]
    zero_cam = ops.zeros((ops.shape(image)[0], *cam_shape), dtype=image.dtype)
    if skip_idle_gate and not training and gate_is_idle(segmenter):
        return {**decode_features(segmenter, encoder_features(segmenter, image), zero_cam), "cam": zero_cam}
    features = None if training else encoder_features(segmenter, image)
    if features is None:
        first = segmenter({"image": image, "cam": zero_cam}, training=False)["mask"]
    else:
        first = decode_features(segmenter, features, zero_cam)["mask"]
    first = ops.stop_gradient(first)
    cam = regressor(regressor_inputs(image, first, mode), training=False)["cam"][..., -1:]
    cam = ops.stop_gradient(cam)
    if features is None:
        return {**segmenter({"image": image, "cam": cam}, training=training), "cam": cam}
    return {**decode_features(segmenter, features, cam), "cam": cam}
