"""Images per second the input pipeline delivers, next to what each network's training
step consumes, at 512×256 with augmentation on this machine.

    python bench/pipeline.py [--images 64] [--steps 3] [--batch 4]

Data: a synthetic set generated into a temporary folder, and the AASCE training split when
SEG4REG_AASCE_ROOT is set. Pipeline rates: the first epoch (read, decode, letterbox,
rasterise masks, fill the cache) and the steady state (cached: shuffle, batch, augment).
Network rates: a plain training step (forward, loss, gradients, Adam) of N_S with the
segmentation loss and of N_R (image+mask) with the SMAPE loss, after one warm-up step.
"""

import argparse
import os
import tempfile
import time

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seg4reg_tf import losses  # noqa: E402
from seg4reg_tf.config import DataConfig, config_from_dict  # noqa: E402
from seg4reg_tf.data import pipeline, synthetic  # noqa: E402
from seg4reg_tf.data.aasce import read_split  # noqa: E402
from seg4reg_tf.models import build_regressor, build_segmenter  # noqa: E402


def pipeline_rates(records, config: DataConfig, batch: int, epochs: int = 3) -> tuple[float, float]:
    """(first-epoch img/s, steady-state img/s) of the training pipeline."""
    dataset = pipeline.make_dataset(records, config, training=True, batch_size=batch)
    start = time.perf_counter()
    count = sum(int(b["image"].shape[0]) for b in dataset)
    first = count / (time.perf_counter() - start)
    start = time.perf_counter()
    count = sum(int(b["image"].shape[0]) for _ in range(epochs) for b in dataset)
    return first, count / (time.perf_counter() - start)


def step_rate(model, loss_fn, inputs, target, steps: int) -> float:
    """Images per second of a compiled training step (after one warm-up step)."""
    optimizer = keras.optimizers.Adam(1e-4)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(target, model(inputs, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    batch = int(target.shape[0])
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="synthetic images to generate")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per network")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    config = DataConfig()
    sets = []
    with tempfile.TemporaryDirectory() as folder:
        root = synthetic.generate_dataset(os.path.join(folder, "synthetic"), args.images, 0, seed=0)
        sets.append(("synthetic", read_split(root)))
        if os.environ.get("SEG4REG_AASCE_ROOT"):
            sets.append(("AASCE training", read_split(os.environ["SEG4REG_AASCE_ROOT"])))
        rates = [(name, len(records), *pipeline_rates(records, config, args.batch)) for name, records in sets]

    full = config_from_dict({"segmenter": {"weights": "none"}, "regressor": {"weights": "none"}})
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((args.batch, 512, 256, 1)), tf.float32)
    masks = tf.constant(rng.random((args.batch, 512, 256, 1)) > 0.8, tf.float32)
    angles = tf.constant(rng.random((args.batch, 3)), tf.float32)
    segmenter_rate = step_rate(
        build_segmenter(full.segmenter, full.data.image_size), lambda y, out: losses.segmentation_loss(y, out["mask_logits"]), {"image": images}, masks, args.steps
    )
    regressor_rate = step_rate(
        build_regressor(full.regressor, full.data.image_size), lambda y, out: losses.smape_loss(y, out["angles"]), tf.concat([images, masks], -1), angles, args.steps
    )
    slower = min(segmenter_rate, regressor_rate)
    print(f"training steps at 512×256, batch {args.batch}: N_S {segmenter_rate:.2f} img/s, N_R {regressor_rate:.2f} img/s")
    print()
    print("| data | images | pipeline, first epoch (img/s) | pipeline, cached (img/s) | N_S step (img/s) | N_R step (img/s) | cached pipeline / slower network |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, count, first, steady in rates:
        print(f"| {name} | {count} | {first:.1f} | {steady:.1f} | {segmenter_rate:.2f} | {regressor_rate:.2f} | {steady / slower:.0f}× |")


if __name__ == "__main__":
    main()
