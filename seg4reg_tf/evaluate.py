"""`python -m seg4reg_tf.evaluate`: the trained system's figures on a labelled split.

    python -m seg4reg_tf.evaluate --workdir workdirs/demo                       # synthetic test split
    python -m seg4reg_tf.evaluate --workdir W --data ../aasce --split validation  # held-out 20%

Loads the workdir's last N_S and N_R (as `export` picks them), predicts every image of the
split through the inference path of the export, and writes to `--out` (default
`<workdir>/evaluation/<split>/`):

    predictions.csv   file, the three predicted angles and the three ground-truth ones (degrees)
    metrics.json      every figure below
    table.md          the same as Markdown (also printed)

Angles: SMAPE as the AASCE challenge defines it (mean over images of Σ|gt − pred| / Σ(gt +
pred) × 100) and the MAE of each column and overall, beside the baseline that predicts the
training split's mean angles for every image. Segmentation (paper Table 2 columns): Jaccard,
Dice, pixel accuracy, sensitivity and specificity in percent, for every N_S the workdir holds
— `seg` (without the ROIE gate), `roie` (with it) and `tcl` (with it, after consistency
learning) — beside the training-mean-mask baseline.

`--ablation --config FILE` trains and evaluates paper Table 1's variants instead (see
`seg4reg_tf/evaluation/ablation.py`) and writes `ablation.md` / `ablation.csv`.

`--split validation` means the records `train` held out of the config's training split (same
fraction and seed), for data sets whose test labels are not public.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import pathlib
import sys

import numpy as np

from seg4reg_tf import cli, files
from seg4reg_tf.config import load_config
from seg4reg_tf.data.aasce import ANGLE_COLUMNS
from seg4reg_tf.evaluation import ablation, figures
from seg4reg_tf.scoring import SEGMENTATION_COLUMNS, evaluate_workdir


def table(results: dict) -> str:
    """Markdown tables of the angle and segmentation figures."""
    names = " | ".join(f"MAE {column} (°)" for column in ANGLE_COLUMNS)
    lines = [
        f"{results['images']} images, split `{results['split']}` of {results['data']}"
        + ("; N_S masks averaged with the mirror image's (segmenter flips)" if results.get("segmenter_flips") else ""),
        "",
        f"| angles | SMAPE (%) | MAE (°) | {names} | largest within 5° (%) | no spine found |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, scores in results["angles"].items():
        columns = " | ".join(f"{value:.2f}" for value in scores["mae_columns"])
        lines.append(
            f"| {label} | {scores['smape']:.2f} | {scores['mae']:.2f} | {columns} | {scores['within_5']:.1f} | {scores['not_found']} |"
        )
    lines += ["", "Images where no spine is found are scored as the training-mean angles."]
    for label, scores in results["angles"].items():
        if label.startswith("baseline"):
            continue
        for column in scores.get("flat_columns", []):
            lines.append(
                f"**{label}: the {ANGLE_COLUMNS[column]} angle barely varies** (standard deviation "
                f"{scores['spread_columns'][column]:.1f}° against {scores['truth_spread_columns'][column]:.1f}° in the truth): "
                "its answers stay near the training mean whatever the image; do not read that column as a measurement."
            )
    lines += ["", "| segmentation | " + " | ".join(f"{name} (%)" for name in SEGMENTATION_COLUMNS) + " |",
              "| --- |" + " ---: |" * len(SEGMENTATION_COLUMNS)]
    for label, scores in results["segmentation"].items():
        lines.append(f"| {label} | " + " | ".join(f"{scores[name]:.2f}" for name in SEGMENTATION_COLUMNS) + " |")
    if results.get("phases"):
        baseline = results["angles"]["baseline (training-mean angles)"]["smape"]
        dice = results["segmentation"]["baseline (training-mean mask)"]
        lines += ["", "| after phase | Dice (%) | Jaccard (%) | SMAPE system (%) | readout on N_S masks | vertebra route | N_R |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        show = lambda value: "–" if value is None else f"{value:.2f}"  # noqa: E731
        for phase, row in results["phases"].items():
            system = show(row["system"]) + (f" ({row['route']})" if row["route"] else "")
            lines.append(f"| {phase} | {row['dice']:.2f} | {row['jaccard']:.2f} | {system} | {row['readout']:.2f} | {show(row.get('vertebrae'))} | {show(row['regressor'])} |")
        lines.append(f"| baselines (training means) | {dice['dice']:.2f} | {dice['jaccard']:.2f} | {baseline:.2f} | | | |")
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: pathlib.Path) -> None:
    """Writes predictions.csv, metrics.json and table.md into `out`, each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    routes = (("pred", "angles"), ("regressor", "angles_regressor"), ("geometric", "angles_geometric"), ("vertebrae", "angles_vertebrae"))
    writer.writerow(["file", *(f"{prefix}_{c}_deg" for prefix, _ in routes for c in ANGLE_COLUMNS), *(f"gt_{c}_deg" for c in ANGLE_COLUMNS)])
    predictions = results["predictions"]
    for index, name in enumerate(results["files"]):
        values = [*(predictions[key][index] for _, key in routes), predictions["truth_angles"][index]]
        writer.writerow([name, *(f"{value:.4f}" for value in np.concatenate(values))])
    files.atomic_write(out / "predictions.csv", buffer.getvalue().encode("utf-8"))
    summary = {key: value for key, value in results.items() if key not in ("predictions", "segmentation_masks", "files")}
    files.atomic_write(out / "metrics.json", json.dumps(summary, indent=2).encode("utf-8"))
    files.atomic_write(out / "table.md", table(results).encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seg4reg_tf.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="training workdir (phases seg and reg at least)")
    parser.add_argument("--data", help="AASCE-layout root (default: the workdir config's data)")
    parser.add_argument("--split", default="test", help="split folder, or 'validation' for the held-out records (default: test)")
    parser.add_argument("--out", help="output folder (default: <workdir>/evaluation/<split>; with --ablation workdirs/ablation-<config>)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segmenter-flips", action=argparse.BooleanOptionalAction, default=None,
                        help="N_S's test-time flips (mask averaged with the mirror image's) (default: the workdir config's inference.segmenter_flips)")
    parser.add_argument("--ablation", action="store_true", help="train and evaluate paper Table 1's variants from --config")
    parser.add_argument("--config", help="with --ablation: the recipe every variant starts from")
    parser.add_argument("--inputs", default="image,mask,image+mask", help="with --ablation: N_R inputs (columns) to run")
    parser.add_argument("--run-eagerly", action="store_true", help="with --ablation: no tf.function (tiny configs)")
    parser.add_argument(
        "--reuse", metavar="WORKDIR",
        help="with --ablation: a workdir trained with the same --config whose phase seg (and pretrained N_R trunk) "
        "every variant starts from, instead of training them again",
    )
    args = cli.parse(parser, argv)
    if args.ablation:
        return _ablation(args)
    if not args.workdir:
        parser.error("--workdir is required (or --ablation with --config)")
    try:
        results = evaluate_workdir(args.workdir, args.data, args.split, args.batch_size, args.segmenter_flips)
    except (FileNotFoundError, ValueError) as error:
        return cli.fail(error)
    out = pathlib.Path(args.out) if args.out else pathlib.Path(args.workdir) / "evaluation" / args.split
    write_results(results, out)
    written = figures.write_figures(results, args.workdir, out)
    print(table(results))
    print(f"written: {out / 'predictions.csv'}, {out / 'metrics.json'}, {out / 'table.md'}")
    print("figures: " + ", ".join(str(path) for path in written))
    return 0


def _ablation(args) -> int:
    """`--ablation`: paper Table 1 (see `seg4reg_tf/evaluation/ablation.py`)."""
    if not args.config:
        print("error: --ablation needs --config (e.g. configs/smoke.yaml, configs/demo.yaml)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        out = pathlib.Path(args.out or f"workdirs/ablation-{pathlib.Path(args.config).stem}")
        cells = ablation.run_ablation(
            config, out, args.data, args.split, tuple(args.inputs.split(",")), args.run_eagerly, reuse=args.reuse
        )
    except (FileNotFoundError, ValueError) as error:
        return cli.fail(error)
    markdown, table_csv = ablation.write_tables(cells, out)
    figure = ablation.write_cam_figure(out, args.split, tuple(args.inputs.split(",")))
    print(ablation.markdown_table(cells))
    print(f"written: {markdown}, {table_csv}" + (f", {figure}" if figure else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
