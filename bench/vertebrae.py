"""The vertebra route's accuracy on AASCE's validation split: its ceiling on the true masks
and tilts, and what it reads off a trained N_S's mask and tilt field.

    python bench/vertebrae.py --data ../shared/aasce --config configs/aasce_cpu.yaml \
        [--segmenter W/seg/segmenter.keras | --weights W/seg/best.weights.h5]

Records are split as training splits them (`data.validation_fraction`, `data.seed`). Rows:

- centre line, true masks: `geometric_readout.read_spine` (today's readout, its ceiling);
- vertebrae, true masks and true tilt field: `vertebra_readout.read_vertebrae` on the
  rasterised true masks, with the tilt field the tilt head is trained to draw
  (`tilt_field.row_tilt_targets`): the route's ceiling;
- with a trained N_S: the centre line on its masks, the vertebra route on its masks with
  the true tilt field (positions alone), and on its masks and its own tilt field (the system).

With `--refiner` (a trained tilt refiner, `<workdir>/refiner/tilt_refiner.keras`), more
rows: the refiner's ceiling (it looks at the true vertebrae, each crop turned by its true
tilt, and the route reads the 17 true centres with the refined tilts: what the refiner alone
costs), the vertebra route on N_S's masks and tilts with the refiner's second look
(`inference.refined_tilts`, the system with `refiner.enabled`), and the mean of the refined
tilt and the tilt head's.

With `--flips`, N_S's mask and tilt field are the means over the X-ray and its mirror image
(N_S's test-time flips, measured no gain and not an option). With `--fit-gain` it first fits `readout.tilt_gain` on the
training part (never on the validation split): the least-squares slope of the tilts N_S
draws against the true field's at the same positions, through the origin; the gain is its
inverse, used in the rows below.

Per row: SMAPE, MAE per column, largest angle within 5°, and the RMS over vertebrae and
images of the tilt error (° between each read vertebra's mid-line and the landmarks' mid-line
of the vertebra of the same index).
"""

import argparse
import dataclasses
import json
import pathlib

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import seg4reg_tf.layers  # noqa: E402,F401  (registers the custom layers)
from seg4reg_tf import geometry  # noqa: E402
from seg4reg_tf.config import RefinerConfig, load_config  # noqa: E402
from seg4reg_tf.data import pipeline  # noqa: E402
from seg4reg_tf.data.records import resolve_records  # noqa: E402
from seg4reg_tf.evaluation import scoring  # noqa: E402
from seg4reg_tf.geometric_readout import read_corners, read_spine, trace_spine  # noqa: E402
from seg4reg_tf.inference import record_letterboxes, refined_tilts, segmenter_outputs  # noqa: E402
from seg4reg_tf.models.pspnet import build_segmenter  # noqa: E402
from seg4reg_tf.tilt_field import row_tilt_targets  # noqa: E402
from seg4reg_tf.training.phases import make_trainer  # noqa: E402
from seg4reg_tf.vertebra_crops import true_frames  # noqa: E402
from seg4reg_tf.vertebra_readout import read_tilts, read_vertebrae, tilted_corners, vertebra_frames  # noqa: E402


def tilt_errors(truth_landmarks, landmarks) -> np.ndarray:
    """(N, 17) degrees in (−90, 90]: read mid-line direction minus the true one, per vertebra
    index; NaN where nothing was read."""
    def direction(points):
        vectors = geometry.midline_vectors(np.asarray(points, np.float64))
        return np.degrees(np.arctan2(vectors[..., 1], vectors[..., 0]))

    difference = direction(landmarks) - direction(truth_landmarks)
    return (difference + 90.0) % 180.0 - 90.0


def row(label, truth, predicted, mean, errors) -> str:
    figures = scoring.angle_figures(truth, predicted, mean)
    columns = " / ".join(f"{value:.2f}" for value in figures["mae_columns"])
    rms = float(np.sqrt(np.nanmean(np.square(errors)))) if errors is not None else float("nan")
    median = float(np.nanmedian(np.abs(errors))) if errors is not None else float("nan")
    return f"| {label} | {figures['smape']:.2f} | {columns} | {figures['within_5']:.1f} | {rms:.2f} | {median:.2f} | {figures['not_found']} |"


def segmenter_from(args, config):
    """The N_S to read: a saved .keras file, or the config's N_S with a weights file."""
    if args.segmenter:
        return keras.saving.load_model(args.segmenter, compile=False)
    if args.weights:  # a seg trainer's weights (`<workdir>/seg/best.weights.h5`)
        segmenter = build_segmenter(config.segmenter, config.data.image_size)
        make_trainer("seg", segmenter, None, config).load_weights(args.weights)
        return segmenter
    return None


def maps(segmenter, images, flips: bool) -> tuple:
    """N_S's (B, H, W) mask and (B, H, W, 2) tilt field, with or without test-time flips."""
    out = segmenter_outputs(segmenter, None, images, "mask", flips)
    return tf.cast(out["mask"][..., 0], tf.float32), tf.cast(out["tilt"], tf.float32)


def fit_gain(segmenter, records, config, flips: bool = False) -> float:
    """`readout.tilt_gain` fitted on `records`: 1 / the slope through the origin of N_S's
    tilts against the true field's at the positions the centre line gives."""
    height, width = config.data.image_height, config.data.image_width

    @tf.function
    def tilts(image, landmarks):
        mask, tilt = maps(segmenter, image, flips)
        frames = vertebra_frames(trace_spine(mask, config.readout)[0])
        true_tilt = tf.tile(row_tilt_targets(landmarks, height, width)[:, :, None], [1, 1, width, 1])
        return read_tilts(tilt, mask, frames)[0], read_tilts(true_tilt, mask, frames)[0]

    drawn, true = [], []
    for batch in pipeline.make_dataset(records, config.data, training=False, batch_size=8):
        predicted, expected = tilts(batch["image"], batch["landmarks"])
        drawn.append(predicted.numpy().ravel())
        true.append(expected.numpy().ravel())
    drawn, true = np.concatenate(drawn), np.concatenate(true)
    slope = float(np.sum(drawn * true) / np.sum(true * true))
    return 1.0 / slope


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="AASCE root (data/training, labels/training)")
    parser.add_argument("--config", required=True, help="the run's config (input size, CLAHE, split)")
    parser.add_argument("--segmenter", help="a trained ungated N_S (.keras) with the tilt head")
    parser.add_argument("--weights", help="or a weights file of the config's N_S (e.g. <workdir>/seg/best.weights.h5)")
    parser.add_argument("--fit-gain", action="store_true", help="fit readout.tilt_gain on the training part first")
    parser.add_argument("--refiner", help="a trained tilt refiner (.keras): rows with its second look")
    parser.add_argument("--flips", action="store_true", help="N_S's test-time flips: mask and tilt field averaged with the mirror image's")
    args = parser.parse_args()
    config = load_config(args.config)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=args.data))
    training, validation, _ = resolve_records(config)
    if args.fit_gain:
        gain = fit_gain(segmenter_from(args, config), training, config, args.flips)
        print(f"readout.tilt_gain fitted on the training part ({len(training)} images): {gain:.3f}")
        config = dataclasses.replace(config, readout=dataclasses.replace(config.readout, tilt_gain=round(gain, 3)))
    mean = np.stack([record.angles for record in training]).mean(axis=0)
    truth = np.stack([record.angles for record in validation])
    truth_landmarks = np.stack([record.landmarks for record in validation]).astype(np.float64)
    letterboxes = record_letterboxes(validation, config).astype(np.float32)
    segmenter = segmenter_from(args, config)
    height, width = config.data.image_height, config.data.image_width

    refiner = keras.saving.load_model(args.refiner, compile=False) if args.refiner else None
    if refiner is not None:  # the settings it was trained with, beside it
        trained = json.loads((pathlib.Path(args.refiner).parent / "summary.json").read_text())["settings"]
        config = dataclasses.replace(config, refiner=RefinerConfig(**{field.name: trained[field.name] for field in dataclasses.fields(RefinerConfig)}))

    @tf.function
    def readings(mask, tilt, letterbox):
        return read_spine(mask, config.readout, letterbox), read_vertebrae(mask, tilt, config.readout, letterbox)

    @tf.function
    def refined(mask, tilt, letterbox, fine):
        refine = refined_tilts(refiner, fine, config.refiner)

        def blended(frames, theta):
            return (theta + refine(frames, theta)) / 2.0

        return read_vertebrae(mask, tilt, config.readout, letterbox, refine), read_vertebrae(mask, tilt, config.readout, letterbox, blended)

    @tf.function
    def ceiling(landmarks, letterbox, fine):
        """The route at the true vertebrae (centres and sizes) with the refiner's tilts, each
        crop turned by the vertebra's true tilt."""
        landmarks = tf.cast(landmarks, tf.float32)
        frames = vertebra_frames(landmarks)
        theta = refined_tilts(refiner, fine, config.refiner)(frames, true_frames(landmarks)["tilt"])
        return read_corners(tilted_corners(frames, theta), tf.ones([tf.shape(landmarks)[0]], tf.bool), letterbox, height)

    rows = {}
    start = 0
    for batch in pipeline.make_dataset(validation, config.data, training=False, batch_size=8):
        letterbox = letterboxes[start : start + len(batch["image"])]
        start += len(letterbox)
        true_mask = tf.cast(batch["mask"][..., 0], tf.float32)
        true_tilt = tf.tile(row_tilt_targets(batch["landmarks"], height, width)[:, :, None], [1, 1, width, 1])
        centre, vertebrae = readings(true_mask, true_tilt, letterbox)
        outputs = {"centre line, true masks": centre, "vertebrae, true masks and true tilts": vertebrae}
        if segmenter is not None:
            mask, tilt = maps(segmenter, batch["image"], args.flips)
            centre, positions = readings(mask, true_tilt, letterbox)
            outputs["centre line, N_S masks"] = centre
            outputs["vertebrae, N_S masks, true tilts"] = positions
            outputs["vertebrae, N_S masks and N_S tilts"] = readings(mask, tilt, letterbox)[1]
            if refiner is not None:
                fine = pipeline.fine_images(validation[start - len(letterbox) : start], config.data, config.refiner.scale)
                outputs["refiner's ceiling: true vertebrae, turned by their true tilts, refined"] = ceiling(batch["landmarks"], letterbox, fine)
                one, both = refined(mask, tilt, letterbox, fine)
                outputs["vertebrae, N_S masks and tilts, refined"] = one
                outputs["vertebrae, N_S masks and tilts, mean of refined and head"] = both
        for label, reading in outputs.items():
            rows.setdefault(label, []).append((reading["cobb_angles"].numpy(), reading["landmarks"].numpy()))
    print(f"validation split: {len(validation)} images, {height}×{width}, readout.tilt_gain {config.readout.tilt_gain}"
          + (", N_S with test-time flips" if args.flips else "") + "\n")
    print("| route | SMAPE (%) | MAE per column (°) | largest within 5° (%) | tilt RMS (°) | tilt median abs (°) | not found |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for label, parts in rows.items():
        angles = np.concatenate([part[0] for part in parts])
        landmarks = np.concatenate([part[1] for part in parts])
        print(row(label, truth, angles, mean, tilt_errors(truth_landmarks, landmarks)))
        if label.startswith("vertebrae, N_S masks and") :  # the tilt alone: against the true field at the same positions
            same = np.concatenate([part[1] for part in rows["vertebrae, N_S masks, true tilts"]])
            errors = tilt_errors(same, landmarks)
            print(f"| (its tilts against the true field at the same positions) | | | | {np.sqrt(np.nanmean(errors ** 2)):.2f} | {np.nanmedian(np.abs(errors)):.2f} | |")
    print(row("training-mean angles", truth, np.broadcast_to(mean, truth.shape), mean, None))


if __name__ == "__main__":
    main()
