"""The PACS round trip against a real PACS (Orthanc with its DICOMweb plugin, started on
loopback by the fixture): a DX stored in Orthanc is pulled, predicted, and its SR and SEG
are found in the same study; a study that does not exist, a refused login, a PACS that
does not answer and a refused store give clear errors; credentials never leak."""

from __future__ import annotations

import json
import logging
import socket

import numpy as np
import pydicom
import pytest
import requests

from seg4reg_tf import predict
from seg4reg_tf.config import PredictConfig
from seg4reg_tf.serving import pacs, report
from tests.harness import drawn_spine, drawn_system, write_dx
from tests.orthanc import PASSWORD, USER, running_orthanc

TRIPLE = {"T1": 15, "T6": -15, "T12": 25, "L5": -15}
SR_CLASS, SEG_CLASS = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.66.4"
LOGIN = {pacs.USER: USER, pacs.PASSWORD: PASSWORD}


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as url:
        yield url


def model():
    mask = np.zeros((768, 640), np.float32)
    mask[90:660, 250:350] = 0.9
    return drawn_system(drawn_spine(TRIPLE), mask=mask)


def upload(url, tmp_path, name="spine.dcm"):
    """Stores a DX radiograph in the PACS; returns its dataset."""
    source = pydicom.dcmread(write_dx(tmp_path / name, np.random.default_rng(0).integers(0, 4096, (768, 640))))
    pacs.connect(url, LOGIN).store_instances([source])
    return source


def classes_in(url, study) -> list[str]:
    return sorted(item["00080016"]["Value"][0] for item in pacs.connect(url, LOGIN).search_for_instances(study_instance_uid=study))


def test_a_study_goes_to_the_system_and_its_results_come_back(orthanc, tmp_path):
    source = upload(orthanc, tmp_path)
    writer = report.ReportWriter(tmp_path / "out", {})
    rows = pacs.round_trip(model(), pacs.connect(orthanc, LOGIN), source.StudyInstanceUID, None, PredictConfig(), writer, tmp_path / "out" / "dicom")
    writer.close()
    (row,) = rows
    assert row["status"] == "ok" and row["stored_in_pacs"] is True
    assert row["file"].endswith(f"/studies/{source.StudyInstanceUID}/series/{source.SeriesInstanceUID}/instances/{source.SOPInstanceUID}")
    assert classes_in(orthanc, source.StudyInstanceUID) == sorted([source.SOPClassUID, SR_CLASS, SEG_CLASS])
    # the stored SR holds the row's curves
    client = pacs.connect(orthanc, LOGIN)
    (sr_item,) = client.search_for_instances(study_instance_uid=source.StudyInstanceUID, search_filters={"SOPClassUID": SR_CLASS})
    import highdicom as hd

    sr = client.retrieve_instance(source.StudyInstanceUID, sr_item["0020000E"]["Value"][0], sr_item["00080018"]["Value"][0])
    values = [group.get_measurements()[0].value for group in hd.sr.ComprehensiveSR.from_dataset(sr).content.get_image_measurement_groups()]
    assert values == pytest.approx([curve["cobb_deg"] for curve in row["curves"]])

    # a second run reads the radiograph again, not the results it stored
    writer = report.ReportWriter(tmp_path / "again", {})
    again = pacs.round_trip(model(), client, source.StudyInstanceUID, None, PredictConfig(), writer, tmp_path / "again" / "dicom")
    writer.close()
    assert [r["status"] for r in again] == ["ok"]


def test_a_study_that_does_not_exist_is_named(orthanc):
    with pytest.raises(pacs.PacsError, match="study 1.2.3.999: no such study"):
        pacs.find_instances(pacs.connect(orthanc, LOGIN), "1.2.3.999")


def test_a_refused_login_is_an_error_without_the_password(orthanc, tmp_path):
    source = upload(orthanc, tmp_path)
    with pytest.raises(pacs.PacsError, match="HTTP 401") as caught:
        pacs.find_instances(pacs.connect(orthanc, {pacs.USER: USER, pacs.PASSWORD: "wrong-password-1234"}), source.StudyInstanceUID)
    assert "wrong-password-1234" not in str(caught.value) and PASSWORD not in str(caught.value)


def test_a_pacs_that_does_not_answer_times_out_in_words():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts connections and never answers
    try:
        client = pacs.connect(f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web", {}, timeout=1.0)
        with pytest.raises(pacs.PacsError, match="no answer within the timeout"):
            pacs.find_instances(client, "1.2.3")
    finally:
        listener.close()


def test_a_refused_store_keeps_the_rows_and_stores_nothing(orthanc, tmp_path, monkeypatch):
    source = upload(orthanc, tmp_path)
    client = pacs.connect(orthanc, LOGIN)

    def refuse(datasets, study_instance_uid=None):
        response = requests.Response()
        response.status_code, response.reason = 503, "Service Unavailable"
        raise requests.HTTPError(response=response)

    monkeypatch.setattr(client, "store_instances", refuse)
    writer = report.ReportWriter(tmp_path / "out", {})
    with pytest.raises(pacs.PacsError, match="storing 2 results into study .* failed: HTTP 503"):
        pacs.round_trip(model(), client, source.StudyInstanceUID, None, PredictConfig(), writer, tmp_path / "out" / "dicom")
    writer.close()
    (row,) = json.loads((tmp_path / "out" / "predictions.json").read_text())["images"]
    assert row["status"] == "ok" and row["stored_in_pacs"] is False
    assert classes_in(orthanc, source.StudyInstanceUID) == [source.SOPClassUID]  # nothing half-stored


def test_credentials_come_from_the_environment_or_a_file_never_the_url(tmp_path):
    assert pacs.credentials({pacs.TOKEN: "t0k"}) == {"token": "t0k"}
    assert pacs.credentials({pacs.USER: "u", pacs.PASSWORD: "p"}) == {"user": "u", "password": "p"}
    (tmp_path / "secret.json").write_text(json.dumps({"user": "u", "password": "p"}))
    assert pacs.credentials({pacs.CREDENTIALS: str(tmp_path / "secret.json")}) == {"user": "u", "password": "p"}
    with pytest.raises(ValueError, match="not JSON"):
        (tmp_path / "bad.json").write_text("user=u")
        pacs.credentials({pacs.CREDENTIALS: str(tmp_path / "bad.json")})
    with pytest.raises(ValueError, match="PASSWORD is not"):
        pacs.credentials({pacs.USER: "u"})
    with pytest.raises(ValueError, match="holds credentials"):
        pacs.connect("http://u:p@127.0.0.1:1/dicom-web", {})


def test_the_dicomweb_arguments_are_checked_and_no_secret_is_logged(orthanc, tmp_path, monkeypatch, capsys, caplog):
    """predict's checks of the DICOMweb arguments, and the client made from the environment
    on a real PACS: its requests and errors log no password."""
    for key, value in LOGIN.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit):
        predict.main(["--saved-model", str(tmp_path), "--dicomweb", orthanc, "--out", str(tmp_path / "o")])  # no --study
    with pytest.raises(SystemExit):
        predict.main(["--saved-model", str(tmp_path), "--study", "1.2.3", "--out", str(tmp_path / "o")])  # no --dicomweb
    caplog.set_level(logging.DEBUG)
    with pytest.raises(pacs.PacsError, match="no such study"):
        pacs.find_instances(pacs.connect(orthanc), "1.2.3.4.5.6")
    token = "token-that-must-not-be-logged-42"
    with pytest.raises(pacs.PacsError, match="HTTP 401"):  # Orthanc takes no bearer tokens
        pacs.find_instances(pacs.connect(orthanc, {pacs.TOKEN: token}), "1.2.3.4.5.6")
    captured = capsys.readouterr()
    assert "GET" in caplog.text  # the client's requests were logged
    assert PASSWORD not in captured.out + captured.err + caplog.text and token not in captured.out + captured.err + caplog.text
