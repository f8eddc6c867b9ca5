"""What every command (`python -m seg4reg_tf.<command>`) shares: the `--verbose` flag, and
where the library's progress messages go (the `logging` records of `seg4reg_tf.*`: to
standard output, one plain line each; debug records too with `--verbose`). Library code
logs; commands print their results."""

from __future__ import annotations

import argparse
import logging
import sys


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Adds `--verbose` (read before TensorFlow starts by `seg4reg_tf/__init__.py`), parses
    `argv` and configures logging."""
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up logs and debug messages")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    return args


def parse_known(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """`parse`, leaving the arguments `parser` does not know (e.g. a Beam runner's options)."""
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up logs and debug messages")
    args, rest = parser.parse_known_args(argv)
    configure_logging(args.verbose)
    return args, rest


def configure_logging(verbose: bool = False) -> None:
    """Shows the package's log records on standard output (no-op if logging is configured);
    TensorFlow's own Python log records below WARNING only with `verbose`: "Assets written
    to" on export (the "tensorflow" logger) and "Sharding callback duration" at every
    checkpoint (TensorFlow's checkpoint code logs through absl, the "absl" logger)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stdout)
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def fail(error: Exception) -> int:
    """Prints `error: <message>` to standard error; returns 2, the commands' exit status for
    a run that could not start (bad arguments, config or data)."""
    print(f"error: {error}", file=sys.stderr)
    return 2
