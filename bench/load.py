"""Load and soak: concurrent clients against the loopback model server over an export.

    python bench/load.py --export exports/seg4reg/1 [--clients 8] [--seconds 120]
    python bench/load.py --workdir W                 # exports the workdir first

Starts `seg4reg_tf.serving.loopback_server` (TF Serving cannot be installed here; it serves the
export over the real gRPC PredictionService and the REST `:predict` API) on loopback ports
in a child process, then runs `--clients` threads for `--seconds`, half of them over gRPC
and half over REST, each sending one X-ray per request with `seg4reg_tf.serving_client`.
Every `--bad-every`-th request of a client is a bad input, cycling through the kinds of
`bad_images` (each client sends every kind at least once, however short the run);
the rest are synthetic radiographs (2360×854-sized JPEGs from the project's generator).

Prints p50/p99 latency of good and bad requests per protocol, the answers by input kind
(a good image must be answered, a bad one refused with INVALID_ARGUMENT or HTTP 400), and
the server's resident memory after warm-up and at the end. Exits 1 when any answer was
unexpected or memory grew by more than `--max-growth` percent.
"""

import argparse
import collections
import json
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from seg4reg_tf.data import synthetic  # noqa: E402
from seg4reg_tf.serving import client, saved_model  # noqa: E402

PROTOCOLS = {"grpc": client.grpc_predict, "rest": client.rest_predict}
REFUSALS = ("gRPC INVALID_ARGUMENT", "REST 400")


def good_images(count: int) -> list[bytes]:
    """`count` synthetic radiographs at the generator's X-ray sizes, encoded as JPEG."""
    images = []
    for index in range(count):
        image, _, _ = synthetic.make_example(0, "test", index)
        images.append(cv2.imencode(".jpg", image)[1].tobytes())
    return images


def png_declaring(height: int, width: int) -> bytes:
    """A PNG whose header declares height × width pixels and holds no image data (a bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def bad_images(good: bytes) -> dict[str, bytes]:
    """Inputs the serving graph must refuse, by kind."""
    return {
        "empty": b"",
        "text": b"this is not an image\n" * 4,
        "random bytes": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "truncated JPEG": good[: len(good) // 2],
        "PNG declaring 60000x60000": png_declaring(60000, 60000),
        "1x1 PNG": cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes(),
    }


def start_server(export: pathlib.Path, name: str):
    """The loopback server in a child process; returns (process, ports {"grpc", "rest"})."""
    process = subprocess.Popen(
        [sys.executable, "-m", "seg4reg_tf.serving.loopback_server", str(export), "--name", name],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the loopback server did not start on {export} (exit {process.wait()})")
    return process, json.loads(line)


def resident_mb(pid: int) -> float:
    """Resident memory (VmRSS) of process `pid` in MiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def outcome(call) -> str:
    """"ok", "refused" (INVALID_ARGUMENT / HTTP 400) or the error's first words."""
    try:
        call()
        return "ok"
    except client.ServingError as error:
        message = str(error)
        return "refused" if message.startswith(REFUSALS) else message[:80]


def run_client(protocol, port, name, good, bad, bad_every, deadline, records, lock):
    """Sends requests until `deadline`, and at least one of each bad kind; appends
    (protocol, kind, seconds, outcome) to records. A client that crashes records a
    "client crashed" row, which counts as unexpected, instead of vanishing with its thread."""
    send = PROTOCOLS[protocol]
    kinds = list(bad)
    count = 0
    try:
        while time.monotonic() < deadline or count < bad_every * len(kinds):
            if count % bad_every == bad_every - 1:
                kind = kinds[(count // bad_every) % len(kinds)]
                image = bad[kind]
            else:
                kind, image = "good", good[count % len(good)]
            started = time.perf_counter()
            result = outcome(lambda image=image: send("127.0.0.1", port, [image], name, timeout=120.0))
            with lock:
                records.append((protocol, kind, time.perf_counter() - started, result))
            count += 1
    except Exception as error:  # noqa: BLE001 (any crash must fail the run)
        with lock:
            records.append((protocol, "client crashed", 0.0, repr(error)[:80]))


def run_load(export, clients=8, seconds=120.0, bad_every=4, name="seg4reg", good_count=4):
    """Serves `export` on loopback and runs the clients.

    Returns:
        {"records": [(protocol, kind, seconds, outcome)], "memory_mb": (after warm-up, end)}.
    """
    good = good_images(good_count)
    bad = bad_images(good[0])
    process, ports = start_server(pathlib.Path(export), name)
    try:
        for protocol, send in PROTOCOLS.items():  # warm-up: the first call traces and allocates
            for _ in range(2):
                send("127.0.0.1", ports[protocol], [good[0]], name, timeout=300.0)
        start_memory = resident_mb(ports["pid"])
        records, lock = [], threading.Lock()
        deadline = time.monotonic() + seconds
        threads = [
            threading.Thread(target=run_client, args=(protocol, ports[protocol], name, good, bad, bad_every, deadline, records, lock))
            for index in range(clients)
            for protocol in [("grpc", "rest")[index % 2]]
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {"records": records, "memory_mb": (start_memory, resident_mb(ports["pid"]))}
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def unexpected(kind: str, result: str) -> bool:
    """A good image must be answered, a bad one refused."""
    return result != ("ok" if kind == "good" else "refused")


def report(result: dict, seconds: float) -> list[str]:
    """Markdown tables of latency per protocol, answers per input kind, and memory."""
    records = result["records"]
    lines = ["| protocol | requests | good p50 / p99 (ms) | bad p50 / p99 (ms) | X-rays/s answered | unexpected |", "|---|---|---|---|---|---|"]
    for protocol in PROTOCOLS:
        mine = [r for r in records if r[0] == protocol]
        good = [r[2] * 1000 for r in mine if r[1] == "good"]
        bad = [r[2] * 1000 for r in mine if r[1] != "good"]

        def percentiles(values):
            return f"{np.percentile(values, 50):.0f} / {np.percentile(values, 99):.0f}" if values else "–"

        answered = sum(1 for r in mine if r[3] == "ok")
        lines.append(f"| {protocol} | {len(mine)} | {percentiles(good)} | {percentiles(bad)} | {answered / seconds:.2f} | {sum(unexpected(r[1], r[3]) for r in mine)} |")
    lines += ["", "| input | answer | count |", "|---|---|---|"]
    for (kind, answer), count in sorted(collections.Counter((r[1], r[3]) for r in records).items()):
        lines.append(f"| {kind} | {answer}{' (UNEXPECTED)' if unexpected(kind, answer) else ''} | {count} |")
    start, end = result["memory_mb"]
    lines += ["", f"server memory: {start:.0f} MiB after warm-up, {end:.0f} MiB at the end ({100 * (end - start) / start:+.1f}%)"]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--export", help="an exported version folder (…/seg4reg/1)")
    source.add_argument("--workdir", help="a trained workdir, exported first to a temporary folder")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--bad-every", type=int, default=4, help="every n-th request of a client is a bad input")
    parser.add_argument("--max-growth", type=float, default=10.0, help="percent of memory growth that fails the run")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.bad_every < 1:
        parser.error("--clients, --seconds and --bad-every must be positive")
    with tempfile.TemporaryDirectory() as folder:
        export = args.export
        if args.workdir:
            export = saved_model.export_saved_model(pathlib.Path(args.workdir), pathlib.Path(folder))
        result = run_load(export, args.clients, args.seconds, args.bad_every)
    print(f"{args.clients} clients for {args.seconds:.0f} s, every {args.bad_every}th request bad\n")
    print("\n".join(report(result, args.seconds)))
    start, end = result["memory_mb"]
    failed = sum(unexpected(r[1], r[3]) for r in result["records"])
    growth = 100 * (end - start) / start
    if failed or growth > args.max_growth:
        print(f"FAILED: {failed} unexpected answers, memory growth {growth:+.1f}% (limit {args.max_growth}%)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
