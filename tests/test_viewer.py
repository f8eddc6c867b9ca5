"""The viewer page in a real headless browser (Debian's chromium driven by Playwright; .ci/run
installs both): a synthetic X-ray and a DICOM made from it show the SavedModel's angles for
the same bytes, the overlay is drawn and its toggles change it, downloads work, bad files
are refused in words while the page keeps working, concurrent requests get their own
answers, and the --tf-serving mode answers the same through the loopback TF Serving
stand-in. No request leaves loopback."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import pathlib
import shutil
import threading
import urllib.parse
import urllib.request

import cv2
import numpy as np
import pydicom
import pytest
import tensorflow as tf

from seg4reg_tf import viewer
from seg4reg_tf.config import PredictConfig
from seg4reg_tf.data import radiographs
from seg4reg_tf.serving import analysis, loaded_system, report
from seg4reg_tf.serving.loopback_server import LoopbackServer
from seg4reg_tf.serving.viewer_app import create_app
from tests.harness import write_dx

CHROMIUM = "/usr/bin/chromium"
ANGLES = report.ANGLE_FIELDS + report.REGRESSOR_FIELDS + report.GEOMETRIC_FIELDS
# set to a path to keep the page's screenshot (docs/viewer.png is made this way)
SCREENSHOT = os.environ.get("SEG4REG_VIEWER_SCREENSHOT")


@pytest.fixture(scope="module")
def browser():
    assert shutil.which(CHROMIUM) or pathlib.Path(CHROMIUM).exists(), f"{CHROMIUM} not found: install Debian's chromium (.ci/run does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Running:
    """The viewer's real server (waitress) on a free loopback port, in a thread."""

    def __init__(self, model, max_upload_bytes=8 << 20):
        self.server = viewer.make_server(create_app(model, PredictConfig(), max_upload_bytes), "127.0.0.1", 0, 4)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.close()


@pytest.fixture(scope="module")
def loaded(exported):
    return loaded_system.load_saved_model(str(exported["path"]))


@pytest.fixture(scope="module")
def files(synthetic_root, tmp_path_factory):
    """A synthetic X-ray (JPEG), a DICOM of the same pixels, a corrupt JPEG, a PNG whose
    header claims 100000 × 100000 pixels (a bomb), and a file over the 8 MB limit."""
    folder = tmp_path_factory.mktemp("viewer-files")
    jpeg = sorted((pathlib.Path(synthetic_root) / "data" / "test").glob("*.jpg"))[0]
    gray = cv2.imread(str(jpeg), cv2.IMREAD_GRAYSCALE)
    made = {"jpeg": folder / "xray.jpg", "dicom": write_dx(folder / "xray.dcm", gray.astype(np.uint16) * 16)}
    shutil.copy(jpeg, made["jpeg"])
    made["corrupt"] = folder / "corrupt.jpg"
    made["corrupt"].write_bytes(jpeg.read_bytes()[:600])
    png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    made["bomb"] = folder / "bomb.png"
    made["bomb"].write_bytes(png[:16] + (100000).to_bytes(4, "big") * 2 + png[24:])
    made["large"] = folder / "large.jpg"
    made["large"].write_bytes(jpeg.read_bytes() + b"\0" * (9 << 20))
    return made


def shown_angles(card) -> str:
    return card.locator("tr", has_text="AASCE angles").locator("td").inner_text()


def expected_angles(values) -> str:
    return " / ".join("–" if not np.isfinite(v) else f"{v:.1f}°" for v in values)


def open_page(browser, url):
    """A page that may only talk to `url`; every other request is recorded and aborted."""
    page = browser.new_page(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    outside, errors = [], []

    def guard(route):
        if route.request.url.startswith(url) or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(url + "/")
    return page, outside, errors


def card_of(page, name):
    """The card of an upload once it is answered or refused (the page marks it so)."""
    card = page.locator(f"section.card[data-file='{name}'][data-state]").first
    card.wait_for(timeout=120000)
    return card


def test_the_page_shows_the_savedmodels_answer(browser, loaded, exported, files, tmp_path):
    with Running(loaded) as running:
        page, outside, errors = open_page(browser, running.url)
        page.set_input_files("#files", [str(files["jpeg"]), str(files["dicom"])])
        jpeg, dicom = card_of(page, "xray.jpg"), card_of(page, "xray.dcm")
        direct = exported["loaded"].signatures["serving_default"](images=tf.constant([files["jpeg"].read_bytes()]))
        assert shown_angles(jpeg) == expected_angles(direct["cobb_angles"].numpy()[0])
        # the DICOM, as predict reads it (a 16-bit PNG of its display pixels)
        row = analysis.predict_radiograph(loaded, radiographs.read_radiograph(str(files["dicom"])), PredictConfig())
        assert shown_angles(dicom) == expected_angles([row[f] if row[f] is not None else np.nan for f in report.ANGLE_FIELDS])

        overlay = jpeg.locator("[data-testid=overlay]")
        assert overlay.locator("[data-layer=outline] polygon").count() >= 1  # the spine's outline is drawn
        before = overlay.screenshot()
        jpeg.locator("input[data-toggle=outline]").uncheck()
        assert overlay.locator("[data-layer=outline]").evaluate("g => getComputedStyle(g).display") == "none"
        assert overlay.screenshot() != before  # the toggle changed the picture
        jpeg.locator("input[data-toggle=outline]").check()

        with page.expect_download() as download:
            jpeg.locator("a", has_text="JSON row").click()
        saved = json.loads(pathlib.Path(download.value.path()).read_text())
        assert saved["file"] == "xray.jpg" and saved["notice"].startswith("Research software")
        assert "a JPEG file has no DICOM study" in jpeg.inner_text()
        if row["status"] == "ok":  # the SR exists for a DICOM whose spine is found
            with page.expect_download() as download:
                dicom.locator("a", has_text="DICOM SR").click()
            assert pydicom.dcmread(download.value.path()).Modality == "SR"
        if SCREENSHOT:
            page.screenshot(path=SCREENSHOT, full_page=True)
        assert outside == [] and errors == []
        page.close()


def test_bad_files_are_refused_in_words_and_the_page_keeps_working(browser, loaded, files):
    with Running(loaded) as running:
        page, outside, _ = open_page(browser, running.url)
        page.set_input_files("#files", [str(files["corrupt"])])
        assert "corrupt.jpg" in card_of(page, "corrupt.jpg").locator("[role=alert]").inner_text()
        page.set_input_files("#files", [str(files["bomb"])])
        bomb = card_of(page, "bomb.png").locator("[role=alert]").inner_text()
        assert "pixels" in bomb and "Traceback" not in bomb
        page.set_input_files("#files", [str(files["large"])])
        assert "too large" in card_of(page, "large.jpg").locator("[role=alert]").inner_text()
        text = pathlib.Path(files["corrupt"]).with_suffix(".txt")
        text.write_text("not an image")
        page.set_input_files("#files", [str(text)])
        assert "not a JPEG, PNG or DICOM file" in card_of(page, "corrupt.txt").locator("[role=alert]").inner_text()
        page.set_input_files("#files", [str(files["jpeg"])])  # and the next file is answered
        assert "AASCE angles" in card_of(page, "xray.jpg").inner_text()
        assert outside == []
        page.close()


def post(url, data: bytes, name: str) -> dict:
    request = urllib.request.Request(f"{url}/api/predict?name={urllib.parse.quote(name)}", data=data, method="POST")
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def test_concurrent_requests_get_their_own_answers(loaded, files):
    """Eight requests at once, of two different images: each answer is its image's."""
    flipped = cv2.imencode(".png", cv2.flip(cv2.imread(str(files["jpeg"]), cv2.IMREAD_GRAYSCALE), 1))[1].tobytes()
    images = {"a.jpg": files["jpeg"].read_bytes(), "b.png": flipped}
    with Running(loaded) as running:
        alone = {name: post(running.url, data, name) for name, data in images.items()}
        jobs = [(f"{name[0]}{i}{name[1:]}", data) for i in range(4) for name, data in images.items()]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda job: post(running.url, job[1], job[0]), jobs))
    for (name, _), answer in zip(jobs, answers):
        assert answer["name"] == name
        own = alone["a.jpg" if name.startswith("a") else "b.png"]
        assert answer["image"] == own["image"] and answer["layers"] == own["layers"]  # its own picture and drawing
        assert [answer["row"][f] for f in ANGLES] == [own["row"][f] for f in ANGLES]
    assert alone["a.jpg"]["image"] != alone["b.png"]["image"]
    assert base64.b64decode(answers[0]["image"]["png"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_tf_serving_mode_answers_like_the_loaded_export(loaded, exported, files):
    with LoopbackServer("seg4reg", str(exported["path"])) as serving:
        served = loaded_system.served_system(f"http://127.0.0.1:{serving.rest_port}", str(exported["path"]))
        with Running(served) as through, Running(loaded) as direct:
            data = files["jpeg"].read_bytes()
            remote, local = post(through.url, data, "x.jpg")["row"], post(direct.url, data, "x.jpg")["row"]
    for field in report.ANGLE_FIELDS + ("status", "route", "end_vertebrae_largest"):
        value, expected = remote[field], local[field]
        assert value == pytest.approx(expected, abs=1e-3) if isinstance(expected, float) else value == expected


def test_the_command_warns_off_loopback_and_refuses_a_missing_export(tmp_path, capsys):
    assert viewer.is_loopback("127.0.0.1") and viewer.is_loopback("::1") and viewer.is_loopback("localhost")
    assert not viewer.is_loopback("0.0.0.0") and not viewer.is_loopback("192.168.1.4")
    assert viewer.main(["--saved-model", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
