"""Which worker writes: TensorFlow's multi-worker conventions for the workdir.

Under `MultiWorkerMirroredStrategy` every worker runs the same phase in step, and every
worker must take part in each save (saving reads variables that are aggregated across
workers). The chief (task "chief", or worker 0 when the cluster names no chief) writes the
workdir; the other workers write the same files to a temporary folder that they delete.
Every worker reads the chief's workdir: the predecessors' networks and, on a restart, the
phase's last backup. `barrier` keeps a worker from reading what the chief has not
finished writing: each `write_folder` block ends with one.
"""

from __future__ import annotations

import contextlib
import hashlib
import pathlib
import shutil
import socket
import tempfile

import tensorflow as tf


def is_chief(strategy=None) -> bool:
    """Whether this process writes the workdir: True without a strategy or on one machine;
    under `MultiWorkerMirroredStrategy`, for the chief task (or worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def is_multi_worker(strategy=None) -> bool:
    """Whether `strategy` spans several worker processes."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return False
    jobs = resolver.cluster_spec().as_dict()
    return sum(len(tasks) for tasks in jobs.values()) > 1


def scratch_folder(folder: pathlib.Path, strategy) -> pathlib.Path:
    """Where a worker other than the chief writes `folder`'s files: a folder in the system's
    temporary folder named after the task and `folder`, so that a restarted worker finds and
    clears what a killed one left."""
    resolver = strategy.cluster_resolver
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return pathlib.Path(tempfile.gettempdir()) / f"seg4reg-{resolver.task_type}{resolver.task_id}-{folder.name}-{key}"


@contextlib.contextmanager
def write_folder(folder: pathlib.Path, strategy=None):
    """The folder this worker writes a block's files to: `folder` on the chief, else its
    `scratch_folder`, emptied on entry and deleted on leaving the block (even after an error).
    A block that ends normally ends with a `barrier`: once it returns on any worker, the
    chief has written everything the block writes."""
    if is_chief(strategy):
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        barrier(strategy)
        return
    scratch = scratch_folder(folder, strategy)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        yield scratch
        barrier(strategy)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def barrier(strategy=None) -> None:
    """Returns on every worker once all have called it (a collective sum of ones); nothing
    to wait for on one worker."""
    if not is_multi_worker(strategy):
        return

    @tf.function
    def together():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("sum", tf.ones(())))

    together()


def loopback_cluster(count: int) -> list[dict]:
    """TF_CONFIG of each of `count` workers of a cluster on this machine: ports of 127.0.0.1
    that were free a moment ago (for tests, benches, and trying the strategy out)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    addresses = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    for sock in sockets:
        sock.close()
    return [{"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}} for index in range(count)]
