"""`python -m seg4reg_tf.predict`: Cobb angles and a report for a folder of radiographs.

    python -m seg4reg_tf.predict --workdir workdirs/demo  xrays/ more/*.dcm  --out report/
    python -m seg4reg_tf.predict --saved-model exports/seg4reg/1  xrays/  --out report/ --tta --overlays
    python -m seg4reg_tf.predict --saved-model exports/seg4reg  --dicomweb http://pacs:8042/dicom-web --study UID --out report/

Inputs are files, folders (recursive) and glob patterns of JPEG, PNG (8/16-bit) and DICOM.
What each row holds: `serving.analysis`. A file that cannot be read or predicted becomes an
error row and the run goes on; the exit status is 1 when any input failed, 2 when the run
could not start.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

from seg4reg_tf import cli
from seg4reg_tf.data import radiographs
from seg4reg_tf.serving import pacs, report
from seg4reg_tf.serving.analysis import predict_files
from seg4reg_tf.serving.loaded_system import load_saved_model, load_workdir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seg4reg_tf.predict", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="training workdir (uses its last N_S and N_R)")
    source.add_argument("--saved-model", help="exported SavedModel: a version folder, or the model folder (highest version)")
    parser.add_argument("inputs", nargs="*", help="files, folders (recursive) or glob patterns of JPEG, PNG and DICOM")
    parser.add_argument("--out", required=True, help="output folder for predictions.csv / .json (and overlays/)")
    parser.add_argument("--overlays", action="store_true", help="write OUT/overlays/<file>.png: the spine, vertebrae, curves and angles")
    parser.add_argument("--cam", action="store_true", help="with --overlays: also N_R's class activation map, inside the spine's outline")
    parser.add_argument("--dicom-out", help="for DICOM inputs: write DIR/<file>.sr.dcm (the curves, DICOM SR) and .seg.dcm (the spine, DICOM SEG)")
    parser.add_argument("--dicomweb", metavar="URL", help="a PACS's DICOMweb root: predict the radiographs of --study and store their SR and SEG back "
                        "(credentials from SEG4REG_DICOMWEB_* variables, docs/clinical.md)")
    parser.add_argument("--study", help="with --dicomweb: the Study Instance UID")
    parser.add_argument("--series", help="with --dicomweb: only this Series Instance UID")
    parser.add_argument("--dicomweb-timeout", type=float, default=30.0, help="seconds to wait for each DICOMweb answer (default 30)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="test-time augmentation (default: the config's predict.tta)")
    parser.add_argument("--low-confidence-spread", type=float, help="degrees of spread over the TTA views that flag an image (default: the config's)")
    parser.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = cli.parse(parser, argv)
    if args.dicomweb and (not args.study or args.inputs):
        parser.error("--dicomweb needs --study and takes no input files")
    if not args.dicomweb and (args.study or args.series or not args.inputs):
        parser.error("give input files, or --dicomweb URL --study UID")

    paths, missing = radiographs.find_inputs(args.inputs) if args.inputs else ([], [])
    try:
        client = pacs.connect(args.dicomweb, timeout=args.dicomweb_timeout) if args.dicomweb else None
        model = load_workdir(args.workdir) if args.workdir else load_saved_model(args.saved_model)
        settings = model.config.predict
        if args.tta is not None:
            settings = dataclasses.replace(settings, tta=args.tta)
        if args.low_confidence_spread is not None:
            settings = dataclasses.replace(settings, low_confidence_spread_degrees=args.low_confidence_spread)
        header = {"model": model.source, "predict": dataclasses.asdict(settings), "angle_unit": "degrees"}
        writer = report.ReportWriter(args.out, header, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        return cli.fail(error)
    for argument, message in missing:
        writer.add(report.error_row(argument, message))
    overlay_dir = pathlib.Path(args.out) / "overlays" if args.overlays else None
    dicom_dir = args.dicom_out or (str(pathlib.Path(args.out) / "dicom") if client else None)
    try:
        if client:
            rows = pacs.round_trip(model, client, args.study, args.series, settings, writer, dicom_dir, overlay_dir)
        else:
            rows = predict_files(model, paths, writer, settings, overlay_dir, verbose=not args.quiet, dicom_dir=dicom_dir, show_cam=args.cam)
    except pacs.PacsError as error:
        return cli.fail(error)
    finally:
        writer.close()
    for row in rows:
        if row["status"] == "error":
            print(f"failed: {row['error']}", file=sys.stderr)
    print(report.summary_line(rows))
    print(f"report: {writer.csv_path} and {writer.json_path}")
    if overlay_dir is not None:
        print(f"overlays: {overlay_dir}")
    for row in rows:
        if row.get("dicom_refused"):
            print(f"no DICOM results: {row['dicom_refused']}", file=sys.stderr)
    return 1 if any(row["status"] == "error" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
