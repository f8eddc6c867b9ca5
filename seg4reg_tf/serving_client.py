"""Cobb angles from a TF Serving model server hosting an export: `python -m seg4reg_tf.serving_client`.

    python -m seg4reg_tf.serving_client --host localhost --grpc IMAGE...   (port 8500)
    python -m seg4reg_tf.serving_client --host localhost --rest IMAGE...   (port 8501)

How files are sent: `serving.client`.
"""

from __future__ import annotations

import argparse
import sys

from seg4reg_tf import cli
from seg4reg_tf.serving.client import DEFAULT_PORTS, ServingError, grpc_predict, read_images, rest_predict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seg4reg_tf.serving_client", description="Cobb angles from a TF Serving model server.")
    parser.add_argument("images", nargs="+", help="JPEG, PNG or DICOM files (a DICOM is sent as a lossless 16-bit PNG of its display pixels)")
    protocol = parser.add_mutually_exclusive_group(required=True)
    protocol.add_argument("--grpc", action="store_const", const="grpc", dest="protocol", help="PredictionService over gRPC (default port 8500)")
    protocol.add_argument("--rest", action="store_const", const="rest", dest="protocol", help="REST :predict (default port 8501)")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, help="default: 8500 for gRPC, 8501 for REST")
    parser.add_argument("--model", default="seg4reg", help="served model name")
    parser.add_argument("--version", type=int, help="model version (default: the latest the server has)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds")
    args = cli.parse(parser, argv)
    try:
        images = read_images(args.images)
    except (FileNotFoundError, ValueError) as error:
        return cli.fail(error)
    call = grpc_predict if args.protocol == "grpc" else rest_predict
    try:
        outputs = call(args.host, args.port or DEFAULT_PORTS[args.protocol], images, args.model, args.timeout, args.version)
    except ServingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("image\tlargest_deg\tsecond_deg\tthird_deg")
    for path, angles in zip(args.images, outputs["cobb_angles"]):
        print(f"{path}\t" + "\t".join(f"{value:.2f}" for value in angles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
