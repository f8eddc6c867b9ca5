"""How N_R starts: the loss of 60 Adam steps on one fixed batch of masks, from the exact mean
predictor (`models.start_at_mean_angles`, how every N_R starts: "mean_predictor") and from
the mean bias over Keras' random head kernel (`keep_kernel=True`, how N_R started before:
"mean_bias"), for the paper's average-pooled CAM head and the position head.

    python bench/overfit.py [--steps 60] [--batch 4] [--learning-rate 1e-3]

N_R as configs/smoke.yaml builds it (64×32) with the aasce_cpu options (plain CNN trunk,
BatchNorm momentum 0.9, no dropout, mask input, L1 on angles / 180°) on ground-truth masks of
synthetic radiographs. Prints a Markdown table: the loss at a few steps, the mean
predictor's loss on the batch, and the spread (standard deviation over the batch, in
degrees, inference mode) of the largest angle at the end against the truth's.
"""

import argparse
import pathlib
import tempfile

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seg4reg_tf.config import config_from_dict, load_config  # noqa: E402
from seg4reg_tf.data import pipeline, synthetic  # noqa: E402
from seg4reg_tf.data.aasce import read_split  # noqa: E402
from seg4reg_tf.models import build_regressor, start_at_mean_angles  # noqa: E402
from seg4reg_tf.training import phases  # noqa: E402

SMOKE = pathlib.Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
SCALE = 180.0


def fixed_batch(size: int):
    """One batch of `size` synthetic records at the smoke config's input size."""
    config = load_config(SMOKE)
    root = synthetic.generate_dataset(pathlib.Path(tempfile.mkdtemp()) / "set", train=size, test=1, seed=3,
                                      config=synthetic.SyntheticConfig(height_range=(300, 420)))
    records = read_split(root, "training")[:size]
    return next(iter(pipeline.make_dataset(records, config.data, training=False, batch_size=size)))


def run(batch, head_pooling: str, head_start: str, steps: int, learning_rate: float):
    """(losses at every step, spread of the largest angle at the end in degrees)."""
    values = load_config(SMOKE).to_dict()
    config = config_from_dict({
        **values,
        "regressor": {**values["regressor"], "backbone": "plain_cnn", "batch_norm_momentum": 0.9, "dropout": 0.0, "input_mode": "mask",
                      "coordinate_channels": head_pooling == "position", "head_pooling": head_pooling},
        "reg": {**values["reg"], "loss": "l1", "ar_weight": 0.0},
    })
    keras.utils.set_random_seed(0)
    segmenter, regressor = None, build_regressor(config.regressor, config.data.image_size)  # N_R on the true masks
    start_at_mean_angles(regressor, batch["angles"].numpy().mean(axis=0), keep_kernel=head_start == "mean_bias")
    trainer = phases.make_trainer("reg", segmenter, regressor, config)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate), run_eagerly=True)
    losses = [float(trainer.train_on_batch(batch, return_dict=True)["loss"]) for _ in range(steps)]
    spread = float(np.std(regressor(tf.cast(batch["mask"], tf.float32), training=False)["angles"].numpy()[:, 0]) * SCALE)
    return losses, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()
    batch = fixed_batch(args.batch)
    truth = batch["angles"].numpy()
    mean_loss = float(np.abs(truth - truth.mean(axis=0)).mean())
    shown = sorted({1, args.steps // 4, args.steps // 2, 3 * args.steps // 4, args.steps})
    print(f"mean predictor's loss on the batch: {mean_loss:.4f}; spread of the true largest angle: {np.std(truth[:, 0]) * SCALE:.2f}°\n")
    print("| head | start | " + " | ".join(f"loss at step {step}" for step in shown) + " | spread at the end (°) |")
    print("|---|---|" + "---:|" * (len(shown) + 1))
    for head_pooling in ("average", "position"):
        for head_start in ("mean_bias", "mean_predictor"):
            losses, spread = run(batch, head_pooling, head_start, args.steps, args.learning_rate)
            cells = " | ".join(f"{losses[step - 1]:.4f}" for step in shown)
            print(f"| {head_pooling}{' + coordinates' if head_pooling == 'position' else ''} | {head_start} | {cells} | {spread:.2f} |", flush=True)


if __name__ == "__main__":
    main()
