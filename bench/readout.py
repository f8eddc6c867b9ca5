"""The geometric readout's accuracy on AASCE: true masks at several input sizes, and the masks
of a trained workdir's N_S.

    python bench/readout.py --data ../shared/aasce [--sizes 192x96,512x256] [--workdir W]

Records are split as training splits them (validation_fraction 0.2, seed 0). For each size,
the true masks (landmarks letterboxed into the model frame and rasterised, as the training
pipeline does) go through `geometric_readout.read_spine` with the default `readout:`
settings, and the angles are compared with AASCE's angles.csv: SMAPE, MAE per column and the
share of images whose largest angle is within 5°, beside the training-mean angles. With
`--workdir`, the rows of `evaluate` on its validation split follow (N_R, the readout on N_S
masks, the readout on true masks at the workdir's size, the mean).
"""

import argparse
import time

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seg4reg_tf import geometry, inference  # noqa: E402
from seg4reg_tf.config import ReadoutConfig, config_from_dict  # noqa: E402
from seg4reg_tf.data import pipeline, transforms  # noqa: E402
from seg4reg_tf.data.aasce import read_split  # noqa: E402
from seg4reg_tf.evaluation import results as evaluation_results  # noqa: E402
from seg4reg_tf.evaluation import scoring  # noqa: E402
from seg4reg_tf.geometric_readout import read_spine  # noqa: E402


def true_masks(records, height: int, width: int):
    """(masks (N, H, W) float32, letterboxes (N, 3)) of records in the model frame."""
    points = np.stack([record.landmarks for record in records]).astype(np.float64)
    heights = np.array([record.height for record in records])
    widths = np.array([record.width for record in records])
    frame = transforms.letterbox_landmarks(points, heights, widths, height, width).numpy()
    masks = np.stack([geometry.landmarks_to_mask(p, height, width) for p in frame]).astype(np.float32)
    shape = config_from_dict({"data": {"image_height": height, "image_width": width}})
    return masks, inference.record_letterboxes(records, shape).astype(np.float32)


def readout_angles(masks, letterboxes, settings, batch: int = 32) -> np.ndarray:
    run = tf.function(lambda m, b: read_spine(m, settings, b)["cobb_angles"])
    return np.concatenate([run(masks[i : i + batch], letterboxes[i : i + batch]).numpy() for i in range(0, len(masks), batch)])


def row(label, truth, predicted, mean) -> str:
    figures = scoring.angle_figures(truth, predicted, mean)
    columns = " / ".join(f"{value:.2f}" for value in figures["mae_columns"])
    return f"| {label} | {figures['smape']:.2f} | {columns} | {figures['within_5']:.1f} | {figures['not_found']} |"


def segmenter_readout(args, validation):
    """(truth (N, 3), readout angles (N, 3)) on the validation masks of an ungated N_S."""
    import dataclasses

    import keras

    import seg4reg_tf.layers  # noqa: F401  (registers the custom layers)
    from seg4reg_tf.config import load_config

    config = load_config(args.config)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=args.data))
    segmenter = keras.saving.load_model(args.segmenter, compile=False)
    letterboxes = inference.record_letterboxes(validation, config)
    dataset = pipeline.make_dataset(validation, config.data, training=False, batch_size=16)
    masks = np.concatenate([segmenter({"image": batch["image"]}, training=False)["mask"].numpy()[..., 0] for batch in dataset])
    return np.stack([record.angles for record in validation]), readout_angles(masks, letterboxes, config.readout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="AASCE root (data/training, labels/training)")
    parser.add_argument("--sizes", default="192x96,512x256")
    parser.add_argument("--workdir", help="a trained workdir: its validation rows too")
    parser.add_argument("--segmenter", help="an N_S .keras file (ungated) and --config: the readout on its validation masks")
    parser.add_argument("--config", help="the config N_S was trained with (input size, CLAHE)")
    args = parser.parse_args()
    records = read_split(args.data, "training")
    training, validation = pipeline.split_records(records, 0.2, 0)
    mean = np.stack([record.angles for record in training]).mean(axis=0)
    settings = ReadoutConfig()
    print("| readout on | SMAPE (%) | MAE per column (°) | largest within 5° (%) | not found |")
    print("|---|---|---|---|---|")
    for part, chosen in (("training part", training), ("validation", validation)):
        truth = np.stack([record.angles for record in chosen])
        for size in args.sizes.split(","):
            height, width = (int(value) for value in size.split("x"))
            started = time.perf_counter()
            masks, letterboxes = true_masks(chosen, height, width)
            predicted = readout_angles(masks, letterboxes, settings)
            seconds = time.perf_counter() - started
            print(row(f"true masks {size}, {part} ({len(chosen)}; {seconds:.0f} s)", truth, predicted, mean))
        print(row(f"training-mean angles, {part}", truth, np.broadcast_to(mean, truth.shape), mean))
    if args.segmenter:
        print(row(f"N_S masks of {args.segmenter}, validation", *segmenter_readout(args, validation), mean))
    if args.workdir:
        results = scoring.evaluate_workdir(args.workdir, args.data, "validation")
        print(f"\nworkdir {args.workdir}, validation split ({results['images']} images):\n")
        print(evaluation_results.table(results))


if __name__ == "__main__":
    main()
