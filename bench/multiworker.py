"""Two workers of `--strategy multiworker` on loopback ports beside one process: seconds per
training step of phase seg.

    python bench/multiworker.py [--config configs/smoke.yaml] [--epochs 3]

Runs `python -m seg4reg_tf.train --phase seg` on the embedded synthetic data set (the
config's sizes) once as one process and once as two workers on this machine
(`TF_CONFIG` with two ports of 127.0.0.1, the same global batch), and prints a Markdown
table: the phase's seconds (its `summary.json`, tracing included) and seconds per step
over the epochs after the first (from the Keras epoch lines; the first holds the tracing).
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seg4reg_tf.training.workers import loopback_cluster  # noqa: E402


def run(config: pathlib.Path, workdir: pathlib.Path, workers: int) -> tuple[float, float]:
    """(phase seconds, seconds per step after the first epoch) of one run."""
    command = [sys.executable, "-m", "seg4reg_tf.train", "--phase", "seg", "--config", str(config), "--workdir", str(workdir)]
    if workers == 1:
        outputs = [subprocess.run(command, capture_output=True, text=True, check=True).stdout]
    else:
        processes = []
        for task in loopback_cluster(workers):
            env = {**os.environ, "TF_CONFIG": json.dumps(task)}
            processes.append(subprocess.Popen([*command, "--strategy", "multiworker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        outputs = [process.communicate()[0] for process in processes]
        if any(process.returncode for process in processes):
            raise RuntimeError("a worker failed")
    summary = json.loads((workdir / "seg" / "summary.json").read_text())
    per_step = [float(value) / (1000 if unit == "ms" else 1) for value, unit in re.findall(r" - ([0-9.]+)(s|ms)/step", outputs[0])[1:]]
    return summary["seconds"], sum(per_step) / max(len(per_step), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "smoke.yaml"))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    from seg4reg_tf.config import config_from_dict, load_config, save_config

    values = load_config(args.config).to_dict()
    config = config_from_dict({**values, "seg": {**values["seg"], "epochs": args.epochs}})
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        save_config(config, folder / "config.yaml")
        for workers in (1, 2):
            seconds, per_step = run(folder / "config.yaml", folder / f"w{workers}", workers)
            rows.append(f"| {workers} | {config.seg.batch_size} | {seconds:.1f} | {per_step:.2f} |")
    print(f"phase seg of {args.config} with {args.epochs} epochs, {os.cpu_count()} CPU cores\n")
    print("| workers | global batch | phase seconds | seconds per step (epochs 2+) |\n| ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
