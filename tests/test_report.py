"""The prediction report: rows survive a kill, the JSON is written once, and (fuzzed) any
row text round-trips through the CSV and the JSON."""

import csv
import json
import math
import pathlib
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seg4reg_tf.serving import report


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_report_rows_survive_an_interrupted_run(tmp_path):
    writer = report.ReportWriter(tmp_path, {"model": {"m": 1}})
    writer.add({"file": "a.jpg", "status": "ok", "cobb_largest_deg": 12.5, "severity": "mild"})
    writer.add(report.error_row("b.jpg", "b.jpg: empty file"))
    # Whatever happens next, the CSV and the lines file already hold both rows.
    rows = read_csv(tmp_path / "predictions.csv")
    assert [row["file"] for row in rows] == ["a.jpg", "b.jpg"] and rows[0]["cobb_largest_deg"] == "12.5000"
    with pytest.raises(ValueError, match="unknown report fields"):
        writer.add({"file": "c.jpg", "angle": 3})
    assert len(read_csv(tmp_path / "predictions.csv")) == 2
    # Killed here: the JSON lags, a temporary file of an atomic write is left, the last
    # line was cut mid-write.
    (tmp_path / ".predictions.json.abc123").write_bytes(b'{"half')
    with open(tmp_path / report.LINES_NAME, "ab") as handle:
        handle.write(b'{"file": "c.jp')
    assert json.loads((tmp_path / "predictions.json").read_text())["images"] == []
    # The next run on the folder rebuilds the JSON, cleans up, and refuses to overwrite.
    with pytest.raises(FileExistsError, match="rebuilt from the 2 rows of an interrupted run"):
        report.ReportWriter(tmp_path, {"model": {}})
    document = json.loads((tmp_path / "predictions.json").read_text())
    assert [row["file"] for row in document["images"]] == ["a.jpg", "b.jpg"] and document["model"] == {"m": 1}
    assert document["summary"]["failed"] == 1 and document["summary"]["severity"] == {"mild": 1}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["predictions.csv", "predictions.json"]


def test_report_json_is_written_once_at_the_end(tmp_path, monkeypatch):
    writes = []
    real = report.files.atomic_write
    monkeypatch.setattr(report.files, "atomic_write", lambda path, data: (writes.append(pathlib.Path(path).name), real(path, data)))
    writer = report.ReportWriter(tmp_path, {"model": {}})
    for index in range(50):
        writer.add({"file": f"{index}.jpg", "status": "ok"})
    writer.close()
    assert writes.count("predictions.json") == 2  # the empty report at the start, the full one at the end
    document = json.loads((tmp_path / "predictions.json").read_text())
    assert len(document["images"]) == 50 and not (tmp_path / report.LINES_NAME).exists()


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
ROW = st.fixed_dictionaries(
    {"file": TEXT, "status": st.sampled_from(["ok", "error", report.STATUS_NO_SPINE])},
    optional={"error": TEXT, "cobb_largest_deg": st.floats(-1e6, 1e6), "severity": TEXT, "views": st.integers(0, 10**6),
              "low_confidence": st.booleans(), "route": TEXT},
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW, max_size=8))
def test_any_rows_round_trip_through_csv_and_json(rows):
    with tempfile.TemporaryDirectory() as folder:
        out = pathlib.Path(folder)
        writer = report.ReportWriter(out, {"model": {}})
        for row in rows:
            writer.add(row)
        writer.close()
        written = read_csv(out / "predictions.csv")
        document = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
        assert len(written) == len(rows) == len(document["images"])
        for row, line, item in zip(rows, written, document["images"]):
            assert item["file"] == row["file"] and line["file"] == row["file"]
            assert line["status"] == row["status"]
            if "cobb_largest_deg" in row:
                assert math.isclose(float(line["cobb_largest_deg"]), row["cobb_largest_deg"], abs_tol=1e-4)
        assert sorted(path.name for path in out.iterdir()) == ["predictions.csv", "predictions.json"]
