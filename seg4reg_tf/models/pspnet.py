"""N_S: PSPNet with a dilated pyramid on a dilated ResNet-50 (or ResNet-18/34), optionally
ROIE-gated.

image (B, H, W, 1) in [0, 1] → ImageNet-scale preprocessing → dilated ResNet (stride 8,
2048 channels for ResNet-50) = f_m → [ROIE gate with the regressor's CAM, Eq. 2] → dilated pyramid →
1×1 classifier → bilinear upsampling ×8 → `mask_logits` and `mask` (sigmoid), (B, H, W, 1).
With `segmenter.tilt_weight` > 0 (beyond the paper) a second head beside the classifier
draws the vertebra tilt field (`tilt_field`): 3×3 conv-BN-ReLU → 1×1 conv → the same
upsampling → `tilt` (B, H, W, 2), (cos 2θ, sin 2θ) per pixel.
With `segmenter.decoder: low_level` (beyond the paper) a decoder joins the pyramid's output
with the backbone's stride-4 features before the classifier, which then upsamples ×4.

N_S is two models, as keras-hub splits a backbone from its task head: the `encoder`
(preprocessing and dilated ResNet: image → f_m) and the `head` (the rest). f_m, between
them, is where the ROIE gate acts, and a gated N_S's two passes share one encoder run.
A gated and an ungated segmenter share every layer name, so weights move between them by
name (`copy_segmenter_weights`) and, with α = 0, they compute the same masks.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from seg4reg_tf.config import SegmenterConfig
from seg4reg_tf.layers import DilatedPyramid, LowLevelDecoder, ROIEGate
from seg4reg_tf.layers.pyramid import conv_bn_relu
from seg4reg_tf.models.backbone import dilated_resnet
from seg4reg_tf.models.regressor import REGRESSOR_STRIDE
from seg4reg_tf.tilt_field import TILT_CHANNELS

# ImageNet mean of ResNet's caffe preprocessing, averaged over B, G, R (0–255 scale).
_IMAGENET_GRAY_MEAN = 114.8
# stride of the backbone features `segmenter.decoder: low_level` joins (its first stage's)
LOW_LEVEL_STRIDE = 4
# channels of the tilt head's hidden convolution
TILT_HIDDEN = 64
# N_S's two parts (its only layers besides the inputs)
ENCODER, HEAD = "encoder", "head"
# the head's feature inputs: f_m, and the stride-4 features with `decoder: low_level`
FEATURES = ("features", "low_level")
# `segmenter.weights` ending so names a trained N_S to start from (`<workdir>/seg/segmenter.keras`).
TRAINED_SEGMENTER_SUFFIX = ".keras"


def build_segmenter(
    settings: SegmenterConfig, image_size: tuple[int, int], *, with_roie: bool = False, synchronized: bool = False, name: str = "segmenter"
) -> keras.Model:
    """Builds N_S: its encoder (`build_encoder`) and its head (`build_head`), as keras-hub
    splits a backbone from its task head.

    Args:
        settings: the config's `segmenter` section.
        image_size: the input (H, W) in pixels (`data.image_size`).
        with_roie: add the `cam` input and the ROIE gate on f_m.
        synchronized: synchronised BatchNorm (for tf.distribute strategies).
        name: model name.

    Returns:
        A model taking {"image": (B, H, W, 1)} (plus "cam": (B, H/32, W/32, 1) in [0, 1]
        with the gate) and returning {"mask": (B, H, W, 1) probabilities,
        "mask_logits": (B, H, W, 1)}, and "tilt" (B, H, W, 2) with `tilt_weight` > 0. Its
        layers are two: `ENCODER` and `HEAD` (`segmenter_layer` finds one inside them).
    """
    encoder = build_encoder(settings, image_size, synchronized)
    head = build_head(settings, encoder, with_roie, synchronized)
    inputs = {"image": keras.Input((*image_size, 1), name="image")}
    if with_roie:
        inputs["cam"] = keras.Input(head.input["cam"].shape[1:], name="cam")
    model = keras.Model(inputs, head(_head_inputs(encoder(inputs["image"]), inputs.get("cam"))), name=name)
    if settings.weights.endswith(TRAINED_SEGMENTER_SUFFIX):
        start_from_trained_segmenter(model, settings.weights)
    return model


def build_encoder(settings: SegmenterConfig, image_size: tuple[int, int], synchronized: bool = False) -> keras.Model:
    """N_S's encoder: image (B, H, W, 1) in [0, 1] → ImageNet-scale preprocessing → dilated
    ResNet → f_m (B, H/stride, W/stride, C); with `decoder: low_level`, the list
    [f_m, stride-4 features (B, H/4, W/4, C_low)]."""
    image = keras.Input((*image_size, 1), name="image")
    x = layers.Rescaling(255.0, offset=-_IMAGENET_GRAY_MEAN, name="preprocess")(image)
    backbone_weights = "none" if settings.weights.endswith(TRAINED_SEGMENTER_SUFFIX) else settings.weights
    features = dilated_resnet(
        (*image_size, 1), settings.backbone, settings.output_stride, backbone_weights, synchronized, settings.batch_norm_momentum,
        low_level=settings.decoder == "low_level",
    )(x)
    return keras.Model(image, features, name=ENCODER)


def build_head(settings: SegmenterConfig, encoder: keras.Model, with_roie: bool = False, synchronized: bool = False) -> keras.Model:
    """N_S's head on `encoder`'s features: [ROIE gate with the CAM] → dilated pyramid →
    [decoder with the stride-4 features] → 1×1 classifier → bilinear upsampling, and the tilt
    head with `tilt_weight` > 0.

    Returns:
        A model taking {"features": f_m, ["low_level": stride-4 features], ["cam": (B, h, w, 1)]}
        and returning N_S's outputs (`build_segmenter`).
    """
    shapes = encoder.output if isinstance(encoder.output, (list, tuple)) else [encoder.output]
    inputs = {key: keras.Input(tensor.shape[1:], name=key) for key, tensor in zip(FEATURES, shapes)}
    features = inputs[FEATURES[0]]
    if with_roie:
        height, width = encoder.input.shape[1:3]
        inputs["cam"] = keras.Input((height // REGRESSOR_STRIDE, width // REGRESSOR_STRIDE, 1), name="cam")
        features = ROIEGate(name="roie_gate")([features, inputs["cam"]])
    x = DilatedPyramid(
        settings.pyramid_filters, settings.pyramid_dilations, synchronized, settings.batch_norm_momentum, name="pyramid"
    )(features)
    x = layers.Dropout(settings.dropout, name="pyramid_dropout")(x)
    decoded = FEATURES[1] in inputs
    if decoded:
        x = LowLevelDecoder(settings.decoder_filters, synchronized=synchronized, momentum=settings.batch_norm_momentum, name="decoder")([x, inputs[FEATURES[1]]])
    logits = layers.Conv2D(1, 1, name="classifier")(x)
    upsampling = LOW_LEVEL_STRIDE if decoded else settings.output_stride
    logits = layers.UpSampling2D(upsampling, interpolation="bilinear", name="mask_logits")(logits)
    outputs = {"mask": layers.Activation("sigmoid", name="mask")(logits), "mask_logits": logits}
    if settings.tilt_weight > 0:
        outputs["tilt"] = tilt_head(x, upsampling, synchronized, settings.batch_norm_momentum)
    return keras.Model(inputs, outputs, name=HEAD)


def _head_inputs(features, cam=None) -> dict:
    """The head's input dict from the encoder's output (f_m, or [f_m, stride-4 features]) and
    the CAM (None for an ungated N_S)."""
    inputs = dict(zip(FEATURES, features)) if isinstance(features, (list, tuple)) else {FEATURES[0]: features}
    return inputs if cam is None else {**inputs, "cam": cam}


def segmenter_layers(segmenter: keras.Model) -> list:
    """N_S's layers: its encoder's, then its head's (a nested backbone counts as one)."""
    return [layer for part in (ENCODER, HEAD) for layer in segmenter.get_layer(part).layers]


def segmenter_layer(segmenter: keras.Model, name: str):
    """The layer `name` of N_S, inside its encoder or its head (e.g. "roie_gate",
    "classifier", "pyramid", "dilated_resnet50")."""
    for part in (ENCODER, HEAD):
        try:
            return segmenter.get_layer(part).get_layer(name)
        except ValueError:
            continue
    raise ValueError(f"N_S {segmenter.name!r} has no layer {name!r}")


def has_tilt_head(segmenter: keras.Model) -> bool:
    """Whether N_S draws the tilt field (`segmenter.tilt_weight` > 0 when built)."""
    return any(layer.name == "tilt" for layer in segmenter.get_layer(HEAD).layers)


def tilt_layers(synchronized: bool, momentum: float) -> list:
    """The tilt head's layers, named `tilt_hidden_*`, `tilt_classifier`."""
    return conv_bn_relu(TILT_HIDDEN, 3, "tilt_hidden", momentum, synchronized) + [layers.Conv2D(TILT_CHANNELS, 1, name="tilt_classifier")]


def tilt_head(x, upsampling: int, synchronized: bool, momentum: float):
    """The tilt field from the classifier's input features: (B, h, w, C) → (B, H, W, 2)."""
    for layer in tilt_layers(synchronized, momentum):
        x = layer(x)
    return layers.UpSampling2D(upsampling, interpolation="bilinear", name="tilt")(x)


def start_from_trained_segmenter(segmenter: keras.Model, path: str) -> None:
    """Copies a trained N_S file's weights into `segmenter`, layer by name: fine-tuning an
    N_S trained elsewhere (on the synthetic generator, another data set, another input
    size: the weights do not depend on it). A gated source's ROIE gate is not copied.

    Args:
        segmenter: a built N_S (gated or not).
        path: a `.keras` file written by phase seg, roie or tcl (`<workdir>/<phase>/segmenter.keras`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a loadable model, or lacks a layer of `segmenter` or
            holds it in other shapes (another backbone, output stride, pyramid or decoder); named.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"segmenter.weights: trained N_S file not found: {path}")
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises several types for a foreign or damaged file
        raise ValueError(f"segmenter.weights: {path} is not a loadable N_S ({type(error).__name__}: {error})") from error
    copy_segmenter_weights(source, segmenter, f"segmenter.weights: {path}")


def copy_segmenter_weights(source: keras.Model, target: keras.Model, where: str, gate: bool = False) -> None:
    """Copies every weighted layer of N_S `target` from N_S `source`, by name, all or
    nothing. The ROIE gate only with `gate` (else it starts from α = 0, Eq. 2: a new gate).
    `source` may be of the layout before N_S had an encoder and a head (its layers side by
    side).

    Raises:
        ValueError: `source` lacks a layer of `target` or holds it in other shapes; `where`
            and the layer are named.
    """
    pairs = []
    for layer in segmenter_layers(target):
        if not layer.weights or (layer.name == "roie_gate" and not gate):
            continue
        try:
            values = _layer_of(source, layer.name).get_weights()
        except ValueError:
            raise ValueError(f"{where} has no layer {layer.name!r}: not an N_S of this config") from None
        if [value.shape for value in values] != [tuple(weight.shape) for weight in layer.weights]:
            raise ValueError(f"{where}: layer {layer.name!r} has other shapes than this config's N_S (another backbone, output stride, pyramid or decoder?)")
        pairs.append((layer, values))
    for layer, values in pairs:  # only once every layer fits: no half-copied N_S
        layer.set_weights(values)


def _layer_of(source: keras.Model, name: str):
    """`source`'s layer `name`: inside its encoder or head, or (the earlier layout) at its top."""
    return source.get_layer(name) if is_flat_segmenter(source) else segmenter_layer(source, name)


def is_flat_segmenter(model: keras.Model) -> bool:
    """Whether `model` is an N_S saved before N_S had an encoder and a head."""
    names = {layer.name for layer in model.layers}
    return "mask_logits" in names and ENCODER not in names


def encoder_features(segmenter: keras.Model, image):
    """f_m of a built N_S: its encoder on `image` (B, H, W, 1), in inference mode. Returns
    (B, H/stride, W/stride, C); with `decoder: low_level`, the pair [f_m, stride-4 features
    (B, H/4, W/4, C_low)]."""
    return segmenter.get_layer(ENCODER)(image, training=False)


def decode_features(segmenter: keras.Model, features, cam=None) -> dict:
    """N_S's head on `encoder_features`' output, in inference mode. With `encoder_features`,
    a gated N_S's two passes (paper §2: CAM from the first pass's mask, then the gated pass)
    share one encoder run.

    Args:
        features: `encoder_features`' output (f_m, or [f_m, stride-4 features]).
        cam: (B, h, w, 1) for a gated N_S, else None.

    Returns:
        {"mask": (B, H, W, 1) probabilities, "mask_logits": (B, H, W, 1)}, and "tilt"
        (B, H, W, 2) when N_S has the tilt head.
    """
    return dict(segmenter.get_layer(HEAD)(_head_inputs(features, cam), training=False))
