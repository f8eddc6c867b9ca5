"""The records a run trains and validates on: the config's data root (or the embedded
synthetic set, generated on first use), its split, the held-out validation fraction and
the names excluded by `data.exclude`."""

from __future__ import annotations

import logging
import os
import pathlib

from seg4reg_tf.config import Config
from seg4reg_tf.data import pipeline, synthetic
from seg4reg_tf.data.aasce import read_split

_LOG = logging.getLogger(__name__)


def data_home() -> pathlib.Path:
    """Where the embedded synthetic data set is generated: $SEG4REG_DATA_HOME, else
    ~/.cache/seg4reg_tf."""
    return pathlib.Path(os.environ.get("SEG4REG_DATA_HOME", pathlib.Path.home() / ".cache" / "seg4reg_tf"))


def resolve_records(config: Config):
    """(training records, validation records, data root) for a run; generates the embedded
    synthetic set on first use when `data.root` is unset."""
    data = config.data
    root = data.root
    if root is None:
        root = data_home() / f"synthetic-seed{data.seed}-{data.synthetic_train}-{data.synthetic_test}"
        if not root.exists():
            _LOG.info("generating the embedded synthetic data set in %s ...", root)
            synthetic.generate_dataset(root, data.synthetic_train, data.synthetic_test, data.seed)
    records = read_split(root, data.split)
    unknown = set(data.exclude) - {record.name for record in records}
    if unknown:
        raise ValueError(f"data.exclude names images that are not in {root} ({data.split}): {', '.join(sorted(unknown))}")
    training, validation = pipeline.split_records(records, data.validation_fraction, data.seed)
    training = [record for record in training if record.name not in data.exclude]
    validation = [record for record in validation if record.name not in data.exclude]
    return training, validation, str(root)
