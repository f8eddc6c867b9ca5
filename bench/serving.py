"""Latency and throughput of the exported SavedModel on this machine.

    python bench/serving.py [--height 512 --width 256] [--batches 1 8 32] [--repeats 3]

Builds the system at the given input size (untrained weights: speed does not depend on
them; gated N_S, so the two-pass ROIE inference is what is timed), exports it with
`seg4reg_tf.export`, loads it with `tf.saved_model.load` as a server would, and times
`serving_default` on encoded 2360×854 JPEGs (the AASCE X-ray size, decoding and letterbox
included) and `predict_tensor` on preprocessed tensors. Prints a Markdown table.
"""

import argparse
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seg4reg_tf import export  # noqa: E402
from seg4reg_tf.config import config_from_dict, save_config  # noqa: E402
from seg4reg_tf.models import build_regressor, build_segmenter  # noqa: E402


def make_workdir(folder: pathlib.Path, height: int, width: int) -> pathlib.Path:
    config = config_from_dict({
        "data": {"image_height": height, "image_width": width},
        "segmenter": {"weights": "none"},
        "regressor": {"weights": "none"},
    })
    for phase in ("roie", "reg"):
        (folder / phase).mkdir(parents=True)
    save_config(config, folder / "config.yaml")
    build_segmenter(config, with_roie=True).save(folder / "roie" / "segmenter.keras")
    build_regressor(config).save(folder / "reg" / "regressor.keras")
    return folder


def timed(function, repeats: int) -> float:
    """Median seconds of `repeats` calls (warm the function up first)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per row (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        workdir = make_workdir(folder / "workdir", args.height, args.width)
        started = time.perf_counter()
        path = export.export_saved_model(workdir, folder / "models")
        export_seconds = time.perf_counter() - started
        started = time.perf_counter()
        loaded = tf.saved_model.load(str(path))
        load_seconds = time.perf_counter() - started
        rng = np.random.default_rng(0)
        xray = tf.io.encode_jpeg((rng.random((2360, 854, 1)) * 255).astype(np.uint8), quality=90)
        serve, tensor = loaded.signatures["serving_default"], loaded.signatures["predict_tensor"]
        print(f"export {export_seconds:.0f} s, load {load_seconds:.0f} s; {os.cpu_count()} CPU cores\n")
        print(f"| signature at {args.height}×{args.width} | batch | latency per call (s) | images / s |")
        print("| --- | ---: | ---: | ---: |")
        # One warm-up call per signature: the first call of a loaded SavedModel optimises its
        # graph (seconds); later calls with other batch sizes do not pay that again.
        serve(images=tf.stack([xray]))
        tensor(images=tf.zeros((1, args.height, args.width, 1)))
        for batch in args.batches:
            encoded = tf.stack([xray] * batch)
            images = tf.constant(rng.random((batch, args.height, args.width, 1)), tf.float32)
            for name, call in (("serving_default (2360×854 JPEG)", lambda: serve(images=encoded)),
                               ("predict_tensor", lambda: tensor(images=images))):
                seconds = timed(call, args.repeats)
                print(f"| {name} | {batch} | {seconds:.3f} | {batch / seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
