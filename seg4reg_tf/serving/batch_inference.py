"""Batch scoring of a whole archive on Apache Beam: `predict`'s rows for every file matched by
a pattern, on any Beam runner (command: `python -m seg4reg_tf.batch`).

    files matching the pattern (any Beam file system)
      → (path, bytes)                             fileio.MatchFiles / ReadMatches
      → rows                                      RunInference(SavedModelHandler)
      → OUT/predictions-*.jsonl, predictions-*.csv   (status ok / spine not found)
        OUT/refused-*.jsonl                           (status error, with the reason)

Each file is admitted and decoded exactly as `predict` does
(`radiographs.radiograph_from_bytes`, the same DICOM handling), and predicted through the
export's `predict_tensor` signature (`analysis.predict_radiograph`), so a row equals
predict's row for the same file. A file that cannot be read or predicted becomes a refused
row; it never fails the pipeline.

Beam's own `TFModelHandlerTensor` cannot load these exports: it imports tensorflow_hub and
loads through `tf.keras.models.load_model`, which Keras 3 refuses for a SavedModel. The
handler here wraps `tf.saved_model.load` (`loaded_system.load_saved_model`); each Beam worker
process loads the model once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.io import fileio
from apache_beam.ml.inference.base import ModelHandler, RunInference

from seg4reg_tf.config import PredictConfig
from seg4reg_tf.data import radiographs
from seg4reg_tf.serving import report
from seg4reg_tf.serving.analysis import predict_radiograph
from seg4reg_tf.serving.loaded_system import LoadedSystem, load_saved_model

_LOG = logging.getLogger(__name__)
# X-rays per call of the handler: Beam groups elements up to this many (each X-ray is one
# call of the signature, its test-time views the batch)
MAX_BATCH = 8


class SavedModelHandler(ModelHandler):
    """RunInference's model handler for a seg4reg export: (path, bytes) → predict's row."""

    def __init__(self, saved_model: str, settings: PredictConfig, max_batch: int = MAX_BATCH):
        super().__init__()
        self.saved_model, self.settings, self.max_batch = saved_model, settings, max_batch

    def load_model(self) -> LoadedSystem:
        return load_saved_model(self.saved_model)

    def run_inference(self, batch: Sequence[tuple[str, bytes]], model: LoadedSystem, inference_args=None) -> Iterable[dict]:
        return [score_file(model, path, data, self.settings) for path, data in batch]

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": 1, "max_batch_size": self.max_batch}

    def get_metrics_namespace(self) -> str:
        return "seg4reg"


def score_file(model: LoadedSystem, path: str, data: bytes, settings: PredictConfig) -> dict:
    """predict's row for one file's bytes, or its error row (status "error", the reason)."""
    try:
        return predict_radiograph(model, radiographs.radiograph_from_bytes(data, path, model.max_pixels), settings)
    except (ValueError, OSError, tf.errors.OpError) as error:
        _LOG.warning("refused %s: %s", path, error)
        return report.error_row(path, str(error))


def _read(readable) -> tuple[str, bytes]:
    return readable.metadata.path, readable.read()


def _json_line(row: dict) -> str:
    return json.dumps(report.json_row(row))


def _csv_text(row: dict) -> str:
    return report.csv_line(row).decode("utf-8").rstrip("\r\n")


def build_pipeline(pipeline: beam.Pipeline, pattern: str, saved_model: str, settings: PredictConfig, out: str):
    """Adds the scoring of every file matching `pattern` to `pipeline`.

    Args:
        pattern: a file pattern on any Beam file system (`**` for subfolders).
        saved_model: a seg4reg export (version or model folder) every worker can read.
        settings: TTA and the low-confidence spread, as predict's.
        out: output folder: predictions-*.jsonl / .csv and refused-*.jsonl.
    """
    rows = (
        pipeline
        | "Match" >> fileio.MatchFiles(pattern)
        | "Open" >> fileio.ReadMatches()
        | "Read" >> beam.Map(_read)
        | "Predict" >> RunInference(SavedModelHandler(saved_model, settings))
    )
    scored, refused = rows | "Split" >> beam.Partition(lambda row, _: int(row["status"] == "error"), 2)
    scored | "JSON" >> beam.Map(_json_line) | "WriteJSON" >> beam.io.WriteToText(f"{out}/predictions", file_name_suffix=".jsonl")
    header_line = _csv_text(dict(zip(report.FIELDS, report.FIELDS)))
    scored | "CSV" >> beam.Map(_csv_text) | "WriteCSV" >> beam.io.WriteToText(f"{out}/predictions", file_name_suffix=".csv", header=header_line)
    refused | "Refusals" >> beam.Map(lambda row: json.dumps({"file": row["file"], "error": row["error"]})) | "WriteRefused" >> beam.io.WriteToText(
        f"{out}/refused", file_name_suffix=".jsonl"
    )
    return rows


def run_header(saved_model: str, settings: PredictConfig) -> dict:
    """The run's facts for OUT/run.json: the model and the prediction settings."""
    return {"model": {"saved_model": saved_model}, "predict": dataclasses.asdict(settings), "angle_unit": "degrees"}
