"""`python -m seg4reg_tf.visualize`: the evaluation's figures (PNG, matplotlib).

    python -m seg4reg_tf.visualize --workdir workdirs/demo [--data ROOT --split test] [--out DIR]
    python -m seg4reg_tf.visualize --real ROOT --out DIR   (no workdir)

The figures: `evaluation.figures`.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import tensorflow as tf

from seg4reg_tf import cli
from seg4reg_tf.evaluation import scoring
from seg4reg_tf.evaluation.figures import real_and_synthetic, write_figures
from seg4reg_tf.workdir import evaluation_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seg4reg_tf.visualize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="the trained workdir whose figures to draw")
    parser.add_argument("--real", help="instead: the real-vs-synthetic figure of this AASCE-layout root (needs --out)")
    parser.add_argument("--data", help="AASCE-layout root (default: the workdir config's data)")
    parser.add_argument("--split", default="test", help="split folder, or 'validation' (default: test)")
    parser.add_argument("--out", help="output folder (default: <workdir>/evaluation/<split>)")
    parser.add_argument("--images", type=int, default=4, help="images in the overlay figures")
    args = cli.parse(parser, argv)
    if args.real:
        if not args.out:
            parser.error("--real needs --out")
        try:
            path = real_and_synthetic(args.real, pathlib.Path(args.out) / "real_vs_synthetic.png", args.images)
        except (FileNotFoundError, ValueError, tf.errors.InvalidArgumentError) as error:
            return cli.fail(error)
        print(f"written: {path}")
        return 0
    if not args.workdir:
        parser.error("--workdir is required (or --real ROOT --out DIR)")
    try:
        results = scoring.evaluate_workdir(args.workdir, args.data, args.split)
    except (FileNotFoundError, ValueError) as error:
        return cli.fail(error)
    out = pathlib.Path(args.out) if args.out else evaluation_dir(args.workdir, args.split)
    for path in write_figures(results, args.workdir, out, args.images):
        print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
