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

f_m, the feature map between the encoder and the decoder, is where the ROIE gate acts.
A gated and an ungated segmenter share every layer name, so weights move between them by
name and, with α = 0, they compute the same masks.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from seg4reg_tf.config import SegmenterConfig
from seg4reg_tf.layers import DilatedPyramid, LowLevelDecoder, ROIEGate
from seg4reg_tf.layers.pyramid import apply_stack, conv_bn_relu
from seg4reg_tf.models.backbone import dilated_resnet
from seg4reg_tf.models.regressor import REGRESSOR_STRIDE
from seg4reg_tf.tilt_field import TILT_CHANNELS

# ImageNet mean of ResNet's caffe preprocessing, averaged over B, G, R (0–255 scale).
_IMAGENET_GRAY_MEAN = 114.8
# stride of the backbone features `segmenter.decoder: low_level` joins (its first stage's)
LOW_LEVEL_STRIDE = 4
# channels of the tilt head's hidden convolution
TILT_HIDDEN = 64
# `segmenter.weights` ending so names a trained N_S to start from (`<workdir>/seg/segmenter.keras`).
TRAINED_SEGMENTER_SUFFIX = ".keras"


def build_segmenter(
    settings: SegmenterConfig, image_size: tuple[int, int], *, with_roie: bool = False, synchronized: bool = False, name: str = "segmenter"
) -> keras.Model:
    """Builds N_S.

    Args:
        settings: the config's `segmenter` section.
        image_size: the input (H, W) in pixels (`data.image_size`).
        with_roie: add the `cam` input and the ROIE gate on f_m.
        synchronized: synchronised BatchNorm (for tf.distribute strategies).
        name: model name.

    Returns:
        A model taking {"image": (B, H, W, 1)} (plus "cam": (B, H/32, W/32, 1) in [0, 1]
        with the gate) and returning {"mask": (B, H, W, 1) probabilities,
        "mask_logits": (B, H, W, 1)}, and "tilt" (B, H, W, 2) with `tilt_weight` > 0.
    """
    height, width = image_size
    image = keras.Input((height, width, 1), name="image")
    inputs = {"image": image}
    x = layers.Rescaling(255.0, offset=-_IMAGENET_GRAY_MEAN, name="preprocess")(image)
    from_segmenter = settings.weights.endswith(TRAINED_SEGMENTER_SUFFIX)
    backbone_weights = "none" if from_segmenter else settings.weights
    decoded = settings.decoder == "low_level"
    features = dilated_resnet(
        (height, width, 1), settings.backbone, settings.output_stride, backbone_weights, synchronized, settings.batch_norm_momentum,
        low_level=decoded,
    )(x)
    features, low_level = features if decoded else (features, None)
    if with_roie:
        cam = keras.Input((height // REGRESSOR_STRIDE, width // REGRESSOR_STRIDE, 1), name="cam")
        inputs["cam"] = cam
        features = ROIEGate(name="roie_gate")([features, cam])
    x = DilatedPyramid(
        settings.pyramid_filters, settings.pyramid_dilations, synchronized, settings.batch_norm_momentum, name="pyramid"
    )(features)
    x = layers.Dropout(settings.dropout, name="pyramid_dropout")(x)
    if decoded:
        x = LowLevelDecoder(settings.decoder_filters, synchronized=synchronized, momentum=settings.batch_norm_momentum, name="decoder")([x, low_level])
    logits = layers.Conv2D(1, 1, name="classifier")(x)
    upsampling = LOW_LEVEL_STRIDE if decoded else settings.output_stride
    logits = layers.UpSampling2D(upsampling, interpolation="bilinear", name="mask_logits")(logits)
    mask = layers.Activation("sigmoid", name="mask")(logits)
    outputs = {"mask": mask, "mask_logits": logits}
    if settings.tilt_weight > 0:
        outputs["tilt"] = tilt_head(x, upsampling, synchronized, settings.batch_norm_momentum)
    model = keras.Model(inputs, outputs, name=name)
    if from_segmenter:
        start_from_trained_segmenter(model, settings.weights)
    return model


def has_tilt_head(segmenter: keras.Model) -> bool:
    """Whether N_S draws the tilt field (`segmenter.tilt_weight` > 0 when built)."""
    return any(layer.name == "tilt" for layer in segmenter.layers)


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
    pairs = []
    for layer in segmenter.layers:
        if not layer.weights or layer.name == "roie_gate":  # the gate starts from α = 0 (Eq. 2)
            continue
        try:
            values = source.get_layer(layer.name).get_weights()
        except ValueError:
            raise ValueError(f"segmenter.weights: {path} has no layer {layer.name!r}: not an N_S of this config") from None
        if [value.shape for value in values] != [tuple(weight.shape) for weight in layer.weights]:
            raise ValueError(
                f"segmenter.weights: {path}: layer {layer.name!r} has other shapes than this config's N_S "
                "(another backbone, output stride, pyramid or decoder?)"
            )
        pairs.append((layer, values))
    for layer, values in pairs:  # only once every layer fits: no half-copied N_S
        layer.set_weights(values)


def encoder_features(segmenter: keras.Model, image):
    """f_m of a built N_S: its preprocessing and backbone on `image` (B, H, W, 1), in
    inference mode. Returns (B, H/stride, W/stride, C); with `decoder: low_level`, the pair
    [f_m, stride-4 features (B, H/4, W/4, C_low)]."""
    backbone = next(layer for layer in segmenter.layers if layer.name.startswith("dilated_"))
    return backbone(segmenter.get_layer("preprocess")(image), training=False)


def decode_features(segmenter: keras.Model, features, cam=None) -> dict:
    """The rest of a built N_S after f_m, in inference mode: [ROIE gate with `cam`] →
    pyramid → [decoder with the stride-4 features] → classifier → upsampling. With
    `encoder_features`, a gated N_S's two passes (paper §2: CAM from the first pass's mask,
    then the gated pass) share one backbone run.

    Args:
        features: `encoder_features`' output (f_m, or [f_m, stride-4 features]).
        cam: (B, h, w, 1) for a gated N_S, else None.

    Returns:
        {"mask": (B, H, W, 1) probabilities, "mask_logits": (B, H, W, 1)}, and "tilt"
        (B, H, W, 2) when N_S has the tilt head.
    """
    features, low_level = features if isinstance(features, (list, tuple)) else (features, None)
    if cam is not None:
        features = segmenter.get_layer("roie_gate")([features, cam])
    x = segmenter.get_layer("pyramid_dropout")(segmenter.get_layer("pyramid")(features, training=False), training=False)
    if low_level is not None:
        x = segmenter.get_layer("decoder")([x, low_level], training=False)
    logits = segmenter.get_layer("classifier")(x)
    logits = segmenter.get_layer("mask_logits")(logits)
    out = {"mask": segmenter.get_layer("mask")(logits), "mask_logits": logits}
    if has_tilt_head(segmenter):
        hidden = [segmenter.get_layer(name) for name in ("tilt_hidden_conv", "tilt_hidden_bn", "tilt_hidden_relu", "tilt_classifier")]
        out["tilt"] = segmenter.get_layer("tilt")(apply_stack(hidden, x, False))
    return out
