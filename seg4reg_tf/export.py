"""`python -m seg4reg_tf.export`: the trained system as a SavedModel in TF Serving's layout.

    python -m seg4reg_tf.export --workdir W --out exports [--precision bfloat16]

Layout, signatures and atomic writing: `serving.saved_model`.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from seg4reg_tf import cli
from seg4reg_tf.serving.saved_model import export_saved_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seg4reg_tf.export", description="Export a trained workdir as a SavedModel for TF Serving.")
    parser.add_argument("--workdir", required=True, help="training workdir (phases seg and reg at least)")
    parser.add_argument("--out", required=True, help="export base path: the model goes to OUT/NAME/VERSION/")
    parser.add_argument("--name", help="model name (default: the config's export.model_name, 'seg4reg')")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    parser.add_argument("--max-image-pixels", type=int, help="refuse larger images at serving_default (default: the config's)")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], help="arithmetic of the signatures (default: the config's export.precision)")
    args = cli.parse(parser, argv)
    try:
        path = export_saved_model(
            pathlib.Path(args.workdir), pathlib.Path(args.out), args.name, args.version, args.max_image_pixels,
            precision=args.precision,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        return cli.fail(error)
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
