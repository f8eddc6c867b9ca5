"""`batch` on Beam's DirectRunner with 1 and 2 workers, beside `predict`, on the same X-rays.

    python bench/batch.py --saved-model exports/seg4reg [--count 100]

Writes `--count` synthetic 2360×854 JPEGs (`bench/predict.py`'s), runs `predict` on them
(in this process, model loading excluded), then `python -m seg4reg_tf.batch` as a user
would, once per worker count (each a fresh process: Beam's start, the workers' model
loading and the writing of the results included), and prints a Markdown table of seconds
and X-rays per second. TTA is off in every run.
"""

import argparse
import dataclasses
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

from predict import timed_run, write_xrays  # noqa: E402

from seg4reg_tf.serving import loaded_system  # noqa: E402


def batch_seconds(saved_model: str, folder: pathlib.Path, out: pathlib.Path, workers: int) -> float:
    """Wall-clock seconds of one `batch` command over `folder` on `workers` DirectRunner workers."""
    command = [sys.executable, "-m", "seg4reg_tf.batch", "--saved-model", saved_model, str(folder / "*.jpg"), "--out", str(out), "--no-tta",
               f"--direct_num_workers={workers}", "--direct_running_mode=" + ("multi_processing" if workers > 1 else "in_memory")]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved-model", required=True, help="an export (version or model folder)")
    parser.add_argument("--count", type=int, default=100, help="X-rays")
    args = parser.parse_args()
    model = loaded_system.load_saved_model(args.saved_model)
    settings = dataclasses.replace(model.config.predict, tta=False)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        (folder / "xrays").mkdir()
        paths = write_xrays(folder / "xrays", args.count)
        timed_run(model, paths[:1], settings, folder / "warmup")
        seconds = timed_run(model, paths, settings, folder / "predict")
        rows.append(f"| `predict` (one process, model loaded beforehand) | {seconds:.1f} | {args.count / seconds:.2f} |")
        for workers in (1, 2):
            seconds = batch_seconds(args.saved_model, folder / "xrays", folder / f"batch-{workers}", workers)
            rows.append(f"| `batch`, DirectRunner, {workers} worker{'s' if workers > 1 else ''} (whole command) | {seconds:.1f} | {args.count / seconds:.2f} |")
    print(f"{args.count} synthetic 2360×854 JPEGs, TTA off, {os.cpu_count()} CPU cores, model: {model.source}\n")
    print("| run | seconds | X-rays/s |\n| --- | ---: | ---: |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
