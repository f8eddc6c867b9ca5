"""predict and its library (serving/analysis.py): input discovery, file formats, workdir vs
SavedModel, failures in a folder, the report files and overlays."""

import csv
import dataclasses
import json
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from seg4reg_tf import curve, predict
from seg4reg_tf.config import PredictConfig
from seg4reg_tf.data import radiographs
from seg4reg_tf.serving import analysis, loaded_system, report
from tests.harness import drawn_spine, drawn_system, write_dicom

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


@pytest.fixture(scope="module")
def workdir_model(exported):
    return loaded_system.load_workdir(str(exported["workdir"]))


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
def test_segmenter_flips_apply_to_a_workdir_and_are_refused_with_a_saved_model(exported, tmp_path, capsys):
    """`--segmenter-flips` sets the loaded workdir's `inference.segmenter_flips` (which
    `predict_images` applies; tests/test_export.py); a SavedModel has its export's choice
    built in, so the option is refused there, before any report is written."""
    assert loaded_system.load_workdir(str(exported["workdir"]), segmenter_flips=True).config.inference.segmenter_flips is True
    assert exported["config"].inference.segmenter_flips is False  # the workdir's own setting
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--saved-model", str(exported["path"]), "x.jpg", "--out", str(tmp_path / "out"), "--segmenter-flips"])
    assert exit_.value.code == 2 and "--segmenter-flips needs --workdir" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


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


def test_end_vertebrae_are_named_t1_to_l5():
    assert analysis.end_vertebrae_names([[5, 11], [0, 5], [11, 16]]) == ["T6–T12", "T1–T6", "T12–L5"]
    assert analysis.end_vertebrae_names([[-1, -1]] * 3) == ["", "", ""]


def overlay_scene():
    """A drawn spine on a 600×300 gray radiograph, an empty mask and CAM at 64×32, and the
    letterbox between them: (landmarks, pixels, mask, cam, letterbox)."""
    from seg4reg_tf.data import synthetic

    rng = synthetic.image_rng(0, "overlay-test", 0)
    spine = synthetic.draw_spine(rng, 600, 300, synthetic.SyntheticConfig())
    pixels = np.full((600, 300), 0.5, np.float32)
    mask, cam = np.zeros((64, 32), np.float32), np.zeros((2, 1), np.float32)
    return spine.landmarks, pixels, mask, cam, (64 / 600, 0.0, (32 - 300 * 64 / 600) / 2)


def amber_pixels(picture):  # anti-aliased lines blend into the background
    blue, green, red = (picture[..., channel].astype(int) for channel in range(3))
    return int(((blue < 80) & (green > 150) & (red > 180)).sum())


def test_overlay_draws_the_end_plates_of_the_largest_curve():
    from seg4reg_tf.serving import overlay

    landmarks, pixels, mask, cam, letterbox = overlay_scene()
    assert overlay.ENDPLATE_COLOUR == (0, 215, 255)  # BGR amber

    plain = overlay.render(pixels, mask, cam, letterbox, ["x"])
    marked = overlay.render(pixels, mask, cam, letterbox, ["x"], landmarks=landmarks, curves=[((3, 10), "MT 30.0 deg")])
    assert amber_pixels(plain) == 0 and amber_pixels(marked) > 200  # two lines across a 300-pixel width
    # the upper line passes through the upper end plate's middle (displayed at 600 rows: scale 1)
    top = (landmarks[12] + landmarks[13]) / 2
    x, y = np.round(top).astype(int)
    band = marked[-600:][y - 2 : y + 3, x - 2 : x + 3]
    assert amber_pixels(band) > 0


def test_apply_threads_sets_the_pools_before_tensorflow_starts():
    code = ("from seg4reg_tf.serving.loaded_system import apply_threads; import tensorflow as tf; assert apply_threads(1, 1); "
            "tf.constant(1.0) + 1.0; t = tf.config.threading; print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads()); "
            "print(apply_threads(2, 1))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["1", "1", "False"]  # pools fixed once TensorFlow has started


@pytest.mark.slow
def test_the_vertebra_route_fills_the_row_and_draws_the_fitted_vertebrae(workdir_model, synthetic_root, tmp_path):
    """A system answering with the vertebra route (the `exported` fixture's N_S has the tilt
    head): its angles in the row, its end vertebrae named, its 17 vertebrae on the overlay."""
    from seg4reg_tf.serving import overlay

    def by_vertebrae(images, fine_images=None):
        out = workdir_model.run(images, fine_images)
        return {**out, "cobb_angles": out["cobb_angles_vertebrae"]}

    vertebral = dataclasses.replace(workdir_model, run=by_vertebrae, route="vertebrae")
    path = sorted((pathlib.Path(synthetic_root) / "data" / "test").glob("*.jpg"))[0]
    radiograph = radiographs.read_radiograph(str(path))
    row = analysis.predict_radiograph(vertebral, radiograph, PredictConfig(), tmp_path / "v.png")
    centre_line = analysis.predict_radiograph(workdir_model, radiograph, PredictConfig(), tmp_path / "c.png")
    assert centre_line["route"] == workdir_model.route and centre_line["overlay"] == str(tmp_path / "c.png")
    assert row["status"] == "ok" and row["route"] == "vertebrae"
    assert [row[field] for field in report.ANGLE_FIELDS] == [row[field] for field in report.VERTEBRAE_FIELDS]
    assert all(row[field] is not None for field in report.VERTEBRAE_FIELDS)
    outputs = workdir_model.run(workdir_model.decode(radiograph.encoded, str(path))[0][None].numpy())
    assert [row[field] for field in report.END_VERTEBRAE_FIELDS] == analysis.end_vertebrae_names(outputs["vertebra_end_vertebrae"][0])

    def sky_blue(picture):
        blue, green, red = (picture[..., channel].astype(int) for channel in range(3))
        return int(((blue > 200) & (green > 150) & (red < 80)).sum())

    assert overlay.VERTEBRA_COLOUR == (255, 200, 0)
    # the CAM's colour map may hold such pixels too: the outlines add to them
    assert sky_blue(cv2.imread(str(tmp_path / "v.png"))) > sky_blue(cv2.imread(str(tmp_path / "c.png"))) + 100


def test_overlay_draws_each_curve_once():
    from seg4reg_tf.serving import overlay

    landmarks, pixels, mask, cam, letterbox = overlay_scene()
    largest = ((3, 10), "MT 30.0 deg")
    alone = amber_pixels(overlay.render(pixels, mask, cam, letterbox, ["x"], landmarks=landmarks, curves=[largest]))
    repeated = amber_pixels(overlay.render(pixels, mask, cam, letterbox, ["x"], landmarks=landmarks, curves=[largest, ((3, 10), "MT 30.0 deg"), ((-1, -1), "")]))
    more = amber_pixels(overlay.render(pixels, mask, cam, letterbox, ["x"], landmarks=landmarks, curves=[largest, ((0, 3), "PT 12.0 deg"), ((10, 16), "TL/L 15.0 deg")]))
    assert repeated == alone and more > alone + 200
    # the lower end plate of L5 (the third curve's lower end) is marked
    bottom = (landmarks[66] + landmarks[67]) / 2
    x, y = np.round(bottom).astype(int)
    picture = overlay.render(pixels, mask, cam, letterbox, ["x"], landmarks=landmarks, curves=[largest, ((10, 16), "TL/L 15.0 deg")])
    assert amber_pixels(picture[-600:][y - 2 : y + 3, x - 2 : x + 3]) > 0
    assert amber_pixels(overlay.render(pixels, mask, cam, letterbox, ["x"], curves=[largest])) == 0  # no landmarks, nothing drawn


def test_the_row_carries_the_clinical_reading(tmp_path):
    """A triple curve drawn at known levels (see test_clinical_reading): the region columns,
    the major curve, the Lenke type and the side convention; from a DICOM whose
    PatientOrientation says its rows run toward the patient's right, the sides swap."""
    landmarks = drawn_spine({"T1": 15, "T6": -15, "T12": 25, "L5": -15})
    model = drawn_system(landmarks)
    stored = np.random.default_rng(0).integers(0, 4096, (768, 640))
    png = tmp_path / "spine.png"
    cv2.imwrite(str(png), (stored // 16).astype(np.uint8))
    row = analysis.predict_radiograph(model, radiographs.read_radiograph(str(png)), PredictConfig(), tmp_path / "o.png")
    assert (row["curve_pt_levels"], row["curve_mt_levels"], row["curve_tll_levels"]) == ("T1–T6", "T6–T12", "T12–L5")
    assert (row["curve_pt_apex"], row["curve_mt_apex"], row["curve_tll_apex"]) == ("T3–T4", "T9", "L2–L3")
    assert row["curve_mt_deg"] == pytest.approx(40.0) and row["curve_pt_deg"] == pytest.approx(30.0)
    assert (row["curve_pt_convexity"], row["curve_mt_convexity"], row["curve_tll_convexity"]) == ("right", "left", "right")
    assert row["major_curve"] == "MT" and row["lenke_type_provisional"] == 4 and row["curve_mt_severity"] == "moderate"
    assert "standard display" in row["convexity_convention"] and "provisional" in row["lenke_note"]
    assert [c["region"] for c in row["curves"]] == ["PT", "MT", "TL/L"]
    assert row["notice"] == report.NOTICE and "not a medical device" in report.NOTICE
    assert cv2.imread(row["overlay"]) is not None

    dicom_path = write_dicom(tmp_path / "spine.dcm", stored, PatientOrientation=["R", "F"])
    mirrored = analysis.predict_radiograph(model, radiographs.read_radiograph(str(dicom_path)), PredictConfig())
    assert (mirrored["curve_pt_convexity"], mirrored["curve_mt_convexity"]) == ("left", "right")
    assert "PatientOrientation" in mirrored["convexity_convention"]
    line = report.csv_line(mirrored).decode()
    assert "T6–T12" in line and report.NOTICE in line


def test_the_cam_is_off_by_default_and_stays_inside_the_spine():
    from seg4reg_tf.serving import overlay

    landmarks, pixels, _, _, letterbox = overlay_scene()
    mask = np.zeros((64, 32), np.float32)
    mask[10:50, 12:20] = 1.0
    cam = np.linspace(0, 1, 2 * 1, dtype=np.float32).reshape(2, 1)
    plain = overlay.render(pixels, mask, None, letterbox, ["x"])
    tinted = overlay.render(pixels, mask, cam, letterbox, ["x"])
    grey = plain[-600:].astype(int)
    assert (np.ptp(grey, axis=2) <= 1).sum() > 0.9 * grey[..., 0].size  # no heat map: grey, but the green outline
    changed = np.any(tinted[-600:] != plain[-600:], axis=2)
    spine = overlay.to_display(mask, letterbox, 1.0, (300, 600)) > 0.5
    assert changed.any() and not (changed & ~spine).any()  # the heat map only inside the outline


def test_end_plate_lines_end_at_the_image_edge():
    from seg4reg_tf.serving import overlay

    for point, direction in (((5.0, 50.0), (-1.0, 0.0)), ((290.0, 10.0), (0.6, -0.8)), ((150.0, 300.0), (0.0, 1.0))):
        reach = overlay.inside_reach(np.array(point), np.array(direction), (600, 300, 3), 1000.0)
        end = np.array(point) + reach * np.array(direction)
        assert -1e-6 <= end[0] <= 299 + 1e-6 and -1e-6 <= end[1] <= 599 + 1e-6
        assert np.isclose(end[0], 0) or np.isclose(end[0], 299) or np.isclose(end[1], 0) or np.isclose(end[1], 599)
    assert overlay.inside_reach(np.array([150.0, 300.0]), np.array([1.0, 0.0]), (600, 300, 3), 20.0) == 20.0
