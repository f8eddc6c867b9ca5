"""Images per second of each phase's training step, at 512×256 and at the demo size, with
and without XLA (`jit_compile`), and under MirroredStrategy on 2 logical CPU devices.

    python bench/train_step.py [--sizes 512x256,128x64] [--steps 3] [--batch 2] [--phases seg,reg]
                               [--modes plain,jit,mirrored]

Each row: a trainer of `seg4reg_tf.training.phases` built on untrained networks (weights none) with
the demo config's segmenter settings at the demo size and the paper's at 512×256, one batch
repeated, one warm-up step (tracing, compilation) excluded from the timing.
"""

import argparse
import time

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import tensorflow as tf  # noqa: E402

# Two logical CPUs for the MirroredStrategy rows; must happen before TensorFlow starts.
_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from seg4reg_tf.config import DEMO_CONFIG, config_from_dict, load_config  # noqa: E402
from seg4reg_tf.models import build_regressor, build_segmenter  # noqa: E402
from seg4reg_tf.training import phases  # noqa: E402
from seg4reg_tf.workdir import PHASES  # noqa: E402


def config_for(height: int, width: int):
    base = load_config(DEMO_CONFIG).to_dict() if (height, width) == (128, 64) else config_from_dict({}).to_dict()
    base["data"].update(image_height=height, image_width=width)
    base["segmenter"]["weights"] = base["regressor"]["weights"] = "none"
    return config_from_dict(base)


def batch_for(config, size: int):
    rng = np.random.default_rng(0)
    h, w = config.data.image_height, config.data.image_width
    return {
        "image": tf.constant(rng.random((size, h, w, 1)), tf.float32),
        "mask": tf.constant(rng.random((size, h, w, 1)) > 0.8, tf.uint8),
        "angles": tf.constant(rng.random((size, 3)) * 0.4, tf.float32),
    }


def rate(phase: str, config, batch: int, steps: int, jit: bool, strategy) -> float:
    with strategy.scope():
        gated = phase in ("roie", "tcl", "refine")
        synchronized = strategy.num_replicas_in_sync > 1  # as train.py builds them
        segmenter = build_segmenter(config.segmenter, config.data.image_size, with_roie=gated, synchronized=synchronized)
        regressor = build_regressor(config.regressor, config.data.image_size, synchronized=synchronized) if phase != "seg" else None
        trainer = phases.make_trainer(phase, segmenter, regressor, config)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit)
    data = tf.data.Dataset.from_tensors(batch_for(config, batch)).repeat()
    trainer.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
    start = time.perf_counter()
    trainer.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512x256,128x64")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--modes", default="plain,jit,mirrored", help="columns to measure (others print as –)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    default = tf.distribute.get_strategy()
    print("| phase | input | plain (img/s) | jit_compile (img/s) | MirroredStrategy ×2 CPU (img/s) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for size in args.sizes.split(","):
        height, width = (int(v) for v in size.split("x"))
        config = config_for(height, width)
        for phase in args.phases.split(","):
            cells = []
            for mode, jit, strategy in (("plain", False, default), ("jit", True, default), ("mirrored", False, mirrored)):
                if mode not in modes:
                    cells.append("–")
                    continue
                try:
                    cells.append(f"{rate(phase, config, args.batch, args.steps, jit, strategy):.3g}")
                except Exception as error:  # XLA or a strategy can refuse a graph: report, go on
                    cells.append(f"failed ({type(error).__name__})")
                keras.backend.clear_session()
            print(f"| {phase} | {height}×{width} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
