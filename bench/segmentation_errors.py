"""Where a trained N_S loses Dice on a labelled split: per-image spread, the worst images,
the decision threshold, left-right flip averaging, and which pixels cost the points.

    python bench/segmentation_errors.py --workdir W [--phase seg] [--data ROOT] \
        [--split validation] [--worst 8] [--figure worst.png]

N_S is `<workdir>/<phase>/segmenter.keras` (ungated, or gated with α still 0: roie and tcl
kept their start); records and preprocessing are the workdir config's, as `evaluate` reads them. Dice is
per image, in percent, at 0.5 unless a threshold is named. "Flip-averaged" averages the
probabilities of the image and of its left-right mirror (mirrored back): N_S's test-time
flips, measured no gain and not an option. The points lost,
100 − Dice = 100·(FP + FN) / (2·TP + FP + FN) per image, are split into false positives
above, inside or below the rows the true spine spans, and false negatives. Prints
tables; `--figure` also draws the 4 worst images as `evaluate`'s segmentation figure does
(green: true positive, red: false negative, blue: false positive).
"""

import argparse
import dataclasses
import pathlib

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import seg4reg_tf.layers  # noqa: E402, F401  (registers the custom layers)
from seg4reg_tf.config import load_config  # noqa: E402
from seg4reg_tf.data import pipeline  # noqa: E402
from seg4reg_tf.evaluation import figures, scoring  # noqa: E402
from seg4reg_tf.evaluation.segmentation_errors import dice, lost_points  # noqa: E402
from seg4reg_tf.inference import mask_probabilities  # noqa: E402
from seg4reg_tf.models.segment import gate_is_idle, is_gated  # noqa: E402
from seg4reg_tf.workdir import network_path  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def predict(segmenter, records, config, batch_size: int = 8):
    """(images (N, H, W), true masks (N, H, W) in {0, 1}, probabilities (N, H, W), the same
    averaged with the left-right mirror's) in the model frame, float32."""
    if is_gated(segmenter) and not gate_is_idle(segmenter):
        raise SystemExit("this N_S's ROIE gate is active (α ≠ 0): it needs N_R's CAM; pass --phase seg")
    mode = config.regressor.input_mode
    dataset = pipeline.make_dataset(records, config.data, training=False, batch_size=batch_size)
    images, truths, plain, flipped = [], [], [], []
    for batch in dataset:
        image = batch["image"]
        images.append(image.numpy()[..., 0])
        truths.append(batch["mask"].numpy()[..., 0].astype(np.float32))
        plain.append(mask_probabilities(segmenter, None, image, mode).numpy()[..., 0])
        flipped.append(mask_probabilities(segmenter, None, image, mode, flips=True).numpy()[..., 0])
    return tuple(np.concatenate(parts) for parts in (images, truths, plain, flipped))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="trained workdir")
    parser.add_argument("--phase", default="seg", help="the phase whose segmenter.keras to read (default seg)")
    parser.add_argument("--data", help="AASCE-layout root (default: the workdir config's)")
    parser.add_argument("--split", default="validation", help="'validation' or a split folder of the root")
    parser.add_argument("--worst", type=int, default=8, help="how many worst images to list")
    parser.add_argument("--figure", help="also draw the 4 worst images into this PNG")
    args = parser.parse_args()
    config = load_config(pathlib.Path(args.workdir) / "config.yaml")
    _, records, root = scoring.evaluation_records(config, args.data, args.split)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=str(root)))
    segmenter = keras.saving.load_model(network_path(args.workdir, args.phase, "segmenter"), compile=False)
    images, truths, plain, flipped = predict(segmenter, records, config)
    names = [pathlib.Path(record.image_path).name for record in records]
    scores = dice(truths, plain)
    order = np.argsort(scores)
    print(f"{len(records)} images, split `{args.split}`, N_S of phase {args.phase} in {args.workdir}\n")
    print("| per-image Dice (%) | mean | mean without the worst 5 | 5th pct | 10th | 25th | median | 75th | best |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    spread = " | ".join(f"{value:.1f}" for value in np.percentile(scores, [5, 10, 25, 50, 75, 100]))
    print(f"| N_S | {scores.mean():.2f} | {np.sort(scores)[5:].mean():.2f} | {spread} |\n")
    print("| threshold | " + " | ".join(f"{value:.1f}" for value in THRESHOLDS) + " |")
    print("| --- |" + " ---: |" * len(THRESHOLDS))
    for label, probabilities in (("Dice (%)", plain), ("Dice, flip-averaged (%)", flipped)):
        print(f"| {label} | " + " | ".join(f"{dice(truths, probabilities, value).mean():.2f}" for value in THRESHOLDS) + " |")
    print("\n| Dice points lost to | points |\n| --- | ---: |")
    for label, value in lost_points(truths, plain).items():
        print(f"| {label} | {value:.2f} |")
    print("\n| worst images | Dice (%) |\n| --- | ---: |")
    for index in order[: args.worst]:
        print(f"| {names[index]} | {scores[index]:.1f} |")
    if args.figure:
        worst = order[:4]
        figures.segmentation_overlays(images[worst], truths[worst], {"N_S": plain[worst]}, pathlib.Path(args.figure))
        print(f"\nwritten: {args.figure} (the 4 worst images, in the table's order)")


if __name__ == "__main__":
    main()
