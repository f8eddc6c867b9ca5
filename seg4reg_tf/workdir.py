"""The training workdir and the phase table of Algorithm 1: one home for both, imported by
train, export, evaluate, predict, visualize, ablation and the tests.

    <workdir>/config.yaml                    the run's config
    <workdir>/<phase>/segmenter.keras        N_S, written by seg, roie and tcl
    <workdir>/<phase>/regressor.keras        N_R, written by reg and refine
    <workdir>/<phase>/summary.json           the phase finished (history, final metrics)
    <workdir>/<phase>/best.json, best.weights.h5, history.csv, logs/, backup/
    <workdir>/routes.json                    validation SMAPE of the three angle routes (`routes`)
    <workdir>/pretrain/regressor_trunk.weights.h5, .json
                                             N_R's trunk pretrained on synthetic masks, with
                                             `regressor.weights: pretrain` (before phase reg)
    <workdir>/refiner/tilt_refiner.keras, summary.json
                                             the vertebra route's tilt refiner, with
                                             `refiner.enabled` (before phase reg)

The phase table says, for each phase in order, which network it trains, which files of
earlier phases it needs and the validation metric that keeps its best epoch.
"""

from __future__ import annotations

import dataclasses
import pathlib

import keras

import seg4reg_tf.layers  # noqa: F401  (registers the custom layers for loading)
from seg4reg_tf.config import load_config, save_config
from seg4reg_tf.models.pspnet import build_segmenter, copy_segmenter_weights, is_flat_segmenter, segmenter_layer

NETWORK_FILES = {"segmenter": "segmenter.keras", "regressor": "regressor.keras"}
# the other files of a phase folder (and of refiner/)
SUMMARY = "summary.json"        # written last: the phase finished
BEST_WEIGHTS = "best.weights.h5"  # the trainer's weights at the best epoch so far
BEST_VALUE = "best.json"        # the monitored value of that epoch
HISTORY = "history.csv"         # one row per epoch, across resumes
BACKUP = "backup"               # the checkpoint an interrupted phase resumes from
EVALUATION = "evaluation"       # <workdir>/evaluation/<split>/: evaluate's and visualize's default output


@dataclasses.dataclass(frozen=True)
class Phase:
    """One row of the phase table.

    Attributes:
        name: the phase (`--phase`).
        trains: "segmenter" (N_S) or "regressor" (N_R): the network the phase writes.
        needs: (phase, network) pairs whose files must exist before it starts.
        monitor: (validation metric, "max" | "min") that keeps the best epoch by default
            (`phase_monitor` applies the config's choice).
    """
    name: str
    trains: str
    needs: tuple[tuple[str, str], ...]
    monitor: tuple[str, str]


PHASE_TABLE = {
    phase.name: phase
    for phase in (
        Phase("seg", "segmenter", (), ("val_dice", "max")),
        Phase("reg", "regressor", (("seg", "segmenter"),), ("val_smape", "min")),
        Phase("roie", "segmenter", (("seg", "segmenter"), ("reg", "regressor")), ("val_dice", "max")),
        Phase("tcl", "segmenter", (("roie", "segmenter"), ("reg", "regressor")), ("val_smape", "min")),
        Phase("refine", "regressor", (("tcl", "segmenter"), ("reg", "regressor")), ("val_smape", "min")),
    )
}
PHASES = tuple(PHASE_TABLE)


def phase_monitor(phase: str, config) -> tuple[str, str]:
    """(validation metric, "max" | "min") that keeps `phase`'s best epoch: the table's, or
    the readout's SMAPE when the phase's config says `monitor: readout` (seg, roie)."""
    if getattr(getattr(config, phase), "monitor", "dice") == "readout":
        return ("val_readout_smape", "min")
    return PHASE_TABLE[phase].monitor


def pretrained_trunk_path(workdir) -> pathlib.Path:
    """Where `regressor.weights: pretrain` puts N_R's pretrained trunk (its summary beside it)."""
    return pathlib.Path(workdir) / "pretrain" / "regressor_trunk.weights.h5"


def refiner_path(workdir) -> pathlib.Path:
    """Where `refiner.enabled` puts the tilt refiner (its summary.json beside it)."""
    return pathlib.Path(workdir) / "refiner" / "tilt_refiner.keras"


def load_refiner(sources: dict):
    """The tilt refiner named by `final_networks`' sources, or None when it has none."""
    path = sources.get("refiner")
    return load_network(path) if path else None


def load_network(path):
    """A saved network (.keras) without its training state (no optimizer, no compile). An
    N_S saved before N_S had an encoder and a head comes back in today's layout, built from
    its workdir's config.yaml with the same weights.

    Raises:
        ValueError: such an N_S lies outside a workdir (no `<workdir>/config.yaml` two
            folders up); named.
    """
    model = keras.saving.load_model(path, compile=False)
    if not is_flat_segmenter(model):
        return model
    config_path = pathlib.Path(path).parent.parent / "config.yaml"
    if not config_path.is_file():
        raise ValueError(f"{path}: an N_S of the layout before encoder and head, outside a workdir (no {config_path}): "
                         "load it from its workdir, or retrain")
    config = load_config(config_path)
    settings = dataclasses.replace(config.segmenter, weights="none")
    names = {layer.name for layer in model.layers}
    upgraded = build_segmenter(settings, config.data.image_size, with_roie="roie_gate" in names, name=model.name)
    copy_segmenter_weights(model, upgraded, str(path), gate=True)
    return upgraded


def evaluation_dir(workdir, split: str) -> pathlib.Path:
    """Where evaluate and visualize write a split's results by default."""
    return pathlib.Path(workdir) / EVALUATION / split


def phase_dir(workdir, phase: str) -> pathlib.Path:
    """<workdir>/<phase>/."""
    if phase not in PHASE_TABLE:
        raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
    return pathlib.Path(workdir) / phase


def network_path(workdir, phase: str, network: str) -> pathlib.Path:
    """<workdir>/<phase>/<network>.keras (network: "segmenter" or "regressor")."""
    return phase_dir(workdir, phase) / NETWORK_FILES[network]


def produced_path(workdir, phase: str) -> pathlib.Path:
    """The file `phase` writes: its trained network."""
    return network_path(workdir, phase, PHASE_TABLE[phase].trains)


def write_networks(workdir, config, segmenter, regressor, alpha: float | None = None, refiner=None) -> pathlib.Path:
    """Writes a workdir as phases roie and reg leave it: `config` and the given gated N_S
    and N_R (bench and test fixtures: exports and predictions without a training run).

    Args:
        alpha: when given, the ROIE gate's α is set to it first (a non-zero α makes the
            gate's two passes run at inference).
        refiner: a tilt refiner to write too (for a config with `refiner.enabled`), or None.
    """
    workdir = pathlib.Path(workdir)
    if alpha is not None:
        segmenter_layer(segmenter, "roie_gate").alpha.assign(alpha)
    for phase in ("roie", "reg"):
        phase_dir(workdir, phase).mkdir(parents=True, exist_ok=True)
    save_config(config, workdir / "config.yaml")
    segmenter.save(network_path(workdir, "roie", "segmenter"))
    regressor.save(network_path(workdir, "reg", "regressor"))
    if refiner is not None:
        refiner_path(workdir).parent.mkdir(parents=True, exist_ok=True)
        refiner.save(refiner_path(workdir))
    return workdir


def is_done(workdir, phase: str) -> bool:
    """Whether `phase` finished (its summary.json exists)."""
    return (phase_dir(workdir, phase) / SUMMARY).exists()


def missing_predecessor(workdir, phase: str) -> tuple[str, pathlib.Path] | None:
    """(phase, file) of the first file `phase` needs that does not exist, or None."""
    for needed, network in PHASE_TABLE[phase].needs:
        path = network_path(workdir, needed, network)
        if not path.exists():
            return needed, path
    return None


def phase_sources(workdir, phase: str) -> dict:
    """{"segmenter": path | None, "regressor": path | None}: the networks the system had
    right after `phase` — the latest file of each network from that phase or an earlier one."""
    done = PHASES[: PHASES.index(phase) + 1]
    sources = {}
    for network in NETWORK_FILES:
        candidates = [network_path(workdir, name, network) for name in reversed(done) if PHASE_TABLE[name].trains == network]
        sources[network] = next((path for path in candidates if path.exists()), None)
    return sources


def final_networks(workdir):
    """The last trained N_S and N_R of a workdir.

    Args:
        workdir: a training workdir.

    Returns:
        (config, segmenter, regressor, sources), sources naming the file of each network,
        and under "refiner" the tilt refiner's when `refiner.enabled` and it is trained
        (`load_refiner` loads it).

    Raises:
        FileNotFoundError: no config.yaml, or no phase has produced one of the networks.
    """
    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.yaml"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found: {workdir} is not a training workdir (run `python -m seg4reg_tf.train` first)")
    config = load_config(config_path)
    sources = phase_sources(workdir, PHASES[-1])  # the last phase: every network trained so far
    for network, path in sources.items():
        if path is None:
            writers = [name for name in reversed(PHASES) if PHASE_TABLE[name].trains == network]
            candidates = ", ".join(str(network_path(workdir, name, network)) for name in writers)
            raise FileNotFoundError(f"{workdir} has no trained {network} (looked for {candidates}); train phase '{writers[-1]}' first")
    if config.refiner.enabled:
        if not refiner_path(workdir).is_file():
            raise FileNotFoundError(f"{workdir} has no tilt refiner ({refiner_path(workdir)}; refiner.enabled): train phase 'reg' first, which trains it")
        sources["refiner"] = refiner_path(workdir)
    segmenter = load_network(sources["segmenter"])
    regressor = load_network(sources["regressor"])
    return config, segmenter, regressor, {network: str(path) for network, path in sources.items()}
