"""Why N_R stays at the mean: learning curves and diagnostics of N_R variants on exact
synthetic spine masks (issue 15).

    python bench/regressor.py [--train 6000] [--val 500] [--epochs 4] [--batch 32]
                              [--size 128x64] [--variants paper,bn09,bn09_l1]
                              [--schedule constant|cosine] [--minutes M]

Every variant is N_R as `models.build_regressor` builds it (EfficientNet-B1, weights none,
mask input, CAM head, output started at the mean angles) with the variant's `regressor:`
settings and `reg.loss`, trained from the same seed on the same masks
(`training.pretraining.draw_masks`, no augmentation) with Adam at 1e-3, constant or (with
`--schedule cosine`) decayed to 0 over the run by a cosine. With `--minutes M` each variant
stops after M minutes of training (equal CPU time; its last, partial epoch is scored where
it stops). Every `--log-every` steps it prints, for a fixed training
batch and the validation set:

- spread: standard deviation of the predicted largest angle across images, in degrees, in
  training mode (batch statistics) and in inference mode (moving statistics);
- grad: global gradient norm of the trunk and of the head;
- bn: mean over BatchNorm layers of |moving mean − batch mean| / batch std on that batch;
- loss: the training loss, and the same loss for the training-mean predictor;
- val: validation SMAPE in inference mode and of the mean predictor.

At the end a table: validation SMAPE and largest-angle MAE per variant, and the time.
"""

import argparse
import time

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from seg4reg_tf import metrics  # noqa: E402
from seg4reg_tf.config import DataConfig, config_from_dict  # noqa: E402
from seg4reg_tf.losses import angle_loss  # noqa: E402
from seg4reg_tf.models import build_regressor, start_at_mean_angles  # noqa: E402
from seg4reg_tf.training.pretraining import draw_masks, trunk  # noqa: E402

SCALE = 180.0
# name: overrides of the config's `regressor` section and the loss (`reg.loss`)
VARIANTS = {
    # The first nine were measured before N_R started as the exact mean predictor: they keep
    # the random head kernel (`start_at_mean_angles(keep_kernel=True)`; KEEP_KERNEL) so that
    # their figures reproduce.
    "paper": ({}, "smape"),
    "bn09": ({"batch_norm_momentum": 0.9, "stochastic_depth": False, "dropout": 0.0}, "smape"),
    "bn09_l1": ({"batch_norm_momentum": 0.9, "stochastic_depth": False, "dropout": 0.0}, "l1"),
    "paper_l1": ({}, "l1"),
    "plain_l1_coord": ({"backbone": "plain_cnn", "batch_norm_momentum": 0.9, "dropout": 0.0, "coordinate_channels": True}, "l1"),
    "plain_l1_coord_pos": ({"backbone": "plain_cnn", "batch_norm_momentum": 0.9, "dropout": 0.0, "coordinate_channels": True, "head_pooling": "position"}, "l1"),
    "plain_l1_pos": ({"backbone": "plain_cnn", "batch_norm_momentum": 0.9, "dropout": 0.0, "head_pooling": "position"}, "l1"),
    "plain_l1": ({"backbone": "plain_cnn", "batch_norm_momentum": 0.9, "dropout": 0.0}, "l1"),
    "bn09_l1_coord": ({"batch_norm_momentum": 0.9, "stochastic_depth": False, "dropout": 0.0, "coordinate_channels": True}, "l1"),
    # The configs' settings today: the head starts as the exact mean predictor.
    "recipe": ({"backbone": "plain_cnn", "batch_norm_momentum": 0.9, "dropout": 0.0, "coordinate_channels": True, "head_pooling": "position"}, "l1"),
    "bn09_l1_exact": ({"batch_norm_momentum": 0.9, "stochastic_depth": False, "dropout": 0.0}, "l1"),
    # The paper's Table 3 alternative trunk, with the settings of bn09_l1_exact and of recipe.
    "resnet18_l1_exact": ({"backbone": "resnet18", "batch_norm_momentum": 0.9, "dropout": 0.0}, "l1"),
    "resnet18_recipe": ({"backbone": "resnet18", "batch_norm_momentum": 0.9, "dropout": 0.0, "coordinate_channels": True, "head_pooling": "position"}, "l1"),
}


KEEP_KERNEL = {"paper", "bn09", "bn09_l1", "paper_l1", "plain_l1_coord", "plain_l1_coord_pos", "plain_l1_pos", "plain_l1", "bn09_l1_coord"}


def build(size, overrides, mean, keep_kernel: bool = False):
    """N_R on one mask channel as `models.build_regressor` builds it with the variant's
    settings, started at the mean angles; returns (model giving angles, trunk)."""
    config = config_from_dict({
        "data": {"image_height": size[0], "image_width": size[1]},
        "regressor": {"weights": "none", "input_mode": "mask", **overrides},
    })
    regressor = build_regressor(config.regressor, config.data.image_size)
    start_at_mean_angles(regressor, mean, keep_kernel)
    model = keras.Model(regressor.input, regressor.output["angles"])
    model.trunk_inputs = keras.Model(regressor.input, regressor.get_layer("to_255").output)  # coordinates included
    return model, trunk(regressor)


def batchnorm_gap(trunk, probe, batch, trunk_inputs):
    """Mean over BatchNorm layers of |moving mean − batch mean| / batch std."""
    bns = [layer for layer in trunk.layers if isinstance(layer, layers.BatchNormalization)]
    inputs = probe(trunk_inputs(batch), training=False)
    gaps = []
    for bn, x in zip(bns, inputs):
        mean = tf.reduce_mean(x, axis=(0, 1, 2))
        std = tf.math.reduce_std(x, axis=(0, 1, 2)) + 1e-3
        gaps.append(tf.reduce_mean(tf.abs(bn.moving_mean - mean) / std))
    return float(tf.reduce_mean(gaps))


def run(name, args, data, size):
    overrides, loss_name = VARIANTS[name]
    (masks, angles), (val_masks, val_angles) = data
    targets = angles / SCALE
    mean = targets.mean(axis=0)
    keras.utils.set_random_seed(0)
    model, trunk = build(size, overrides, mean, name in KEEP_KERNEL)
    bns = [layer for layer in trunk.layers if isinstance(layer, layers.BatchNormalization)]
    probe = keras.Model(trunk.input, [bn.input for bn in bns])
    trunk_vars = trunk.trainable_variables
    head_vars = [v for v in model.trainable_variables if all(v is not t for t in trunk_vars)]
    rate = 1e-3
    if args.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, args.epochs * (len(masks) // args.batch))
    optimizer = keras.optimizers.Adam(rate)

    def loss_fn(y, p):
        return angle_loss(loss_name, y, p)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, trunk_vars + head_vars)
        optimizer.apply_gradients(zip(grads, trunk_vars + head_vars))
        return loss, tf.linalg.global_norm(grads[: len(trunk_vars)]), tf.linalg.global_norm(grads[len(trunk_vars):])

    predict = tf.function(lambda x, training: model(x, training=training))

    def validate():
        out = np.concatenate([predict(val_masks[i : i + 100], False).numpy() for i in range(0, len(val_masks), 100)])
        return out * SCALE

    fixed = tf.constant(masks[: args.batch], tf.float32)
    rng = np.random.default_rng(0)
    started, steps, curve = time.perf_counter(), 0, []
    mean_loss = float(loss_fn(tf.constant(targets), tf.constant(np.broadcast_to(mean, targets.shape), tf.float32)))
    print(f"\n## {name}: regressor {overrides or 'as in the paper'}, loss {loss_name}")
    print("| step | loss | mean-predictor loss | spread train / infer (°) | grad trunk / head | bn gap | val SMAPE |")
    print("|---|---|---|---|---|---|---|")
    out_of_time = False
    for _epoch in range(args.epochs):
        if out_of_time:
            break
        order = rng.permutation(len(masks))
        for start in range(0, len(masks) - args.batch + 1, args.batch):
            if args.minutes and time.perf_counter() - started > 60 * args.minutes:
                out_of_time = True
                break
            index = order[start : start + args.batch]
            loss, g_trunk, g_head = step(tf.constant(masks[index], tf.float32), tf.constant(targets[index], tf.float32))
            steps += 1
            if steps in (1, 10) or steps % args.log_every == 0:
                spread_train = float(np.std(predict(fixed, True).numpy()[:, 0]) * SCALE)
                spread_infer = float(np.std(predict(fixed, False).numpy()[:, 0]) * SCALE)
                val = metrics.smape(val_angles, validate())
                print(
                    f"| {steps} | {float(loss):.4f} | {mean_loss:.4f} | {spread_train:.2f} / {spread_infer:.2f} | "
                    f"{float(g_trunk):.3g} / {float(g_head):.3g} | {batchnorm_gap(trunk, probe, fixed, model.trunk_inputs):.2f} | {val:.2f} |",
                    flush=True,
                )
        prediction = validate()
        curve.append(metrics.smape(val_angles, prediction))
    largest_mae = float(np.mean(np.abs(prediction[:, 0] - val_angles[:, 0])))
    return {"name": name, "curve": curve, "mae1": largest_mae, "minutes": (time.perf_counter() - started) / 60, "steps": steps}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=6000, help="synthetic training masks")
    parser.add_argument("--val", type=int, default=500, help="synthetic validation masks")
    parser.add_argument("--epochs", type=int, default=4, help="passes over the training masks")
    parser.add_argument("--batch", type=int, default=32, help="masks per step")
    parser.add_argument("--size", default="128x64", help="input HxW")
    parser.add_argument("--log-every", type=int, default=50, help="steps between diagnostic rows")
    parser.add_argument("--variants", default="paper,bn09,bn09_l1", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="constant", help="Adam step size: constant 1e-3, or decayed to 0 by a cosine")
    parser.add_argument("--minutes", type=float, default=0, help="stop each variant after this many minutes (0: no limit)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    config = DataConfig(image_height=size[0], image_width=size[1])
    started = time.perf_counter()
    train = draw_masks(args.train, 0, 0, config)
    val = draw_masks(args.val, args.train, 0, config)
    data = ((train[0].astype("float32"), train[1]), (val[0].astype("float32"), val[1]))
    baseline = metrics.smape(val[1], np.broadcast_to(train[1].mean(axis=0), val[1].shape))
    print(f"drew {args.train} + {args.val} masks at {args.size} in {time.perf_counter() - started:.0f} s; mean predictor: val SMAPE {baseline:.2f}")
    results = [run(name, args, data, size) for name in args.variants.split(",")]
    print(f"\nAdam 1e-3, {args.schedule} step size")
    print(f"\n| variant | val SMAPE per epoch (mean predictor {baseline:.2f}) | largest-angle MAE (°) | steps | minutes |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {', '.join(f'{v:.1f}' for v in r['curve'])} | {r['mae1']:.1f} | {r['steps']} | {r['minutes']:.1f} |")


if __name__ == "__main__":
    main()
