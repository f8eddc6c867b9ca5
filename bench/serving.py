"""Latency and throughput of the exported SavedModel on this machine.

    python bench/serving.py --workdir W              # the trained system of a workdir
    python bench/serving.py --config configs/X.yaml  # untrained networks of a config
    python bench/serving.py [--height 512 --width 256] [--batches 1 8] [--repeats 10]
                            [--precision bfloat16] [--intra-op-threads N] [--inter-op-threads N]

Exports the system with `seg4reg_tf.export` (a workdir's own networks, or, for a config or
a size, untrained ones with a gated N_S: speed does not depend on the weights), loads it with
`tf.saved_model.load` as a server would, and times `serving_default` on encoded 2360×854
JPEGs (the AASCE X-ray size; decoding and letterbox included) and `predict_tensor` on
preprocessed tensors: the median of `--repeats` calls after one warm-up call, per batch
size. Then the time of each stage of the same path at batch 1 (decode and letterbox, N_S
with the gate's two passes, N_R, the geometric readout), so the slowest part is visible.
`--precision` is the export's (`export.precision`); the thread options set TensorFlow's pools
in this process (TF Serving's `--tensorflow_intra_op_parallelism` and
`--tensorflow_inter_op_parallelism`). Prints Markdown tables.
"""

import argparse
import os
import pathlib
import tempfile
import time

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seg4reg_tf.config import config_from_dict, load_config  # noqa: E402
from seg4reg_tf.data.requests import decode_requests  # noqa: E402
from seg4reg_tf.geometric_readout import read_spine  # noqa: E402
from seg4reg_tf.inference import refined_tilts, vertebra_route  # noqa: E402
from seg4reg_tf.models import build_regressor, build_segmenter, regressor_inputs  # noqa: E402
from seg4reg_tf.models.precision import with_precision  # noqa: E402
from seg4reg_tf.models.segment import gate_is_idle, is_gated, segment  # noqa: E402
from seg4reg_tf.serving import saved_model  # noqa: E402
from seg4reg_tf.workdir import final_networks, load_refiner, write_networks  # noqa: E402


def make_workdir(folder: pathlib.Path, config) -> pathlib.Path:
    """A workdir holding untrained networks of `config` (gated N_S, as after phase roie; its
    α set to 0.5, so both of the gate's passes are timed)."""
    values = config.to_dict()
    config = config_from_dict({**values, "segmenter": {**values["segmenter"], "weights": "none"},
                               "regressor": {**values["regressor"], "weights": "none"}, "inference": {"angles": "regressor"}})
    return write_networks(folder, config, build_segmenter(config.segmenter, config.data.image_size, with_roie=True), build_regressor(config.regressor, config.data.image_size), alpha=0.5)


def timed(function, repeats: int) -> float:
    """Median seconds of `repeats` calls (warm the function up first)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def stage_times(workdir: pathlib.Path, xray, repeats: int, precision: str) -> dict:
    """Median seconds per stage at batch 1, each stage a tf.function of the library code
    the export traces (warmed up once), at the export's `precision`."""
    config, segmenter, regressor, sources = final_networks(workdir)
    refiner = load_refiner(sources)
    segmenter, regressor = with_precision(segmenter, precision), with_precision(regressor, precision)
    mode = config.regressor.input_mode
    encoded = tf.stack([xray])
    decode = tf.function(lambda e: decode_requests(e, config, config.export.max_image_pixels))
    seg = tf.function(lambda x: segment(segmenter, regressor, x, mode, skip_idle_gate=True)["mask"])
    reg = tf.function(lambda x, m: regressor(regressor_inputs(x, m, mode), training=False)["angles"])
    read = tf.function(lambda m, box: read_spine(m[..., 0], config.readout, box)["cobb_angles"])
    decoded = decode(encoded)
    images, box = decoded["images"], decoded["letterbox"]
    mask = seg(images)
    tilt = segment(segmenter, regressor, images, mode, skip_idle_gate=True).get("tilt")

    @tf.function
    def vertebrae(m, t, box, fine):
        refine = None if refiner is None else refined_tilts(refiner, fine, config.refiner)
        return vertebra_route(m[..., 0], t, config, box, refine)["cobb_angles"]

    stages = {
        "decode + letterbox (+ CLAHE)": lambda: decode(encoded),
        "N_S (both gated passes)" if is_gated(segmenter) and not gate_is_idle(segmenter) else "N_S": lambda: seg(images),
        "N_R": lambda: reg(images, mask),
        "geometric readout": lambda: read(mask, box),
    }
    if tilt is not None:
        label = "vertebra route with the tilt refiner" if refiner is not None else "vertebra route"
        stages[label] = lambda: vertebrae(mask, tilt, box, decoded.get("fine_images"))
    for call in stages.values():
        call()
    return {name: timed(call, repeats) for name, call in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="a trained workdir: time its own system")
    parser.add_argument("--config", help="a config: time untrained networks of it (default: configs/paper.yaml's settings)")
    parser.add_argument("--height", type=int, help="override the input height")
    parser.add_argument("--width", type=int, help="override the input width")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row (median), after one warm-up call")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--intra-op-threads", type=int, default=0, help="0: TensorFlow's choice")
    parser.add_argument("--inter-op-threads", type=int, default=0, help="0: TensorFlow's choice")
    args = parser.parse_args()
    if args.intra_op_threads:  # before TensorFlow runs anything
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        if args.workdir:
            workdir = pathlib.Path(args.workdir)
            config = load_config(workdir / "config.yaml")
        else:
            config = load_config(args.config) if args.config else config_from_dict({})
            values = config.to_dict()
            size = {"image_height": args.height or config.data.image_height, "image_width": args.width or config.data.image_width}
            config = config_from_dict({**values, "data": {**values["data"], **size}})
            workdir = make_workdir(folder / "workdir", config)
        args.height, args.width = config.data.image_height, config.data.image_width
        started = time.perf_counter()
        path = saved_model.export_saved_model(workdir, folder / "models", precision=args.precision)
        export_seconds = time.perf_counter() - started
        started = time.perf_counter()
        loaded = tf.saved_model.load(str(path))
        load_seconds = time.perf_counter() - started
        rng = np.random.default_rng(0)
        xray = tf.io.encode_jpeg((rng.random((2360, 854, 1)) * 255).astype(np.uint8), quality=90)
        serve, tensor = loaded.signatures["serving_default"], loaded.signatures["predict_tensor"]
        threads = f"threads intra {args.intra_op_threads or 'default'} / inter {args.inter_op_threads or 'default'}"
        print(f"export {export_seconds:.0f} s, load {load_seconds:.0f} s; {os.cpu_count()} CPU cores; {args.precision}; {threads}\n")
        print(f"| signature at {args.height}×{args.width} | batch | latency per call | X-rays / s |")
        print("| --- | ---: | ---: | ---: |")
        # One warm-up call per signature: the first call of a loaded SavedModel optimises its
        # graph (seconds); later calls with other batch sizes do not pay that again.
        scale = config.refiner.scale

        def tensor_inputs(batch: int) -> dict:
            """predict_tensor's inputs: with the tilt refiner also the fine images."""
            inputs = {"images": tf.constant(rng.random((batch, args.height, args.width, 1)), tf.float32)}
            if config.refiner.enabled:
                inputs["fine_images"] = tf.constant(rng.random((batch, args.height * scale, args.width * scale, 1)), tf.float32)
            return inputs

        serve(images=tf.stack([xray]))
        tensor(**tensor_inputs(1))
        for batch in args.batches:
            encoded = tf.stack([xray] * batch)
            inputs = tensor_inputs(batch)
            for name, call in (("serving_default (2360×854 JPEG)", lambda encoded=encoded: serve(images=encoded)),
                               ("predict_tensor", lambda inputs=inputs: tensor(**inputs))):
                call()  # warm-up at this batch size
                seconds = timed(call, args.repeats)
                print(f"| {name} | {batch} | {1000 * seconds:.1f} ms | {batch / seconds:.2f} |", flush=True)
        stages = stage_times(workdir, xray, args.repeats, args.precision)
        total = sum(stages.values())
        print(f"\n| stage at batch 1 ({args.height}×{args.width}) | ms | share |")
        print("| --- | ---: | ---: |")
        for name, seconds in stages.items():
            print(f"| {name} | {1000 * seconds:.1f} | {100 * seconds / total:.0f}% |")


if __name__ == "__main__":
    main()
