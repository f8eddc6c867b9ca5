"""`python -m seg4reg_tf.train --phase {seg,reg,roie,tcl,refine,all}`: Algorithm 1 on disk.

    python -m seg4reg_tf.train --phase all --config configs/aasce_cpu.yaml --data ROOT --workdir W

Each phase reads what its predecessors left in the workdir (`workdir.py`) and writes its
network, figures and summary (`training.run`). Without `--config` the run uses
configs/demo.yaml on the embedded synthetic data set, generated on first use under
$SEG4REG_DATA_HOME (default ~/.cache/seg4reg_tf).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from seg4reg_tf import cli
from seg4reg_tf.config import DEMO_CONFIG, REPO_CONFIGS, config_from_dict, load_config, save_config
from seg4reg_tf.evaluation.scoring import record_workdir_routes
from seg4reg_tf.training.run import check_weight_files, make_strategy, report, train_phase
from seg4reg_tf.training.workers import is_chief
from seg4reg_tf.workdir import PHASES, SUMMARY, is_done, phase_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seg4reg_tf.train", description="Train Seg4Reg+ phase by phase (Algorithm 1).")
    parser.add_argument("--phase", required=True, choices=["seg", "reg", "roie", "tcl", "refine", "all"])
    parser.add_argument("--config", help=f"YAML config (default: {DEMO_CONFIG.relative_to(REPO_CONFIGS.parent)} on the embedded synthetic data)")
    parser.add_argument("--workdir", default="workdirs/demo", help="where phases read and write (default workdirs/demo)")
    parser.add_argument("--data", help="AASCE-layout root; overrides data.root of the config")
    parser.add_argument("--strategy", choices=["none", "mirrored", "multiworker"], default="none", help="tf.distribute strategy (multiworker reads TF_CONFIG)")
    parser.add_argument("--cpu-replicas", type=int, default=1, help="split the CPU into this many logical devices (to exercise strategies without GPUs)")
    parser.add_argument("--jit-compile", choices=["auto", "true", "false"], default="auto", help="XLA for the train step (auto: off on CPU and under strategies)")
    parser.add_argument("--run-eagerly", action="store_true", help="no tf.function: for debugging, and for tiny runs where tracing dominates")
    args = cli.parse(parser, argv)

    config_path = args.config or DEMO_CONFIG
    try:
        config = load_config(config_path)
    except (FileNotFoundError, ValueError) as error:
        return cli.fail(error)
    if args.data:

        config = config_from_dict({**config.to_dict(), "data": {**config.to_dict()["data"], "root": args.data}}, source=str(config_path))
    workdir = pathlib.Path(args.workdir)
    strategy = make_strategy(args.strategy, args.cpu_replicas)
    chief = is_chief(strategy)  # only the chief writes the workdir (training.workers)
    saved = workdir / "config.yaml"
    if saved.exists() and load_config(saved) != config:
        print(f"error: {workdir} was trained with another configuration ({saved}); use a new --workdir", file=sys.stderr)
        return 2
    if chief:
        workdir.mkdir(parents=True, exist_ok=True)
        save_config(config, saved)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    verbose = 1 if sys.stdout.isatty() else 2
    phases = list(PHASES) if args.phase == "all" else [args.phase]
    lines = []
    try:
        check_weight_files(config, [phase for phase in phases if not is_done(workdir, phase)])
        for phase in phases:
            if is_done(workdir, phase):  # a finished phase keeps no backup to train on from
                summary = json.loads((phase_dir(workdir, phase) / SUMMARY).read_text())
                print(f"phase {phase}: already complete in {phase_dir(workdir, phase)} (delete that folder to train it again)")
            else:
                print(f"=== phase {phase} ===", flush=True)
                summary = train_phase(phase, config, workdir, strategy, jit, verbose, run_eagerly=args.run_eagerly)
            lines.append(report(summary))
            print(lines[-1], flush=True)
    except FileNotFoundError as error:
        return cli.fail(error)
    if len(lines) > 1:
        print("\nvalidation per phase:\n  " + "\n  ".join(lines))
    recorded = record_workdir_routes(workdir) if chief else None
    if recorded is not None:
        scores = recorded["validation_smape"]
        shown = ", ".join(f"{route} {value:.2f}%" if value is not None else f"{route} -" for route, value in scores.items())
        print(f"validation SMAPE by route: {shown} → inference.angles auto answers with the {recorded['choice']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
