"""Scoring a trained system on labelled records: the library behind `evaluate`, the
ablation, the figures and the angle-route choice.

`evaluate_workdir` runs the workdir's final N_S and N_R (the export's inference path) over a
split and scores the angles (SMAPE, MAE per column, beside the training-mean baseline), the
masks of every N_S the workdir holds (paper Table 2's columns) and the system as it stood
after each phase. Each (N_S, N_R) pair is run once per evaluation (`Runs`).
`record_routes` writes the route record (`routes`) behind `inference.angles: auto`, from the
validation split.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

import numpy as np

import seg4reg_tf.layers  # noqa: F401  (registers the custom layers for loading)
from seg4reg_tf import metrics, routes
from seg4reg_tf.data import pipeline
from seg4reg_tf.data.aasce import read_split
from seg4reg_tf.data.records import resolve_records
from seg4reg_tf.inference import fine_batches, predict_records
from seg4reg_tf.models.segment import is_gated
from seg4reg_tf.workdir import PHASES, final_networks, load_network, load_refiner, network_path, phase_sources

_LOG = logging.getLogger(__name__)

SEGMENTER_ROWS = (("seg", "N_S"), ("roie", "N_S + ROIE"), ("tcl", "N_S + ROIE + TCL"))
SEGMENTATION_COLUMNS = ("jaccard", "dice", "pixel_accuracy", "sensitivity", "specificity")


def evaluation_records(config, data_root: str | None, split: str):
    """(training records, evaluated records, root): the baseline's records and the split's.

    Args:
        config: the workdir's config (its data root, split, validation fraction and seed).
        data_root: overrides `data.root` (AASCE layout); None keeps the config's.
        split: a split folder of the root ("test", "training"), or "validation".
    """
    if data_root is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=data_root))
    training, validation, root = resolve_records(config)
    if split == "validation":
        if not validation:
            raise ValueError("the config holds no validation records (data.validation_fraction is 0)")
        return training, validation, root
    return training, read_split(root, split), root


def has_route(angles) -> bool:
    """Whether a route answered at all: (N, 3) degrees not all NaN (the vertebra route is
    all NaN when N_S has no tilt head)."""
    return bool(np.isfinite(angles).any())


def route_scores(truth, out, mean, with_regressor: bool = True) -> dict:
    """{route: validation SMAPE %, or None where the route does not answer} of a
    `predict_records` output, for `routes.choose_route`."""
    return {
        "regressor": angle_figures(truth, out["angles_regressor"], mean)["smape"] if with_regressor else None,
        "geometric": angle_figures(truth, out["angles_geometric"], mean)["smape"],
        "vertebrae": angle_figures(truth, out["angles_vertebrae"], mean)["smape"] if has_route(out["angles_vertebrae"]) else None,
    }


# a column whose predictions vary less than this fraction of the truth's standard deviation
# is near-constant: its answers are about the training mean, whatever the image
FLAT_FRACTION = 0.25


def angle_figures(truth, predicted, fallback=None) -> dict:
    """{"smape" %, "mae" degrees, "mae_columns" [3] degrees, "within_5" % of images whose
    largest angle is within 5°, "not_found" count, "spread_columns" [3] and
    "truth_spread_columns" [3] standard deviations in degrees, "flat_columns" [indices of the
    columns whose spread is under `FLAT_FRACTION` of the truth's]} of (N, 3) degree arrays.

    Rows of `predicted` that are NaN (no spine found) are scored as `fallback` (3,) (the
    training-mean angles), so a route is not rewarded for giving up."""
    predicted = np.asarray(predicted, np.float64)
    missing = ~np.isfinite(predicted).all(axis=1)
    if missing.any():
        predicted = np.where(missing[:, None], np.broadcast_to(fallback, predicted.shape), predicted)
    per_column, overall = metrics.mean_absolute_error(truth, predicted)
    within = float(100.0 * np.mean(np.abs(np.asarray(truth)[:, 0] - predicted[:, 0]) <= 5.0))
    spread, truth_spread = predicted.std(axis=0), np.asarray(truth, np.float64).std(axis=0)
    flat = [int(i) for i in np.nonzero(spread < FLAT_FRACTION * truth_spread)[0]] if len(predicted) > 1 else []
    return {"smape": metrics.smape(truth, predicted), "mae": overall, "mae_columns": per_column.tolist(),
            "within_5": within, "not_found": int(missing.sum()), "spread_columns": spread.tolist(),
            "truth_spread_columns": truth_spread.tolist(), "flat_columns": flat}


def segmentation_figures(truth_masks, masks) -> dict:
    """Paper Table 2's scores in percent of (N, H, W) masks and probabilities."""
    return metrics.segmentation_scores(truth_masks[..., None], masks[..., None])


class Runs:
    """`predict_records` of each (N_S file, N_R file) pair on one set of records, run once.

    Args:
        records, config, batch_size, refiner: as `predict_records` (the refiner serves every
            run; the records' fine images are decoded once for all of them).
    """

    def __init__(self, records, config, batch_size: int = 8, refiner=None):
        self.records, self.config, self.batch_size, self.refiner = records, config, batch_size, refiner
        self.networks, self.outputs = {}, {}
        self.fine = None if refiner is None else fine_batches(records, config, batch_size)

    def network(self, path):
        """The network saved at `path` (loaded once), or None for None."""
        if path is None:
            return None
        path = str(path)
        if path not in self.networks:
            self.networks[path] = load_network(path)
        return self.networks[path]

    def add(self, segmenter_path, regressor_path, segmenter, regressor, outputs: dict) -> None:
        """Records networks already loaded and their outputs (the final system's run)."""
        self.networks[str(segmenter_path)], self.networks[str(regressor_path)] = segmenter, regressor
        self.outputs[(str(segmenter_path), str(regressor_path))] = outputs

    def get(self, segmenter_path, regressor_path=None) -> dict:
        """The outputs of N_S at `segmenter_path` with N_R at `regressor_path` (or none)."""
        key = (str(segmenter_path), None if regressor_path is None else str(regressor_path))
        if key not in self.outputs:
            networks = self.network(segmenter_path), self.network(regressor_path)
            self.outputs[key] = predict_records(*networks, self.records, self.config, self.batch_size, refiner=self.refiner, fine=self.fine)
        return self.outputs[key]

    def masks(self, segmenter_path, regressor_path) -> np.ndarray:
        """(N, H, W) masks of N_S; an ungated N_S's do not depend on N_R, so any run of it serves."""
        if not is_gated(self.network(segmenter_path)):
            for (path, _), outputs in self.outputs.items():
                if path == str(segmenter_path):
                    return outputs["masks"]
        return self.get(segmenter_path, regressor_path)["masks"]


def evaluate_workdir(workdir, data_root: str | None = None, split: str = "test", batch_size: int = 8) -> dict:
    """All figures of a workdir on a split; see the module docstring.

    Returns:
        {"split", "images", "angles": {label: `angle_figures`}, "segmentation": {row:
        scores}, "phases": `phase_rows`, "predictions": `predict_records` of the final
        system, "segmentation_masks": {row: (N, H, W)} per N_S, "files": [names], ...}.
    """
    workdir = pathlib.Path(workdir)
    config, segmenter, regressor, sources = final_networks(workdir)
    route = route_for_evaluation(workdir, config, sources, segmenter, regressor)
    training, records, root = evaluation_records(config, data_root, split)
    refiner = load_refiner(sources)
    runs = Runs(records, config, batch_size, refiner)
    final = predict_records(segmenter, regressor, records, config, batch_size, route, refiner, runs.fine)
    runs.add(sources["segmenter"], sources["regressor"], segmenter, regressor, final)
    mean = np.stack([record.angles for record in training]).mean(axis=0)
    by_phase = phase_rows(workdir, config, runs, mean, split == "validation", final=(sources, route))
    truth = final["truth_angles"]
    segmentation, segmentation_masks = {}, {}
    for phase, label in SEGMENTER_ROWS:
        path = network_path(workdir, phase, "segmenter")
        if path.exists():
            segmentation_masks[label] = runs.masks(path, sources["regressor"])
            segmentation[label] = segmentation_figures(final["truth_masks"], segmentation_masks[label])
    prior = pipeline.mean_mask(training, config.data)[..., 0]
    segmentation["baseline (training-mean mask)"] = segmentation_figures(final["truth_masks"], np.broadcast_to(prior, final["truth_masks"].shape))
    baseline = np.broadcast_to(mean, truth.shape)
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
            **({"vertebra route": angle_figures(truth, final["angles_vertebrae"], mean)} if has_route(final["angles_vertebrae"]) else {}),
            "readout on true masks": angle_figures(truth, final["angles_geometric_truth"], mean),
            "baseline (training-mean angles)": angle_figures(truth, baseline, mean),
        },
        "segmentation": segmentation,
        "phases": by_phase,
        "files": [record.name for record in records],
        "predictions": final,
        "segmentation_masks": segmentation_masks,
    }


def phase_rows(workdir, config, runs: Runs, mean, choose: bool = False, final: tuple[dict, str] | None = None) -> dict:
    """The system as it stood after each trained phase, scored on `runs.records`.

    Args:
        runs: the evaluation's runs (one per pair of networks).
        mean: (3,) training-mean angles in degrees (the baseline, and the score of images
            where no spine is found).
        choose: the records are the validation split, so `inference.angles: auto` can be
            decided on them (as training decides it); otherwise an auto system is scored
            only after the phase that left the final networks.
        final: (sources, route) of the final networks (`workdir.final_networks`' file names)
            and the route the evaluation answers with (the one training recorded).

    Returns:
        {phase: {"dice", "jaccard" %, "readout", "regressor", "vertebrae" SMAPE % (None
        before phase reg, or without the tilt head), "system" SMAPE % (None when
        undecidable), "route"}} for every phase whose folder holds the network it trains.
        Before phase reg the route is the better of the two readouts.
    """
    rows = {}
    for phase in PHASES:
        sources = phase_sources(workdir, phase)
        trained = [network_path(workdir, phase, network) for network in ("segmenter", "regressor")]
        if sources["segmenter"] is None or not any(path.exists() for path in trained):
            continue
        out = runs.get(sources["segmenter"], sources["regressor"])
        truth = out["truth_angles"]
        scores = segmentation_figures(out["truth_masks"], out["masks"])
        smape = route_scores(truth, out, mean, with_regressor=sources["regressor"] is not None)
        setting = config.inference.angles
        route = None
        if sources["regressor"] is None:
            route = routes.choose_route("auto", {"validation_smape": smape})
        elif setting != "auto":
            route = routes.choose_route(setting, None)
        elif choose:
            route = routes.choose_route("auto", {"validation_smape": smape})
        elif final is not None and all(str(sources[network]) == final[0][network] for network in ("segmenter", "regressor")):
            route = final[1]
        rows[phase] = {"dice": scores["dice"], "jaccard": scores["jaccard"], "readout": smape["geometric"], "regressor": smape["regressor"],
                       "vertebrae": smape["vertebrae"], "system": None if route is None else smape[route], "route": route}
    return rows


def record_routes(workdir, config, sources, segmenter, regressor, batch_size: int = 8) -> dict:
    """Scores the three routes on the validation split and writes `<workdir>/routes.json`
    (`routes.write_routes`); the choice is what `inference.angles: auto` answers with."""
    training, validation, _ = resolve_records(config)
    scores = {route: None for route in routes.ROUTES}
    if validation:
        mean = np.stack([record.angles for record in training]).mean(axis=0)
        out = predict_records(segmenter, regressor, validation, config, batch_size, refiner=load_refiner(sources))
        scores = route_scores(out["truth_angles"], out, mean)
    return routes.write_routes(workdir, scores, len(validation), sources)


def record_workdir_routes(workdir) -> dict | None:
    """`record_routes` for a workdir's final networks (what `train` does after its last
    phase); None until N_S and N_R both exist."""
    try:
        config, segmenter, regressor, sources = final_networks(pathlib.Path(workdir))
    except FileNotFoundError:
        return None
    return record_routes(workdir, config, sources, segmenter, regressor)


def route_for_evaluation(workdir, config, sources, segmenter, regressor) -> str:
    """The route `cobb_angles` takes for this workdir's networks; with "auto" and no fresh
    record, the record is written first (evaluation has the data that export and predict
    lack)."""
    if config.inference.angles == "auto" and routes.read_routes(workdir, sources) is None:
        _LOG.info("scoring the three routes on the validation split of %s (inference.angles: auto) ...", workdir)
        record_routes(workdir, config, sources, segmenter, regressor)
    return routes.route_for_workdir(workdir, config.inference.angles, sources)[0]
