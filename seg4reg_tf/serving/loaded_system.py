"""A loaded system: the inference path of a training workdir or of an export, or an export
that TF Serving serves, behind one interface that `serving.analysis` (predict, the viewer,
batch scoring and the PACS round trip) calls.

- `load_workdir`: the last N_S and N_R of a workdir (as `export` picks them) and its
  recorded route, traced with `tf.function`;
- `load_saved_model`: an export's `predict_tensor` signature and its seg4reg.json;
- `served_system`: TF Serving's REST API for an export (its seg4reg.json read locally).

Each decodes encoded images through the export's own preprocessing
(`data.requests.decode_requests`), so every caller and TF Serving agree.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import urllib.parse

import tensorflow as tf

from seg4reg_tf.config import Config, config_from_dict
from seg4reg_tf.data import pipeline, requests
from seg4reg_tf.inference import predict_images
from seg4reg_tf.routes import route_for_workdir
from seg4reg_tf.serving import client
from seg4reg_tf.workdir import final_networks, load_refiner


@dataclasses.dataclass
class LoadedSystem:
    """The inference path, however it was loaded.

    Attributes:
        config: the training run's config (input size, preprocessing, input mode).
        source: where the networks came from, for the report.
        run: (V, H, W, 1) float32 in [0, 1] and, with the tilt refiner, fine images
            (V, s·H, s·W, 1) (else None) → the outputs of `inference.predict_images`
            (landmarks in the model frame), as NumPy.
        route: which route `cobb_angles` repeats ("regressor", "geometric" or "vertebrae").
        max_pixels: pixel limit applied before decoding (the export's).
    """
    config: Config
    source: dict
    run: object
    max_pixels: int
    route: str = "regressor"
    keep_alive: object = None  # the loaded SavedModel, which its signature does not keep alive

    def decode(self, encoded: bytes, name: str):
        """Encoded JPEG/PNG → ((H, W, 1) float32 model input, (3,) letterbox, the fine image
        (s·H, s·W, 1) or None without the tilt refiner), as the export does.

        Raises:
            ValueError: the image is rejected (message names `name` and the problem).
        """
        try:
            decoded = requests.decode_requests(tf.constant([encoded]), self.config, self.max_pixels, names=tf.constant([name]))
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(_tf_message(error, name)) from None
        fine = decoded.get("fine_images")
        return decoded["images"][0], decoded["letterbox"][0].numpy(), None if fine is None else fine[0]


@dataclasses.dataclass
class ServedSystem:
    """A system TF Serving serves, called over its REST API (`serving_default` with base64
    images, as `serving_client` calls it; one view, no TTA). Its export's seg4reg.json gives
    the config, the route and the pixel limit; the networks are not loaded here.

    Attributes:
        config, source, max_pixels, route: as `LoadedSystem`'s.
        host, port, model_name: TF Serving's REST address and the model's name.
        timeout: seconds per request.
    """
    config: Config
    source: dict
    max_pixels: int
    route: str
    host: str
    port: int
    model_name: str
    timeout: float = 60.0

    def predict_encoded(self, encoded: bytes) -> dict:
        """One encoded image → `serving_default`'s outputs, as NumPy (batch of one).

        Raises:
            client.ServingError: the request failed (the message says how).
        """
        return client.rest_predict(self.host, self.port, [encoded], self.model_name, self.timeout)


def served_system(url: str, export: str, timeout: float = 60.0) -> ServedSystem:
    """A `ServedSystem` for TF Serving's REST root `url` (http://host:port) serving the
    export at `export` (a version folder, or the model folder and its highest version)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"{url}: not TF Serving's REST address (http://host:port)")
    _, info, config = read_export(export)
    route = export_route(info)
    source = {"tf_serving": url, "model": info.get("name", config.export.model_name), "version": info.get("version")}
    return ServedSystem(config, source, int(info["max_image_pixels"]), route, parts.hostname, parts.port, source["model"], timeout)


def _tf_message(error, name: str) -> str:
    """The readable part of a TensorFlow error, naming the file once."""
    first = error.message.strip().splitlines()[0]
    asserted = re.search(r"assertion failed: (.*)", first)
    if asserted:
        first = " ".join(re.findall(r"\[([^\[\]]*)\]", asserted.group(1))).replace(f" {name}", "").rstrip(":")
    return f"{name}: {first}" if name not in first else first


def load_workdir(workdir: str) -> LoadedSystem:
    """The last N_S and N_R of a training workdir (see `workdir.final_networks`)."""
    config, segmenter, regressor, sources = final_networks(pathlib.Path(workdir))
    route, _ = route_for_workdir(workdir, config.inference.angles, sources)
    refiner = load_refiner(sources)
    height, width = config.data.image_height, config.data.image_width
    fine = pipeline.fine_frame(config.data, config.refiner.scale)

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 1], tf.float32)])
    def run(images):
        return predict_images(segmenter, regressor, images, config, route)

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 1], tf.float32), tf.TensorSpec([None, fine.image_height, fine.image_width, 1], tf.float32)])
    def run_refined(images, fine_images):
        return predict_images(segmenter, regressor, images, config, route, refiner=refiner, fine_images=fine_images)

    def run_numpy(images, fine_images=None):
        outputs = run(images) if refiner is None else run_refined(images, fine_images)
        return {key: value.numpy() for key, value in outputs.items()}

    return LoadedSystem(config, {"workdir": str(workdir), **sources}, run_numpy, config.export.max_image_pixels, route)


def resolve_saved_model(path: str) -> pathlib.Path:
    """A version folder, or a model folder whose highest numeric version is taken.

    Raises:
        FileNotFoundError: neither holds a saved_model.pb.
    """
    path = pathlib.Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((int(p.name), p) for p in path.glob("*") if p.name.isdigit() and (p / "saved_model.pb").is_file())
    if not versions:
        raise FileNotFoundError(f"{path}: no saved_model.pb here nor in a numeric version folder below it")
    return versions[-1][1]


def read_export(path: str) -> tuple[pathlib.Path, dict, Config]:
    """(version folder, its assets.extra/seg4reg.json, the training config in it), without
    loading the networks.

    Raises:
        FileNotFoundError: no SavedModel at `path`, or one that seg4reg_tf.export did not write.
        ValueError: its seg4reg.json holds no valid config.
    """
    version = resolve_saved_model(path)
    info_path = version / "assets.extra" / "seg4reg.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} not found: {version} is not a seg4reg export (written by python -m seg4reg_tf.export)")
    info = json.loads(info_path.read_text())
    return version, info, config_from_dict(info["config"], source=str(info_path))


def export_route(info: dict) -> str:
    """The route an export's seg4reg.json says `cobb_angles` repeats (an export written
    before the route was recorded answers with N_R's)."""
    return info.get("angles", {}).get("route", "regressor")


def load_saved_model(path: str) -> LoadedSystem:
    """An export of `python -m seg4reg_tf.export`, through its `predict_tensor` signature."""
    version, info, config = read_export(path)
    loaded = tf.saved_model.load(str(version))
    signature = loaded.signatures["predict_tensor"]

    def run_numpy(images, fine_images=None):
        inputs = {"images": tf.convert_to_tensor(images, tf.float32)}
        if fine_images is not None:
            inputs["fine_images"] = tf.convert_to_tensor(fine_images, tf.float32)
        outputs = signature(**inputs)
        return {key: value.numpy() for key, value in outputs.items()}

    route = export_route(info)
    return LoadedSystem(config, {"saved_model": str(version)}, run_numpy, int(info["max_image_pixels"]), route, loaded)
