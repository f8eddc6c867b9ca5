"""`python -m seg4reg_tf.viewer`: a page to drop radiographs on and see the vertebrae, the
curves and the angles.

    python -m seg4reg_tf.viewer --saved-model exports/seg4reg            # http://127.0.0.1:8080
    python -m seg4reg_tf.viewer --saved-model exports/seg4reg --tf-serving http://127.0.0.1:8501

With `--tf-serving`, the page's server calls TF Serving's REST API (`serving_default` with
base64 images) instead of loading the networks; `--saved-model` then names the export TF
Serving serves, for its seg4reg.json (config, route, pixel limit). The page and its server:
`serving/viewer_app.py`; docs/viewer.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import sys

from seg4reg_tf import cli

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(app, host: str, port: int, threads: int):
    """A waitress server for `app` (not yet serving); port 0 picks a free one."""
    from waitress import create_server

    return create_server(app, host=host, port=port, threads=threads, ident="seg4reg_tf viewer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seg4reg_tf.viewer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--saved-model", required=True, help="the export: a version folder, or the model folder (highest version)")
    parser.add_argument("--tf-serving", metavar="URL", help="TF Serving's REST address (http://host:8501): call it instead of loading the networks")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--max-upload-mb", type=float, default=64.0, help="largest file accepted, in MB (default 64)")
    parser.add_argument("--threads", type=int, default=4, help="requests served at once (default 4)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="test-time augmentation with a loaded export (default: the config's)")
    args = cli.parse(parser, argv)
    if args.tf_serving and args.tta:
        parser.error("--tta needs the loaded export: TF Serving answers one view")

    from seg4reg_tf.serving import loaded_system
    from seg4reg_tf.serving.viewer_app import create_app

    try:
        model = loaded_system.served_system(args.tf_serving, args.saved_model) if args.tf_serving else loaded_system.load_saved_model(args.saved_model)
    except (FileNotFoundError, ValueError) as error:
        return cli.fail(error)
    settings = model.config.predict
    if args.tta is not None:
        settings = dataclasses.replace(settings, tta=args.tta)
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this address can upload radiographs; "
              "the viewer has no login. Use 127.0.0.1 unless a proxy with authentication sits in front.", file=sys.stderr)  # fmt: skip
    server = make_server(create_app(model, settings, int(args.max_upload_mb * (1 << 20))), args.host, args.port, args.threads)
    print(f"seg4reg_tf viewer on http://{args.host}:{server.effective_port}/ (Ctrl-C stops it)")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
