"""The viewer page's web application (Flask): one page, and one endpoint that reads a
dropped radiograph with the system and answers what the page draws.

    GET  /                          the page (seg4reg_tf/serving/viewer_page.html, no asset
                                    from the internet)
    POST /api/predict?name=<file>   body: the file's bytes → JSON {"name", "row" (predict's
                                    report row), "image" (the radiograph as a display-sized
                                    PNG, base64), "layers" (outline, vertebrae, curves in
                                    display pixels), "sr" (the DICOM SR, base64, for a DICOM
                                    whose spine is found, else null), "sr_note"}

Uploads go through predict's admission (`radiographs.radiograph_from_bytes`: format and size
from the header before decoding) after Flask's byte limit on the request body. The body is
read into memory, never written to disk, and the name only labels the answer: no path from
the client is ever opened. Errors are answered as {"error": words} with 400 (the image),
413 (too large) or 500 (logged on the server; the page never sees a stack trace).
"""

from __future__ import annotations

import base64
import logging
import pathlib

import cv2
import flask
import numpy as np
from werkzeug.exceptions import HTTPException

from seg4reg_tf.data import radiographs
from seg4reg_tf.geometry import VERTEBRA_NAMES
from seg4reg_tf.serving import analysis, client, dicom_results, overlay

PAGE = pathlib.Path(__file__).with_name("viewer_page.html")
logger = logging.getLogger(__name__)


def shown(points, scale: float) -> list:
    """Original-pixel points → display pixels rounded to 0.1, as nested lists (JSON)."""
    return np.round(overlay.to_display_points(points, scale), 1).tolist()


def layers(seen: analysis.Analysis, height: int, width: int, scale: float) -> dict:
    """What the page draws over the radiograph, in display pixels: {"outline": contours of
    the spine mask [[x, y], ...], "vertebrae": 17 × 4 corners (TL, TR, BR, BL) or [],
    "curves": [{"label", "upper": [[x, y], [x, y]], "lower": [...], "names": [upper, lower]}]}."""
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    spine = overlay.to_display(seen.mask, seen.letterbox, scale, size) > 0.5
    contours, _ = cv2.findContours(spine.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    drawn = {"outline": [contour[:, 0, :].tolist() for contour in contours], "vertebrae": [], "curves": []}
    if seen.points is None:
        return drawn
    quads = np.asarray(seen.points).reshape(17, 4, 2)
    drawn["vertebrae"] = shown(quads[:, [0, 1, 3, 2]], scale)
    for (upper, lower), label in seen.curves:
        if min(upper, lower) < 0 or upper == lower:
            continue
        drawn["curves"].append({
            "label": label, "upper": shown(quads[upper, :2], scale), "lower": shown(quads[lower, 2:], scale),
            "names": [VERTEBRA_NAMES[upper], VERTEBRA_NAMES[lower]],
        })  # fmt: skip
    return drawn


def sr_download(radiograph, seen: analysis.Analysis, route: str) -> tuple[str | None, str]:
    """The DICOM SR of a DICOM input whose spine was found, base64, and a note otherwise."""
    refusal = analysis.dicom_refusal(radiograph, seen.reading)
    if refusal:
        return None, f"no DICOM SR: {refusal}"
    data = dicom_results.encode(dicom_results.structured_report(radiograph.dicom.dataset, seen.reading, route))
    return base64.b64encode(data).decode("ascii"), ""


def answer(model, settings, data: bytes, name: str) -> dict:
    """One uploaded file → the endpoint's JSON (see the module docstring).

    Raises:
        ValueError: the file is refused or unreadable (the message names it and why).
        client.ServingError: TF Serving's request failed.
    """
    radiograph = radiographs.radiograph_from_bytes(data, name, model.max_pixels)
    seen = analysis.analyse(model, radiograph, settings)
    height, width = radiograph.pixels.shape
    scale = overlay.display_scale_for(height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    gray = cv2.resize(radiograph.pixels, size, interpolation=cv2.INTER_AREA)
    png = cv2.imencode(".png", np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8))[1].tobytes()
    sr, note = sr_download(radiograph, seen, model.route)
    return {
        "name": name, "row": seen.row, "sr": sr, "sr_note": note,
        "image": {"png": base64.b64encode(png).decode("ascii"), "width": size[0], "height": size[1]},
        "layers": layers(seen, height, width, scale),
    }  # fmt: skip


def create_app(model, settings, max_upload_bytes: int = 64 << 20) -> flask.Flask:
    """The Flask application of the viewer.

    Args:
        model: a `loaded_system.LoadedSystem` or `loaded_system.ServedSystem`.
        settings: predict's settings (TTA with a loaded system).
        max_upload_bytes: the largest request body accepted (413 beyond).
    """
    app = flask.Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes
    page = PAGE.read_text(encoding="utf-8")

    @app.get("/")
    def index():
        response = flask.Response(page, mimetype="text/html")
        # nothing from elsewhere: scripts, styles and images come from this page itself
        response.headers["Content-Security-Policy"] = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; connect-src 'self'"
        return response

    @app.post("/api/predict")
    def predict():
        name = pathlib.PurePath(flask.request.args.get("name", "upload")).name[:200] or "upload"
        data = flask.request.get_data(cache=False)
        if not data:
            return flask.jsonify(error=f"{name}: empty file"), 400
        try:
            return flask.jsonify(answer(model, settings, data, name))
        except ValueError as error:
            return flask.jsonify(error=str(error)), 400
        except client.ServingError as error:
            return flask.jsonify(error=f"TF Serving: {error}"), 502

    @app.errorhandler(413)
    def too_large(_error):
        return flask.jsonify(error=f"too large: the viewer takes files of at most {max_upload_bytes / (1 << 20):g} MB"), 413

    @app.errorhandler(Exception)
    def internal(error):
        if isinstance(error, HTTPException):
            return flask.jsonify(error=error.description), error.code
        logger.exception("viewer: internal error")
        return flask.jsonify(error="internal error: the server's log has the details"), 500

    return app
