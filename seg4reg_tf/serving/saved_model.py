"""The trained system as a SavedModel in TF Serving's layout; command: `python -m seg4reg_tf.export`.

    <export base>/<name>/<version>/saved_model.pb, variables/     what TF Serving loads
    <export base>/<name>/<version>/assets.extra/seg4reg.json      config and provenance
    <export base>/<name>/<version>/assets.extra/tf_serving_warmup_requests   replayed on load

Signatures (`inference.predict_images`: N_S, with the two-pass ROIE gate when trained, then
N_R on the config's input mode, and the geometric readout of the mask):

    serving_default   images: (B,) tf.string, encoded JPEG/PNG of any size, 8/16-bit, gray or
                      colour → cobb_angles (B, 3) float32 degrees (the chosen route),
                      cobb_angles_regressor, cobb_angles_geometric (B, 3) (NaN when no spine is
                      found), landmarks (B, 68, 2) pseudo vertebra corners in original pixels,
                      end_vertebrae (B, 3, 2) int32 (0 = T1 … 16 = L5), spine_found (B,) bool,
                      mask (B, H, W) float32 probabilities at the model resolution, cam
                      (B, H/32, W/32) float32 in [0, 1], letterbox (B, 3) float32 (scale,
                      offset_y, offset_x): a pixel centre (x, y) of the original lies at
                      ((x + ½)·scale + offset_x − ½, (y + ½)·scale + offset_y − ½) in the mask;
                      the vertebra route's outputs and the named curves
                      (`curves_graph.find_curves`; docs/serving.md lists them).
    predict_tensor    images: (B, H, W, 1) float32 in [0, 1], already preprocessed (and, with
                      the tilt refiner, fine_images: (B, s·H, s·W, 1), the same X-rays at
                      `refiner.scale` times the size) → the same outputs without
                      `letterbox`, landmarks in the model frame.

`cobb_angles` repeats the route `inference.angles` chooses; "auto" takes the one with the
lower validation SMAPE recorded in the workdir (written now if missing); seg4reg.json records
both figures and the choice.

Preprocessing inside `serving_default` is the training pipeline's own function
(`pipeline.preprocess_encoded`): aspect-preserving resize with padding, CLAHE if trained
with it. Bad input (empty, not JPEG/PNG, truncated, more pixels than the configured limit)
fails the request with InvalidArgument naming the problem and the image's index; it never
crashes the server, and the next request is served normally.

Writing is atomic: the version is written under a hidden temporary name in the same folder
and renamed into place, so TF Serving (which only loads numeric folder names) never sees a
half-written version; a failed export removes its temporary folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile

import cv2
import keras
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from seg4reg_tf.data import pipeline, requests, synthetic
from seg4reg_tf.data.aasce import ANGLE_COLUMNS
from seg4reg_tf.inference import predict_images
from seg4reg_tf.models.precision import with_precision
from seg4reg_tf.routes import route_for_workdir
from seg4reg_tf.serving import client
from seg4reg_tf.workdir import final_networks, load_refiner

WARMUP_FILE = "tf_serving_warmup_requests"  # the name TF Serving looks for in assets.extra/

def write_warmup_requests(path: pathlib.Path, model_name: str) -> None:
    """Writes TF Serving's warmup file (a TFRecord of PredictionLog): one `serving_default`
    request with a synthetic radiograph, which TF Serving replays when it loads the version so
    the first real request does not pay for lazy initialisation (seconds on a CPU)."""
    image, _, _ = synthetic.make_example(0, "warmup", 0)
    encoded = cv2.imencode(".jpg", image)[1].tobytes()
    request = client.predict_request([encoded], model_name)
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(log.SerializeToString())


def next_version(model_dir: pathlib.Path) -> int:
    """1 + the largest numeric version folder in `model_dir` (1 when there is none)."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def checked_batch(images, fine_images=None):
    """A signature's inputs, checked before any network runs: at least one image, and as many
    fine images as images. A bad batch is INVALID_ARGUMENT with a message saying what is wrong
    (without the checks, deep inside N_S).

    Args:
        images: (B,) encoded images or (B, H, W, 1) model inputs.
        fine_images: (B, s·H, s·W, 1) or None.

    Returns:
        `images` (and `fine_images` when given), unchanged.
    """
    count = tf.shape(images)[0]
    checks = [tf.debugging.assert_positive(count, message="the request holds no images: send at least one")]
    if fine_images is not None:
        checks.append(tf.debugging.assert_equal(count, tf.shape(fine_images)[0],
                                                message="images and fine_images must hold the same number of X-rays"))
    with tf.control_dependencies(checks):
        images = tf.identity(images)
        return images if fine_images is None else (images, tf.identity(fine_images))


def write_archive(segmenter, regressor, config, path: pathlib.Path, max_pixels: int, route: str, refiner=None) -> None:
    """Writes the SavedModel with both signatures to `path` (which must not exist);
    `route` ("regressor", "geometric" or "vertebrae") is what `cobb_angles` repeats;
    `refiner`: the tilt refiner (then `predict_tensor` also takes `fine_images`), or None."""
    height, width = config.data.image_height, config.data.image_width
    segmenter = with_precision(segmenter, config.export.precision)
    regressor = with_precision(regressor, config.export.precision)

    def predict_tensor(images):
        return predict_images(segmenter, regressor, checked_batch(images), config, route)

    def predict_tensor_refined(images, fine_images):
        images, fine_images = checked_batch(images, fine_images)
        return predict_images(segmenter, regressor, images, config, route, refiner=refiner, fine_images=fine_images)

    def serving_default(images):
        decoded = requests.decode_requests(checked_batch(images), config, max_pixels)
        outputs = predict_images(segmenter, regressor, decoded["images"], config, route, decoded["letterbox"], refiner, decoded.get("fine_images"))
        return {**outputs, "letterbox": decoded["letterbox"]}

    # Not `archive.track(...)`: the endpoints' traces capture every variable they use, and
    # tracking the networks as well stores each weight twice (keras-team/keras#23553: the
    # tracked Keras variables and the captured tf.Variables are different objects, so the
    # checkpoint cannot de-duplicate them), doubling the export and a server's memory.
    archive = keras.export.ExportArchive()
    archive.add_endpoint("serving_default", serving_default, input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    tensors = [tf.TensorSpec([None, height, width, 1], tf.float32, name="images")]
    if refiner is not None:
        fine = pipeline.fine_frame(config.data, config.refiner.scale)
        tensors.append(tf.TensorSpec([None, fine.image_height, fine.image_width, 1], tf.float32, name="fine_images"))
    archive.add_endpoint("predict_tensor", predict_tensor if refiner is None else predict_tensor_refined, input_signature=tensors)
    archive.write_out(str(path), verbose=False)


def export_saved_model(
    workdir: pathlib.Path,
    export_base: pathlib.Path,
    name: str | None = None,
    version: int | None = None,
    max_image_pixels: int | None = None,
    precision: str | None = None,
) -> pathlib.Path:
    """Exports a workdir's trained system; returns `<export_base>/<name>/<version>`.

    Args:
        workdir: a training workdir with at least phases seg and reg done.
        export_base: TF Serving's model base path.
        name: model name (default: the config's `export.model_name`).
        version: version number (default: the next free one); an existing one is refused.
        max_image_pixels: pixel limit of `serving_default` (default: the config's).
        precision: the signatures' arithmetic, "float32" or "bfloat16" (default: the
            config's `export.precision`).

    Raises:
        FileNotFoundError: the workdir lacks trained networks.
        FileExistsError: the version already exists.
        ValueError: a version below 1.
    """
    config, segmenter, regressor, sources = final_networks(workdir)
    if precision is not None:
        config = dataclasses.replace(config, export=dataclasses.replace(config.export, precision=precision))
    route, recorded = route_for_workdir(workdir, config.inference.angles, sources)
    name = name or config.export.model_name
    max_pixels = max_image_pixels or config.export.max_image_pixels
    model_dir = pathlib.Path(export_base) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(model_dir) if version is None else version
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"{final} already exists; TF Serving versions are immutable, choose another --version")
    temporary = pathlib.Path(tempfile.mkdtemp(prefix=f".{version}-incomplete-", dir=model_dir))
    try:
        archive = temporary / "model"
        write_archive(segmenter, regressor, config, archive, max_pixels, route, refiner=load_refiner(sources))
        extra = archive / "assets.extra"
        extra.mkdir(exist_ok=True)
        write_warmup_requests(extra / WARMUP_FILE, name)
        info = {
            "name": name,
            "version": version,
            "workdir": str(pathlib.Path(workdir).resolve()),
            "networks": sources,
            "input": {"height": config.data.image_height, "width": config.data.image_width, "channels": 1},
            "angle_columns": list(ANGLE_COLUMNS),
            "max_image_pixels": max_pixels,
            "precision": config.export.precision,
            "angles": {"setting": config.inference.angles, "route": route, "validation_smape": (recorded or {}).get("validation_smape"),
                       "recorded": recorded is not None},
            "config": config.to_dict(),
        }
        (extra / "seg4reg.json").write_text(json.dumps(info, indent=2))
        os.rename(archive, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return final
