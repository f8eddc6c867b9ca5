"""Backbones: ResNet-50 (or a lighter ResNet-18/34) with dilated last stages (N_S) and
EfficientNet-B1 (N_R).

The dilated ResNets are built here with keras.applications' layer names, so ImageNet or a
local weights file of the stock `keras.applications.ResNet50` copy in by name: dilation
and stride change how a kernel is applied, not its shape. Pretrained first convolutions
are adapted to 1- or 2-channel inputs (`adapt_channels`).
"""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np
from keras import layers

from seg4reg_tf.models.walk import all_layers

_BN_EPSILON = 1.001e-5
# Stages of each depth: (name, block filters, blocks). ResNet-50 uses bottleneck blocks
# (output 4 × filters channels), ResNet-18/34 basic blocks (output = filters channels).
RESNET_STAGES = {
    "resnet18": (("conv2", 64, 2), ("conv3", 128, 2), ("conv4", 256, 2), ("conv5", 512, 2)),
    "resnet34": (("conv2", 64, 3), ("conv3", 128, 4), ("conv4", 256, 6), ("conv5", 512, 3)),
    "resnet50": (("conv2", 64, 3), ("conv3", 128, 4), ("conv4", 256, 6), ("conv5", 512, 3)),
}


def _bottleneck(x, filters, stride, dilation, shortcut_conv, name, synchronized):
    """keras.applications' residual_block_v1 with a dilation rate on the 3×3 convolution."""

    def bn(y, suffix):
        return layers.BatchNormalization(epsilon=_BN_EPSILON, synchronized=synchronized, name=f"{name}_{suffix}_bn")(y)

    shortcut = x
    if shortcut_conv:
        shortcut = bn(layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x), "0")
    x = layers.Activation("relu", name=f"{name}_1_relu")(bn(layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x), "1"))
    x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, name=f"{name}_2_conv")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(bn(x, "2"))
    x = bn(layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x), "3")
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def _basic_block(x, filters, stride, dilation, shortcut_conv, name, synchronized):
    """ResNet-18/34's two 3×3 convolutions, the second with a dilation rate."""

    def bn(y, suffix):
        return layers.BatchNormalization(epsilon=_BN_EPSILON, synchronized=synchronized, name=f"{name}_{suffix}_bn")(y)

    shortcut = x
    if shortcut_conv:
        shortcut = bn(layers.Conv2D(filters, 1, strides=stride, name=f"{name}_0_conv")(x), "0")
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", dilation_rate=1 if stride > 1 else dilation, name=f"{name}_1_conv")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(bn(x, "1"))
    x = bn(layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, name=f"{name}_2_conv")(x), "2")
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def dilated_resnet(
    input_shape, depth: str = "resnet50", output_stride: int = 8, weights: str = "none", synchronized: bool = False,
    batch_norm_momentum: float = 0.99, low_level: bool = False,
) -> keras.Model:
    """A ResNet whose later stages trade stride for dilation.

    Args:
        input_shape: (H, W, C), inputs already preprocessed (ImageNet scale, 0–255 minus mean).
        depth: "resnet50" (the paper's), "resnet34" or "resnet18".
        output_stride: 8 (conv4 and conv5 dilated by 2 and 4), 16 (conv5 by 2) or 32 (stock).
        weights: "none", or for ResNet-50 also "imagenet" or a path to weights of the stock
            keras.applications.ResNet50 without top. keras.applications has no ResNet-18/34,
            so those take "none" or a weights file of this same network (`save_weights`).
        synchronized: synchronised BatchNorm for tf.distribute.
        batch_norm_momentum: momentum of every BatchNorm's moving statistics
            (`segmenter.batch_norm_momentum` for N_S, `regressor.batch_norm_momentum` for a
            ResNet-18 N_R).
        low_level: also output the first stage's features (stride 4), for a decoder.

    Returns:
        A model named `dilated_<depth>`, (B, H, W, C) → (B, H/output_stride,
        W/output_stride, 2048 for ResNet-50 or 512 for ResNet-18/34); with `low_level`,
        [that, (B, H/4, W/4, 256 for ResNet-50 or 64)].
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    if depth not in RESNET_STAGES:
        raise ValueError(f"backbone must be one of {sorted(RESNET_STAGES)}, got {depth!r}")
    block_fn = _bottleneck if depth == "resnet50" else _basic_block
    inputs = keras.Input(input_shape, name="backbone_input")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, synchronized=synchronized, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    stride, dilation = 4, 1
    for index, (stage, filters, blocks) in enumerate(RESNET_STAGES[depth]):
        first_stride = 1 if index == 0 else 2
        if index > 0 and stride >= output_stride:
            first_stride, dilation = 1, dilation * 2
        stride *= first_stride
        for block in range(1, blocks + 1):
            shortcut_conv = block == 1 and (depth == "resnet50" or index > 0)
            x = block_fn(
                x, filters, first_stride if block == 1 else 1, dilation, shortcut_conv,
                f"{stage}_block{block}", synchronized,
            )
        if index == 0:
            stride4 = x
    model = keras.Model(inputs, [x, stride4] if low_level else x, name=f"dilated_{depth}")
    set_batch_norm_momentum(model, batch_norm_momentum)
    if depth == "resnet50":
        load_pretrained(model, keras.applications.ResNet50, weights, "ResNet-50")
    elif weights == "imagenet":
        raise ValueError(f"{depth}: keras.applications has no ImageNet weights for it; use 'none' or a weights file")
    elif weights != "none":
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"{depth} weights file not found: {weights}")
        model.load_weights(weights)
    return model


def efficientnet_b1(
    input_shape, weights: str = "none", synchronized: bool = False, batch_norm_momentum: float = 0.99, stochastic_depth: bool = True
) -> keras.Model:
    """EfficientNet-B1 trunk for 1- or 2-channel inputs in [0, 255].

    Keras' EfficientNet rescales by 1/255 and normalises internally; that normalisation is
    set here to ImageNet's gray mean and deviation for every `weights` choice, so a model
    behaves the same whether its weights came from ImageNet, a file or training.
    `synchronized` switches its BatchNormalization layers to global batch statistics under
    a tf.distribute strategy (keras.applications builds them unsynchronised).
    `batch_norm_momentum` replaces Keras' 0.99 on every BatchNormalization; without
    `stochastic_depth` the drop-connect Dropout layers of the blocks get rate 0. Both are
    read when the layers are called and saved in their configs.

    Returns:
        A model (B, H, W, C) → (B, H/32, W/32, 1280), the `top_activation` features.
    """
    with warnings.catch_warnings():  # "usually expects 1 or 3 input channels": 2 is by design
        warnings.filterwarnings("ignore", message="This model usually expects")
        model = keras.applications.EfficientNetB1(include_top=False, weights=None, input_shape=input_shape)
    for layer in model.layers:
        if isinstance(layer, layers.Normalization):
            channels = input_shape[-1]
            layer.set_weights([np.full(channels, 0.449, "float32"), np.full(channels, 0.226**2, "float32"), np.array(0, "int64")][: len(layer.get_weights())])
            layer.finalize_state()  # Normalization computes with values derived here, not the variables
    load_pretrained(model, keras.applications.EfficientNetB1, weights, "EfficientNet-B1")
    synchronize_batch_norm(model, synchronized)
    set_batch_norm_momentum(model, batch_norm_momentum)
    for layer in model.layers:
        if isinstance(layer, layers.Dropout) and not stochastic_depth:
            layer.rate = 0.0
    return model


def set_batch_norm_momentum(model: keras.Model, momentum: float) -> None:
    """Sets the momentum of every BatchNormalization layer of `model` (read when the layer
    is called, saved in its config)."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum


# Plain CNN trunk: (filters, convolutions) per stage; each stage ends in 2×2 max-pooling.
PLAIN_CNN_STAGES = ((32, 2), (64, 2), (128, 2), (256, 2), (512, 2))
# the trunk's first convolution, (3, 3, C, 32): the one whose input channels differ between input modes
PLAIN_CNN_FIRST_CONV = "stage1_conv1"


def plain_cnn(input_shape, synchronized: bool = False, batch_norm_momentum: float = 0.9) -> keras.Model:
    """A plain 10-convolution trunk for N_R (beyond the paper), for from-scratch CPU runs.

    Five stages of two 3×3 conv–BatchNorm–ReLU pairs, each followed by 2×2 max-pooling, as
    the scouting CNN of the regressor issue that learned the angles of synthetic masks in
    minutes where a from-scratch EfficientNet-B1 did not.

    Args:
        input_shape: (H, W, C), inputs in [0, 255] (as EfficientNet takes them); H and W
            multiples of 32.

    Returns:
        A model (B, H, W, C) → (B, H/32, W/32, 512).
    """
    inputs = keras.Input(input_shape, name="trunk_input")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    for stage, (filters, convolutions) in enumerate(PLAIN_CNN_STAGES, start=1):
        for index in range(1, convolutions + 1):
            name = f"stage{stage}_conv{index}"
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
            x = layers.BatchNormalization(momentum=batch_norm_momentum, synchronized=synchronized, name=f"{name}_bn")(x)
            x = layers.Activation("relu", name=f"{name}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    return keras.Model(inputs, x, name="plain_cnn")


def synchronize_batch_norm(model: keras.Model, synchronized: bool = True) -> int:
    """Sets `synchronized` on every BatchNormalization layer of `model`, nested models and
    custom layers included; Keras reads the flag when the layer is called and saves it in
    its config.

    Returns:
        The number of layers set.
    """
    count = 0
    for layer in all_layers(model):
        if hasattr(layer, "synchronized"):  # BatchNormalization, and DilatedPyramid's config
            layer.synchronized = synchronized
            count += isinstance(layer, layers.BatchNormalization)
    return count


def load_pretrained(model: keras.Model, stock_factory, weights: str, description: str) -> None:
    """Copies weights of a stock keras.applications model into `model`, layer by name.

    Args:
        model: the target, built with the stock layer names.
        stock_factory: e.g. `keras.applications.ResNet50`.
        weights: "none" (leave as initialised), "imagenet" or a weights file path.
        description: network name for error messages.

    Raises:
        FileNotFoundError: a weights file that does not exist.
        ValueError: the file does not fit the stock model, or ImageNet weights cannot be
            downloaded (no network): the message says to use "none" or a local file.
    """
    if weights == "none":
        return
    if weights != "imagenet" and not os.path.isfile(weights):
        raise FileNotFoundError(f"{description} weights file not found: {weights}")
    try:
        stock = stock_factory(include_top=False, weights=weights, input_shape=(224, 224, 3))
    except Exception as error:  # download (URLError, HTTPError) or file format errors
        source = "ImageNet weights could not be downloaded" if weights == "imagenet" else f"{weights} does not fit"
        raise ValueError(
            f"{description}: {source} ({type(error).__name__}: {error}). Use weights 'none' or "
            f"a local weights file of keras.applications.{stock_factory.__name__} (include_top=False)."
        ) from None
    if copy_weights_by_name(stock, model, adapt=True) == 0:
        raise ValueError(f"{description}: no layer of {weights} matched the model")


def copy_weights_by_name(source: keras.Model, target: keras.Model, adapt: bool = False) -> int:
    """Copies the weights of every layer of `target` that `source` has under the same name.

    Nested models (a backbone inside N_S) count as one layer. Normalization layers are
    skipped (their statistics are set by the builders). With `adapt`, a pretrained first
    convolution is fitted to another number of input channels (`adapt_channels`).

    Returns:
        The number of layers copied.
    """
    copied = 0
    for layer in target.layers:
        if isinstance(layer, layers.Normalization) or not layer.weights:
            continue
        try:
            source_layer = source.get_layer(layer.name)
        except ValueError:
            continue
        values = source_layer.get_weights()
        if len(values) != len(layer.weights):
            continue
        if adapt:
            values = [adapt_channels(v, w.shape) for v, w in zip(values, layer.weights)]
        layer.set_weights(values)
        copied += 1
    return copied


def adapt_channels(value: np.ndarray, shape) -> np.ndarray:
    """Fits a pretrained array to `shape`; only a conv kernel's input channels may differ.

    (kh, kw, 3, out) → (kh, kw, C, out) as timm's `adapt_input_conv`: C = 1 sums the RGB
    filters (a gray image gets the response of the same gray in RGB); other C cycle the
    RGB filters and scale them by 3 / C.
    """
    shape = tuple(shape)
    if value.shape == shape:
        return value
    if value.ndim == 4 and value.shape[:2] + value.shape[3:] == shape[:2] + shape[3:]:
        channels = shape[2]
        if channels == 1:
            return value.sum(axis=2, keepdims=True)
        cycled = value[:, :, [c % value.shape[2] for c in range(channels)], :]
        return cycled * (value.shape[2] / channels)
    raise ValueError(f"pretrained weight of shape {value.shape} does not fit {shape}")
