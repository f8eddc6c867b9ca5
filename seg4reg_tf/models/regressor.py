"""N_R: EfficientNet-B1 whose last layer gives the 3 Cobb angles through a sigmoid.

inputs (B, H, W, C) in [0, 1] → ×255 (Keras' EfficientNet rescales internally) →
EfficientNet-B1 trunk (B, H/32, W/32, 1280) = `features` → `ClassActivationMap` head:
`logits` (B, 3), `cam` (B, H/32, W/32, 4) = one map per angle and their mean, each
min-max normalised → `angles` = sigmoid(logits) in [0, 1] (× `data.transforms.ANGLE_SCALE_DEGREES`).

Input modes: "image" (C = 1, the X-ray), "mask" (C = 1, the spine mask) and "image+mask"
(C = 2, X-ray then mask). The Siamese branches of the attention-regularisation module share
one network: branch A sees the mode's input, branch B the mask in the same channel layout:
for "image+mask" that is (zeros, mask), a zero image channel; for "image" the mask alone in
the image channel; for "mask" both branches see the mask, so L_AR is 0 by construction.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import layers, ops

from seg4reg_tf.config import PRETRAIN_IN_WORKDIR, RegressorConfig
from seg4reg_tf.layers import ClassActivationMap, CoordinateChannels
from seg4reg_tf.models.backbone import PLAIN_CNN_FIRST_CONV, dilated_resnet, efficientnet_b1, plain_cnn

INPUT_CHANNELS = {"image": 1, "mask": 1, "image+mask": 2}
# Input size / size of N_R's feature map and CAM (EfficientNet's total stride).
REGRESSOR_STRIDE = 32


def regressor_inputs(image, mask, mode: str):
    """Composes N_R's input: (B, H, W, C) from image and mask, each (B, H, W, 1) in [0, 1]."""
    if mode == "image":
        return image
    if mode == "mask":
        return mask
    if mode == "image+mask":
        return ops.concatenate([image, mask], axis=-1)
    raise ValueError(f"unknown regressor input mode {mode!r}; expected one of {sorted(INPUT_CHANNELS)}")


def mask_branch_inputs(mask, mode: str):
    """Branch B of the AR module: the mask alone, in the channel layout of `mode`."""
    if mode == "image+mask":
        return ops.concatenate([ops.zeros_like(mask), mask], axis=-1)
    return regressor_inputs(mask, mask, "image" if mode == "image" else "mask")


def build_regressor(settings: RegressorConfig, image_size: tuple[int, int], *, synchronized: bool = False, name: str = "regressor") -> keras.Model:
    """Builds N_R.

    Args:
        settings: the config's `regressor` section.
        image_size: the input (H, W) in pixels (`data.image_size`).
        synchronized: synchronised BatchNorm (for tf.distribute strategies).
        name: model name.

    Returns:
        A model (B, H, W, C) → {"angles" (B, 3) in [0, 1], "logits" (B, 3),
        "cam" (B, H/32, W/32, 4) in [0, 1], "features" (B, H/32k, W/32k, 1280 for
        EfficientNet-B1, 512 for ResNet-18 and the plain CNN; k = `input_downsample`)}.
    """
    if settings.weights == PRETRAIN_IN_WORKDIR:
        raise ValueError(
            f"regressor.weights: {PRETRAIN_IN_WORKDIR} names the trunk `train` pretrains into its workdir; "
            "build with `training.run.with_pretrained_trunk(config, workdir)`, or give a weights file"
        )
    channels = INPUT_CHANNELS[settings.input_mode]
    shape = (*image_size, channels)
    inputs = keras.Input(shape, name="inputs")
    x = inputs
    if settings.input_downsample > 1:
        x = layers.AveragePooling2D(settings.input_downsample, name="downsample")(x)
        shape = (shape[0] // settings.input_downsample, shape[1] // settings.input_downsample, channels)
    if settings.coordinate_channels:
        x = CoordinateChannels(name="coordinates")(x)
        shape = (*shape[:2], channels + 2)
    x = layers.Rescaling(255.0, name="to_255")(x)
    if settings.backbone == "plain_cnn":
        trunk = plain_cnn(shape, synchronized, settings.batch_norm_momentum)
        if settings.weights != "none":
            load_plain_trunk(trunk, settings.weights, image_channel=settings.input_mode == "image+mask")
    elif settings.backbone == "resnet18":
        trunk = dilated_resnet(shape, "resnet18", REGRESSOR_STRIDE, settings.weights, synchronized, settings.batch_norm_momentum)
    else:
        trunk = efficientnet_b1(shape, settings.weights, synchronized, settings.batch_norm_momentum, settings.stochastic_depth)
    features = trunk(x)
    features = layers.Identity(name="features")(features)
    logits, cam = ClassActivationMap(3, settings.dropout, pooling=settings.head_pooling, name="head")(features)
    if settings.input_downsample > 1:  # back to the (H/32, W/32) grid the ROIE gate takes
        cam = layers.UpSampling2D(settings.input_downsample, interpolation="bilinear", name="cam_upsample")(cam)
    angles = layers.Activation("sigmoid", name="angles")(logits)
    outputs = {"angles": angles, "logits": logits, "cam": cam, "features": features}
    return keras.Model(inputs, outputs, name=name)


def load_plain_trunk(trunk: keras.Model, path: str, image_channel: bool = False) -> None:
    """Loads a plain CNN trunk written by `training.pretraining.save_trunk` (or any plain CNN
    of the same input channels).

    Pretraining writes a trunk for the "mask" input mode. With `image_channel` (the
    "image+mask" mode, whose input is the image channel followed by the mask mode's
    channels) such a trunk also loads: the first convolution's filters for the image channel
    start at zero, so the loaded N_R computes exactly what the mask-mode trunk computes
    until training gives the image weight.

    Raises:
        ValueError naming the file when it fits neither way.
    """
    channels = trunk.input_shape[-1]
    try:
        _load_weights(trunk, path)
        return
    except (ValueError, KeyError, OSError) as error:
        if not image_channel:
            raise _not_a_trunk(path, channels, error) from error
    shape = trunk.input_shape[1:]
    source = plain_cnn((*shape[:-1], channels - 1))
    try:
        _load_weights(source, path)
    except (ValueError, KeyError, OSError) as error:
        raise _not_a_trunk(path, channels, error) from error
    for layer in trunk.layers:
        values = source.get_layer(layer.name).get_weights()
        if layer.name == PLAIN_CNN_FIRST_CONV:  # (3, 3, C − 1, 32) → zero filters for the image channel first
            values[0] = np.concatenate([np.zeros_like(values[0][:, :, :1]), values[0]], axis=2)
        layer.set_weights(values)


def _load_weights(model: keras.Model, path: str) -> None:
    with warnings.catch_warnings():
        # Keras 3.x warns about an internal container of Functional models that holds no
        # weights; every weight loads (tests/test_pretrain.py compares them).
        warnings.filterwarnings("ignore", message="Skipping nested container")
        model.load_weights(path)


def _not_a_trunk(path: str, channels: int, error: Exception) -> ValueError:
    return ValueError(
        f"{path}: not a plain CNN trunk for {channels} input channels (pretraining writes one for the "
        f"'mask' input mode with the config's coordinate channels): {error}"
    )


def start_at_mean_angles(regressor: keras.Model, mean_angles, keep_kernel: bool = False) -> None:
    """Makes the constant predictor of `mean_angles` N_R's starting point.

    With a zero bias a new N_R starts at 90° for every angle (scale 180°) while AASCE means
    are about 39°, 20° and 18°; at Adam's step size the bias alone needs ~10³ steps to get
    there, which small CPU runs never leave. The bias is set to the logits of the mean.

    The head's kernel is zeroed too, so N_R outputs the mean for every input
    and training spends itself on the residual. With a random (Glorot) kernel on top of
    that bias, a from-scratch trunk's features move the logits far from the mean (measured
    on a batch of 4 smoke-sized masks: a starting L1 of 0.10–0.21 against 0.027 for the
    mean), the outputs collapse within a few steps and the loss stays above the mean's;
    from the zero kernel the same batch goes from 0.027 to 0.003 in 60 steps
    (docs/benchmarks.md). The trunk receives gradient from the second step on.

    Args:
        regressor: N_R from `build_regressor`.
        mean_angles: (3,) training-mean angles in [0, 1] (degrees / angle scale).
        keep_kernel: set the bias only, over the random kernel (how N_R started before; the
            benches that reproduce those figures use it).
    """
    mean = np.clip(np.asarray(mean_angles, dtype="float64"), 1e-3, 1 - 1e-3)
    head = regressor.get_layer("head")
    head.bias.assign(np.log(mean / (1 - mean)).astype("float32"))
    if not keep_kernel:
        head.kernel.assign(np.zeros(head.kernel.shape, "float32"))
