"""DICOM SR and SEG of a DICOM input (serving/dicom_results.py via predict's row): valid
for dciodvfy, read back with highdicom to the row's curves and N_S's mask, in the source's
study and referencing it; refused in words for JPEG/PNG, a spine not found, missing UIDs."""

from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np
import pydicom
import pytest

from seg4reg_tf.config import PredictConfig
from seg4reg_tf.data import radiographs
from seg4reg_tf.serving import analysis
from tests.harness import drawn_spine, drawn_system, write_dx

TRIPLE = {"T1": 15, "T6": -15, "T12": 25, "L5": -15}


def spine_mask(height=768, width=640):
    mask = np.zeros((height, width), np.float32)
    mask[90:660, 250:350] = 0.9
    return mask


def stored_image(height=768, width=640):
    return np.random.default_rng(0).integers(0, 4096, (height, width))


def dciodvfy_errors(path) -> list[str]:
    """dicom3tools' validator's error lines for one file (Debian package dicom3tools,
    installed by .ci/run); fails, not skips, when the validator is missing."""
    assert shutil.which("dciodvfy"), "dciodvfy not found: install Debian's dicom3tools (.ci/run does)"
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def predict_into(tmp_path, source_path, mask=None, found=True):
    model = drawn_system(drawn_spine(TRIPLE), mask=spine_mask() if mask is None else mask, found=found)
    radiograph = radiographs.read_radiograph(str(source_path))
    return analysis.predict_radiograph(model, radiograph, PredictConfig(), dicom_target=tmp_path / "out" / "spine")


def test_sr_and_seg_are_valid_and_read_back(tmp_path):
    import highdicom as hd

    source_path = write_dx(tmp_path / "spine.dcm", stored_image())
    source = pydicom.dcmread(source_path)
    row = predict_into(tmp_path, source_path)
    assert row["dicom_sr"].endswith("spine.sr.dcm") and row["dicom_seg"].endswith("spine.seg.dcm")
    for key in ("dicom_sr", "dicom_seg"):
        assert dciodvfy_errors(row[key]) == [], key

    sr = hd.sr.srread(row["dicom_sr"])
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.PatientID == source.PatientID
    groups = sr.content.get_image_measurement_groups()
    assert len(groups) == len(row["curves"]) == 3
    for group, curve in zip(groups, row["curves"]):
        (measurement,) = group.get_measurements()
        assert measurement.name.meaning == "Cobb angle" and measurement.unit.value == "deg"
        assert measurement.value == pytest.approx(curve["cobb_deg"])
        meanings = {evaluation.name.meaning: evaluation.value.meaning for evaluation in group.get_qualitative_evaluations()}
        assert meanings["Upper end vertebra"] == f"{curve['upper_end_vertebra']} vertebra"
        assert meanings["Lower end vertebra"] == f"{curve['lower_end_vertebra']} vertebra"
        assert meanings["Laterality"] == curve["convexity"].capitalize()
        (image,) = group.source_images
        assert image.referenced_sop_instance_uid == source.SOPInstanceUID
    assert "Lenke type 4 (provisional)" in [e.value.meaning for e in groups[1].get_qualitative_evaluations()]
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert "not a medical device" in sr.SeriesDescription

    seg = hd.seg.segread(row["dicom_seg"])
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    np.testing.assert_array_equal(seg.pixel_array.astype(bool).reshape(768, 640), spine_mask() > 0.5)


def test_a_dicom_without_orientation_still_gets_its_results(tmp_path):
    source_path = write_dx(tmp_path / "spine.dcm", stored_image(), PatientOrientation=None)
    row = predict_into(tmp_path, source_path)
    assert "standard display" in row["convexity_convention"]
    assert dciodvfy_errors(row["dicom_seg"]) == [] and dciodvfy_errors(row["dicom_sr"]) == []


def test_jpeg_png_a_missing_spine_and_missing_uids_are_refused_in_words(tmp_path):
    png = tmp_path / "spine.png"
    cv2.imwrite(str(png), (stored_image() // 16).astype(np.uint8))
    row = predict_into(tmp_path, png)
    assert "a PNG file has no DICOM study to reference" in row["dicom_refused"] and "dicom_sr" not in row

    row = predict_into(tmp_path, write_dx(tmp_path / "empty.dcm", stored_image()), found=False)
    assert "spine not found" in row["dicom_refused"]

    row = predict_into(tmp_path, write_dx(tmp_path / "nouid.dcm", stored_image(), StudyInstanceUID=None))
    assert "has no StudyInstanceUID" in row["dicom_refused"] and "nouid.dcm" in row["dicom_refused"]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # nothing written for any of them
