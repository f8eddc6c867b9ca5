"""`--strategy multiworker`: two worker processes on loopback ports train one phase in step
(`training.loop`, `training.workers`), as one device would, and resume after a kill."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest

from seg4reg_tf.training.workers import loopback_cluster, scratch_folder, write_folder

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"

# One worker of the pair (or, with no TF_CONFIG, the single device): phase seg of the smoke
# config on the light networks, without dropout (replicas would draw their own masks), with
# seed 1 for the networks. It writes the first step's loss and, at the end, its N_S weights
# to files of the test's own, so that the workers can be compared.
WORKER = textwrap.dedent(
    """
    import json, os, pathlib, sys
    import keras, numpy as np
    from seg4reg_tf.config import config_from_dict, load_config
    from seg4reg_tf.training import run

    configs, root, workdir, epochs, out = sys.argv[1:6]
    strategy = run.make_strategy("multiworker" if "TF_CONFIG" in os.environ else "none", 1)
    smoke = load_config(pathlib.Path(configs) / "smoke.yaml").to_dict()
    config = config_from_dict({**smoke, "data": {**smoke["data"], "root": root},
                               "segmenter": {**smoke["segmenter"], "dropout": 0.0, "backbone": "resnet18"},
                               "seg": {**smoke["seg"], "epochs": int(epochs)}})
    keras.utils.set_random_seed(1)

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            first = pathlib.Path(out + ".first.json")
            if not first.exists():
                first.write_text(json.dumps(float(logs["loss"])))

        def on_train_end(self, logs=None):
            np.savez(out + ".weights.npz", *[np.asarray(w) for w in self.model.segmenter.weights])

    run.train_phase("seg", config, pathlib.Path(workdir), strategy, verbose=2, run_eagerly=True, extra_callbacks=[Record()])
    """
)


def workers_scratch(folder: pathlib.Path) -> pathlib.Path:
    """Worker 1's scratch folder for `folder` (`training.workers.scratch_folder`)."""
    resolver = types.SimpleNamespace(cluster_resolver=types.SimpleNamespace(task_type="worker", task_id=1))
    return scratch_folder(folder, resolver)


def launch(index: int, cluster: list[dict], args: list[str], log: pathlib.Path) -> subprocess.Popen:
    """Worker `index` of `cluster` (`workers.loopback_cluster`), its output in `log`."""
    env = {**os.environ, "TF_CONFIG": json.dumps(cluster[index])}
    return subprocess.Popen([sys.executable, "-c", WORKER, *args], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait(processes, logs, timeout: float = 600) -> None:
    for process, log in zip(processes, logs):
        try:
            assert process.wait(timeout=timeout) == 0, log.read_text()[-4000:]
        finally:
            process.kill()


@pytest.mark.slow
def test_two_workers_train_as_one_device_write_only_the_chiefs_workdir_and_resume_after_a_kill(synthetic_root, tmp_path):
    workdir = tmp_path / "workdir"  # every worker is given the same workdir; the chief writes it
    epochs = 2

    def args(index: int) -> list[str]:
        return [str(CONFIGS), str(synthetic_root), str(workdir), str(epochs), str(tmp_path / f"worker{index}")]

    # The single device, beside the pair's first run.
    single = subprocess.Popen([sys.executable, "-c", WORKER, str(CONFIGS), str(synthetic_root), str(tmp_path / "single"), "1", str(tmp_path / "single")],
                              env={key: value for key, value in os.environ.items() if key != "TF_CONFIG"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cluster = loopback_cluster(2)
    logs = [tmp_path / f"run1-{index}.log" for index in range(2)]
    pair = [launch(index, cluster, args(index), logs[index]) for index in range(2)]
    # Kill worker 1 once the chief has backed up an epoch; its peer then waits on a
    # collective that never completes, so it is stopped too.
    backup = workdir / "seg" / "backup" / "checkpoint"
    deadline = time.monotonic() + 600
    while not backup.exists():
        assert time.monotonic() < deadline, logs[0].read_text()[-4000:]
        assert all(process.poll() is None for process in pair), "a worker ended before it was killed: " + logs[0].read_text()[-4000:]
        time.sleep(0.2)
    pair[1].send_signal(signal.SIGKILL)
    pair[0].send_signal(signal.SIGKILL)
    for process in pair:
        process.wait(timeout=60)
    assert single.wait(timeout=600) == 0, single.stderr.read()[-4000:]

    first = [json.loads((tmp_path / f"worker{index}.first.json").read_text()) for index in range(2)]
    reference = json.loads((tmp_path / "single.first.json").read_text())
    assert first[0] == first[1] == pytest.approx(reference, rel=1e-4)

    # The restarted pair resumes from the chief's backup: its first epoch is not the first.
    cluster = loopback_cluster(2)
    logs = [tmp_path / f"run2-{index}.log" for index in range(2)]
    pair = [launch(index, cluster, args(index), logs[index]) for index in range(2)]
    wait(pair, logs)
    started = [line for line in logs[0].read_text().splitlines() if line.startswith("Epoch ")]
    assert started and started[0] != f"Epoch 1/{epochs}", started
    assert started[-1] == f"Epoch {epochs}/{epochs}"

    chief, other = (np.load(tmp_path / f"worker{index}.weights.npz") for index in range(2))
    assert len(chief.files) > 50
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name])
    assert (workdir / "seg" / "segmenter.keras").exists() and (workdir / "seg" / "summary.json").exists()
    history = (workdir / "seg" / "history.csv").read_text().splitlines()
    assert history[-1].startswith(f"{epochs - 1},")
    assert not workers_scratch(workdir / "seg").exists(), "worker 1 deletes what it wrote"


class FakeStrategy:
    """What `training.workers` uses of a strategy: its cluster resolver, and `run` (counted:
    the barrier's collective)."""

    def __init__(self, task_type: str, task_id: int, jobs: dict):
        spec = types.SimpleNamespace(as_dict=lambda: jobs)
        self.cluster_resolver = types.SimpleNamespace(task_type=task_type, task_id=task_id, cluster_spec=lambda: spec)
        self.runs = 0

    def run(self, function):
        self.runs += 1


@pytest.mark.parametrize(
    "task, jobs, chief",
    [(("worker", 0), {"worker": ["a:1", "b:1"]}, True), (("worker", 1), {"worker": ["a:1", "b:1"]}, False),
     (("chief", 0), {"chief": ["a:1"], "worker": ["b:1"]}, True), (("worker", 0), {"chief": ["a:1"], "worker": ["b:1"]}, False)],
)
def test_only_the_chief_writes_the_phase_folder_and_the_others_delete_their_scratch(tmp_path, task, jobs, chief):
    strategy = FakeStrategy(*task, jobs)
    folder = tmp_path / "w" / "seg"
    with write_folder(folder, strategy) as out:
        (out / "segmenter.keras").write_text("x")
        assert (out == folder) == chief
    assert (folder / "segmenter.keras").exists() == chief
    assert strategy.runs == 1, "a block that ends normally ends with a barrier"
    if not chief:
        assert not out.exists() and not folder.exists()
    with pytest.raises(RuntimeError), write_folder(folder, strategy) as out:  # deleted after an error too
        raise RuntimeError
    assert out.exists() == chief
    assert strategy.runs == 1, "no barrier after an error (the others would wait forever)"
