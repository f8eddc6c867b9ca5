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
`seg4reg_tf/ablation.py`) and writes `ablation.md` / `ablation.csv`.

`--split validation` means the records `train` held out of the config's training split (same
fraction and seed), for data sets whose test labels are not public.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys

import numpy as np

from seg4reg_tf.data.aasce import ANGLE_COLUMNS

SEGMENTER_ROWS = (("seg", "N_S"), ("roie", "N_S + ROIE"), ("tcl", "N_S + ROIE + TCL"))
SEGMENTATION_COLUMNS = ("jaccard", "dice", "pixel_accuracy", "sensitivity", "specificity")


def evaluation_records(config, data_root: str | None, split: str):
    """(training records, evaluated records, root): the baseline's records and the split's.

    Args:
        config: the workdir's config (its data root, split, validation fraction and seed).
        data_root: overrides `data.root` (AASCE layout); None keeps the config's.
        split: a split folder of the root ("test", "training"), or "validation".
    """
    import dataclasses

    from seg4reg_tf import train
    from seg4reg_tf.data.aasce import read_split

    if data_root is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=data_root))
    training, validation, root = train.resolve_records(config)
    if split == "validation":
        if not validation:
            raise ValueError("the config holds no validation records (data.validation_fraction is 0)")
        return training, validation, root
    return training, read_split(root, split), root


def record_letterboxes(records, config) -> np.ndarray:
    """(N, 3) scale, offset_y, offset_x placing each record's image in the model frame."""
    from seg4reg_tf.data import transforms

    heights = np.array([record.height for record in records], np.float32)
    widths = np.array([record.width for record in records], np.float32)
    box = transforms.letterbox(heights, widths, config.data.image_height, config.data.image_width)
    return np.stack([np.asarray(value) for value in box], axis=1)


def predict_records(segmenter, regressor, records, config, batch_size: int = 8, route: str = "regressor") -> dict:
    """Runs the inference path over records in order, and the readout on their true masks.

    Returns:
        {"angles" (N, 3) degrees of `route`, "angles_regressor", "angles_geometric",
        "angles_geometric_truth" (the readout on the true masks) (N, 3) degrees (NaN where
        no spine was found), "landmarks" (N, 68, 2) original pixels, "masks" (N, H, W)
        probabilities, "cams" (N, h, w) in [0, 1], "images" (N, H, W) model inputs in
        [0, 1], "truth_angles" (N, 3) degrees, "truth_masks" (N, H, W) in {0, 1}}.
    """
    from seg4reg_tf.data import pipeline
    from seg4reg_tf.geometric_readout import read_spine
    from seg4reg_tf.inference import predict_images

    dataset = pipeline.make_dataset(records, config.data, training=False, batch_size=batch_size)
    letterboxes = record_letterboxes(records, config)
    keys = ("angles", "angles_regressor", "angles_geometric", "angles_geometric_truth", "landmarks", "masks", "cams", "images", "truth_masks")
    outputs = {key: [] for key in keys}
    start = 0
    for batch in dataset:
        letterbox = letterboxes[start : start + len(batch["image"])]
        start += len(letterbox)
        out = predict_images(segmenter, regressor, batch["image"], config, route, letterbox)
        truth = read_spine(batch["mask"][..., 0], config.readout, letterbox)
        outputs["angles"].append(np.asarray(out["cobb_angles"], np.float64))
        outputs["angles_regressor"].append(np.asarray(out["cobb_angles_regressor"], np.float64))
        outputs["angles_geometric"].append(np.asarray(out["cobb_angles_geometric"], np.float64))
        outputs["angles_geometric_truth"].append(truth["cobb_angles"].numpy().astype(np.float64))
        outputs["landmarks"].append(np.asarray(out["landmarks"]))
        outputs["masks"].append(np.asarray(out["mask"]))
        outputs["cams"].append(np.asarray(out["cam"]))
        outputs["images"].append(batch["image"].numpy()[..., 0])
        outputs["truth_masks"].append(batch["mask"].numpy()[..., 0])
    return {key: np.concatenate(value) for key, value in outputs.items()} | {
        "truth_angles": np.stack([record.angles for record in records])
    }


def angle_figures(truth, predicted, fallback=None) -> dict:
    """{"smape" %, "mae" degrees, "mae_columns" [3] degrees, "within_5" % of images whose
    largest angle is within 5°, "not_found" count} of (N, 3) degree arrays.

    Rows of `predicted` that are NaN (no spine found) are scored as `fallback` (3,) (the
    training-mean angles), so a route is not rewarded for giving up."""
    from seg4reg_tf import metrics

    predicted = np.asarray(predicted, np.float64)
    missing = ~np.isfinite(predicted).all(axis=1)
    if missing.any():
        predicted = np.where(missing[:, None], np.broadcast_to(fallback, predicted.shape), predicted)
    per_column, overall = metrics.mean_absolute_error(truth, predicted)
    within = float(100.0 * np.mean(np.abs(np.asarray(truth)[:, 0] - predicted[:, 0]) <= 5.0))
    return {"smape": metrics.smape(truth, predicted), "mae": overall, "mae_columns": per_column.tolist(),
            "within_5": within, "not_found": int(missing.sum())}


def segmentation_figures(truth_masks, masks) -> dict:
    """Paper Table 2's scores in percent of (N, H, W) masks and probabilities."""
    from seg4reg_tf import metrics

    return metrics.segmentation_scores(truth_masks[..., None], masks[..., None])


def evaluate_workdir(workdir, data_root: str | None = None, split: str = "test", batch_size: int = 8) -> dict:
    """All figures of a workdir on a split; see the module docstring.

    Returns:
        {"split", "images", "angles": {"model", "baseline"}, "segmentation": {row: scores},
        "predictions": predict_records(...) of the final system, "segmentation_masks":
        {row: (N, H, W)} per N_S, "files": [names]}.
    """
    import keras

    from seg4reg_tf import export

    workdir = pathlib.Path(workdir)
    config, segmenter, regressor, sources = export.final_networks(workdir)
    route, _ = route_for_workdir(workdir, config, sources, segmenter, regressor)
    training, records, root = evaluation_records(config, data_root, split)
    final = predict_records(segmenter, regressor, records, config, batch_size, route)
    mean = np.stack([record.angles for record in training]).mean(axis=0)
    baseline = np.broadcast_to(mean, final["truth_angles"].shape)
    truth = final["truth_angles"]
    segmentation, segmentation_masks = {}, {}
    for phase, label in SEGMENTER_ROWS:
        path = workdir / phase / "segmenter.keras"
        if not path.exists():
            continue
        network = segmenter if str(path) == sources["segmenter"] else keras.saving.load_model(path, compile=False)
        masks = final["masks"] if network is segmenter else predict_records(network, regressor, records, config, batch_size)["masks"]
        segmentation[label] = segmentation_figures(final["truth_masks"], masks)
        segmentation_masks[label] = masks
    from seg4reg_tf.data import pipeline

    prior = pipeline.mean_mask(training, config.data)[..., 0]
    segmentation["baseline (training-mean mask)"] = segmentation_figures(final["truth_masks"], np.broadcast_to(prior, final["truth_masks"].shape))
    by_phase = phase_rows(workdir, config, records, mean, batch_size, split == "validation")
    return {
        "workdir": str(workdir),
        "data": str(root),
        "split": split,
        "images": len(records),
        "networks": sources,
        "route": route,
        "angles": {
            f"system (route: {route})": angle_figures(truth, final["angles"], mean),
            "N_R": angle_figures(truth, final["angles_regressor"], mean),
            "readout on N_S masks": angle_figures(truth, final["angles_geometric"], mean),
            "readout on true masks": angle_figures(truth, final["angles_geometric_truth"], mean),
            "baseline (training-mean angles)": angle_figures(truth, baseline, mean),
        },
        "segmentation": segmentation,
        "phases": by_phase,
        "files": [record.name for record in records],
        "predictions": final,
        "segmentation_masks": segmentation_masks,
    }


def phase_rows(workdir, config, records, mean, batch_size: int = 8, choose: bool = False) -> dict:
    """The system as it stood after each trained phase, scored on `records`.

    Args:
        mean: (3,) training-mean angles in degrees (the baseline, and the score of images
            where no spine is found).
        choose: the records are the validation split, so `inference.angles: auto` can be
            decided on them (as training decides it); otherwise an auto system is not scored
            per phase.

    Returns:
        {phase: {"dice", "jaccard" %, "readout", "regressor" SMAPE % (None before phase
        reg), "system" SMAPE % (None when undecidable), "route"}} for every phase whose
        folder holds the network it trains.
    """
    import keras

    from seg4reg_tf import export, inference
    from seg4reg_tf.phases import PHASES

    rows, cache = {}, {}
    for phase in PHASES:
        folder = pathlib.Path(workdir) / phase
        if not ((folder / "segmenter.keras").exists() or (folder / "regressor.keras").exists()):
            continue
        sources = export.phase_sources(workdir, phase)
        if sources["segmenter"] is None:
            continue
        networks = [cache.setdefault(path, keras.saving.load_model(path, compile=False)) if path else None for path in (sources["segmenter"], sources["regressor"])]
        out = predict_records(*networks, records, config, batch_size, "geometric")
        truth = out["truth_angles"]
        scores = segmentation_figures(out["truth_masks"], out["masks"])
        readout = angle_figures(truth, out["angles_geometric"], mean)["smape"]
        regressor = angle_figures(truth, out["angles_regressor"], mean)["smape"] if networks[1] is not None else None
        setting = config.inference.angles if networks[1] is not None else "geometric"
        route = None
        if setting != "auto":
            route = setting
        elif choose:
            route = inference.choose_route("auto", {"validation_smape": {"regressor": regressor, "geometric": readout}})
        system = {"geometric": readout, "regressor": regressor, None: None}[route]
        rows[phase] = {"dice": scores["dice"], "jaccard": scores["jaccard"], "readout": readout, "regressor": regressor, "system": system, "route": route}
    return rows


def record_routes(workdir, config, sources, segmenter, regressor, batch_size: int = 8) -> dict:
    """Scores N_R and the geometric readout on the validation split and writes
    `<workdir>/routes.json`: {"validation_smape": {route: %}, "choice", "images",
    "networks"}; the choice is what `inference.angles: auto` answers with."""
    from seg4reg_tf import files, inference, train

    training, validation, _ = train.resolve_records(config)
    scores = {route: None for route in inference.ROUTES}
    if validation:
        mean = np.stack([record.angles for record in training]).mean(axis=0)
        out = predict_records(segmenter, regressor, validation, config, batch_size)
        truth = out["truth_angles"]
        scores = {"regressor": angle_figures(truth, out["angles_regressor"], mean)["smape"],
                  "geometric": angle_figures(truth, out["angles_geometric"], mean)["smape"]}
    recorded = {"validation_smape": scores, "images": len(validation), "networks": inference.network_stamps(sources)}
    recorded["choice"] = inference.choose_route("auto", recorded)
    files.atomic_write(pathlib.Path(workdir) / inference.ROUTES_FILE, json.dumps(recorded, indent=2).encode("utf-8"))
    return recorded


def route_for_workdir(workdir, config, sources, segmenter, regressor) -> tuple[str, dict | None]:
    """(route, record): the route `cobb_angles` takes for this workdir's networks, and the
    routes.json record behind an "auto" choice (written now when missing or stale)."""
    from seg4reg_tf import inference

    recorded = inference.read_routes(workdir, sources)
    if config.inference.angles == "auto" and recorded is None:
        print(f"scoring N_R and the geometric readout on the validation split of {workdir} (inference.angles: auto) ...", flush=True)
        recorded = record_routes(workdir, config, sources, segmenter, regressor)
    return inference.choose_route(config.inference.angles, recorded), recorded


def table(results: dict) -> str:
    """Markdown tables of the angle and segmentation figures."""
    names = " | ".join(f"MAE {column} (°)" for column in ANGLE_COLUMNS)
    lines = [
        f"{results['images']} images, split `{results['split']}` of {results['data']}",
        "",
        f"| angles | SMAPE (%) | MAE (°) | {names} | largest within 5° (%) | no spine found |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, figures in results["angles"].items():
        columns = " | ".join(f"{value:.2f}" for value in figures["mae_columns"])
        lines.append(
            f"| {label} | {figures['smape']:.2f} | {figures['mae']:.2f} | {columns} | {figures['within_5']:.1f} | {figures['not_found']} |"
        )
    lines += ["", "Images where no spine is found are scored as the training-mean angles."]
    lines += ["", "| segmentation | " + " | ".join(f"{name} (%)" for name in SEGMENTATION_COLUMNS) + " |",
              "| --- |" + " ---: |" * len(SEGMENTATION_COLUMNS)]
    for label, scores in results["segmentation"].items():
        lines.append(f"| {label} | " + " | ".join(f"{scores[name]:.2f}" for name in SEGMENTATION_COLUMNS) + " |")
    if results.get("phases"):
        baseline = results["angles"]["baseline (training-mean angles)"]["smape"]
        dice = results["segmentation"]["baseline (training-mean mask)"]
        lines += ["", "| after phase | Dice (%) | Jaccard (%) | SMAPE system (%) | readout on N_S masks | N_R |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        show = lambda value: "–" if value is None else f"{value:.2f}"  # noqa: E731
        for phase, row in results["phases"].items():
            system = show(row["system"]) + (f" ({row['route']})" if row["route"] else "")
            lines.append(f"| {phase} | {row['dice']:.2f} | {row['jaccard']:.2f} | {system} | {row['readout']:.2f} | {show(row['regressor'])} |")
        lines.append(f"| baselines (training means) | {dice['dice']:.2f} | {dice['jaccard']:.2f} | {baseline:.2f} | | |")
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: pathlib.Path) -> None:
    """Writes predictions.csv, metrics.json and table.md into `out`, each atomically."""
    import io

    from seg4reg_tf import files

    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    routes = (("pred", "angles"), ("regressor", "angles_regressor"), ("geometric", "angles_geometric"))
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
    parser.add_argument("--ablation", action="store_true", help="train and evaluate paper Table 1's variants from --config")
    parser.add_argument("--config", help="with --ablation: the recipe every variant starts from")
    parser.add_argument("--inputs", default="image,mask,image+mask", help="with --ablation: N_R inputs (columns) to run")
    parser.add_argument("--run-eagerly", action="store_true", help="with --ablation: no tf.function (tiny configs)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up logs")
    args = parser.parse_args(argv)
    if args.ablation:
        return _ablation(args)
    if not args.workdir:
        parser.error("--workdir is required (or --ablation with --config)")
    try:
        results = evaluate_workdir(args.workdir, args.data, args.split, args.batch_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = pathlib.Path(args.out) if args.out else pathlib.Path(args.workdir) / "evaluation" / args.split

    from seg4reg_tf import visualize

    write_results(results, out)
    figures = visualize.write_figures(results, args.workdir, out)
    print(table(results))
    print(f"written: {out / 'predictions.csv'}, {out / 'metrics.json'}, {out / 'table.md'}")
    print("figures: " + ", ".join(str(path) for path in figures))
    return 0


def _ablation(args) -> int:
    """`--ablation`: paper Table 1 (see `seg4reg_tf/ablation.py`)."""
    from seg4reg_tf import ablation
    from seg4reg_tf.config import load_config

    if not args.config:
        print("error: --ablation needs --config (e.g. configs/smoke.yaml, configs/demo.yaml)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        out = pathlib.Path(args.out or f"workdirs/ablation-{pathlib.Path(args.config).stem}")
        cells = ablation.run_ablation(config, out, args.data, args.split, tuple(args.inputs.split(",")), args.run_eagerly)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    markdown, table_csv = ablation.write_tables(cells, out)
    figure = ablation.write_cam_figure(out, args.split, tuple(args.inputs.split(",")))
    print(ablation.markdown_table(cells))
    print(f"written: {markdown}, {table_csv}" + (f", {figure}" if figure else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
