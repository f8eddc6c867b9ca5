"""Fits `readout.centre_line_share` on the training part of a trained workdir and scores the
vertebra route with it on the validation split.

    python bench/centre_line_share.py --workdir W [--data ../shared/aasce]

The workdir's final system (its last N_S and N_R, and its tilt refiner when it has one)
reads every record of both parts once through the inference path (`predict_records`), with
the workdir's config but `centre_line_share: 0`, so that both routes' own angles come out.
Each share s on a grid of 0, 0.05, … 1 then gives (1 − s) × the vertebra route's angles +
s × the centre line's, which is what the route answers with `readout.centre_line_share: s`.
The share with the lowest SMAPE on the training part is the fit; only then is the
validation split scored with it.

Per row: SMAPE, MAE per column, largest angle within 5°.
"""

import argparse
import dataclasses

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import numpy as np  # noqa: E402

from seg4reg_tf.data.records import resolve_records  # noqa: E402
from seg4reg_tf.evaluation.scoring import angle_figures  # noqa: E402
from seg4reg_tf.inference import predict_records  # noqa: E402
from seg4reg_tf.workdir import final_networks, load_refiner  # noqa: E402

SHARES = np.round(np.arange(0.0, 1.0001, 0.05), 2)


def readings(workdir, data: str | None) -> tuple:
    """(config, {"training" | "validation": `predict_records`}) of the workdir's final
    system on both parts of its split, the vertebra route unmixed."""
    config, segmenter, regressor, sources = final_networks(workdir)
    config = dataclasses.replace(config, readout=dataclasses.replace(config.readout, centre_line_share=0.0))
    if data is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=data))
    refiner = load_refiner(sources)
    training, validation, _ = resolve_records(config)
    parts = {name: predict_records(segmenter, regressor, records, config, route="vertebrae", refiner=refiner)
             for name, records in (("training", training), ("validation", validation))}
    return config, parts


def mixed(out: dict, share: float) -> np.ndarray:
    """(N, 3) degrees: (1 − share) × the vertebra route's angles + share × the centre line's."""
    return (1.0 - share) * out["angles_vertebrae"] + share * out["angles_geometric"]


def fit(out: dict, mean) -> float:
    """The share with the lowest SMAPE of `mixed` on `out`, the smallest on a tie."""
    scores = [angle_figures(out["truth_angles"], mixed(out, share), mean)["smape"] for share in SHARES]
    return float(SHARES[int(np.argmin(scores))])


def row(label: str, truth, predicted, mean) -> str:
    figures = angle_figures(truth, predicted, mean)
    columns = " / ".join(f"{value:.2f}" for value in figures["mae_columns"])
    return f"| {label} | {figures['smape']:.2f} | {columns} | {figures['within_5']:.1f} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a workdir trained with the vertebra route (segmenter.tilt_weight > 0)")
    parser.add_argument("--data", help="its data root (AASCE layout; default: the workdir config's)")
    args = parser.parse_args()
    config, parts = readings(args.workdir, args.data)
    train, valid = parts["training"], parts["validation"]
    mean = train["truth_angles"].mean(axis=0)
    share = fit(train, mean)
    curve = ", ".join(f"{s:.1f} {angle_figures(train['truth_angles'], mixed(train, s), mean)['smape']:.2f}" for s in SHARES[::2])
    print(f"{args.workdir}: readout.tilt_gain {config.readout.tilt_gain}, refiner {'on' if config.refiner.enabled else 'off'}")
    print(f"training SMAPE (%) by share: {curve}")
    print(f"fitted on the training part ({len(train['truth_angles'])} images): readout.centre_line_share {share:.2f}\n")
    truth = valid["truth_angles"]
    print(f"validation split ({len(truth)} images)\n")
    print("| route | SMAPE (%) | MAE per column (°) | largest within 5° (%) |")
    print("|---|---:|---|---:|")
    print(row("vertebra route (share 0)", truth, mixed(valid, 0.0), mean))
    print(row(f"vertebra route, centre_line_share {share:.2f} (fitted)", truth, mixed(valid, share), mean))
    print(row("centre line (share 1)", truth, mixed(valid, 1.0), mean))


if __name__ == "__main__":
    main()
