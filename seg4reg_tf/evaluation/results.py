"""An evaluation's results as files: `table` (Markdown, what `evaluate` prints) and
`write_results` (predictions.csv, metrics.json, table.md; see `evaluate`)."""

from __future__ import annotations

import csv
import io
import json
import pathlib

import numpy as np

from seg4reg_tf import files
from seg4reg_tf.data.aasce import ANGLE_COLUMNS
from seg4reg_tf.evaluation.scoring import SEGMENTATION_COLUMNS


def table(results: dict) -> str:
    """Markdown tables of the angle and segmentation figures."""
    names = " | ".join(f"MAE {column} (°)" for column in ANGLE_COLUMNS)
    lines = [
        f"{results['images']} images, split `{results['split']}` of {results['data']}",
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
