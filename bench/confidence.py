"""What the TTA spread says about the error: the rule behind `predict`'s low-confidence flag.

    python bench/confidence.py --saved-model exports/seg4reg --data ../shared/aasce [--split validation]
    python bench/confidence.py --saved-model workdirs/demo/exports/seg4reg              # the demo's test split

Runs the export with test-time augmentation (`predict.tta_scales` and the mirror, the
config's) on the labelled images of a split (the training run's validation split of AASCE,
or the synthetic set's test split), as `predict --tta` does, and prints, per spread threshold
(the largest max − min of the three angles over the views), how many images it flags and the
error of the largest angle on the flagged and the other images. The threshold a config should
use is the smallest whose flagged images have clearly larger errors than the rest.
"""

import argparse
import dataclasses
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import numpy as np  # noqa: E402

from seg4reg_tf.data import aasce, radiographs  # noqa: E402
from seg4reg_tf.data.records import resolve_records  # noqa: E402
from seg4reg_tf.serving import analysis, loaded_system, tta  # noqa: E402

THRESHOLDS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0)


def labelled(model, data: str | None, split: str) -> list:
    """The records to score: with `data` (AASCE), training's validation (or training) part;
    without, the synthetic set's test split (`evaluate`'s default), never seen in training."""
    config = dataclasses.replace(model.config, data=dataclasses.replace(model.config.data, root=data or model.config.data.root))
    training, validation, root = resolve_records(config)
    if data:
        return validation if split == "validation" else training
    return aasce.read_split(root, "test")


def describe(errors: np.ndarray, chosen: np.ndarray) -> str:
    """Median error and share over 5° of the chosen images, e.g. "3.10° / 22%"."""
    return f"{np.median(errors[chosen]):.2f}° / {np.mean(errors[chosen] > 5) * 100:.0f}%" if chosen.any() else "–"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved-model", required=True, help="the export")
    parser.add_argument("--data", help="AASCE root (default: the config's data, its synthetic test split)")
    parser.add_argument("--split", default="validation", choices=("validation", "training"), help="with --data: which part")
    args = parser.parse_args()
    model = loaded_system.load_saved_model(args.saved_model)
    settings = dataclasses.replace(model.config.predict, tta=True)
    records = labelled(model, args.data, args.split)
    spreads, errors = [], []
    for record in records:
        row = analysis.predict_radiograph(model, radiographs.read_radiograph(str(record.image_path), model.max_pixels), settings)
        if row["status"] != "ok":
            continue
        spreads.append(max(row[f"spread_{name}_deg"] for name in ("largest", "second", "third")))
        errors.append(abs(row["cobb_largest_deg"] - float(record.angles[0])))
    spreads, errors = np.array(spreads), np.array(errors)
    print(f"{len(records)} images ({len(spreads)} with a spine found), {len(tta.views(settings))} views; "
          f"error of the largest angle: median {np.median(errors):.2f}°, over 5° in {np.mean(errors > 5) * 100:.1f}%\n")
    print("| flag when spread > | flagged | largest-angle error, flagged: median / > 5° | the others: median / > 5° |")
    print("| ---: | ---: | ---: | ---: |")
    for threshold in THRESHOLDS:
        flagged = spreads > threshold
        print(f"| {threshold:g}° | {flagged.mean() * 100:.1f}% | {describe(errors, flagged)} | {describe(errors, ~flagged)} |")
    print(f"\nspread quantiles (50/75/90/max): {np.round(np.percentile(spreads, [50, 75, 90, 100]), 2).tolist()}")


if __name__ == "__main__":
    main()
