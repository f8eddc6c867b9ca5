"""Pretraining N_R on synthetic spine masks (not in the paper): `python -m seg4reg_tf.pretrain`.

    python -m seg4reg_tf.pretrain --config configs/aasce_cpu.yaml --out weights/nr_masks.weights.h5
    # then, in the config:  regressor: {weights: weights/nr_masks.weights.h5}

What is drawn, trained and written: `training.pretraining`.
"""

from __future__ import annotations

import argparse
import os
import sys

from seg4reg_tf import cli
from seg4reg_tf.config import load_config
from seg4reg_tf.training.pretraining import pretrain, pretraining_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seg4reg_tf.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config: input size, augmentation, `pretrain:` settings (default: the paper's)")
    parser.add_argument("--out", required=True, help="weights file to write, ending in .weights.h5")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing weights file")
    parser.add_argument("--logs", help="TensorBoard folder")
    args = cli.parse(parser, argv)
    try:
        config = load_config(args.config)
    except (FileNotFoundError, ValueError) as error:
        return cli.fail(error)
    try:
        pretraining_config(config)  # refuses a backbone whose trunk pretraining cannot write
    except ValueError as error:
        return cli.fail(f"{args.config}: {error}")
    if not args.out.endswith(".weights.h5"):
        print(f"error: {args.out}: the weights file name must end in '.weights.h5'", file=sys.stderr)
        return 2
    if os.path.exists(args.out) and not args.overwrite:
        print(f"error: {args.out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    summary = pretrain(config, args.out, verbose=1 if sys.stdout.isatty() else 2, log_dir=args.logs)
    print(
        f"validation SMAPE {summary['validation']['val_smape'][-1]:.2f}% MAE {summary['validation']['val_mae'][-1]:.2f}° "
        f"(mean-angle baseline: SMAPE {summary['baseline']['smape']:.2f}% MAE {summary['baseline']['mae']:.2f}°) "
        f"[{summary['seconds']:.0f} s] → {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
