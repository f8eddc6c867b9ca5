"""Clients for a TF Serving model server hosting an export of `serving.saved_model`; command:
`python -m seg4reg_tf.serving_client`.

    python -m seg4reg_tf.serving_client --host localhost --grpc IMAGE...   (port 8500)
    python -m seg4reg_tf.serving_client --host localhost --rest IMAGE...   (port 8501)

Both send each file as `predict` reads it (`data/radiographs.py`): admitted before sending
(size bounds, end marker; a refused file is named here, not by the server), turned upright
by its EXIF orientation, DICOM converted to a 16-bit PNG; the `serving_default` signature
decodes and preprocesses in the server's graph. Both return the Cobb angles in degrees, one
row per image, columns as in AASCE: the largest curve, then the two others. gRPC uses `tensorflow-serving-api`'s
PredictionService; REST the `:predict` JSON API with base64 instances.
"""

from __future__ import annotations

import base64
import json
import pathlib
import urllib.error
import urllib.request

import numpy as np

from seg4reg_tf.data.radiographs import read_radiograph

DEFAULT_PORTS = {"grpc": 8500, "rest": 8501}
SIGNATURE = "serving_default"


class ServingError(RuntimeError):
    """The server refused or failed a request; the message is the server's."""


def read_images(paths) -> list[bytes]:
    """The encoded image of each file, as `predict` sends it to the model.

    Raises:
        FileNotFoundError: a missing file; ValueError: a file refused by admission (named).
    """
    contents = []
    for path in map(pathlib.Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such image file")
        contents.append(read_radiograph(str(path)).encoded)
    return contents


def predict_request(images: list[bytes], model: str, version: int | None = None):
    """A TF Serving PredictRequest of encoded images for the `serving_default` signature."""
    # TensorFlow and the TF Serving protos are imported by the gRPC path only, so that the
    # REST client starts without TensorFlow's seconds of start-up.
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = SIGNATURE
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string, shape=[len(images)]))
    return request


def grpc_predict(host: str, port: int, images: list[bytes], model: str = "seg4reg", timeout: float = 60.0, version: int | None = None) -> dict:
    """Calls PredictionService/Predict over gRPC.

    Args:
        host, port: the model server's gRPC address.
        images: encoded JPEG/PNG files.
        model: the served model name; version: a specific version (default: the latest).
        timeout: seconds.

    Returns:
        {"cobb_angles": (B, 3) degrees, "mask": (B, H, W), "cam": (B, h, w), "letterbox": (B, 3)}
        as NumPy arrays.

    Raises:
        ServingError: the server answered with an error (e.g. INVALID_ARGUMENT for a bad image).
    """
    import grpc  # gRPC path only, as in predict_request
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = predict_request(images, model, version)
    options = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
    with grpc.insecure_channel(f"{host}:{port}", options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout)
        except grpc.RpcError as error:
            raise ServingError(f"gRPC {error.code().name}: {error.details()}") from error
    return {key: tf.make_ndarray(value) for key, value in response.outputs.items()}


def rest_predict(host: str, port: int, images: list[bytes], model: str = "seg4reg", timeout: float = 60.0, version: int | None = None) -> dict:
    """Calls `POST /v1/models/<model>[/versions/<v>]:predict` with base64 instances.

    Returns and raises as `grpc_predict`.
    """
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "") + ":predict"
    body = {"signature_name": SIGNATURE, "instances": [{"b64": base64.b64encode(data).decode("ascii")} for data in images]}
    request = urllib.request.Request(
        f"http://{host}:{port}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        try:
            detail = json.loads(detail)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        raise ServingError(f"REST {error.code}: {detail}") from error
    except urllib.error.URLError as error:
        raise ServingError(f"REST: cannot reach http://{host}:{port} ({error.reason})") from error
    rows = answer["predictions"]
    return {key: np.asarray([row[key] for row in rows], dtype=np.float32) for key in rows[0]} if rows else {}
