"""Triangle consistency learning (paper Algorithm 1, Fig. 2): one trainer per phase.

Each trainer is a Keras model (TensorFlow backend) whose `train_step` runs a
`tf.GradientTape` over the trainable sub-model only. The other sub-model is frozen: its
`trainable` flag is cleared before `compile()` (Keras ignores later changes), it is called
with `training=False` so BatchNorm uses its moving statistics, and its variables are not
sources of the tape, yet gradients still flow *through* it where a phase needs that (tcl).

    seg     Alg. 1 lines 1–4    N_S trains on Eq. 1.
    reg     lines 5–10          N_R trains on SMAPE(r(x ⊕ s(x)), ŷ) + SMAPE(r(s(x)), ŷ)
                                + w·L_AR, with s(x) from the frozen N_S (or ground truth).
    roie    lines 11–14         the ROIE-gated N_S trains on Eq. 1, fed the CAM of frozen N_R.
    tcl     lines 15–18         gated N_S trains on SMAPE(r(x ⊕ y), r(x ⊕ s(x))) through the
                                frozen N_R: masks become what N_R reads best (or, with
                                `tcl.through: readout`, what the geometric readout reads best).
    refine  line 19             `reg` again, on masks of the refined N_S.

With a gated N_S, s(x) takes the gate's two passes (`models.segment`), in training and at
inference alike.

Losses are per-image means; under a `tf.distribute` strategy they are divided by the
replica count before the gradient, because the optimizer sums gradients across replicas.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from seg4reg_tf import losses, metrics
from seg4reg_tf.config import Config
from seg4reg_tf.data.transforms import ANGLE_SCALE_DEGREES
from seg4reg_tf.geometric_readout import read_spine
from seg4reg_tf.models.regressor import mask_branch_inputs, regressor_inputs
from seg4reg_tf.models.segment import segment
from seg4reg_tf.tilt_field import tilt_loss
from seg4reg_tf.workdir import PHASES


class PhaseTrainer(keras.Model):
    """Shared mechanics: the optimizer step, loss tracking, validation metrics.

    Subclasses set which sub-model trains and implement `compute(batch, training)`, which
    returns the total loss, a dict of named loss terms, and the predictions the validation
    metrics read ("mask" and/or "angles").
    """

    def __init__(self, segmenter, regressor, config: Config, mean_angles=None, **kwargs):
        super().__init__(**kwargs)
        self.segmenter = segmenter
        self.regressor = regressor
        self.config = config
        self.mode = config.regressor.input_mode
        self.trackers = {}
        self.validation_metrics = []
        # (3,) training-mean angles scaled to [0, 1]: what a readout metric scores where no
        # spine is found, as evaluation does (zeros when not given: such images score 100%)
        self.mean_angles = ops.convert_to_tensor([0.0, 0.0, 0.0] if mean_angles is None else mean_angles, "float32")

    def readout_angles(self, reading):
        """A `read_spine` result → (B, 3) its Cobb angles scaled to [0, 1], the training-mean
        angles where it found no spine; no gradient (a validation figure)."""
        found = reading["found"][:, None]
        angles = ops.where(found, ops.where(found, reading["cobb_angles"], 0.0) / ANGLE_SCALE_DEGREES, self.mean_angles[None])
        return ops.stop_gradient(angles)

    def segmentation_loss(self, batch, out):
        """Eq. 1 with the config's weights (`segmenter.ce_weight`, `boundary_weight`) on the
        true mask and N_S's `mask_logits`, plus
        `tilt_weight` × the tilt field's loss when N_S has the tilt head → scalar."""
        settings = self.config.segmenter
        loss = losses.segmentation_loss(
            batch["mask"], out["mask_logits"], settings.ce_weight, boundary_weight=settings.boundary_weight
        )
        if "tilt" in out:
            loss += settings.tilt_weight * tilt_loss(batch["landmarks"], batch["mask"], out["tilt"])
        return loss

    def track(self, *names):
        for name in names:
            self.trackers[name] = keras.metrics.Mean(name=name)

    def compute(self, batch, training: bool):
        raise NotImplementedError

    @property
    def metrics(self):
        return list(self.trackers.values()) + self.validation_metrics

    def call(self, batch, training=False):
        return self.compute(batch, training)[2]

    def train_step(self, data):
        batch = keras.utils.unpack_x_y_sample_weight(data)[0]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss, terms, predictions = self.compute(batch, training=True)
            scaled = self.optimizer.scale_loss(loss / replicas)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        return self.update(batch, loss, terms, predictions)

    def test_step(self, data):
        batch = keras.utils.unpack_x_y_sample_weight(data)[0]
        loss, terms, predictions = self.compute(batch, training=False)
        return self.update(batch, loss, terms, predictions)

    def update(self, batch, loss, terms, predictions):
        self.trackers["loss"].update_state(loss)
        for name, value in terms.items():
            self.trackers[name].update_state(value)
        for metric in self.validation_metrics:
            if isinstance(metric, metrics.SegmentationScore):
                metric.update_state(batch["mask"], predictions["mask"])
            else:
                metric.update_state(batch["angles"], predictions["angles"])
        return {metric.name: metric.result() for metric in self.metrics}


class SegmentationPhase(PhaseTrainer):
    """seg and roie: N_S on Eq. 1; with a gated N_S the frozen N_R supplies the CAM.

    Besides Dice and Jaccard it scores the geometric readout of its masks against the true
    angles ("readout_smape", %), which `monitor: readout` keeps the best epoch by."""

    def __init__(self, segmenter, regressor, config: Config, mean_angles=None, **kwargs):
        super().__init__(segmenter, regressor, config, mean_angles, **kwargs)
        if regressor is not None:
            regressor.trainable = False
        self.track("loss")
        self.validation_metrics = [
            metrics.SegmentationScore("dice"),
            metrics.SegmentationScore("jaccard"),
            metrics.Smape(name="readout_smape"),
        ]

    def compute(self, batch, training: bool):
        out = segment(self.segmenter, self.regressor, batch["image"], self.mode, training)
        out = {key: ops.cast(value, "float32") for key, value in out.items()}  # bfloat16 N_S
        loss = self.segmentation_loss(batch, out)
        reading = read_spine(ops.stop_gradient(out["mask"])[..., 0], self.config.readout)
        return loss, {}, {**out, "angles": self.readout_angles(reading)}


class RegressionPhase(PhaseTrainer):
    """reg and refine: N_R with attention regularisation over a frozen N_S.

    Branch A sees the mode's input (x ⊕ s(x) for "image+mask"), branch B the mask alone;
    both run as one batch of 2B so BatchNorm sees one set of statistics. With
    `ar_weight` 0 only branch A runs: the plain regressor of the ablation's baseline.
    """

    def __init__(self, segmenter, regressor, config: Config, phase: str = "reg", mean_angles=None, **kwargs):
        super().__init__(segmenter, regressor, config, mean_angles, **kwargs)
        if segmenter is not None:  # None: ground-truth masks only (pretraining)
            segmenter.trainable = False
        self.settings = getattr(config, phase)
        # the loss terms this phase's config makes non-zero, named for what they are
        self.track("loss", *self.term_names())
        self.validation_metrics = [metrics.Smape(), metrics.AngleMAE()] + [metrics.AngleMAE(column=i) for i in range(3)]

    def term_names(self) -> tuple[str, ...]:
        """The logged loss terms: the angle loss on branch A (`reg.loss`: L1 or SMAPE), with
        AR also on branch B and the attention regularisation."""
        return ("loss_angles",) + (("loss_angles_mask", "loss_ar") if self.settings.ar_weight else ())

    def named_terms(self, angles, angles_mask=None, ar=None) -> dict:
        """{term name: value} of `term_names`."""
        values = {"loss_angles": angles, "loss_angles_mask": angles_mask, "loss_ar": ar}
        return {name: values[name] for name in self.term_names()}

    def masks(self, batch):
        """N_R's masks: the frozen N_S's (B, H, W, 1) probabilities, or the true masks
        without an N_S (pretraining on drawn masks)."""
        if self.segmenter is None:
            return ops.cast(batch["mask"], "float32")
        return ops.stop_gradient(segment(self.segmenter, self.regressor, batch["image"], self.mode)["mask"])

    def compute(self, batch, training: bool):
        image, angles = batch["image"], batch["angles"]
        mask = self.masks(batch)
        branch_a = regressor_inputs(image, mask, self.mode)
        if self.settings.ar_weight == 0:
            out = self.regressor(branch_a, training=training)
            angle = losses.angle_loss(self.settings.loss, angles, out["angles"])
            return angle, self.named_terms(angle), out
        both = self.regressor(ops.concatenate([branch_a, mask_branch_inputs(mask, self.mode)], axis=0), training=training)
        half = ops.shape(image)[0]
        a = {key: value[:half] for key, value in both.items()}
        b = {key: value[half:] for key, value in both.items()}
        smape_a = losses.angle_loss(self.settings.loss, angles, a["angles"])
        smape_b = losses.angle_loss(self.settings.loss, angles, b["angles"])
        ar = losses.attention_regularization_loss(a["cam"][..., :3], b["cam"][..., :3])
        loss = smape_a + smape_b + self.settings.ar_weight * ar
        return loss, self.named_terms(smape_a, smape_b, ar), a


class ConsistencyPhase(PhaseTrainer):
    """tcl: the gated N_S learns, through the frozen N_R, masks that N_R reads like the
    ground-truth mask: SMAPE(r(x ⊕ y), r(x ⊕ s(x))) (Alg. 1 lines 15–18); for N_R on the
    mask alone SMAPE(r(y), r(s(x))), and an image-only N_R reads the masks in its image channel."""

    def __init__(self, segmenter, regressor, config: Config, mean_angles=None, **kwargs):
        super().__init__(segmenter, regressor, config, mean_angles, **kwargs)
        regressor.trainable = False
        self.track("loss")
        self.validation_metrics = [
            metrics.Smape(),
            metrics.AngleMAE(),
            metrics.SegmentationScore("dice"),
            metrics.SegmentationScore("jaccard"),
        ]

    def reading(self, image, mask):
        """N_R's input for a mask: x ⊕ mask, or the mask alone for the mask input; an N_R
        on the image alone reads the mask in its image channel (as AR's branch B does),
        since r(x) would not depend on the mask and N_S would get no gradient."""
        if self.mode == "image":
            return mask_branch_inputs(mask, self.mode)
        return regressor_inputs(image, mask, self.mode)

    def compute(self, batch, training: bool):
        image = batch["image"]
        out = segment(self.segmenter, self.regressor, image, self.mode, training)
        truth = ops.cast(batch["mask"], "float32")
        if self.config.tcl.through == "readout":
            return self.compute_through_readout(batch, out, truth)
        target = ops.stop_gradient(self.regressor(self.reading(image, truth), training=False)["angles"])
        predicted = self.regressor(self.reading(image, out["mask"]), training=False)["angles"]
        loss = losses.smape_loss(target, predicted)
        return loss, {}, {**out, "angles": predicted}

    def compute_through_readout(self, batch, out, truth):
        """`tcl.through: readout`: L1 between the Cobb angles the geometric readout reads
        off N_S's probabilities and off the true mask (both in the model frame), in units
        of the angle scale, over the images where both readings find a spine, plus Eq. 1
        on the true mask. The validation SMAPE scores the reading of s(x) against the true
        angles, the training-mean angles where it finds no spine. The readout is differentiable almost everywhere in the
        probabilities above its threshold. Eq. 1 anchors the masks: without it, a mask the
        readout does not find costs nothing, and a measured run drove every mask below
        the threshold within one epoch."""
        target = read_spine(truth[..., 0], self.config.readout)
        reading = read_spine(out["mask"][..., 0], self.config.readout)
        both = ops.logical_and(target["found"], reading["found"])
        # NaN where nothing was found: replaced before the difference, so no NaN reaches a gradient.
        predicted = ops.where(both[:, None], reading["cobb_angles"], 0.0) / ANGLE_SCALE_DEGREES
        expected = ops.stop_gradient(ops.where(both[:, None], target["cobb_angles"], 0.0) / ANGLE_SCALE_DEGREES)
        per_image = ops.mean(ops.abs(predicted - expected), axis=-1)
        consistency = ops.sum(per_image) / ops.maximum(ops.sum(ops.cast(both, "float32")), 1.0)
        anchor = self.segmentation_loss(batch, out)
        return consistency + anchor, {}, {**out, "angles": self.readout_angles(reading)}


def make_trainer(phase: str, segmenter, regressor, config: Config, mean_angles=None) -> PhaseTrainer:
    """The trainer of `phase` over the given networks (frozen flags set, not compiled).

    Args:
        mean_angles: (3,) training-mean angles scaled to [0, 1], which readout metrics score
            where no spine is found (None: zeros).
    """
    if phase in ("seg", "roie"):
        trainer = SegmentationPhase(segmenter, regressor if phase == "roie" else None, config, mean_angles, name=f"{phase}_phase")
    elif phase in ("reg", "refine"):
        trainer = RegressionPhase(segmenter, regressor, config, phase=phase, mean_angles=mean_angles, name=f"{phase}_phase")
    elif phase == "tcl":
        trainer = ConsistencyPhase(segmenter, regressor, config, mean_angles, name="tcl_phase")
    else:
        raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
    trainer.built = True  # its networks are built; weights can be saved before the first step
    return trainer


def learning_rate(settings, records: int):
    """The optimizer's step size for a phase: a float, or a schedule over the phase's steps.

    Args:
        settings: the phase's `PhaseConfig`.
        records: training records; a step is one batch of `settings.batch_size`, the last
            partial batch dropped (as `pipeline.make_dataset` batches training data).
    """
    if settings.schedule == "constant":
        return settings.learning_rate
    steps = max(1, settings.epochs * (records // settings.batch_size))
    return keras.optimizers.schedules.CosineDecay(settings.learning_rate, steps)
