"""The epoch loop under a `tf.distribute` strategy: Keras' `fit` and `evaluate` without
Keras' data adapter, which does not take a dataset distributed by
`MultiWorkerMirroredStrategy` (keras-team/keras#20585: "Attempt to convert a value
({'image': PerReplica...})").

The step is the phase trainer's own `train_step` / `test_step` (`training.phases`), run on
every replica by `strategy.run` inside a `tf.function`; there is no second implementation
of a phase. The loop calls the same Keras callbacks as `fit` (checkpointing, CSV,
TensorBoard, the progress bar), with logs that are global: each metric is read across all
replicas and workers, so every worker sees the same figures. Each global batch is split
across the replicas (`strategy.experimental_distribute_dataset` rebatches it), so a step
sees the same images, augmented the same way, as one device would with the same global
batch; the losses are divided by the replica count and the optimizer sums the replicas'
gradients (`PhaseTrainer.train_step`).

Without a strategy, `fit` and `evaluate` are Keras' own.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf


def splits_batches(strategy) -> bool:
    """Whether `strategy` spreads each batch over several replicas (then BatchNorm must be
    synchronised and partial batches dropped)."""
    return strategy is not None and strategy.num_replicas_in_sync > 1


def scope(strategy):
    """`strategy.scope()`, or a context that does nothing without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def distribute(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """A dataset of global batches → a distributed dataset of per-replica batches.

    Every worker builds the same pipeline and keeps its own replicas' part of each global
    batch (sharding by data, as the pipeline reads files through one `from_tensor_slices`).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _metric_results(trainer: keras.Model) -> dict:
    """{metric name: value tensor} of the trainer's metrics; in cross-replica context the
    metrics' variables are summed over replicas and workers as they are read."""
    return {metric.name: metric.result() for metric in trainer.metrics}


def _step_function(trainer: keras.Model, strategy: tf.distribute.Strategy, step, run_eagerly: bool):
    """`step` (the trainer's `train_step` or `test_step`) on every replica's part of one
    distributed batch → the global metric results after it (one graph: its reductions
    across workers run together)."""
    replica_step = tf.autograph.experimental.do_not_convert(step)  # as Keras' fit: the step's Python stays Python

    def run(batch):
        strategy.run(replica_step, args=(batch,))
        return _metric_results(trainer)

    return run if run_eagerly else tf.function(run)


def _as_floats(logs: dict) -> dict:
    return {name: float(value) for name, value in logs.items()}


class Loop:
    """`fit` and `evaluate` of one compiled phase trainer: Keras' own without a strategy,
    the loop of this module under one (the trainer built in the strategy's scope)."""

    def __init__(self, trainer: keras.Model, strategy=None, run_eagerly: bool = False):
        self.trainer, self.strategy, self.run_eagerly = trainer, strategy, run_eagerly
        if strategy is not None and trainer.optimizer is not None and not trainer.optimizer.built:
            with scope(strategy):  # no variable may be created inside the traced step
                trainer.optimizer.build(trainer.trainable_variables)
        self.reset()

    def reset(self) -> None:
        """Forgets the traced steps (after the networks' precision changed)."""
        self.trainer.train_function = self.trainer.test_function = None
        if self.strategy is not None:
            self.train_step = _step_function(self.trainer, self.strategy, self.trainer.train_step, self.run_eagerly)
            self.test_step = _step_function(self.trainer, self.strategy, self.trainer.test_step, self.run_eagerly)

    def evaluate(self, data: tf.data.Dataset, callbacks=None) -> dict:
        """The trainer's metrics over `data` (its `test_step`): {name: value}.

        Args:
            data: a dataset of global batches (the last partial one dropped under a strategy).
            callbacks: a `keras.callbacks.CallbackList` (within `fit`), or None.
        """
        if self.strategy is None:
            return self.trainer.evaluate(data, verbose=0, return_dict=True, callbacks=callbacks)
        self.trainer.reset_metrics()
        if callbacks is not None:
            callbacks.on_test_begin()
        logs = None
        for batch in distribute(self.strategy, data):
            logs = self.test_step(batch)
        logs = _as_floats(_metric_results(self.trainer) if logs is None else logs)  # no batch: the reset metrics
        if callbacks is not None:
            callbacks.on_test_end(logs)
        return logs

    def fit(
        self,
        train_data: tf.data.Dataset,
        *,
        epochs: int,
        initial_epoch: int = 0,
        validation_data: tf.data.Dataset | None = None,
        callbacks=(),
        verbose: int = 2,
    ):
        """Keras' `fit`: epochs `initial_epoch` .. `epochs` − 1 over `train_data`.

        Args:
            train_data: a dataset of global batches (shuffled and augmented by itself).
            validation_data: a dataset of global batches, or None.
            callbacks: Keras callbacks, called as `fit` calls them.
            verbose: 0 silent, 1 a progress bar, 2 a line per epoch.

        Returns:
            The `keras.callbacks.History` (its `.history`: per-epoch logs).
        """
        trainer = self.trainer
        if self.strategy is None:
            return trainer.fit(
                train_data, validation_data=validation_data, epochs=epochs, initial_epoch=initial_epoch,
                callbacks=list(callbacks), verbose=verbose, shuffle=False,  # the dataset shuffles itself
            )
        history = keras.callbacks.History()
        callback_list = keras.callbacks.CallbackList(
            [*callbacks, history], add_progbar=verbose != 0, verbose=verbose, epochs=epochs, steps=None, model=trainer
        )
        distributed = distribute(self.strategy, train_data)
        trainer.stop_training = False
        callback_list.on_train_begin()
        logs = {}
        for epoch in range(initial_epoch, epochs):
            trainer.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            for index, batch in enumerate(distributed):
                callback_list.on_train_batch_begin(index)
                logs = _as_floats(self.train_step(batch))
                callback_list.on_train_batch_end(index, logs)
            logs = dict(logs)
            if validation_data is not None:
                scores = self.evaluate(validation_data, callback_list)
                logs.update({f"val_{name}": value for name, value in scores.items()})
            callback_list.on_epoch_end(epoch, logs)
            if trainer.stop_training:
                break
        callback_list.on_train_end(logs)
        return history
