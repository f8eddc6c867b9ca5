"""The predict command: input discovery, file formats, workdir vs SavedModel, failures in a
folder, the report files it writes."""

import csv
import json
import pathlib

import cv2
import numpy as np
import pytest

from seg4reg_tf import curve, predict
from seg4reg_tf.config import PredictConfig
from seg4reg_tf.data import radiographs
from seg4reg_tf.serving import analysis, report
from tests.harness import write_dicom

# --- finding and reading inputs ------------------------------------------------------------


def test_find_inputs(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for name in ["a/x.jpg", "a/deep/y.PNG", "a/deep/z.dcm", "a/IM0001", "a/notes.txt", "a/.hidden/w.jpg", "b.png"]:
        (tmp_path / name).write_bytes(b"x")
    files, missing = radiographs.find_inputs(
        [str(tmp_path / "a"), str(tmp_path / "*.png"), str(tmp_path / "a" / "x.jpg"), str(tmp_path / "nope.jpg"), str(tmp_path / "*.gif")]
    )
    names = [str(pathlib.Path(f).relative_to(tmp_path)) for f in files]
    assert names == ["a/IM0001", "a/deep/y.PNG", "a/deep/z.dcm", "a/x.jpg", "b.png"]
    assert [argument for argument, _ in missing] == [str(tmp_path / "nope.jpg"), str(tmp_path / "*.gif")]
    assert "no such file" in missing[0][1] and "no file matches" in missing[1][1]


def test_find_inputs_names_a_missing_first_input_a_link_loop_and_an_empty_folder(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    arguments = [str(tmp_path / "nope.jpg"), str(tmp_path / "loop"), str(tmp_path / "empty"), str(tmp_path / "x.jpg")]
    files, missing = radiographs.find_inputs(arguments)
    assert files == [str(tmp_path / "x.jpg")]
    assert [argument for argument, _ in missing] == arguments[:3]
    assert "no such file" in missing[0][1] and "looping symbolic link" in missing[1][1] and "no JPEG, PNG or DICOM" in missing[2][1]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"GIF89a....", "not a JPEG, PNG or DICOM"),
        (b"\xff\xd8\x00garbage\xff\xd9", "corrupt JPEG header"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "corrupt PNG"),
    ],
)
def test_unreadable_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        radiographs.read_radiograph(str(path))
    assert str(path) in str(error.value)


# --- end to end on the shared export --------------------------------------------------------


def synthetic_gray(synthetic_root) -> np.ndarray:
    """A synthetic radiograph as (H, W) float64 in [0, 1]."""
    path = sorted((pathlib.Path(synthetic_root) / "data" / "test").glob("*.jpg"))[0]
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float64) / 255.0


@pytest.mark.slow
def test_jpeg_png16_and_dicom_of_one_image_agree(workdir_model, synthetic_root, tmp_path):
    gray = synthetic_gray(synthetic_root)
    stored = np.round(gray * 4095).astype(np.uint16)
    paths = {
        "JPEG": tmp_path / "x.jpg",
        "PNG": tmp_path / "x.png",
        "DICOM-MONOCHROME2": write_dicom(tmp_path / "m2.dcm", stored, "MONOCHROME2", 12, PixelSpacing=[0.2, 0.25]),
        "DICOM-MONOCHROME1": write_dicom(tmp_path / "m1.dcm", 4095 - stored, "MONOCHROME1", 12),
    }
    cv2.imwrite(str(paths["JPEG"]), np.round(gray * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(paths["PNG"]), np.round(gray * 65535).astype(np.uint16))
    settings = PredictConfig()
    rows, inputs = {}, {}
    for kind, path in paths.items():
        radiograph = radiographs.read_radiograph(str(path))
        assert radiograph.file_format == kind.split("-")[0]
        inputs[kind] = workdir_model.decode(radiograph.encoded, str(path))[0].numpy()
        rows[kind] = analysis.predict_radiograph(workdir_model, radiograph, settings)
    for kind in paths:
        # The model sees the same picture (JPEG loses a little), so the angles agree.
        np.testing.assert_allclose(inputs[kind], inputs["PNG"], atol=0.03 if kind == "JPEG" else 2e-3, err_msg=kind)
        for field in report.REGRESSOR_FIELDS:
            assert abs(rows[kind][field] - rows["PNG"][field]) < 0.5, (kind, field)
        # the readout thresholds the mask, so JPEG's small changes can move a spine edge
        for field in report.GEOMETRIC_FIELDS:
            assert abs(rows[kind][field] - rows["PNG"][field]) < (2.0 if kind == "JPEG" else 0.5), (kind, field)
    assert rows["DICOM-MONOCHROME2"]["pixel_spacing_row_mm"] == 0.2
    assert rows["DICOM-MONOCHROME2"]["pixel_spacing_column_mm"] == 0.25
    assert "pixel_spacing_row_mm" not in rows["PNG"]


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_workdir_and_saved_model_agree_with_tta(exported, synthetic_root, tmp_path):
    folder = pathlib.Path(synthetic_root) / "data" / "test"
    results = {}
    for source, option in (("workdir", ["--workdir", str(exported["workdir"])]), ("saved", ["--saved-model", str(exported["path"])])):
        out = tmp_path / source
        args = [*option, str(folder), "--out", str(out), "--tta", "--low-confidence-spread", "0", "--quiet"]
        assert predict.main(args) == 0
        results[source] = read_csv(out / "predictions.csv")
    assert len(results["workdir"]) == len(list(folder.glob("*.jpg"))) == 2
    for by_workdir, by_export in zip(results["workdir"], results["saved"]):
        assert by_workdir["file"] == by_export["file"] and by_workdir["status"] == "ok"
        for field in report.ANGLE_FIELDS + report.SPREAD_FIELDS:
            assert abs(float(by_workdir[field]) - float(by_export[field])) < 1e-3, field
        assert by_workdir["views"] == "6"
        assert by_workdir["curve_type"] in curve.CURVE_TYPES and by_workdir["severity"] in ("none", "mild", "moderate", "severe")
        # Spread 0 as the threshold: any disagreement between views flags the image.
        spread = max(float(by_workdir[field]) for field in report.SPREAD_FIELDS)
        assert by_workdir["low_confidence"] == str(spread > 0)


@pytest.mark.slow


@pytest.mark.slow
def test_a_folder_with_bad_files_reports_them_and_keeps_the_good_rows(exported, synthetic_root, tmp_path, capsys):
    from tests.test_admission import exif_jpeg, with_png_size

    folder = tmp_path / "in"
    folder.mkdir()
    good = sorted((pathlib.Path(synthetic_root) / "data" / "test").glob("*.jpg"))
    for path in good:
        (folder / path.name).write_bytes(path.read_bytes())
    data = good[0].read_bytes()
    gray = cv2.imread(str(good[0]), cv2.IMREAD_GRAYSCALE)
    # First in the folder, a header bomb: refused unread, and the run goes on.
    (folder / "0_bomb.png").write_bytes(with_png_size(cv2.imencode(".png", gray)[1].tobytes(), 60000, 60000))
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])  # truncated: no end-of-image marker
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.dcm").write_text("not an image")
    (folder / "wide.png").write_bytes(cv2.imencode(".png", np.full((10, 1000), 128, np.uint8))[1].tobytes())
    (folder / "black.png").write_bytes(cv2.imencode(".png", np.zeros((300, 120), np.uint16))[1].tobytes())
    (folder / "trailer.jpg").write_bytes(data + b"\x00" * 4000)  # bytes after the end marker
    (folder / "turned.jpg").write_bytes(exif_jpeg(np.ascontiguousarray(np.rot90(gray)), 6))  # stored sideways, EXIF 6 turns it back
    out = tmp_path / "out"
    args = ["--workdir", str(exported["workdir"]), str(folder), str(tmp_path / "missing.jpg"), "--out", str(out), "--overlays", "--quiet"]
    assert predict.main(args) == 1
    rows = {pathlib.Path(row["file"]).name: row for row in read_csv(out / "predictions.csv")}
    assert {name for name, row in rows.items() if row["status"] == "ok"} == {path.name for path in good} | {"trailer.jpg", "turned.jpg"}
    assert (int(rows["turned.jpg"]["height"]), int(rows["turned.jpg"]["width"])) == gray.shape  # upright
    assert rows["trailer.jpg"]["cobb_largest_deg"] == rows[good[0].name]["cobb_largest_deg"]
    bad = {name: row["error"] for name, row in rows.items() if row["status"] == "error"}
    assert set(bad) == {"0_bomb.png", "cut.jpg", "empty.png", "text.dcm", "missing.jpg", "wide.png", "black.png"}
    assert "image too large: 60000x60000" in bad["0_bomb.png"] and str(folder / "0_bomb.png") in bad["0_bomb.png"]
    assert "truncated" in bad["cut.jpg"] and str(folder / "cut.jpg") in bad["cut.jpg"]
    assert "empty file" in bad["empty.png"] and "not a JPEG, PNG or DICOM" in bad["text.dcm"]
    assert "extreme aspect ratio" in bad["wide.png"] and "blank image" in bad["black.png"]
    assert "no such file" in bad["missing.jpg"]
    document = json.loads((out / "predictions.json").read_text())
    assert document["summary"] == {"images": 11, "predicted": 4, "spine_not_found": 0, "failed": 7, "low_confidence": 0, "severity": document["summary"]["severity"]}
    assert [row["file"] for row in document["images"]] == [row["file"] for row in read_csv(out / "predictions.csv")]
    assert sorted(path.name for path in out.iterdir()) == ["overlays", "predictions.csv", "predictions.json"]
    out_text = capsys.readouterr()
    assert "11 images: 4 predicted, 7 failed" in out_text.out and "truncated" in out_text.err
    # Overlays: one per good image, the radiograph's aspect ratio under a caption, not blank.
    for path in good:
        picture = cv2.imread(rows[path.name]["overlay"])
        height, width = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape
        scale = min(1024, max(512, height)) / height
        assert picture.shape[1] == round(width * scale) and picture.shape[0] > round(height * scale) and picture.std() > 0
    # A second run into the same folder is refused and leaves the report as it was.
    before = (out / "predictions.csv").read_bytes()
    assert predict.main(args) == 2
    assert (out / "predictions.csv").read_bytes() == before
