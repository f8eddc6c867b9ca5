"""The prediction report: `predictions.csv` and `predictions.json`, one row per input file.

Rows are written as they complete: each row is appended and flushed to disk in the CSV and
in `.predictions.jsonl` (JSON Lines), so writing row N costs O(1), not O(N). `close()`
writes `predictions.json` once, atomically, and removes the lines file. A run that is killed
keeps every finished row in the CSV and the lines file; the JSON then lags, and the next
`ReportWriter` on that folder rebuilds it from the lines (`recover`) and removes temporary
files the killed run left. Neither file is ever half-written. Failed inputs are rows too
(status "error" and the message), so the report accounts for every file it was given.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib

from seg4reg_tf import files
from seg4reg_tf.data.aasce import ANGLE_COLUMNS

ANGLE_FIELDS = tuple(f"cobb_{name}_deg" for name in ANGLE_COLUMNS)
REGRESSOR_FIELDS = tuple(f"regressor_{name}_deg" for name in ANGLE_COLUMNS)
GEOMETRIC_FIELDS = tuple(f"geometric_{name}_deg" for name in ANGLE_COLUMNS)
VERTEBRAE_FIELDS = tuple(f"vertebrae_{name}_deg" for name in ANGLE_COLUMNS)
END_VERTEBRAE_FIELDS = tuple(f"end_vertebrae_{name}" for name in ANGLE_COLUMNS)
SPREAD_FIELDS = tuple(f"spread_{name}_deg" for name in ANGLE_COLUMNS)
# status: "ok", "spine not found" (angles left blank: the image shows no spine N_S finds),
# or "error" (the file could not be read or predicted; `error` says why).
STATUS_NO_SPINE = "spine not found"
# the clinical reading (`clinical_reading`): the largest curve of each region, in columns;
# the JSON row also lists every curve under "curves"
CURVE_REGIONS = {"PT": "pt", "MT": "mt", "TL/L": "tll"}
CURVE_PARTS = ("deg", "levels", "apex", "convexity", "severity")
CURVE_FIELDS = tuple(f"curve_{key}_{part}" for key in CURVE_REGIONS.values() for part in CURVE_PARTS)
# on every row, on the JSON report and on every overlay
NOTICE = "Research software, not a medical device: not for diagnosis or treatment decisions."
FIELDS = (
    "file", "status", "error", "format", *ANGLE_FIELDS, "route", "curve_type", "severity",
    "major_curve", "lenke_type_provisional", *CURVE_FIELDS, "convexity_convention",
    *REGRESSOR_FIELDS, *GEOMETRIC_FIELDS, *VERTEBRAE_FIELDS, *END_VERTEBRAE_FIELDS, "route_disagreement_deg", "routes_disagree",
    *SPREAD_FIELDS, "views", "low_confidence", "pixel_spacing_row_mm", "pixel_spacing_column_mm",
    "height", "width", "overlay", "dicom_sr", "dicom_seg", "dicom_refused", "stored_in_pacs", "notice",
)  # fmt: skip

# in predictions.json only: every curve of the clinical reading, and the rules it used
JSON_ONLY_FIELDS = ("curves", "lenke_note", "severity_bands")


def curve_columns(reading: dict) -> dict:
    """The report columns of a `clinical_reading.read_spine` reading: per region, its
    largest curve's Cobb angle, levels ("T6–T12"), apex, convexity and severity (blank where
    the region has no curve), and the major curve, Lenke type and side convention."""
    columns = {"major_curve": reading["major_curve"], "lenke_type_provisional": reading["lenke_type_provisional"],
               "convexity_convention": reading["convexity_convention"]}  # fmt: skip
    for region, key in CURVE_REGIONS.items():
        mine = [curve for curve in reading["curves"] if curve["region"] == region]
        if mine:
            largest = max(mine, key=lambda curve: curve["cobb_deg"])
            levels = f"{largest['upper_end_vertebra']}–{largest['lower_end_vertebra']}"
            values = (float(largest["cobb_deg"]), levels, largest["apex"], largest["convexity"], largest["severity"])
            columns.update(zip((f"curve_{key}_{part}" for part in CURVE_PARTS), values))
    return columns


def csv_line(row: dict) -> bytes:
    """One row as a line of predictions.csv (columns `FIELDS`, blanks for absent fields),
    newline included."""
    buffer = io.StringIO()
    csv.DictWriter(buffer, FIELDS, extrasaction="raise").writerow({key: _plain(row.get(key)) for key in FIELDS})
    return buffer.getvalue().encode("utf-8")


def json_row(row: dict) -> dict:
    """A row as predictions.json holds it: every `FIELDS` key (None where absent), then the
    JSON-only fields the row has."""
    return {key: row.get(key) for key in FIELDS} | {key: row[key] for key in JSON_ONLY_FIELDS if key in row}


def error_row(path: str, message: str) -> dict:
    """The row of an input that could not be predicted."""
    return {"file": path, "status": "error", "error": message, "notice": NOTICE}


class ReportWriter:
    """Appends rows to OUT/predictions.csv and keeps OUT/predictions.json in step.

    Args:
        out: output folder (created).
        header: run-level facts for the JSON (model, settings).
        overwrite: replace an existing report; without it an existing one is refused.

    Raises:
        FileExistsError: a report is already in `out` and `overwrite` is false.
    """

    def __init__(self, out: str | os.PathLike[str], header: dict, overwrite: bool = False):
        self.out = pathlib.Path(out)
        self.csv_path = self.out / "predictions.csv"
        self.json_path = self.out / "predictions.json"
        self.lines_path = self.out / LINES_NAME
        recovered = recover(self.out)
        existing = [path for path in (self.csv_path, self.json_path) if path.exists()]
        if existing and not overwrite:
            note = f" (its JSON was rebuilt from the {recovered} rows of an interrupted run)" if recovered is not None else ""
            raise FileExistsError(f"{existing[0]} already exists{note}; choose another --out or pass --overwrite")
        self.out.mkdir(parents=True, exist_ok=True)
        self.header = header
        self.rows: list[dict] = []
        files.atomic_write(self.csv_path, csv_line(dict(zip(FIELDS, FIELDS))))
        files.atomic_write(self.lines_path, (json.dumps({"header": header}) + "\n").encode("utf-8"))
        self._write_json()

    def _write_json(self) -> None:
        files.atomic_write(self.json_path, json_document(self.header, self.rows))

    def close(self) -> None:
        """Writes predictions.json with every row, atomically, and drops the lines file."""
        self._write_json()
        self.lines_path.unlink(missing_ok=True)

    def add(self, row: dict) -> None:
        """Records one finished row in both files before returning."""
        unknown = set(row) - set(FIELDS) - set(JSON_ONLY_FIELDS)
        if unknown:
            raise ValueError(f"unknown report fields {sorted(unknown)}; expected some of {FIELDS}")
        line = csv_line(row)
        full = json_row(row)
        _append(self.csv_path, line)
        _append(self.lines_path, (json.dumps(full) + "\n").encode("utf-8"))
        self.rows.append(full)


LINES_NAME = ".predictions.jsonl"


def _append(path: pathlib.Path, data: bytes) -> None:
    """Appends `data` and flushes it to disk before returning."""
    with open(path, "ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def json_document(header: dict, rows: list[dict]) -> bytes:
    """predictions.json: the header, the summary and every row."""
    return json.dumps({"notice": NOTICE, **header, "summary": summary(rows), "images": rows}, indent=2).encode("utf-8")


def recover(out: str | os.PathLike[str]) -> int | None:
    """Cleans up after a killed run in `out`: removes the temporary files of interrupted
    atomic writes and rebuilds predictions.json from the lines file.

    Returns:
        The number of rows recovered, or None when no interrupted report was there. A last
        line cut by the kill is dropped (the CSV may hold that row).
    """
    out = pathlib.Path(out)
    for leftover in out.glob(".predictions.*"):
        if leftover.name != LINES_NAME:
            leftover.unlink(missing_ok=True)
    lines_path = out / LINES_NAME
    if not lines_path.exists():
        return None
    header, rows = {}, []
    for line in lines_path.read_bytes().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue  # the line being written when the run was killed
        if isinstance(value, dict) and "header" in value and not rows:
            header = value["header"]
        elif isinstance(value, dict):
            rows.append(value)
    files.atomic_write(out / "predictions.json", json_document(header, rows))
    lines_path.unlink()
    return len(rows)


def _plain(value):
    """CSV cell text: blank for None, 4 decimals for floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return value


def summary(rows: list[dict]) -> dict:
    """Counts of inputs, failures, low-confidence images and severity bands."""
    good = [row for row in rows if row.get("status") == "ok"]
    bands: dict[str, int] = {}
    for row in good:
        bands[row["severity"]] = bands.get(row["severity"], 0) + 1
    return {
        "images": len(rows),
        "predicted": len(good),
        "spine_not_found": sum(1 for row in rows if row.get("status") == STATUS_NO_SPINE),
        "failed": sum(1 for row in rows if row.get("status") == "error"),
        "low_confidence": sum(1 for row in good if row.get("low_confidence")),
        "severity": bands,
    }


def summary_line(rows: list[dict]) -> str:
    """One line for the terminal, e.g. "5 images: 4 predicted, 1 failed; severity: mild 3, ..."."""
    counts = summary(rows)
    bands = ", ".join(f"{band} {count}" for band, count in sorted(counts["severity"].items()))
    line = f"{counts['images']} images: {counts['predicted']} predicted, {counts['failed']} failed"
    if counts["spine_not_found"]:
        line += f", {counts['spine_not_found']} without a spine found"
    if counts["low_confidence"]:
        line += f", {counts['low_confidence']} low confidence"
    return line + (f"; severity: {bands}" if bands else "")
