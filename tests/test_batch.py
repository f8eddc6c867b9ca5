"""`python -m seg4reg_tf.batch`: predict's rows for an archive, on Apache Beam's DirectRunner."""

import json
import pathlib
import sys

import cv2
import numpy as np
import pytest

from seg4reg_tf import batch, predict
from tests.harness import write_dicom


def archive(synthetic_root, folder: pathlib.Path) -> tuple[list[pathlib.Path], dict[str, str]]:
    """About 20 files in subfolders: the synthetic X-rays as JPEG, 16-bit PNG and DICOM, and
    bad files with a word their refusal must hold."""
    from tests.test_admission import with_png_size

    sources = sorted((pathlib.Path(synthetic_root) / "data").rglob("*.jpg"))
    good = []
    for index, source in enumerate(sources):
        gray = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
        (folder / "jpeg").mkdir(parents=True, exist_ok=True)
        (folder / "png").mkdir(exist_ok=True)
        (folder / "dicom").mkdir(exist_ok=True)
        good.append(folder / "jpeg" / f"{index}.jpg")
        good[-1].write_bytes(source.read_bytes())
        if index % 2 == 0:
            good.append(folder / "png" / f"{index}.png")
            good[-1].write_bytes(cv2.imencode(".png", gray.astype(np.uint16) * 257)[1].tobytes())
        else:
            good.append(write_dicom(folder / "dicom" / f"{index}.dcm", gray.astype(np.uint16) * 16, bits=12))
    data = sources[0].read_bytes()
    gray = cv2.imread(str(sources[0]), cv2.IMREAD_GRAYSCALE)
    bad = {
        "bomb.png": (with_png_size(cv2.imencode(".png", gray)[1].tobytes(), 60000, 60000), "image too large"),
        "cut.jpg": (data[: len(data) // 2], "truncated"),
        "empty.png": (b"", "empty file"),
        "notes.dcm": (b"not an image", "not a JPEG, PNG or DICOM"),
    }
    (folder / "bad").mkdir()
    for name, (content, _) in bad.items():
        (folder / "bad" / name).write_bytes(content)
    return good, {str(folder / "bad" / name): word for name, (_, word) in bad.items()}


def read_lines(folder: pathlib.Path, prefix: str) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob(f"{prefix}-*.jsonl")) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_batch_gives_predicts_rows_and_a_refusal_naming_each_bad_file(exported, synthetic_root, tmp_path, capsys):
    good, bad = archive(synthetic_root, tmp_path / "archive")
    assert len(good) + len(bad) >= 20
    out = tmp_path / "out"
    args = ["--saved-model", str(exported["path"].parent), str(tmp_path / "archive" / "**"), "--out", str(out)]
    assert batch.main(args) == 1  # some files were refused
    rows = {row["file"]: row for row in read_lines(out, "predictions")}
    refused = {row["file"]: row["error"] for row in read_lines(out, "refused")}
    assert sorted(rows) == sorted(map(str, good))
    assert sorted(refused) == sorted(bad)
    for path, word in bad.items():
        assert word in refused[path] and path in refused[path]
    # predict on the same files gives the same rows
    report = tmp_path / "report"
    assert predict.main(["--saved-model", str(exported["path"].parent), *map(str, good), "--out", str(report), "--quiet"]) == 0
    expected = {row["file"]: row for row in json.loads((report / "predictions.json").read_text())["images"]}
    assert rows == expected
    csv_lines = (out / "predictions-00000-of-00001.csv").read_text().splitlines()
    assert csv_lines[0].startswith("file,status,error,format,cobb_largest_deg") and len(csv_lines) == 1 + len(good)
    assert (report / "predictions.csv").read_text().splitlines()[0] == csv_lines[0]
    run = json.loads((out / "run.json").read_text())
    assert run["files"] == len(good) + len(bad) and run["model"]["saved_model"] == str(exported["path"])
    assert f"{len(good)} scored, {len(bad)} refused" in capsys.readouterr().out
    # A second run into the same folder is refused; with --overwrite, a run that cannot start
    # (nothing matches) leaves the results as they were.
    before = sorted(path.read_bytes() for path in out.iterdir())
    assert batch.main(args) == 2
    assert batch.main([*args[:2], str(tmp_path / "nothing" / "*.jpg"), *args[3:], "--overwrite"]) == 2
    assert sorted(path.read_bytes() for path in out.iterdir()) == before


def test_batch_refuses_a_savedmodel_that_is_not_a_seg4reg_export_and_a_pattern_matching_nothing(exported, tmp_path, capsys):
    import tensorflow as tf

    other = tmp_path / "other"
    module = tf.Module()
    module.f = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(other))
    assert batch.main(["--saved-model", str(other), str(tmp_path / "*.jpg"), "--out", str(tmp_path / "out")]) == 2
    assert "is not a seg4reg export" in capsys.readouterr().err
    assert batch.main(["--saved-model", str(exported["path"].parent), str(tmp_path / "nothing" / "*.jpg"), "--out", str(tmp_path / "out")]) == 2
    assert "no file matches" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_without_beam_the_command_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    for name in [name for name in sys.modules if name == "apache_beam" or name.startswith("apache_beam.")] + ["apache_beam"]:
        monkeypatch.setitem(sys.modules, name, None)  # import apache_beam… raises ImportError
    monkeypatch.delitem(sys.modules, "seg4reg_tf.serving.batch_inference", raising=False)
    assert batch.main(["--saved-model", str(tmp_path / "model"), "x/*.jpg", "--out", str(tmp_path / "out")]) == 2
    assert 'pip install -e ".[batch]"' in capsys.readouterr().err
