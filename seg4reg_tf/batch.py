"""`python -m seg4reg_tf.batch`: predict's rows for a whole archive, on Apache Beam.

    python -m seg4reg_tf.batch --saved-model exports/seg4reg 'archive/**/*.dcm' --out results/
    python -m seg4reg_tf.batch --saved-model exports/seg4reg 'archive/*' --out results/ \\
        --direct_num_workers 2 --direct_running_mode multi_processing

The pattern is read by Beam's file systems (local paths; gs://, s3://, hdfs:// with Beam's
extras). Rows go to OUT/predictions-*.jsonl and .csv, refused files with the reason to
OUT/refused-*.jsonl, the run's settings to OUT/run.json (`serving.batch_inference`).
Options this command does not know go to Beam: `--runner DirectRunner` unless another is
given (DataflowRunner, FlinkRunner, SparkRunner take their own options). Needs the batch
extra: pip install -e ".[batch]".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

from seg4reg_tf import cli
from seg4reg_tf.files import atomic_write

INSTALL_HINT = 'Apache Beam is not installed: pip install -e ".[batch]" (or pip install "apache-beam>=2.77,<3")'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seg4reg_tf.batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--saved-model", required=True, help="a seg4reg export: a version folder, or the model folder (highest version)")
    parser.add_argument("pattern", help="files to score: a pattern on a Beam file system, e.g. 'archive/**/*.dcm'")
    parser.add_argument("--out", required=True, help="output folder for predictions-*.jsonl/.csv, refused-*.jsonl and run.json")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="test-time augmentation (default: the export's predict.tta)")
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    args, beam_args = cli.parse_known(parser, argv)
    try:
        from apache_beam.io.filesystems import FileSystems
        from apache_beam.options.pipeline_options import PipelineOptions

        from seg4reg_tf.serving import batch_inference
    except ImportError:
        return cli.fail(RuntimeError(INSTALL_HINT))
    from seg4reg_tf.serving.loaded_system import read_export

    try:
        version, _, config = read_export(args.saved_model)
    except (FileNotFoundError, ValueError) as error:
        return cli.fail(error)
    out = pathlib.Path(args.out)
    existing = sorted(out.glob("predictions-*")) + sorted(out.glob("refused-*"))
    if existing and not args.overwrite:
        return cli.fail(FileExistsError(f"{existing[0]} already exists; choose another --out or pass --overwrite"))
    matched = FileSystems.match([args.pattern])[0].metadata_list
    if not matched:
        return cli.fail(FileNotFoundError(f"{args.pattern}: no file matches"))
    settings = config.predict if args.tta is None else dataclasses.replace(config.predict, tta=args.tta)
    if not any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args):
        beam_args = ["--runner=DirectRunner", *beam_args]
    try:
        options = PipelineOptions(beam_args)
    except SystemExit:  # Beam's argparse has printed what it refused
        return 2
    header = batch_inference.run_header(str(version), settings)
    for path in existing:  # replaced only once the run can start
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "run.json", json.dumps({**header, "pattern": args.pattern, "files": len(matched)}, indent=2).encode())
    import apache_beam as beam

    with beam.Pipeline(options=options) as pipeline:
        batch_inference.build_pipeline(pipeline, args.pattern, str(version), settings, str(out))
    scored = sum(_count_lines(path) for path in out.glob("predictions-*.jsonl"))
    refused = sum(_count_lines(path) for path in out.glob("refused-*.jsonl"))
    print(f"{scored} scored, {refused} refused of {len(matched)} files → {out}")
    return 1 if refused else 0


def _count_lines(path: pathlib.Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


if __name__ == "__main__":
    sys.exit(main())
