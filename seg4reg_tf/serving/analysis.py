"""The analysis of radiographs by a loaded system (`serving.loaded_system`): predict's
library (`python -m seg4reg_tf.predict` is its command line), also used by the viewer, batch
scoring and the PACS round trip. Per image: the report row (the three AASCE angles in degrees,
column 1 the largest curve; the curve type from the predicted mask's centre line; the
severity band of the largest angle; with test-time augmentation the spread of each angle over
the views and a `low_confidence` flag; the clinical reading), the overlay and the DICOM
results. A file that cannot be read or predicted becomes an error row and the run goes on.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

import keras
import numpy as np

from seg4reg_tf import clinical_reading, curve, geometric_readout
from seg4reg_tf.data import radiographs
from seg4reg_tf.geometry import VERTEBRA_NAMES
from seg4reg_tf.serving import dicom_results, overlay, report, tta
from seg4reg_tf.serving.loaded_system import LoadedSystem, ServedSystem

CAPTION_CURVE = {"C": "C curve", "S": "S curve", "straight": "straight spine", "unknown": "spine not found"}


def end_vertebrae_names(ends) -> list[str]:
    """(3, 2) vertebra indices (0 = T1 … 16 = L5, −1 unknown) → ["T6–T12", ...] ("" unknown)."""
    return [f"{VERTEBRA_NAMES[upper]}–{VERTEBRA_NAMES[lower]}" if upper >= 0 else "" for upper, lower in np.asarray(ends)]


def overlay_curves(reading: dict, ends, angles) -> list[tuple[tuple[int, int], str]]:
    """What the overlay marks: each named curve of a `clinical_reading` reading, e.g.
    ((5, 11), "MT 40.0 deg"); on a spine without a curve of 10° or more, the largest AASCE
    angle on its end vertebrae ((3, 2) `ends`, (3,) `angles` degrees) instead."""
    if reading["curves"]:
        return [((VERTEBRA_NAMES.index(c["upper_end_vertebra"]), VERTEBRA_NAMES.index(c["lower_end_vertebra"])),
                 f"{c['region']} {c['cobb_deg']:.1f} deg") for c in reading["curves"]]  # fmt: skip
    return [(tuple(int(v) for v in ends[0]), f"{float(angles[0]):.1f} deg")] if np.isfinite(angles[0]) else []


def curves_caption(reading: dict) -> str:
    """One ASCII caption line of a reading, e.g. "PT 30.0 T1-T6, MT 40.0 T6-T12 (major);
    Lenke 2 (provisional)"."""
    if not reading["curves"]:
        return "no curve of 10 deg or more"
    named = ", ".join(f"{c['region']} {c['cobb_deg']:.1f} {c['upper_end_vertebra']}-{c['lower_end_vertebra']}" + (" (major)" if c["major"] else "")
                      for c in reading["curves"])  # fmt: skip
    lenke = reading["lenke_type_provisional"]
    return named + (f"; Lenke {lenke} (provisional)" if lenke else "; no Lenke type")


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


@dataclasses.dataclass
class Analysis:
    """What the system found in one radiograph: the report row and what is drawn from it.

    Attributes:
        row: the report row (`report.FIELDS`, and the JSON-only curves).
        mask: (h, w) N_S's spine probabilities in the model frame.
        cam: (h/32, w/32) N_R's class activation map in [0, 1].
        letterbox: (3,) scale, offset_y, offset_x of the original in the model frame.
        points: (68, 2) the answering route's 17 vertebrae in original pixels, or None when
            no spine was found.
        reading: `clinical_reading.read_spine`'s result, or None.
        curves: what the overlay marks (`overlay_curves`).
        lines: the overlay's caption lines.
    """
    row: dict
    mask: np.ndarray
    cam: np.ndarray
    letterbox: np.ndarray
    points: np.ndarray | None
    reading: dict | None
    curves: list
    lines: list[str]


def analyse(model, radiograph, settings) -> Analysis:
    """One radiograph through the system (a `LoadedSystem` with the predict settings' TTA, or
    a `ServedSystem`, one view) → its `Analysis`.

    Raises:
        ValueError: the image is rejected by the preprocessing.
        client.ServingError: a served system's request failed.
    """
    if isinstance(model, ServedSystem):
        outputs = model.predict_encoded(radiograph.encoded)
        letterbox, chosen = outputs["letterbox"][0], [(False, 1.0)]
    else:
        image, letterbox, fine = model.decode(radiograph.encoded, radiograph.path)
        chosen = tta.views(settings)
        outputs = model.run(tta.augment(image, chosen), None if fine is None else tta.augment(fine, chosen))
    found = bool(outputs["spine_found"][0])  # the identity view decides
    angles, spread = tta.aggregate(outputs["cobb_angles"])
    by_regressor, _ = tta.aggregate(outputs["cobb_angles_regressor"])
    geometric, _ = tta.aggregate(outputs["cobb_angles_geometric"])
    by_vertebrae, _ = tta.aggregate(outputs["cobb_angles_vertebrae"])
    mask, cam = outputs["mask"][0], outputs["cam"][0]
    # the vertebra route's fitted vertebrae and end vertebrae when it answers, else the centre line's
    vertebra_route = model.route == "vertebrae"
    read = by_vertebrae if vertebra_route else geometric
    corners_key, ends_key = ("vertebra_landmarks", "vertebra_end_vertebrae") if vertebra_route else ("landmarks", "end_vertebrae")
    ends = np.asarray(outputs[ends_key][0]).astype(np.int32)
    disagreement = float(np.max(np.abs(read - by_regressor))) if found else float("nan")
    points, reading = None, None
    if found:
        # the route's 17 vertebrae in the identity view, in original pixels
        points = np.asarray(outputs[corners_key][0], np.float64)
        if not isinstance(model, ServedSystem):  # predict_tensor answers in the model frame
            points = geometric_readout.to_original(points[None].astype(np.float32), letterbox[None], model.config.data.image_height)[0][0].numpy()
        reading = clinical_reading.read_spine(points, radiograph.patient_orientation)
    row = {
        "file": radiograph.path,
        "status": "ok" if found else report.STATUS_NO_SPINE,
        "format": radiograph.file_format,
        **{field: _finite_or_none(value) for field, value in zip(report.ANGLE_FIELDS, angles)},
        "route": model.route,
        "curve_type": curve.curve_type(mask),
        "severity": curve.severity(float(angles[0])) if found and np.isfinite(angles[0]) else None,
        **(report.curve_columns(reading) if reading else {}),
        **{field: _finite_or_none(value) for field, value in zip(report.REGRESSOR_FIELDS, by_regressor)},
        **{field: _finite_or_none(value) for field, value in zip(report.GEOMETRIC_FIELDS, geometric)},
        **{field: _finite_or_none(value) for field, value in zip(report.VERTEBRAE_FIELDS, by_vertebrae)},
        **dict(zip(report.END_VERTEBRAE_FIELDS, end_vertebrae_names(ends))),
        "route_disagreement_deg": _finite_or_none(disagreement),
        "routes_disagree": bool(disagreement > settings.disagreement_degrees) if found else None,
        "views": len(chosen),
        "height": int(radiograph.pixels.shape[0]),
        "width": int(radiograph.pixels.shape[1]),
        "notice": report.NOTICE,
    }
    if reading:
        row.update({"curves": reading["curves"], "lenke_note": reading["lenke_note"], "severity_bands": reading["severity_bands"]})
    if len(chosen) > 1:
        row.update({field: _finite_or_none(value) for field, value in zip(report.SPREAD_FIELDS, spread)})
        row["low_confidence"] = bool(spread.max() > settings.low_confidence_spread_degrees) if found else None
    if radiograph.pixel_spacing_mm:
        row["pixel_spacing_row_mm"], row["pixel_spacing_column_mm"] = map(float, radiograph.pixel_spacing_mm)
    if found:
        lines = [
            f"Cobb ({model.route}) " + " / ".join(f"{value:.1f}" for value in angles) + " deg",
            f"{CAPTION_CURVE[row['curve_type']]}, {row['severity']}"
            + (f", spread {spread.max():.1f} deg" if len(chosen) > 1 else "")
            + (", LOW CONFIDENCE" if row.get("low_confidence") else "")
            + (", ROUTES DISAGREE" if row.get("routes_disagree") else ""),
            curves_caption(reading),
        ]
    else:
        lines = ["no Cobb angle", "spine not found"]
    curves = overlay_curves(reading, ends, read) if found else []
    return Analysis(row, np.asarray(mask), np.asarray(cam), np.asarray(letterbox), points, reading, curves, [*lines, report.NOTICE])


def predict_radiograph(model, radiograph, settings, overlay_path: pathlib.Path | None = None, dicom_target: pathlib.Path | None = None,
                       show_cam: bool = False) -> dict:
    """One radiograph → its report row (see `report.FIELDS`); writes its overlay when
    `overlay_path` is given (with N_R's CAM when `show_cam`), and its DICOM SR and SEG as
    `dicom_target`.sr.dcm / .seg.dcm when that is given (`dicom_outputs`).

    Raises:
        ValueError: the image is rejected by the preprocessing.
    """
    seen = analyse(model, radiograph, settings)
    row = seen.row
    if overlay_path is not None:
        picture = overlay.render(radiograph.pixels, seen.mask, seen.cam if show_cam else None, seen.letterbox, seen.lines, landmarks=seen.points,
                                 curves=seen.curves, vertebrae=seen.points if model.route == "vertebrae" else None)  # fmt: skip
        overlay.write_png(overlay_path, picture)
        row["overlay"] = str(overlay_path)
    if dicom_target is not None:
        row.update(dicom_outputs(radiograph, seen.reading, seen.mask, seen.letterbox, model.route, dicom_target))
    return row


def dicom_refusal(radiograph, reading: dict | None) -> str | None:
    """Why a radiograph gets no DICOM results, or None when it can: a JPEG or PNG (no study
    to reference), a spine not found, or a DICOM without the UIDs to reference."""
    if radiograph.dicom is None:
        return f"{radiograph.path}: a {radiograph.file_format} file has no DICOM study to reference"
    if reading is None:
        return f"{radiograph.path}: spine not found"
    try:
        dicom_results.check_source(radiograph.dicom.dataset, radiograph.path)
    except ValueError as error:
        return str(error)
    return None


def dicom_outputs(radiograph, reading: dict | None, mask, letterbox, route: str, target: pathlib.Path) -> dict:
    """Writes the SR and SEG of a DICOM input (`dicom_results`) and returns their row fields:
    {"dicom_sr": path, "dicom_seg": path}, or {"dicom_refused": why} (`dicom_refusal`)."""
    refusal = dicom_refusal(radiograph, reading)
    if refusal:
        return {"dicom_refused": f"{refusal}: no SR or SEG written"}
    source = radiograph.dicom.dataset
    height, width = radiograph.pixels.shape
    spine = overlay.to_display(mask, letterbox, 1.0, (width, height)) > 0.5
    return dicom_results.write_results(source, reading, spine, route, target.parent, target.name)


def predict_files(model: LoadedSystem, paths: list[str], writer: report.ReportWriter, settings, overlay_dir=None, verbose=True,
                  dicom_dir=None, show_cam: bool = False) -> list[dict]:
    """Predicts each file, adding its row (or its error) to `writer` as soon as it is done;
    overlays go to `overlay_dir` (with the CAM when `show_cam`), DICOM SR and SEG to
    `dicom_dir` (each None for none)."""
    # a live bar on a terminal; in a log file (no terminal) no ANSI or backspace codes, one line at the end
    bar = keras.utils.Progbar(len(paths), unit_name="image", verbose=1 if sys.stdout.isatty() else 2) if verbose and paths else None
    used: set[str] = set()
    used_dicom: set[str] = set()
    for done, path in enumerate(paths, start=1):
        target = dicom_target = None
        if overlay_dir is not None:
            target = overlay_dir / _unique_name(pathlib.Path(path).name + ".png", used)
        if dicom_dir is not None:
            dicom_target = pathlib.Path(dicom_dir) / _unique_name(pathlib.Path(path).name + ".dcm", used_dicom).removesuffix(".dcm")
        try:
            row = predict_radiograph(model, radiographs.read_radiograph(path, model.max_pixels), settings, target, dicom_target, show_cam)
        except (ValueError, OSError) as error:
            row = report.error_row(path, str(error))
        writer.add(row)
        if bar is not None:
            bar.update(done)
    return writer.rows


def _unique_name(name: str, used: set[str]) -> str:
    """`name`, or name-2, name-3, ... when files of one name come from several folders."""
    stem, suffix = name.rsplit(".", 1)
    candidate, number = name, 1
    while candidate in used:
        number += 1
        candidate = f"{stem}-{number}.{suffix}"
    used.add(candidate)
    return candidate
