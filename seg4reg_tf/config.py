"""Typed configuration: one frozen dataclass per concern, YAML files that override defaults.

The defaults are the paper's recipe (Lin et al., MICCAI 2021, §3): 512×256 input, Adam,
segmentation 90 epochs at lr 1e-4, regression 200 epochs at lr 1e-3, weight decay 1e-5,
random flip, rotation in ±45° and isotropic rescaling in [0.85, 1.25].

The paper gives 90 segmentation and 200 regression epochs "in total" without splitting them
across the phases of Algorithm 1; the defaults split them as seg 60 + roie 15 + tcl 15 = 90
and reg 150 + refine 50 = 200.

A YAML file only overrides: every key it names must exist here and carry a value of the
declared type, otherwise `load_config` raises `ValueError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import types
import typing
from typing import Any, Literal

import yaml

from seg4reg_tf.files import atomic_write

SEGMENTER_BACKBONES = ("resnet50", "resnet34", "resnet18")
SEGMENTER_DECODERS = ("none", "low_level")


# `regressor.weights: pretrain`: N_R's trunk comes from synthetic pretraining that `train`
# runs into the workdir before phase reg (`training.pretraining`, `workdir.pretrained_trunk_path`).
PRETRAIN_IN_WORKDIR = "pretrain"
# Backbones whose trunk pretraining can write in the format `regressor.weights` reads.
PRETRAINABLE = ("efficientnet_b1", "plain_cnn")


def _check_weights(weights: str, pretrain_allowed: bool = False) -> None:
    if not weights:
        raise ValueError("'weights' must be 'imagenet', 'none' or a weights file path, got ''")
    if weights == PRETRAIN_IN_WORKDIR and not pretrain_allowed:
        raise ValueError(f"'weights: {PRETRAIN_IN_WORKDIR}' exists only for the regressor (its synthetic pretraining)")


# the repository's configs (a source checkout: `pip install -e .`, as `make install` does)
REPO_CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
DEMO_CONFIG = REPO_CONFIGS / "demo.yaml"  # `train` without --config: `make demo`'s run

@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the radiographs come from and how they are prepared.

    Attributes:
        root: folder in the AASCE layout (`data/<split>`, `labels/<split>`); `None` means the
            embedded synthetic data set.
        split: split folder name inside `root` used for training and validation.
        image_height, image_width: model input size in pixels, (512, 256) in the paper; both
            multiples of 32 because both networks downsample by powers of two.
        validation_fraction: share of the training records held out for validation.
        exclude: image file names left out of training and validation (e.g. a known
            annotation error); the split of the other images does not change.
        seed: seed of the validation split, of the shuffling, of the embedded synthetic data
            set and of N_R's pretraining spines.
        flip: random horizontal flip during training.
        rotation_degrees: rotations drawn uniformly in ±this many degrees.
        scale_range: isotropic rescaling factors (x and y alike) drawn in this range.
        cache: where decoded, resized images are kept after the first epoch: "memory",
            "none", or a folder for cache files (for data sets larger than memory).
        clahe: contrast-limited adaptive histogram equalisation after resizing (Seg4Reg),
            OpenCV's clip limit 2 on 8 × 4 tiles (`data.transforms.clahe`).
        synthetic_train, synthetic_test: size of the embedded synthetic data set used when
            `root` is unset (generated on first use, with `seed`).
    """

    root: str | None = None
    split: str = "training"
    image_height: int = 512
    image_width: int = 256
    validation_fraction: float = 0.2
    exclude: tuple[str, ...] = ()
    seed: int = 0
    flip: bool = True
    rotation_degrees: float = 45.0
    scale_range: tuple[float, float] = (0.85, 1.25)
    cache: str = "memory"
    clahe: bool = False
    synthetic_train: int = 200
    synthetic_test: int = 50

    @property
    def image_size(self) -> tuple[int, int]:
        """The networks' input size (height, width) in pixels."""
        return self.image_height, self.image_width

    def __post_init__(self) -> None:
        for name in ("image_height", "image_width"):
            value = getattr(self, name)
            if value <= 0 or value % 32:
                raise ValueError(f"'{name}' must be a positive multiple of 32, got {value}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"'validation_fraction' must be in [0, 1), got {self.validation_fraction}"
            )
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise ValueError(f"'rotation_degrees' must be in [0, 180], got {self.rotation_degrees}")
        low, high = self.scale_range
        if not 0.0 < low <= high:
            raise ValueError(f"'scale_range' must satisfy 0 < low <= high, got {self.scale_range}")
        if not self.cache:
            raise ValueError("'cache' must be 'memory', 'none' or a folder, got ''")
        if self.synthetic_train < 1 or self.synthetic_test < 0:
            raise ValueError(
                f"'synthetic_train' must be >= 1 and 'synthetic_test' >= 0, got {self.synthetic_train} and {self.synthetic_test}"
            )


@dataclasses.dataclass(frozen=True)
class SegmenterConfig:
    """N_S: PSPNet with a dilated pyramid on a dilated ResNet-50 (paper §2, Eq. 1).

    Attributes:
        backbone: "resnet50" (the paper's), or the lighter "resnet34" / "resnet18" (basic
            blocks, 512 output channels; no ImageNet weights available for them here).
        weights: initialisation: "imagenet", "none", a backbone weights file, or a trained
            N_S (a `.keras` file such as `<workdir>/seg/segmenter.keras`) to fine-tune: all
            its layers are copied (e.g. an N_S pretrained on the synthetic generator).
        output_stride: input size / feature-map size of the dilated backbone.
        pyramid_dilations: dilation rates of the pyramid's parallel convolutions, which
            replace PSPNet's pooling bins.
        pyramid_filters: channels of each pyramid branch.
        decoder: "none" (the paper's PSPNet: the classifier's map upsampled by the output
            stride) or "low_level" (beyond the paper, DeepLabv3+'s decoder: the pyramid's
            features upsampled to stride 4 and fused with the backbone's stride-4 features
            before the classifier; `layers.LowLevelDecoder`).
        decoder_filters: channels of that decoder's fusing convolutions.
        ce_weight: λ of Eq. 1, the weight of cross-entropy next to the Dice loss.
        boundary_weight: beyond the paper, extra cross-entropy weight of the pixels within
            2 pixels (`losses.BOUNDARY_WIDTH`) of the true mask's outline (weight 1 + this; 0 is Eq. 1),
            where a short run's masks lose most of their Dice: the vertebrae's outlines and
            the gaps between them (U-Net's border weighting, simplified to a band).
        tilt_weight: beyond the paper, the weight of the tilt field's loss next to Eq. 1
            (`tilt_field.tilt_loss`); above 0, N_S has a second head, `tilt`, which draws
            each vertebra's tilt (what the vertebra route reads). 0: no such head.
        dropout: dropout rate before the classifier (PSPNet's 0.1).
        batch_norm_momentum: momentum of the BatchNorm moving statistics of the backbone and
            the pyramid (Keras' 0.99; beyond the paper, 0.9 lets inference-mode statistics
            catch up within a short run's first epochs).
    """

    backbone: str = "resnet50"
    weights: str = "imagenet"
    output_stride: int = 8
    pyramid_dilations: tuple[int, ...] = (1, 6, 12, 18)
    pyramid_filters: int = 512
    decoder: str = "none"
    decoder_filters: int = 64
    ce_weight: float = 1.0
    boundary_weight: float = 0.0
    tilt_weight: float = 0.0
    dropout: float = 0.1
    batch_norm_momentum: float = 0.99

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.batch_norm_momentum < 1.0:
            raise ValueError(f"'batch_norm_momentum' must be in [0, 1), got {self.batch_norm_momentum}")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"'output_stride' must be 8, 16 or 32, got {self.output_stride}")
        if self.backbone not in SEGMENTER_BACKBONES:
            raise ValueError(f"'backbone' must be one of {', '.join(SEGMENTER_BACKBONES)}, got {self.backbone!r}")
        if self.backbone != "resnet50" and self.weights == "imagenet":
            raise ValueError(f"'weights: imagenet' exists only for backbone resnet50, not {self.backbone}; use 'none' or a file")
        if self.decoder not in SEGMENTER_DECODERS:
            raise ValueError(f"'decoder' must be one of {', '.join(SEGMENTER_DECODERS)}, got {self.decoder!r}")
        if self.boundary_weight < 0:
            raise ValueError(f"'boundary_weight' must be >= 0, got {self.boundary_weight}")
        if not 0.0 <= self.tilt_weight < float("inf"):
            raise ValueError(f"'tilt_weight' must be finite and >= 0, got {self.tilt_weight}")
        if self.decoder_filters < 1:
            raise ValueError(f"'decoder_filters' must be positive, got {self.decoder_filters}")
        if not self.pyramid_dilations or min(self.pyramid_dilations) < 1:
            raise ValueError(
                f"'pyramid_dilations' must be positive integers, got {self.pyramid_dilations}"
            )
        _check_weights(self.weights)


@dataclasses.dataclass(frozen=True)
class RegressorConfig:
    """N_R: EfficientNet-B1 ending in 3 sigmoid outputs (paper §2, Eq. 3).

    Attributes:
        backbone: "efficientnet_b1" (the paper's), "resnet18" (the paper's Table 3
            alternative; stock strides, no pretrained weights here) or "plain_cnn" (beyond
            the paper: ten conv–BatchNorm–ReLU layers, for from-scratch CPU runs).
        weights: backbone initialisation: "imagenet", "none", a path to a weights file, or
            "pretrain" (beyond the paper): `train` first pretrains the trunk on synthetic
            spine masks with the `pretrain:` settings, into the workdir
            (`<workdir>/pretrain/`), and phase reg starts from it.
        input_mode: what N_R sees: the image, the mask, or both as two channels.
        dropout: dropout rate before the output layer.
        batch_norm_momentum: momentum of the trunk's BatchNorm moving statistics; Keras'
            0.99 suits long runs (after n steps (0.99)ⁿ of the initial statistics remain).
        stochastic_depth: Keras EfficientNet's drop-connect of residual blocks (rates up to
            0.2) during training.
        coordinate_channels: append each pixel's row and column (0 → 1) to N_R's input
            (CoordConv; beyond the paper), so the trunk sees where a curve lies.
        head_pooling: how the CAM head pools the trunk's map into the 3 outputs: "average"
            (the paper's CAM) or "position" (beyond the paper: one weight per position, so
            the output keeps where a curve is; `layers.cam`).
        input_downsample: N_R reads its input average-pooled by this factor (beyond the
            paper; 1: the paper's full resolution; 1, 2, 3 or 4). A curve's angle survives
            halving a mask, and each halving divides N_R's cost by about 4; its CAM is
            resized back to (H/32, W/32), the grid the ROIE gate takes. 3 lets a 384×192
            input keep N_R at 128×64.
    """

    backbone: Literal["efficientnet_b1", "resnet18", "plain_cnn"] = "efficientnet_b1"
    weights: str = "imagenet"
    input_mode: Literal["image", "mask", "image+mask"] = "image+mask"
    dropout: float = 0.2
    batch_norm_momentum: float = 0.99
    stochastic_depth: bool = True
    coordinate_channels: bool = False
    head_pooling: Literal["average", "position"] = "average"
    input_downsample: int = 1

    def __post_init__(self) -> None:
        if self.input_downsample not in (1, 2, 3, 4):
            raise ValueError(f"'input_downsample' must be 1, 2, 3 or 4, got {self.input_downsample}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.batch_norm_momentum < 1.0:
            raise ValueError(f"'batch_norm_momentum' must be in [0, 1), got {self.batch_norm_momentum}")
        if self.backbone != "efficientnet_b1" and self.weights == "imagenet":
            raise ValueError(f"'weights: imagenet' exists only for backbone efficientnet_b1, not {self.backbone}; use 'none' or a file")
        if self.weights == PRETRAIN_IN_WORKDIR and self.backbone not in PRETRAINABLE:
            raise ValueError(f"'weights: {PRETRAIN_IN_WORKDIR}' exists for backbones {', '.join(PRETRAINABLE)}, not {self.backbone}")
        _check_weights(self.weights, pretrain_allowed=True)


@dataclasses.dataclass(frozen=True)
class PhaseConfig:
    """Optimisation settings shared by every phase of Algorithm 1.

    Attributes:
        epochs: passes over the training records.
        batch_size: global batch size (split across replicas under a distribution strategy).
        learning_rate: Adam step size (the starting one under a schedule).
        weight_decay: weight decay of the optimizer.
        schedule: "constant" (the paper's) or "cosine": the step size decays from
            `learning_rate` to 0 over the phase's steps along a half cosine (beyond the paper;
            short runs end on a small step instead of wherever a constant step leaves them).
        keep_start_unless_beaten: the networks the phase starts from count as its epoch 0
            when the best epoch is kept: the phase scores them on its validation monitor
            before training and writes them unchanged unless an epoch beats that score
            (beyond the paper; a fine-tuning phase then cannot leave the system worse on
            the validation split than it found it). Needs a validation split.
    """

    epochs: int = 60
    batch_size: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    schedule: Literal["constant", "cosine"] = "constant"
    keep_start_unless_beaten: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"'epochs' must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"'batch_size' must be >= 1, got {self.batch_size}")
        if self.learning_rate <= 0:
            raise ValueError(f"'learning_rate' must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"'weight_decay' must be >= 0, got {self.weight_decay}")


@dataclasses.dataclass(frozen=True)
class SegmentationPhaseConfig(PhaseConfig):
    """Phases that train N_S on Eq. 1: seg (Alg. 1 lines 1–4) and roie (lines 11–14).

    Attributes:
        monitor: the validation metric that keeps the best epoch: "dice" (the paper's
            segmentation score) or "readout" (beyond the paper: the SMAPE of the Cobb angles
            the geometric readout reads off N_S's masks, images where it finds no spine
            scored as the training-mean angles; what the system answers with when the
            readout is its route). Both are logged either way.
        precision: "float32" (the paper's), or "bfloat16": N_S computes in bfloat16 with
            float32 weights while the phase trains (Keras' mixed_bfloat16; faster on CPUs
            with AMX / AVX512_BF16, slower on others), or "auto": bfloat16 on such CPUs,
            else float32 (`models.precision.resolve_precision`). Per-epoch validation
            figures are bfloat16 ones; the saved N_S and the phase's final figures float32.
    """

    monitor: Literal["dice", "readout"] = "dice"
    precision: Literal["float32", "bfloat16", "auto"] = "float32"


@dataclasses.dataclass(frozen=True)
class RegressionPhaseConfig(PhaseConfig):
    """Phases that train N_R with attention regularisation (Alg. 1 lines 5–10 and 19).

    Attributes:
        ar_weight: weight of L_AR (Eq. 4) next to the two SMAPE terms.
        loss: the angle loss of both branches: "smape" (Eq. 3) or "l1" (mean |Δ| of the
            angles scaled to [0, 1], as the authors' Seg4Reg code trained its regressor).
    """

    epochs: int = 150
    learning_rate: float = 1e-3
    ar_weight: float = 1.0
    loss: Literal["smape", "l1"] = "smape"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ar_weight < 0:
            raise ValueError(f"'ar_weight' must be >= 0, got {self.ar_weight}")


@dataclasses.dataclass(frozen=True)
class ConsistencyPhaseConfig(PhaseConfig):
    """Phase tcl (Alg. 1 lines 15–18): N_S fine-tuned so its masks are read like the true mask.

    Attributes:
        through: what reads the masks: "regressor" (the paper: the frozen N_R, SMAPE between
            its readings of s(x) and of the true mask) or "readout" (beyond the paper: the
            geometric readout, L1 between the Cobb angles it reads off s(x) and off the true
            mask, in the model frame; images where either reading finds no spine are left
            out). The readout needs no trained N_R, so TCL cannot copy an N_R's errors into
            the masks.
    """

    through: Literal["regressor", "readout"] = "regressor"


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """The SavedModel written for TF Serving.

    Attributes:
        model_name: folder name under the export base (`<base>/<model_name>/<version>/`).
        max_image_pixels: encoded images decoding to more pixels than this are refused, so a
            decompression bomb cannot exhaust the server's memory.
        precision: "float32", or "bfloat16": the signatures compute in bfloat16 with the
            float32 weights (beyond the paper; `models.precision`); outputs stay float32.
    """

    model_name: str = "seg4reg"
    max_image_pixels: int = 40_000_000
    precision: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if not self.model_name or "/" in self.model_name:
            raise ValueError(f"'model_name' must be a plain folder name, got {self.model_name!r}")
        if self.max_image_pixels < 1:
            raise ValueError(f"'max_image_pixels' must be positive, got {self.max_image_pixels}")


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """`python -m seg4reg_tf.predict`: test-time augmentation and its confidence flag.

    Attributes:
        tta: average the angles over flipped and isotropically rescaled views of each image
            (Cobb angles are invariant to both) and report their spread: each zoom and the
            image itself, and the mirror image of each.
        tta_scales: isotropic zoom factors about the image centre besides 1.0.
        low_confidence_spread_degrees: an image whose spread (max − min over the views) of
            any angle exceeds this many degrees is flagged `low_confidence` (the default
            was chosen with `bench/confidence.py` on AASCE's validation split).
        disagreement_degrees: an X-ray whose answering route and N_R differ by more than
            this in any angle is flagged `routes_disagree`.
    """

    tta: bool = False
    tta_scales: tuple[float, ...] = (0.9, 1.1)
    low_confidence_spread_degrees: float = 10.0
    disagreement_degrees: float = 10.0

    def __post_init__(self) -> None:
        if any(scale <= 0 for scale in self.tta_scales):
            raise ValueError(f"'tta_scales' must be positive, got {self.tta_scales}")
        if self.low_confidence_spread_degrees < 0:
            raise ValueError(
                f"'low_confidence_spread_degrees' must be >= 0, got {self.low_confidence_spread_degrees}"
            )
        if not 0.0 <= self.disagreement_degrees < float("inf"):
            raise ValueError(f"'disagreement_degrees' must be finite and >= 0, got {self.disagreement_degrees}")


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """`python -m seg4reg_tf.pretrain`: N_R's trunk pretrained on synthetic spine masks, a
    stand-in for ImageNet weights where none can be downloaded (not part of the paper).

    Attributes:
        count: synthetic spines drawn for training (~2 ms each; a mask is H × W bytes).
        validation_count: further spines for the validation figures.
        epochs: passes over the `count` masks.
        batch_size: masks per step.
        learning_rate: Adam step size (the starting one under a schedule).
        schedule: "constant" or "cosine" (decayed to 0 over the run, as `PhaseConfig`).

    The trunk starts from scratch, with phase reg's weight decay; the spines are drawn with
    `data.seed`.
    """

    count: int = 20000
    validation_count: int = 1000
    epochs: int = 4
    batch_size: int = 16
    learning_rate: float = 1e-3
    schedule: Literal["constant", "cosine"] = "constant"

    def __post_init__(self) -> None:
        for name in ("count", "validation_count", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"'{name}' must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"'learning_rate' must be positive, got {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class ReadoutConfig:
    """The geometric readouts (the centre line, `seg4reg_tf.geometric_readout`, and the
    vertebra route, `seg4reg_tf.vertebra_readout`): Cobb angles read off N_S's outputs with
    the organisers' algorithm, no regressor involved. The centre line's shape constants
    (threshold, smoothing, gap, ...) live in `geometric_readout`.

    Attributes:
        min_confidence: a spine whose kept pixels have a mean probability below this is
            "not found" (0: off). N_S answers noise and blank-like images with weak,
            scattered probabilities; a trained N_S is confident on real spines.
        tilt_gain: the vertebra route multiplies each tilt it reads off N_S's tilt field by
            this (a calibration: a trained tilt head draws tilts slightly shrunk towards
            upright; `bench/vertebrae.py --fit-gain` fits it on the training part).
        centre_line_share: the vertebra route answers (1 − this) × its own angles + this ×
            the centre line's (0: its own alone; its drawn vertebrae stay its own);
            `bench/centre_line_share.py` fits it on the training part.
    """

    min_confidence: float = 0.0
    tilt_gain: float = 1.0
    centre_line_share: float = 0.0

    def __post_init__(self) -> None:
        _check_range(self, ("min_confidence",), 0.0, 1.0, low_open=False, high_open=True)
        if not 0.5 <= self.tilt_gain <= 2.0:
            raise ValueError(f"'tilt_gain' must lie in [0.5, 2], got {self.tilt_gain}")
        _check_range(self, ("centre_line_share",), 0.0, 1.0, low_open=False, high_open=False)


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """Which route gives the system's answer `cobb_angles` (export, evaluate, predict).

    Attributes:
        angles: "regressor" (N_R, the paper's answer), "geometric" or its other name
            "centre_line" (the centre-line readout on N_S's mask), "vertebrae" (the vertebra
            route: the 17 vertebrae's tilts read off N_S's tilt field; needs
            `segmenter.tilt_weight` > 0) or "auto": whichever scored the lower validation SMAPE when the workdir
            was trained (recorded in `<workdir>/routes.json` by train and evaluate, `routes`; the regressor when
            nothing is recorded).
    """

    angles: Literal["regressor", "geometric", "centre_line", "vertebrae", "auto"] = "auto"

    def __post_init__(self) -> None:
        if self.angles == "centre_line":  # one name inside: the outputs say `geometric`
            object.__setattr__(self, "angles", "geometric")


def _check_range(settings: Any, names: tuple[str, ...], low: float, high: float, low_open: bool, high_open: bool) -> None:
    """Raises ValueError unless each named field is finite and within (or on) the bounds."""
    for name in names:
        value = getattr(settings, name)
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if value != value or below or above:
            bounds = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise ValueError(f"'{name}' must lie in {bounds}, got {value}")


@dataclasses.dataclass(frozen=True)
class RefinerConfig:
    """The tilt refiner (`models.tilt_refiner`): the vertebra route's second, sharper look at
    each vertebra, a crop of the X-ray at `scale` times the model resolution turned by the
    tilt N_S drew there (beyond the paper). Trained by `train` after phase seg
    (`training.refiner`) on the 68 landmarks alone, so it needs no N_S.

    Attributes:
        enabled: train and use it (the vertebra route reads tilts off N_S's field alone
            when false).
        scale: fine image pixels per model-frame pixel: the crops come from the X-ray
            letterboxed at (scale·H, scale·W) with the same CLAHE.
        crop_size: crop side in pixels (a multiple of 16).
        epochs: passes over the training part's vertebrae.
        batch_size: crops per step.

    The crop's margin, the training jitter and the step size are constants of
    `models.tilt_refiner` and `training.refiner` (their variants measured no gain).
    """

    enabled: bool = False
    scale: int = 3
    crop_size: int = 64
    epochs: int = 20
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("scale", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"'{name}' must be >= 1, got {getattr(self, name)}")
        if self.crop_size < 16 or self.crop_size % 16:
            raise ValueError(f"'crop_size' must be a positive multiple of 16, got {self.crop_size}")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs; `phases` of Algorithm 1 are `seg`, `reg`, `roie`, `tcl`, `refine`."""

    data: DataConfig = DataConfig()
    segmenter: SegmenterConfig = SegmenterConfig()
    regressor: RegressorConfig = RegressorConfig()
    seg: SegmentationPhaseConfig = SegmentationPhaseConfig(epochs=60, learning_rate=1e-4)
    reg: RegressionPhaseConfig = RegressionPhaseConfig(epochs=150, learning_rate=1e-3)
    roie: SegmentationPhaseConfig = SegmentationPhaseConfig(epochs=15, learning_rate=1e-4)
    tcl: ConsistencyPhaseConfig = ConsistencyPhaseConfig(epochs=15, learning_rate=1e-4)
    refine: RegressionPhaseConfig = RegressionPhaseConfig(epochs=50, learning_rate=1e-3)
    export: ExportConfig = ExportConfig()
    predict: PredictConfig = PredictConfig()
    pretrain: PretrainConfig = PretrainConfig()
    readout: ReadoutConfig = ReadoutConfig()
    refiner: RefinerConfig = RefinerConfig()
    inference: InferenceConfig = InferenceConfig()

    def __post_init__(self) -> None:
        phases = [field.name for field in dataclasses.fields(self) if isinstance(getattr(self, field.name), PhaseConfig)]
        kept = [phase for phase in phases if getattr(self, phase).keep_start_unless_beaten]
        if kept and self.data.validation_fraction == 0:
            raise ValueError(f"{', '.join(phase + '.keep_start_unless_beaten' for phase in kept)} needs a validation split (data.validation_fraction > 0)")
        step = 32 * self.regressor.input_downsample
        if self.data.image_height % step or self.data.image_width % step:
            raise ValueError(
                f"regressor.input_downsample {self.regressor.input_downsample} needs data.image_height and image_width "
                f"to be multiples of {step}, got {self.data.image_height}×{self.data.image_width}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Returns the configuration as plain YAML-ready values (tuples become lists)."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Reads a YAML file whose keys override the paper's defaults.

    Args:
        path: a YAML file of nested mappings (`data: {image_height: 256}`), or `None` for the
            defaults.

    Returns:
        The frozen `Config`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not UTF-8 or UTF-16 text (a byte-order mark picks UTF-16),
            the YAML does not parse or holds more than one document, a mapping names a key
            twice, or a key is unknown, or a value is of the wrong type or out of range; the
            message names the file (and the dotted key).
    """
    if path is None:
        return Config()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, "rb") as handle:  # bytes: PyYAML reads the byte-order mark (UTF-8 or UTF-16)
        try:
            values = yaml.load(handle, Loader=_StrictLoader)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 (or UTF-16 with a byte-order mark) text: {error}") from None
    if not isinstance(values, dict) or not values:
        raise ValueError(
            f"{path}: expected a mapping of config sections (e.g. 'data: {{image_height: 256}}'), "
            f"got {'an empty file' if values is None or values == {} else type(values).__name__}; "
            "omit --config for the paper's defaults"
        )
    return config_from_dict(values, source=path)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping naming one key twice is an error (PyYAML
    keeps the last silently, so a config could start a recipe other than the one read)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # keys merged in (<<: *anchor) may be overridden on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: the base class says so
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"found the key {key!r} twice (first at line {first.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def config_from_dict(values: dict[str, Any], source: str = "<dict>") -> Config:
    """Builds a `Config` from nested mappings; errors name `source` and the dotted key."""
    return _build(Config(), values, source, prefix="")


def save_config(config: Config, path: str | os.PathLike[str]) -> None:
    """Writes `config` as YAML that `load_config` reads back to an equal `Config`, atomically
    (another worker may be reading it)."""
    atomic_write(path, yaml.safe_dump(config.to_dict(), sort_keys=False).encode("utf-8"))


# Options measured as no gain (docs/benchmarks.md, "What did not help") or never used, and
# removed: dotted key → (the value it had by default, why it went). A config naming one with
# its old default (every workdir's config.yaml written before the removal does) still loads;
# any other value is an error that says the option was removed.
REMOVED = {
    "data.gamma_range": ((1.0, 1.0), "exposure augmentation was never measured to help"),
    "segmenter.positive_class_weight": (1.0, "it was always 1.0"),
    "data.synthetic_renderer": ("plain", "N_S pretrained on the realistic renderer's set segmented AASCE worse; "
                                         "`python -m seg4reg_tf.data.synthetic --renderer realistic` still draws one"),
    "readout.disagreement_degrees": (10.0, "it is predict's setting now: predict.disagreement_degrees"),
    "regressor.head_start": ("mean_predictor", "a new N_R always starts as the exact mean predictor; the bias alone over "
                                               "the random kernel collapsed from-scratch trunks"),
    "reg.mask_source": ("predicted", "N_R trains on the frozen N_S's masks (the method); N_R's pretraining reads true masks by itself"),
    "refine.mask_source": ("predicted", "N_R trains on the frozen N_S's masks (the method)"),
    **{f"readout.{name}": (value, "a shape constant of the centre line tuned once and set in no config: "
                                  f"geometric_readout.{name.upper()}")
       for name, value in (("threshold", 0.5), ("smoothing", 0.036), ("width_smoothing", 0.01), ("trim", 0.02),
                           ("gap", 0.06), ("window", 0.15), ("min_length", 0.2))},
    **{f"refiner.{name}": (value, "a constant of the tilt refiner tuned once (its variants measured no gain): "
                                  f"{home}.{name.upper()}")
       for name, value, home in (("margin", 1.3, "models.tilt_refiner"), ("jitter_degrees", 10.0, "training.refiner"),
                                 ("learning_rate", 1e-3, "training.refiner"), ("seed", 0, "training.refiner"))},
    "inference.segmenter_flips": (False, "N_S's test-time flips doubled its cost for no gain (system 10.31 → 10.37%)"),
    **{f"export.{name}": (0, "TensorFlow's own thread pools were as fast (±5%); TF Serving takes its own "
                             "--tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism")
       for name in ("intra_op_threads", "inter_op_threads")},
    "regressor.smape_epsilon": (1e-6, "a numerical guard of Eq. 3 that no config changed: losses.smape_loss's epsilon"),
    "data.clahe_clip_limit": (2.0, "CLAHE's constants were tuned once and set in no config: data.transforms.CLAHE_CLIP_LIMIT"),
    "data.clahe_grid": ((8, 4), "CLAHE's constants were tuned once and set in no config: data.transforms.CLAHE_GRID"),
    "segmenter.boundary_width": (2, "the band's width was never changed: losses.BOUNDARY_WIDTH"),
    **{f"pretrain.{name}": (value, why) for name, value, why in (
        ("weights", "none", "N_R's pretraining starts from scratch (a trunk with weights needs no pretraining)"),
        ("seed", 0, "the spines are drawn with data.seed"),
        ("weight_decay", 1e-5, "pretraining takes phase reg's weight decay"))},
    "data.angle_scale_degrees": (180.0, "N_R's output scale is a constant: data.transforms.ANGLE_SCALE_DEGREES"),
    "predict.tta_flip": (True, "the mirror image of each view is always one of TTA's views"),
    "data.synthetic_seed": (0, "the embedded synthetic data set is drawn with data.seed"),
    "regressor.vertebra_weight": (0.0, "N_R's dense supervision (a per-vertebra head) made the angles worse; "
                                       "the vertebra route reads the vertebrae off N_S instead (segmenter.tilt_weight)"),
}


# Values removed from an option's choices: dotted key → {value: why it went}.
_DETACHED = "SMAPE with no gradient through its denominator never beat 'l1' or 'smape'"
REMOVED_CHOICES = {"reg.loss": {"smape_detached": _DETACHED}, "refine.loss": {"smape_detached": _DETACHED}}


def _removed(key: str, value: Any, source: str) -> bool:
    """Whether `key` is a removed option given its old default (ignored); raises for any
    other value of a removed option."""
    if key not in REMOVED:
        return False
    default, why = REMOVED[key]
    plain = list(default) if isinstance(default, tuple) else default
    if value == plain or value == default:
        return True
    raise ValueError(f"{source}: '{key}' was removed ({why}); delete it from the config")


def _build(base: Any, values: Any, source: str, prefix: str) -> Any:
    """Returns `base` (a dataclass instance) with the fields named in `values` replaced."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(values, dict):
        raise ValueError(f"{source}: '{where}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(type(base))
    names = [field.name for field in dataclasses.fields(base)]
    changes = {}
    for key, value in values.items():
        if key not in names and _removed(f"{prefix}{key}", value, source):
            continue
        if key not in names:
            raise ValueError(
                f"{source}: unknown key '{prefix}{key}' (known keys in {where}: "
                f"{', '.join(names)})"
            )
        why = REMOVED_CHOICES.get(f"{prefix}{key}", {}).get(value) if isinstance(value, str) else None
        if why:
            raise ValueError(f"{source}: '{prefix}{key}: {value}' was removed ({why}); choose another value")
        current = getattr(base, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _build(current, value, source, f"{prefix}{key}.")
        else:
            changes[key] = _coerce(value, hints[key], source, f"{prefix}{key}")
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as error:
        raise ValueError(f"{source}: in '{where}': {error}") from None


def _coerce(value: Any, annotation: Any, source: str, key: str) -> Any:
    """Checks `value` against a field's type annotation; YAML lists become tuples."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)

    def fail(expected: str) -> typing.NoReturn:
        raise ValueError(
            f"{source}: key '{key}' must be {expected}, got {value!r} ({type(value).__name__})"
        )

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [arg for arg in args if arg is not type(None)]
        return _coerce(value, inner[0], source, key)
    if origin is Literal:
        if value not in args:
            fail("one of " + ", ".join(repr(arg) for arg in args))
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            fail(f"a list ({annotation})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0], source, f"{key}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            fail(f"a list of {len(args)} values")
        return tuple(
            _coerce(item, arg, source, f"{key}[{i}]") for i, (item, arg) in enumerate(zip(value, args))
        )
    if annotation is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
        return value
    if annotation is float:
        # PyYAML reads "1e-4" (no dot) as a string; accept it as the number it spells.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                fail("a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("a number")
        if not math.isfinite(value):
            fail("a finite number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            fail("a string")
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} for key '{key}'")
