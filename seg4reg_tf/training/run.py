"""Running one phase of Algorithm 1 on disk: its networks from the workdir (`workdir.py`), its
trainer (`training.phases`), resume after a kill, the best epoch kept by the phase's
validation monitor, and a summary.json with the figures next to the image-blind baselines.

    <workdir>/<phase>/backup/            state after the last finished epoch (networks, optimizer,
                                         epoch): a killed run resumes from it
    <workdir>/<phase>/best.weights.h5    best weights so far by the validation metric
    <workdir>/<phase>/logs/              TensorBoard
    <workdir>/<phase>/<network>.keras, summary.json, history.csv, best.json
                                         what a finished phase keeps (backup/ and
                                         best.weights.h5 are deleted once summary.json is written)

The command is `python -m seg4reg_tf.train`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

import seg4reg_tf.layers  # noqa: F401  (registers the custom layers for loading)
from seg4reg_tf import metrics
from seg4reg_tf.config import PRETRAIN_IN_WORKDIR, Config, SegmentationPhaseConfig
from seg4reg_tf.data import pipeline
from seg4reg_tf.data.records import resolve_records
from seg4reg_tf.data.transforms import ANGLE_SCALE_DEGREES
from seg4reg_tf.models import build_regressor, build_segmenter, copy_segmenter_weights, start_at_mean_angles, synchronize_batch_norm
from seg4reg_tf.models.precision import resolve_precision, set_precision
from seg4reg_tf.training import workers
from seg4reg_tf.training.loop import Loop, scope, splits_batches
from seg4reg_tf.training.phases import learning_rate, make_trainer
from seg4reg_tf.training.pretraining import pretrain, summary_path
from seg4reg_tf.training.refiner import train_refiner
from seg4reg_tf.workdir import (
    BACKUP,
    BEST_VALUE,
    BEST_WEIGHTS,
    HISTORY,
    PHASE_TABLE,
    SUMMARY,
    load_network,
    missing_predecessor,
    network_path,
    phase_dir,
    phase_monitor,
    pretrained_trunk_path,
    produced_path,
    refiner_path,
)

_LOG = logging.getLogger(__name__)


def check_predecessors(workdir: pathlib.Path, phase: str, config: Config) -> None:
    """Raises FileNotFoundError naming the phase to run first when its output is missing."""
    missing = missing_predecessor(workdir, phase)
    if missing:
        needed_phase, path = missing
        raise FileNotFoundError(
            f"phase '{phase}' needs {path}, which phase '{needed_phase}' writes: run "
            f"`python -m seg4reg_tf.train --phase {needed_phase} --workdir {workdir}` first"
        )


def check_weight_files(config: Config, phases) -> None:
    """Raises FileNotFoundError, before any training, when a phase about to build a network
    would start it from a weights file that does not exist."""
    needs = (("segmenter", config.segmenter.weights, {"seg"}), ("regressor", config.regressor.weights, {"reg"}))
    for network, weights, users in needs:
        if weights in ("none", "imagenet", PRETRAIN_IN_WORKDIR) or not users & set(phases) or os.path.isfile(weights):
            continue
        hint = " (write it with `python -m seg4reg_tf.pretrain --config ... --out FILE`)" if network == "regressor" else ""
        raise FileNotFoundError(f"{network}.weights: file not found: {weights}{hint}")


def load_networks(workdir: pathlib.Path, phase: str, config: Config, synchronized: bool):
    """(segmenter, regressor) for `phase`: predecessors' files, or new networks; with
    `synchronized`, every BatchNorm uses global batch statistics (files saved outside a
    strategy have them unsynchronised)."""
    def load(previous: str, network: str):
        model = load_network(network_path(workdir, previous, network))
        synchronize_batch_norm(model, synchronized)
        return model

    if phase == "seg":
        return build_segmenter(config.segmenter, config.data.image_size, synchronized=synchronized), None
    # Only phase seg starts N_S from segmenter.weights; later phases take N_S from files.
    fresh = dataclasses.replace(config.segmenter, weights="none")
    if phase == "reg":
        with_trunk = with_pretrained_trunk(config, workdir)
        return load("seg", "segmenter"), build_regressor(with_trunk.regressor, with_trunk.data.image_size, synchronized=synchronized)
    needs = dict((network, previous) for previous, network in PHASE_TABLE[phase].needs)
    regressor = load(needs["regressor"], "regressor")
    if phase == "roie":  # the gate is new: the ungated N_S's weights go into a gated one
        source = network_path(workdir, needs["segmenter"], "segmenter")
        gated = build_segmenter(fresh, config.data.image_size, with_roie=True, synchronized=synchronized)
        copy_segmenter_weights(load_network(source), gated, str(source))
        return gated, regressor
    return load(needs["segmenter"], "segmenter"), regressor


def with_pretrained_trunk(config: Config, workdir: pathlib.Path) -> Config:
    """`regressor.weights: pretrain` → the config with the workdir's pretrained trunk file;
    any other config unchanged."""
    if config.regressor.weights != PRETRAIN_IN_WORKDIR:
        return config
    return dataclasses.replace(config, regressor=dataclasses.replace(config.regressor, weights=str(pretrained_trunk_path(workdir))))


def ensure_pretrained_trunk(config: Config, workdir: pathlib.Path, verbose: int = 2, strategy=None) -> dict | None:
    """With `regressor.weights: pretrain`, pretrains N_R's trunk on synthetic masks into the
    workdir unless it is there already (`training.pretraining.pretrain`, under `strategy`;
    only the chief writes the workdir).

    Returns:
        The pretraining summary (read back when the trunk exists), or None for other configs.
    """
    if config.regressor.weights != PRETRAIN_IN_WORKDIR:
        return None
    path = pretrained_trunk_path(workdir)
    return _train_once(path, summary_path(path), f"pretraining N_R's trunk on {config.pretrain.count} drawn spine masks", verbose, strategy,
                       lambda out: {**pretrain(config, out / path.name, verbose=verbose, strategy=strategy), "weights": str(path)})


def ensure_refiner(config: Config, workdir: pathlib.Path, verbose: int = 2, strategy=None) -> dict | None:
    """With `refiner.enabled`, trains the tilt refiner into the workdir unless it is there
    already (`training.refiner`; on one device: it is small, and every worker trains the same
    one, only the chief keeping it).

    Returns:
        The refiner's summary (read back when it exists), or None when it is not enabled.
    """
    if not config.refiner.enabled:
        return None
    path = refiner_path(workdir)

    def train(out):
        training, validation, _ = resolve_records(config)
        return train_refiner(training, validation, config, out, verbose=verbose)

    return _train_once(path, path.parent / SUMMARY, f"the tilt refiner, on the vertebrae of the training X-rays at {config.refiner.scale}×",
                       verbose, strategy, train)


def _train_once(path: pathlib.Path, summary_file: pathlib.Path, what: str, verbose: int, strategy, train) -> dict:
    """What phase reg needs trained first (N_R's trunk, the refiner), trained once: the summary
    read back when `path` and `summary_file` exist, else `train(folder)`'s, written into
    `path.parent` by the chief alone (`workers.write_folder`) under a heading of its own."""
    if path.is_file() and summary_file.is_file():
        return json.loads(summary_file.read_text())
    if verbose:
        print(f"--- {what} (before phase reg) ---", flush=True)
    with workers.write_folder(path.parent, strategy) as out:
        summary = train(out)
    if verbose:
        print("--- phase reg ---", flush=True)
    return summary


class _BestValue:
    """Keeps the best monitored value on disk so a resumed run does not forget it."""
    def __init__(self, path: pathlib.Path, monitor: str, mode: str):

        self.path, self.monitor, self.mode = path, monitor, mode

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(inner, epoch, logs=None):  # noqa: N805
                value = (logs or {}).get(monitor)
                if value is None:
                    return
                best = self.load()
                if best is None or (value < best if mode == "min" else value > best):
                    self.record(epoch + 1, value)

        self.callback = Callback()

    def record(self, epoch: int, value: float) -> None:
        """Writes `value` as the best so far, reached after `epoch` epochs (0: the start)."""
        self.path.write_text(json.dumps({"epoch": epoch, self.monitor: float(value)}))

    def load(self):
        if not self.path.exists():
            return None
        return json.loads(self.path.read_text())[self.monitor]

    def epoch(self) -> int | None:
        """The epoch of the best value (0: the networks the phase started from), or None."""
        return json.loads(self.path.read_text())["epoch"] if self.path.exists() else None


def score_start(loop, validation_data, folder: pathlib.Path, best: _BestValue) -> None:
    """`keep_start_unless_beaten`: scores the trainer's starting networks on the validation
    monitor and writes them as the best epoch so far (epoch 0), so that the phase keeps them
    unless an epoch beats that score. Does nothing once a best value exists (a resumed run)."""
    if best.load() is not None:
        return
    scores = loop.evaluate(validation_data)
    loop.trainer.save_weights(folder / BEST_WEIGHTS)
    best.record(0, scores[best.monitor[len("val_"):]])


def resume_state(trainer, folder: pathlib.Path, out: pathlib.Path | None = None):
    """(initial epoch, callback saving the state after every epoch).

    The state is a `tf.train.Checkpoint` of the trainer's networks, the optimizer (Adam's
    moments and step count included) and the number of finished epochs, so a killed run
    continues where its last finished epoch left it.

    Args:
        folder: the phase folder whose `backup/` a restart resumes from.
        out: where this worker writes its backups (default `folder`; another worker than
            the chief writes to a temporary folder, `training.workers`).
    """
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    trainer.optimizer.build(trainer.trainable_variables)
    checkpoint = tf.train.Checkpoint(trainer=trainer, optimizer=trainer.optimizer, epoch=epoch)
    latest = tf.train.latest_checkpoint(str(folder / BACKUP))
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        _LOG.info("resuming from %s after epoch %d", latest, int(epoch.numpy()))
    manager = tf.train.CheckpointManager(checkpoint, str((out or folder) / BACKUP), max_to_keep=1)

    class SaveState(keras.callbacks.Callback):
        def on_epoch_end(self, finished, logs=None):
            epoch.assign(finished + 1)
            manager.save()

    return int(epoch.numpy()), SaveState()


def baselines(training, validation, config: Config) -> dict:
    """Validation figures of predictors that ignore the image: the training-mean angles,
    and the training-mean mask (thresholded at 0.5) — the floor each phase must beat."""
    truth = np.stack([record.angles for record in validation])
    mean_angles = np.stack([record.angles for record in training]).mean(axis=0)
    prior = pipeline.mean_mask(training, config.data)
    truth_masks = pipeline.model_frame_masks(validation, config.data)
    scores = metrics.segmentation_scores(truth_masks, np.broadcast_to(prior, truth_masks.shape))
    return {**metrics.mean_angle_baseline(truth, mean_angles), "dice": scores["dice"], "jaccard": scores["jaccard"]}


def make_strategy(name: str, cpu_replicas: int):
    """None, or a tf.distribute strategy; must run before TensorFlow creates devices."""
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    if name == "none":
        return None
    if name == "mirrored":
        devices = [f"/cpu:{i}" for i in range(cpu_replicas)] if cpu_replicas > 1 and not tf.config.list_physical_devices("GPU") else None
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.MultiWorkerMirroredStrategy()  # cluster from TF_CONFIG


def train_phase(
    phase: str,
    config: Config,
    workdir: pathlib.Path,
    strategy=None,
    jit_compile="auto",
    verbose: int = 1,
    extra_callbacks=(),
    run_eagerly: bool = False,
) -> dict:
    """Runs (or resumes) one phase and returns its summary (also written to summary.json).

    Under a strategy the phase runs through `training.loop`; with several workers only the
    chief writes the workdir, and every worker returns once the chief has written
    (`training.workers`).
    """
    check_predecessors(workdir, phase, config)
    folder = phase_dir(workdir, phase)
    with workers.write_folder(folder, strategy) as out:
        summary = _run_phase(phase, config, workdir, folder, out, strategy, jit_compile, verbose, extra_callbacks, run_eagerly)
    return summary


def _run_phase(phase, config, workdir, folder, out, strategy, jit_compile, verbose, extra_callbacks, run_eagerly) -> dict:
    """`train_phase`, reading the workdir and `folder`, writing to `out`."""
    settings = getattr(config, phase)
    refining = ensure_refiner(config, workdir, verbose, strategy) if phase == "reg" else None
    pretraining = ensure_pretrained_trunk(config, workdir, verbose, strategy) if phase == "reg" else None
    training, validation, root = resolve_records(config)
    distributed = splits_batches(strategy)
    with scope(strategy):
        segmenter, regressor = load_networks(workdir, phase, config, synchronized=distributed)
        mean = np.mean([record.angles for record in training], axis=0) / ANGLE_SCALE_DEGREES
        if phase == "reg":
            start_at_mean_angles(regressor, mean)
        # seg and roie may train N_S in bfloat16 (`precision`); the other phases in float32
        precision = resolve_precision(settings.precision) if isinstance(settings, SegmentationPhaseConfig) else "float32"
        if precision != "float32":
            set_precision(segmenter, precision)  # back to float32 before it is saved
        trainer = make_trainer(phase, segmenter, regressor, config, mean)
        optimizer = keras.optimizers.Adam(learning_rate(settings, len(training)), weight_decay=settings.weight_decay or None)
        trainer.compile(optimizer=optimizer, jit_compile=jit_compile, run_eagerly=run_eagerly)
        initial_epoch, save_state = resume_state(trainer, folder, out)
    loop = Loop(trainer, strategy, run_eagerly)
    if out != folder and initial_epoch > 0:  # another worker, resumed: the chief's best so far
        for name in (BEST_VALUE, BEST_WEIGHTS):
            if (folder / name).exists():
                shutil.copy2(folder / name, out / name)
    train_data = pipeline.make_dataset(training, config.data, training=True, batch_size=settings.batch_size)
    validation_data = None
    if validation:
        validation_data = pipeline.make_dataset(validation, config.data, training=False, batch_size=settings.batch_size, drop_remainder=distributed)
    monitor, mode = phase_monitor(phase, config)
    if validation_data is None:
        monitor = monitor[len("val_"):]
    best = _BestValue(out / BEST_VALUE, monitor, mode)
    if settings.keep_start_unless_beaten and validation_data is not None and initial_epoch == 0:
        score_start(loop, validation_data, out, best)  # the config ensures a validation split
    callbacks = [
        save_state,
        keras.callbacks.ModelCheckpoint(
            str(out / BEST_WEIGHTS), monitor=monitor, mode=mode, save_best_only=True,
            save_weights_only=True, initial_value_threshold=best.load(),
        ),
        best.callback,
        keras.callbacks.TensorBoard(str(out / "logs")),
        keras.callbacks.CSVLogger(str(out / HISTORY), append=True),  # all epochs across resumes
        *extra_callbacks,
    ]
    started = time.perf_counter()
    history = loop.fit(
        train_data, validation_data=validation_data, epochs=settings.epochs, initial_epoch=initial_epoch,
        callbacks=callbacks, verbose=verbose,
    )
    if (out / BEST_WEIGHTS).exists():
        trainer.load_weights(out / BEST_WEIGHTS)
    if precision != "float32":
        set_precision(segmenter, "float32")
        loop.reset()  # the final figures are float32 ones
    trained = regressor if PHASE_TABLE[phase].trains == "regressor" else segmenter
    trained.save(out / produced_path(workdir, phase).name)
    final = loop.evaluate(validation_data) if validation_data is not None else {}
    summary = {
        "phase": phase,
        "data": root,
        "training_images": len(training),
        "validation_images": len(validation),
        "epochs": settings.epochs,
        "seconds": round(time.perf_counter() - started, 1),
        "precision": precision,
        "monitor": monitor,
        "best": best.load(),
        "best_epoch": best.epoch(),
        "validation": {key: float(value) for key, value in final.items()},
        "baseline": baselines(training, validation, config) if validation else {},
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
    }
    if pretraining is not None:
        summary["pretraining"] = pretraining
    if refining is not None:
        summary["refiner"] = refining
    (out / SUMMARY).write_text(json.dumps(summary, indent=2))
    discard_resume_state(out)
    return summary


def discard_resume_state(folder: pathlib.Path) -> None:
    """Deletes what only an unfinished phase needs (its backup and its best weights so far,
    each as large as the trained networks), once its summary says it finished: the phase's
    network, summary, history, best.json and TensorBoard logs stay."""
    shutil.rmtree(folder / BACKUP, ignore_errors=True)
    (folder / BEST_WEIGHTS).unlink(missing_ok=True)


def report(summary: dict) -> str:
    """One line per phase: its validation figures next to the image-blind baseline."""
    phase, values, base = summary["phase"], summary["validation"], summary["baseline"]
    if not values:
        return f"{phase}: no validation split"
    if "smape" in values and phase in ("reg", "refine", "tcl"):
        line = f"{phase}: validation SMAPE {values['smape']:.2f}% MAE {values['mae']:.2f}° (mean-angle baseline: SMAPE {base['smape']:.2f}% MAE {base['mae']:.2f}°)"
    else:
        line = f"{phase}: validation Dice {values['dice']:.2f}% Jaccard {values['jaccard']:.2f}% (mean-mask baseline: Dice {base['dice']:.2f}% Jaccard {base['jaccard']:.2f}%)"
    if summary.get("best_epoch") == 0:
        line += "; kept its starting network (no epoch beat it)"
    if summary.get("precision") == "bfloat16":
        line += "; N_S trained in bfloat16"
    if "pretraining" in summary:
        pretrained = summary["pretraining"]
        line += (
            f"; from a trunk pretrained on synthetic masks in {pretrained['seconds']:.0f} s "
            f"(their validation SMAPE {pretrained['validation']['val_smape'][-1]:.2f}%, mean {pretrained['baseline']['smape']:.2f}%)"
        )
    if summary.get("refiner", {}).get("validation_start_rms_degrees") is not None:
        refiner = summary["refiner"]
        line += (f"; tilt refiner trained in {refiner['seconds']:.0f} s (validation tilt error {refiner['history'][-1]['val_tilt_rms_degrees']:.2f}° RMS "
                 f"from {refiner['validation_start_rms_degrees']:.2f}°)")
    return line + f" [{summary['seconds']:.0f} s]"
