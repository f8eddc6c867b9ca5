"""A loopback stand-in for TF Serving's model server, for development, benches and tests
where TF Serving is not installed (it cannot be on this project's test machines).

    python -m seg4reg_tf.serving.loopback_server exports/seg4reg/1 [--name seg4reg]

It serves an exported SavedModel over TF Serving's two protocols, on loopback only: gRPC `tensorflow.serving.PredictionService/Predict` (the real
service definition from tensorflow-serving-api) and REST `POST /v1/models/<name>:predict`
with TF Serving's JSON conventions (row-format `instances`, `{"b64": ...}` for bytes,
`{"predictions": [...]}` answers, HTTP 400 with `{"error": ...}` for bad input).
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
from concurrent import futures

import seg4reg_tf

seg4reg_tf.quiet_start()  # run as a command: no TensorFlow start-up lines

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402


class Model:
    """One loaded export: `run(signature, inputs)` → dict of NumPy outputs."""

    def __init__(self, name: str, path: str):
        self.name = name
        self.loaded = tf.saved_model.load(path)
        self.lock = threading.Lock()

    def run(self, signature: str, inputs: dict) -> dict:
        function = self.loaded.signatures[signature or "serving_default"]
        with self.lock:
            outputs = function(**{key: tf.constant(value) for key, value in inputs.items()})
        return {key: value.numpy() for key, value in outputs.items()}


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model: Model):
        self.model = model

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        if request.model_spec.name != self.model.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({request.model_spec.name})")
        inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
        try:
            outputs = self.model.run(request.model_spec.signature_name, inputs)
        except tf.errors.InvalidArgumentError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model.name
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


def _decode_instance(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


def _rest_handler(model: Model):
    route = re.compile(r"^/v1/models/([^/:]+)(?:/versions/\d+)?:predict$")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 (http.server's name)
            match = route.match(self.path)
            if not match or match.group(1) != model.name:
                return self.answer(404, {"error": f"Servable not found for request: {self.path}"})
            try:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                instances = [_decode_instance(value) for value in request["instances"]]
            except (ValueError, KeyError, TypeError) as error:
                return self.answer(400, {"error": f"malformed request: {error}"})
            try:
                outputs = model.run(request.get("signature_name"), {"images": np.array(instances, dtype=object)})
            except tf.errors.InvalidArgumentError as error:
                return self.answer(400, {"error": error.message})
            count = len(instances)
            rows = [{key: value[i].tolist() for key, value in outputs.items()} for i in range(count)]
            return self.answer(200, {"predictions": rows})

    return Handler


class LoopbackServer:
    """Context manager serving `path` as model `name`; exposes `grpc_port` and `rest_port`."""

    def __init__(self, name: str, path: str):
        self.model = Model(name, path)

    def __enter__(self):
        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Servicer(self.model), self.grpc_server)
        self.grpc_port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        self.grpc_server.start()
        self.http_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self.model))
        self.rest_port = self.http_server.server_address[1]
        self.http_thread = threading.Thread(target=self.http_server.serve_forever, daemon=True)
        self.http_thread.start()
        return self

    def __exit__(self, *exc):
        self.http_server.shutdown()
        self.http_server.server_close()
        self.grpc_server.stop(None)


def main(argv: list[str] | None = None) -> int:
    """`python -m seg4reg_tf.serving.loopback_server EXPORT [--name seg4reg]`: serves EXPORT (a version
    folder) on free loopback ports, prints one JSON line {"grpc": port, "rest": port, "pid": pid}
    and serves until its standard input closes (bench/load.py runs it this way)."""
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m seg4reg_tf.serving.loopback_server", description=main.__doc__.splitlines()[0])
    parser.add_argument("export", help="an exported version folder (…/seg4reg/1)")
    parser.add_argument("--name", default="seg4reg", help="the served model name")
    args = parser.parse_args(argv)
    with LoopbackServer(args.name, args.export) as server:
        print(json.dumps({"grpc": server.grpc_port, "rest": server.rest_port, "pid": os.getpid()}), flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
