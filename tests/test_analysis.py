"""One radiograph through a loaded system into a report row (serving/analysis.py): the
answering route, the end vertebrae's names, the clinical reading."""

import dataclasses
import pathlib

import cv2
import numpy as np
import pytest

from seg4reg_tf.config import PredictConfig
from seg4reg_tf.data import radiographs
from seg4reg_tf.serving import analysis, overlay, report
from tests.harness import drawn_spine, drawn_system, write_dicom


def test_end_vertebrae_are_named_t1_to_l5():
    assert analysis.end_vertebrae_names([[5, 11], [0, 5], [11, 16]]) == ["T6–T12", "T1–T6", "T12–L5"]
    assert analysis.end_vertebrae_names([[-1, -1]] * 3) == ["", "", ""]


@pytest.mark.slow
def test_the_vertebra_route_fills_the_row_and_draws_the_fitted_vertebrae(workdir_model, synthetic_root, tmp_path):
    """A system answering with the vertebra route (the `exported` fixture's N_S has the tilt
    head): its angles in the row, its end vertebrae named, its 17 vertebrae on the overlay."""
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
