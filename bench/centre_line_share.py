"""Fits `readout.centre_line_share` on the training part of a trained workdir and scores the
vertebra route with it on the validation split.

    python bench/centre_line_share.py --workdir W [--data ../shared/aasce]

The workdir's final system (its last N_S and N_R, and its tilt refiner when it has one)
reads every record of both parts once, through the inference path (`predict_records`). Each
share s on a grid of 0, 0.05, … 1 then moves the vertebra route's tilts s of the way to the
centre line's direction (`vertebra_readout.toward_centre_line`), in original pixels, which
gives the same angles as the route with `readout.centre_line_share: s` (a letterbox is a
scale and a shift, so it keeps directions); the script checks that s = 0 and s = 1 give the
two routes' own angles. The share with the lowest training SMAPE is the fit; only then is the
validation split scored with it. For comparison, the same fit of a mix of the two routes'
angles, (1 − s)·vertebrae + s·centre line (which leaves the drawn vertebrae at odds with the
angle).

Per row: SMAPE, MAE per column, largest angle within 5°.
"""

import argparse
import dataclasses

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seg4reg_tf.cobb_graph import cobb_angles  # noqa: E402
from seg4reg_tf.data.records import resolve_records  # noqa: E402
from seg4reg_tf.evaluation.scoring import angle_figures  # noqa: E402
from seg4reg_tf.inference import predict_records  # noqa: E402
from seg4reg_tf.vertebra_readout import tilted_corners, toward_centre_line, vertebra_frames  # noqa: E402
from seg4reg_tf.workdir import final_networks, load_refiner  # noqa: E402

SHARES = np.round(np.arange(0.0, 1.0001, 0.05), 2)


def readings(workdir, data: str | None) -> tuple:
    """(config, {"training" | "validation": (predictions, original heights (N,))}) of the
    workdir's final system on both parts of its split."""
    config, segmenter, regressor, sources = final_networks(workdir)
    if data is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=data))
    refiner = load_refiner(sources)
    training, validation, _ = resolve_records(config)
    parts = {}
    for name, records in (("training", training), ("validation", validation)):
        out = predict_records(segmenter, regressor, records, config, route="vertebrae", refiner=refiner)
        parts[name] = (out, np.array([record.height for record in records], np.float64))
    return config, parts


def shared_angles(out: dict, heights, share: float) -> np.ndarray:
    """(N, 3) degrees: the vertebra route's tilts moved `share` of the way to the centre
    line's, read off the two routes' corners in original pixels (NaN where nothing was found)."""
    centre = vertebra_frames(tf.constant(out["landmarks"], tf.float32))
    route = vertebra_frames(tf.constant(out["vertebra_landmarks"], tf.float32))["across"]
    theta = toward_centre_line(centre, tf.atan2(route[..., 1], route[..., 0]), share)
    corners = tf.where(tf.math.is_finite(theta)[..., None, None], tf.reshape(tilted_corners(centre, theta), [-1, 17, 4, 2]), np.nan)
    angles = cobb_angles(tf.reshape(corners, [-1, 68, 2]), tf.constant(heights, tf.float64))["cobb_angles"].numpy()
    return np.where(np.isfinite(out["angles_vertebrae"]).all(axis=1, keepdims=True), angles, np.nan)


def fit(score, shares=SHARES) -> float:
    """The share with the lowest `score(share)` (SMAPE %), the smallest on a tie."""
    values = [score(share) for share in shares]
    return float(shares[int(np.argmin(values))])


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
    (train, train_heights), (valid, valid_heights) = parts["training"], parts["validation"]
    mean = train["truth_angles"].mean(axis=0)
    for out, heights in parts.values():  # the blend's ends are the two routes
        np.testing.assert_allclose(shared_angles(out, heights, 0.0), out["angles_vertebrae"], atol=0.05)
        np.testing.assert_allclose(shared_angles(out, heights, 1.0), out["angles_geometric"], atol=0.05)

    def tilt_mix(out, heights, share):
        return angle_figures(out["truth_angles"], shared_angles(out, heights, share), mean)["smape"]

    def angle_mix(out, share):
        return (1.0 - share) * out["angles_vertebrae"] + share * out["angles_geometric"]

    tilt_share = fit(lambda share: tilt_mix(train, train_heights, share))
    angle_share = fit(lambda share: angle_figures(train["truth_angles"], angle_mix(train, share), mean)["smape"])
    print(f"{args.workdir}: readout.tilt_gain {config.readout.tilt_gain}, refiner {'on' if config.refiner.enabled else 'off'}")
    print("training SMAPE (%) by share: " + ", ".join(f"{share:.2f} {tilt_mix(train, train_heights, share):.2f}" for share in SHARES[::2]))
    print(f"fitted on the training part ({len(train['truth_angles'])} images): centre_line_share {tilt_share:.2f}; "
          f"angle mix {angle_share:.2f}\n")
    truth = valid["truth_angles"]
    print(f"validation split ({len(truth)} images)\n")
    print("| route | SMAPE (%) | MAE per column (°) | largest within 5° (%) |")
    print("|---|---:|---|---:|")
    print(row("vertebra route (share 0)", truth, valid["angles_vertebrae"], mean))
    print(row(f"vertebra route, centre_line_share {tilt_share:.2f} (fitted)", truth, shared_angles(valid, valid_heights, tilt_share), mean))
    print(row(f"mix of the two routes' angles, {angle_share:.2f} centre line (fitted)", truth, angle_mix(valid, angle_share), mean))
    print(row("centre line (share 1)", truth, valid["angles_geometric"], mean))


if __name__ == "__main__":
    main()
