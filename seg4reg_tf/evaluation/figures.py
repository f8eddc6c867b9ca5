"""The evaluation's figures (PNG, matplotlib); command: `python -m seg4reg_tf.visualize`.

    python -m seg4reg_tf.visualize --workdir workdirs/demo [--data ROOT --split test] [--out DIR]

    scatter.png          predicted vs ground-truth angle, one row per route (N_R, readout on
                         N_S masks, readout on true masks), one panel per AASCE column
    training_curves.png  per phase: training and validation loss, and the monitored metric
    segmentation.png     per N_S of the workdir (without / with ROIE; paper Fig. 4): true
                         positives green, false negatives red, false positives blue
    cam.png              per N_R of the workdir (phase reg, then refine; paper Fig. 3 compares
                         a baseline N_R with one trained with AR): its CAM over the X-ray

`evaluate` writes the same figures next to its table. Everything is drawn in the model frame
(the letterboxed input), where the masks and CAMs live.

    python -m seg4reg_tf.visualize --real ROOT --out DIR   (no workdir)

    real_vs_synthetic.png  real radiographs of an AASCE-layout root (training split, evenly
                         spaced) above synthetic ones of the generator, at one size, to judge
                         the generator's realism; never commit it for AASCE data
"""

from __future__ import annotations

import csv
import io
import json
import logging
import pathlib

import cv2
import keras
import numpy as np
import tensorflow as tf

import seg4reg_tf.layers  # noqa: F401  (registers the custom layers for loading)
from seg4reg_tf import files
from seg4reg_tf.config import load_config
from seg4reg_tf.data import decoding, synthetic, transforms
from seg4reg_tf.data.aasce import ANGLE_COLUMNS, read_split
from seg4reg_tf.data.synthetic_render import RENDERERS
from seg4reg_tf.models.regressor import regressor_inputs
from seg4reg_tf.workdir import HISTORY, PHASES, SUMMARY, load_network, network_path, phase_dir, phase_monitor

_LOG = logging.getLogger(__name__)

REGRESSOR_ROWS = (("reg", "N_R (phase reg)"), ("refine", "N_R (phase refine)"))
# RGB of the segmentation outcome per pixel.
TRUE_POSITIVE, FALSE_NEGATIVE, FALSE_POSITIVE = (0.1, 0.8, 0.1), (0.9, 0.1, 0.1), (0.2, 0.4, 1.0)


def _pyplot():
    """pyplot on the Agg backend (files only, no display): the backend must be chosen
    before pyplot is first imported, hence the local imports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: pathlib.Path) -> pathlib.Path:
    """Saves a figure atomically (PNG) and closes it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(figure)
    files.atomic_write(path, buffer.getvalue())
    return path


def scatter(truth, predicted_by_route: dict, path: pathlib.Path) -> pathlib.Path:
    """Predicted vs ground truth: one row per route ({label: (N, 3) degrees}), one panel per
    angle column; images without a prediction (NaN: no spine found) are left out and counted."""
    plt = _pyplot()
    truth = np.asarray(truth)
    routes = {label: np.asarray(values, np.float64) for label, values in predicted_by_route.items()}
    figure, axes = plt.subplots(len(routes), 3, figsize=(12, 4.2 * len(routes)), squeeze=False)
    top = max(10.0, float(np.nanmax([truth.max(), *(np.nanmax(v, initial=0.0) for v in routes.values())])) * 1.05)
    for row, (label, predicted) in enumerate(routes.items()):
        shown = np.isfinite(predicted).all(axis=1)
        for column, (axis, name) in enumerate(zip(axes[row], ANGLE_COLUMNS)):
            error = np.abs(truth[shown, column] - predicted[shown, column]).mean() if shown.any() else float("nan")
            axis.plot([0, top], [0, top], color="0.6", linewidth=1)
            axis.scatter(truth[shown, column], predicted[shown, column], s=14, alpha=0.75)
            missing = f", {int((~shown).sum())} not found" if (~shown).any() else ""
            axis.set(xlim=(0, top), ylim=(0, top), aspect="equal", xlabel="ground truth (°)",
                     ylabel=f"{label}\npredicted (°)" if column == 0 else "predicted (°)",
                     title=f"{name} — MAE {error:.2f}°{missing}")
    return _save(figure, path)


def read_history(folder: pathlib.Path) -> dict[str, list[float]]:
    """A phase's per-epoch logs: history.csv (all epochs, across resumes), else summary.json."""
    if (folder / HISTORY).exists():
        with open(folder / HISTORY, newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {key: [float(row[key]) for row in rows if row[key] != ""] for key in (rows[0] if rows else {}) if key != "epoch"}
    if (folder / SUMMARY).exists():
        return json.loads((folder / SUMMARY).read_text())["history"]
    return {}


def training_curves(workdir: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    """Loss and the monitored validation metric of every phase the workdir has run."""
    plt = _pyplot()
    histories = {phase: read_history(phase_dir(workdir, phase)) for phase in PHASES}
    histories = {phase: history for phase, history in histories.items() if history.get("loss")}
    if not histories:
        raise FileNotFoundError(f"{workdir} has no phase with a training history yet")
    config = load_config(workdir / "config.yaml")
    figure, axes = plt.subplots(2, len(histories), figsize=(3.6 * len(histories), 6), squeeze=False)
    # the same colour for training and for validation in every panel; markers, so a phase of
    # one epoch shows its point
    style = {"training": {"color": "tab:blue", "marker": "o"}, "validation": {"color": "tab:orange", "marker": "s"}}
    for column, (phase, history) in enumerate(histories.items()):
        epochs = np.arange(1, len(history["loss"]) + 1)
        axes[0, column].plot(epochs, history["loss"], label="training", **style["training"])
        if "val_loss" in history:
            axes[0, column].plot(epochs[: len(history["val_loss"])], history["val_loss"], label="validation", **style["validation"])
        axes[0, column].set(title=f"phase {phase}", xlabel="epoch", ylabel="loss")
        axes[0, column].legend()
        monitor = phase_monitor(phase, config)[0]
        for key, kind in ((monitor[len("val_"):], "training"), (monitor, "validation")):
            if key in history:
                axes[1, column].plot(epochs[: len(history[key])], history[key], label=kind, **style[kind])
        axes[1, column].set(xlabel="epoch", ylabel=monitor[len("val_"):])
        for row in (0, 1):
            axes[row, column].set_xticks(epochs)  # whole epochs only
        axes[1, column].legend()
    figure.tight_layout()
    return _save(figure, path)


def outcome_colours(truth, predicted, threshold: float = 0.5) -> np.ndarray:
    """(H, W) truth in {0, 1} and probabilities → (H, W, 3) RGB in [0, 1], black where both
    say background."""
    truth = np.asarray(truth) > 0.5
    predicted = np.asarray(predicted) > threshold
    colours = np.zeros((*truth.shape, 3))
    colours[truth & predicted] = TRUE_POSITIVE
    colours[truth & ~predicted] = FALSE_NEGATIVE
    colours[~truth & predicted] = FALSE_POSITIVE
    return colours


def _grid(images, panels: dict, draw, path: pathlib.Path, title: str) -> pathlib.Path:
    """Rows = images, columns = the X-ray then one panel per label; `draw(axis, image, i, label)`."""
    plt = _pyplot()
    rows, columns = len(images), 1 + len(panels)
    height, width = images[0].shape
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns * width / height * 2, 4.4 * rows), squeeze=False)
    for row, image in enumerate(images):
        axes[row, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_title("X-ray" if row == 0 else "")
        for column, label in enumerate(panels, start=1):
            draw(axes[row, column], image, row, label)
            axes[row, column].set_title(label if row == 0 else "", fontsize=9)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(title)
    return _save(figure, path)


def segmentation_overlays(images, truth_masks, masks_by_label: dict, path: pathlib.Path) -> pathlib.Path:
    """Per image and N_S: true positives, false negatives and false positives over the X-ray."""
    def draw(axis, image, row, label):
        colours = outcome_colours(truth_masks[row], masks_by_label[label][row])
        shown = np.where(colours.any(axis=-1, keepdims=True), 0.55 * colours + 0.45 * image[..., None], image[..., None])
        axis.imshow(np.clip(shown, 0, 1))

    title = "green: true positive · red: false negative · blue: false positive"
    return _grid(images, masks_by_label, draw, path, title)


def cam_overlays(images, cams_by_label: dict, path: pathlib.Path) -> pathlib.Path:
    """Per image and N_R: its class activation map (upsampled) as a heat map over the X-ray."""
    def draw(axis, image, row, label):
        height, width = image.shape
        cam = cv2.resize(np.asarray(cams_by_label[label][row], np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        axis.imshow(image, cmap="gray", vmin=0, vmax=1)
        axis.imshow(cam, cmap="jet", alpha=0.4, vmin=0, vmax=1)

    return _grid(images, cams_by_label, draw, path, "class activation maps of N_R")


def regressor_cams(workdir: pathlib.Path, images, masks, config) -> dict:
    """CAMs of each N_R the workdir holds, on (N, H, W) images with the final (N, H, W) masks."""
    cams = {}
    inputs = regressor_inputs(np.asarray(images)[..., None], np.asarray(masks)[..., None], config.regressor.input_mode)
    for phase, label in REGRESSOR_ROWS:
        path = network_path(workdir, phase, "regressor")
        if path.exists():
            regressor = load_network(path)
            cams[label] = keras.ops.convert_to_numpy(regressor(inputs, training=False)["cam"][..., -1])
    return cams


def write_figures(results: dict, workdir, out: pathlib.Path, count: int = 4) -> list[pathlib.Path]:
    """The figures of an `scoring.evaluate_workdir` result; returns their paths (no training
    curves for a workdir without training history, e.g. networks copied in)."""
    workdir = pathlib.Path(workdir)
    predictions = results["predictions"]
    shown = slice(0, min(count, len(predictions["images"])))
    images = predictions["images"][shown]
    config = load_config(workdir / "config.yaml")
    masks = {label: masks[shown] for label, masks in results["segmentation_masks"].items()}
    cams = regressor_cams(workdir, images, predictions["masks"][shown], config)
    written = [
        scatter(predictions["truth_angles"], {"N_R": predictions["angles_regressor"],
                                              "readout on N_S masks": predictions["angles_geometric"],
                                              "readout on true masks": predictions["angles_geometric_truth"]}, out / "scatter.png"),
        segmentation_overlays(images, predictions["truth_masks"][shown], masks, out / "segmentation.png"),
        cam_overlays(images, cams, out / "cam.png"),
    ]
    try:
        written.append(training_curves(workdir, out / "training_curves.png"))
    except FileNotFoundError as error:
        _LOG.warning("no training curves: %s", error)
    return written


def _fit(image, height: int, width: int) -> np.ndarray:
    """(h, w, 1) float image in [0, 1] → (height, width), letterboxed as the model input is."""
    return transforms.resize_with_pad(tf.convert_to_tensor(image, tf.float32), height, width).numpy()[..., 0]


def real_and_synthetic(root, path: pathlib.Path, count: int = 4, height: int = 512) -> pathlib.Path:
    """Writes the realism figure: `count` radiographs of `root`'s training split (evenly
    spaced through it) in the top row, then one row per renderer of the generator
    (`synthetic_render.RENDERERS`) with its first `count` test-stream images (the same
    spines), each fitted into height × height/2 as stored (no CLAHE).

    Raises:
        FileNotFoundError / ValueError: `root` is not an AASCE-layout folder;
        tf.errors.InvalidArgumentError: an image of it cannot be decoded (named).
    """
    records = read_split(root, "training")
    step = max(1, len(records) // count)
    real = []
    for record in records[::step][:count]:
        image = decoding.decode_checked(tf.io.read_file(record.image_path), record.image_path)  # names the file
        real.append(_fit(image, height, height // 2))
    rows = {f"real ({pathlib.Path(root).name})": real}
    for renderer in RENDERERS:
        config = synthetic.SyntheticConfig(renderer=renderer)
        rows[f"synthetic, {renderer} renderer"] = [
            _fit(synthetic.make_example(0, "test", index, config)[0][..., None] / 255.0, height, height // 2)
            for index in range(count)
        ]
    plt = _pyplot()
    figure, axes = plt.subplots(len(rows), count, figsize=(2.2 * count, len(rows) * 2.2 * 2), squeeze=False)
    for row, (label, images) in enumerate(rows.items()):
        for column in range(count):
            axis = axes[row][column]
            axis.axis("off")
            if column < len(images):
                axis.imshow(images[column], cmap="gray", vmin=0.0, vmax=1.0)
        axes[row][0].set_title(label, loc="left", fontsize=9)
    return _save(figure, path)
