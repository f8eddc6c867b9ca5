"""Paper Table 1: the contribution of each component, for each input of N_R.

Rows add one component at a time, columns are N_R's input (image, mask, image ⊕ mask):

    Baseline   phases seg → reg with ar_weight 0 (plain N_R on the frozen N_S's masks)
    + AR       phases seg → reg with attention regularisation (Eq. 4)
    + ROIE     + AR, then roie: N_S fine-tuned with the gate (Eq. 2); the + AR N_R reads its masks
    + TCL      + ROIE, then tcl and refine (Alg. 1 lines 15–19): N_S through the frozen N_R,
               then N_R retrained on the refined masks

All variants share one data split and seed and one phase-seg N_S (trained once, copied), so
rows differ only in what they add. Each cell is evaluated with `scoring.evaluate_workdir` on
the chosen split; finished cells are kept in `<out>/cells/` and skipped when the run is
started again, so an overnight run that is interrupted resumes.

For the mask input both Siamese branches see the mask, so L_AR is 0 and + AR equals the
baseline up to training noise (see `models/regressor.py`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import pathlib
import shutil

import keras

import seg4reg_tf.layers  # noqa: F401  (registers the custom layers for loading)
from seg4reg_tf import files, inference
from seg4reg_tf.config import PRETRAIN_IN_WORKDIR, Config, load_config, save_config
from seg4reg_tf.evaluation import figures, scoring
from seg4reg_tf.training import run
from seg4reg_tf.workdir import PHASES, is_done, load_network, network_path, phase_dir, pretrained_trunk_path

_LOG = logging.getLogger(__name__)

INPUTS = ("image", "mask", "image+mask")
ROWS = ("Baseline", "+ AR", "+ ROIE", "+ TCL")
# The phases each row trains in its workdir; + ROIE and + TCL continue + AR's, and
# "all" runs what is left of Algorithm 1 (tcl, refine).
ROW_PHASES = {"Baseline": ("reg",), "+ AR": ("reg",), "+ ROIE": ("roie",), "+ TCL": ("all",)}
# The config sections that decide phase seg and N_R's pretraining, which the variants share.
SHARED_SECTIONS = ("data", "segmenter", "seg", "readout", "regressor", "pretrain")


def variant_config(config: Config, input_mode: str, attention: bool) -> Config:
    """`config` with N_R's input and with or without AR (weight: the config's, or 1 if 0)."""
    weight = (config.reg.ar_weight or 1.0) if attention else 0.0
    return dataclasses.replace(
        config,
        regressor=dataclasses.replace(config.regressor, input_mode=input_mode),
        reg=dataclasses.replace(config.reg, ar_weight=weight),
        refine=dataclasses.replace(config.refine, ar_weight=weight),
    )


def _run_phases(config: Config, workdir: pathlib.Path, phases, run_eagerly: bool) -> None:
    """Trains the phases not yet done in `workdir` with `run.train_phase` (the config
    saved there first, as the train command does), each from the same seed; "all" stands
    for every phase.

    Raises:
        FileNotFoundError: a phase's predecessor is missing.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    save_config(config, workdir / "config.yaml")
    for phase in PHASES if tuple(phases) == ("all",) else phases:
        if is_done(workdir, phase):
            continue
        keras.utils.set_random_seed(config.data.seed)
        _LOG.info("=== phase %s (%s) ===", phase, workdir.name)
        run.train_phase(phase, config, workdir, verbose=2, run_eagerly=run_eagerly)


def _same_recipe(config: Config) -> Config:
    """`config` as far as phase seg and the pretraining depend on it: N_R's input mode set
    aside (the variants differ in it; pretraining reads the mask), the data root resolved."""
    root = config.data.root and os.path.realpath(config.data.root)
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, root=root),
        regressor=dataclasses.replace(config.regressor, input_mode="mask"),
    )


def reuse_trained(config: Config, source, shared) -> None:
    """Copies the finished phase seg of the workdir `source` (and its pretrained N_R trunk,
    if it has one) into the ablation's `shared` folder, so that the variants start from
    them instead of training them again.

    Raises:
        FileNotFoundError: `source` has no finished phase seg.
        ValueError naming `source`'s config file and the sections in which it differs
            from `config` (of SHARED_SECTIONS, which decide phase seg and the pretraining).
    """
    source, shared = pathlib.Path(source), pathlib.Path(shared)
    if not is_done(source, "seg"):
        raise FileNotFoundError(f"{source}: no finished phase seg to reuse (its seg/summary.json is missing)")
    theirs, ours = _same_recipe(load_config(source / "config.yaml")), _same_recipe(config)
    differing = [name for name in SHARED_SECTIONS if getattr(theirs, name) != getattr(ours, name)]
    if differing:
        raise ValueError(
            f"{source / 'config.yaml'}: differs from the ablation's config in {', '.join(differing)}, "
            "so its phase seg is not the one the variants would train"
        )
    _copy_shared(source, shared)


def _copy_shared(source: pathlib.Path, target: pathlib.Path) -> None:
    """Copies workdir `source`'s phase seg, and its pretrained trunk if it has one, into
    workdir `target`, each folder unless `target` has it already."""
    _copy_once(phase_dir(source, "seg"), phase_dir(target, "seg"))
    if pretrained_trunk_path(source).is_file():
        _copy_once(pretrained_trunk_path(source).parent, pretrained_trunk_path(target).parent)


def _copy_once(source: pathlib.Path, target: pathlib.Path) -> None:
    """Copies the folder `source` to `target` unless `target` exists; through a temporary
    sibling renamed at the end, so an interrupted copy leaves no half-copied `target`."""
    if target.exists():
        return
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    partial.rename(target)


def _cell(results: dict) -> dict:
    regressor = results["angles"]["N_R"]  # Table 1 compares regressors
    return {"smape": regressor["smape"], "mae": regressor["mae"], "mae_columns": regressor["mae_columns"]}


def run_ablation(
    config: Config, out, data_root=None, split="test", inputs=INPUTS, run_eagerly=False, log=print, reuse=None
) -> dict:
    """Trains and evaluates every cell; returns {input: {row: {"smape", "mae", "mae_columns"}}}.

    Args:
        config: the base recipe (data, networks, epochs); `data_root` overrides its data root.
        out: folder of the shared N_S, the variants' workdirs, the cells and the tables.
        split: evaluated split ("test", or "validation" for the held-out records).
        inputs: the columns to run (a subset of INPUTS).
        run_eagerly: no tf.function (tiny configs, where graph tracing dominates).
        log: progress messages.
        reuse: a workdir trained with the same recipe whose phase seg (and pretrained
            trunk) the variants share instead of training them (`reuse_trained`), or None.
    """
    unknown = set(inputs) - set(INPUTS)
    if unknown:
        raise ValueError(f"unknown ablation inputs {sorted(unknown)}; expected some of {INPUTS}")
    if data_root is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=data_root))
    out = pathlib.Path(out)
    shared = out / "shared"
    if reuse is not None:  # checked again on a resumed run; copies only what is missing
        log(f"phase seg and N_R's pretrained trunk reused from {reuse}")
        reuse_trained(config, reuse, shared)
    log("phase seg (shared by every variant)")
    _run_phases(config, shared, ("seg",), run_eagerly)
    if config.regressor.weights == PRETRAIN_IN_WORKDIR:
        log("N_R's trunk pretrained on synthetic masks (shared by every variant)")
        run.ensure_pretrained_trunk(config, shared)
    cells: dict = {}
    for input_mode in inputs:
        cells[input_mode] = {}
        for row in ROWS:
            path = out / "cells" / f"{input_mode}-{row.replace('+ ', '').lower()}.json"
            if path.exists():
                cells[input_mode][row] = json.loads(path.read_text())
                continue
            workdir = out / f"{input_mode}-{'baseline' if row == 'Baseline' else 'ar'}"
            _copy_shared(shared, workdir)
            log(f"{input_mode}: {row}")
            _run_phases(variant_config(config, input_mode, row != "Baseline"), workdir, ROW_PHASES[row], run_eagerly)
            cells[input_mode][row] = _cell(scoring.evaluate_workdir(workdir, None, split))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cells[input_mode][row]))
    return cells


def markdown_table(cells: dict) -> str:
    """Table 1's layout: rows = components, columns = N_R's input, cells = SMAPE (%) / MAE (°)."""
    inputs = [name for name in INPUTS if name in cells]
    lines = ["| method | " + " | ".join(f"{name}: SMAPE (%) / MAE (°)" for name in inputs) + " |",
             "| --- |" + " ---: |" * len(inputs)]
    for row in ROWS:
        values = [cells[name].get(row) for name in inputs]
        lines.append(f"| {row} | " + " | ".join(f"{v['smape']:.2f} / {v['mae']:.2f}" if v else "–" for v in values) + " |")
    return "\n".join(lines) + "\n"


def csv_table(cells: dict) -> str:
    """One line per (method, input): SMAPE, MAE overall and per column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "input", "smape", "mae", "mae_largest", "mae_second", "mae_third"])
    for row in ROWS:
        for name in INPUTS:
            value = cells.get(name, {}).get(row)
            if value:
                writer.writerow([row, name, f"{value['smape']:.4f}", f"{value['mae']:.4f}", *(f"{v:.4f}" for v in value["mae_columns"])])
    return buffer.getvalue()


def write_cam_figure(out, split: str = "test", inputs=INPUTS, count: int = 4) -> pathlib.Path | None:
    """Paper Fig. 3: the CAM of the baseline N_R next to the + AR N_R (both from phase reg,
    on the shared N_S's masks), per input, on the first `count` images of the split.

    Returns:
        `<out>/cam_ar.png`, or None when no input has both N_Rs yet.
    """
    out = pathlib.Path(out)
    segmenter = load_network(network_path(out / "shared", "seg", "segmenter"))
    cams, images = {}, None
    for input_mode in inputs:
        workdirs = {"baseline": out / f"{input_mode}-baseline", "+ AR": out / f"{input_mode}-ar"}
        if not all(network_path(workdir, "reg", "regressor").exists() for workdir in workdirs.values()):
            continue
        config = load_config(workdirs["+ AR"] / "config.yaml")
        _, records, _ = scoring.evaluation_records(config, None, split)
        for label, workdir in workdirs.items():
            regressor = load_network(network_path(workdir, "reg", "regressor"))
            predicted = inference.predict_records(segmenter, regressor, records[:count], config)
            cams[f"{input_mode}: {label}"], images = predicted["cams"], predicted["images"]
    if not cams:
        return None
    return figures.cam_overlays(images, cams, out / "cam_ar.png")


def write_tables(cells: dict, out) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes `<out>/ablation.md` and `<out>/ablation.csv` atomically."""
    out = pathlib.Path(out)
    files.atomic_write(out / "ablation.md", markdown_table(cells).encode("utf-8"))
    files.atomic_write(out / "ablation.csv", csv_table(cells).encode("utf-8"))
    return out / "ablation.md", out / "ablation.csv"
