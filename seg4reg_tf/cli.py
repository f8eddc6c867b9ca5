"""What every command (`python -m seg4reg_tf.<command>`) shares: the `--verbose` flag, and
where the library's progress messages go (the `logging` records of `seg4reg_tf.*`: to
standard output, one plain line each; debug records too with `--verbose`). Library code
logs; commands print their results."""

from __future__ import annotations

import argparse
import logging
import sys


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """Adds `--verbose` (read before TensorFlow starts by `seg4reg_tf/__init__.py`)."""
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up logs and debug messages")


def configure_logging(verbose: bool = False) -> None:
    """Shows the package's log records on standard output (no-op if logging is configured)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stdout)
