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
import pathlib
import sys

from seg4reg_tf import cli
from seg4reg_tf.config import load_config
from seg4reg_tf.evaluation import ablation, figures
from seg4reg_tf.evaluation.results import table, write_results
from seg4reg_tf.evaluation.scoring import evaluate_workdir
from seg4reg_tf.workdir import evaluation_dir


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
        results = evaluate_workdir(args.workdir, args.data, args.split, args.batch_size)
    except (FileNotFoundError, ValueError) as error:
        return cli.fail(error)
    out = pathlib.Path(args.out) if args.out else evaluation_dir(args.workdir, args.split)
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
