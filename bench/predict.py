"""`predict` over a folder of X-rays: X-rays per second with test-time augmentation off and on.

    python bench/predict.py --saved-model exports/seg4reg [--count 100]
    python bench/predict.py --workdir W [--count 100]

Writes `--count` synthetic radiographs at the AASCE X-ray size (2360×854 JPEG, the
project's generator) to a temporary folder, then runs `seg4reg_tf.predict` on the folder as
a user would (admission, decoding, the inference path, the report), once without and once
with TTA, and prints a Markdown table: seconds and X-rays per second of each run (model
loading excluded, one warm-up image first).
"""

import argparse
import dataclasses
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import cv2  # noqa: E402

from seg4reg_tf.data import radiographs, synthetic  # noqa: E402
from seg4reg_tf.serving import analysis, loaded_system, report, tta  # noqa: E402


def write_xrays(folder: pathlib.Path, count: int) -> list[str]:
    """`count` synthetic radiographs resized to 2360×854 (AASCE's size), as JPEG files."""
    paths = []
    for index in range(count):
        image, _, _ = synthetic.make_example(0, "test", index)
        path = folder / f"xray{index:03d}.jpg"
        cv2.imwrite(str(path), cv2.resize(image, (854, 2360), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(str(path))
    return paths


def timed_run(model, paths, settings, out: pathlib.Path) -> float:
    """Seconds of `analysis.predict_files` over `paths` with `settings`, report included."""
    writer = report.ReportWriter(out, {"bench": True}, overwrite=True)
    started = time.perf_counter()
    try:
        rows = analysis.predict_files(model, paths, writer, settings, verbose=False)
    finally:
        writer.close()
    seconds = time.perf_counter() - started
    failed = [row for row in rows if row["status"] == "error"]
    if failed:
        raise RuntimeError(f"{len(failed)} images failed, e.g. {failed[0]['error']}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="X-rays in the folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--saved-model", help="an export (version or model folder)")
    source.add_argument("--workdir", help="a trained workdir")
    args = parser.parse_args()
    model = loaded_system.load_saved_model(args.saved_model) if args.saved_model else loaded_system.load_workdir(args.workdir)
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        (folder / "xrays").mkdir()
        paths = write_xrays(folder / "xrays", args.count)
        found, missing = radiographs.find_inputs([str(folder / "xrays")])
        assert not missing and len(found) == args.count
        rows = []
        for augment in (False, True):
            settings = dataclasses.replace(model.config.predict, tta=augment)
            timed_run(model, found[:1], settings, folder / "warmup")
            seconds = timed_run(model, found, settings, folder / f"report-{augment}")
            views = len(tta.views(settings))
            rows.append(f"| {'on' if augment else 'off'} ({views} view{'s' if views > 1 else ''}) | {args.count} | {seconds:.1f} | {args.count / seconds:.2f} |")
    print(f"`predict` on {len(paths)} synthetic 2360×854 JPEGs, {os.cpu_count()} CPU cores, model: {model.source}\n")
    print("| TTA | X-rays | seconds | X-rays / s |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
