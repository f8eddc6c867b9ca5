"""The route record: which of the three routes answers `cobb_angles` (`inference.angles`),
and `<workdir>/routes.json`, the validation SMAPE of each route behind an "auto" choice.

    routes.json: {"validation_smape": {route: % or null}, "choice": route, "images": N,
                  "networks": {role: "file@mtime_ns"}}

The record is written by whoever has the labelled data: `train` after its last phase and
`evaluate` when the record is missing or older than the networks (both through
`evaluation.scoring.record_routes`). Export and predict only read it: a serving machine has
no training data, so a workdir without a fresh record answers with `DEFAULT_ROUTE`, and says
so.
"""

from __future__ import annotations

import json
import logging
import pathlib

from seg4reg_tf import files

_LOG = logging.getLogger(__name__)

# the three routes to `cobb_angles`, in the order that breaks ties of `auto`; "geometric" is
# the centre-line readout (also spelled "centre_line" in configs)
ROUTES = ("regressor", "geometric", "vertebrae")
ROUTES_FILE = "routes.json"
# what "auto" answers with when nothing usable was recorded: N_R, the paper's answer, which
# every trained system has
DEFAULT_ROUTE = "regressor"


def choose_route(setting: str, recorded: dict | None) -> str:
    """The route that answers: `setting` unless "auto"; then the recorded route with the
    lower validation SMAPE (`DEFAULT_ROUTE` when nothing usable was recorded).

    Args:
        setting: `inference.angles`.
        recorded: the contents of routes.json ({"validation_smape": {route: %}}), or None.
    """
    if setting in ROUTES:
        return setting
    if setting != "auto":
        raise ValueError(f"inference.angles must be 'regressor', 'geometric', 'vertebrae' or 'auto', got {setting!r}")
    scores = (recorded or {}).get("validation_smape", {})
    usable = {route: scores[route] for route in ROUTES if isinstance(scores.get(route), (int, float)) and scores[route] == scores[route]}
    if not usable:
        return DEFAULT_ROUTE
    return min(usable, key=lambda route: (usable[route], ROUTES.index(route)))


def network_stamps(sources: dict) -> dict:
    """{role: "file@mtime_ns"}: identifies the networks a record was made with."""
    stamps = {}
    for role, path in sorted(sources.items()):
        path = pathlib.Path(path).resolve()
        stamps[role] = f"{path}@{path.stat().st_mtime_ns}"
    return stamps


def read_routes(workdir, sources: dict) -> dict | None:
    """routes.json of a workdir if it was written for these networks (`sources`: role →
    file, as `workdir.final_networks` names them, with their modification times), else None."""
    path = pathlib.Path(workdir) / ROUTES_FILE
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) and recorded.get("networks") == network_stamps(sources) else None


def write_routes(workdir, scores: dict, images: int, sources: dict) -> dict:
    """Writes `<workdir>/routes.json` (atomically) and returns it.

    Args:
        scores: {route: validation SMAPE %, or None where the route does not answer}.
        images: how many validation images the scores are over.
        sources: role → network file (`workdir.final_networks`).
    """
    recorded = {"validation_smape": {route: scores.get(route) for route in ROUTES}, "images": images, "networks": network_stamps(sources)}
    recorded["choice"] = choose_route("auto", recorded)
    files.atomic_write(pathlib.Path(workdir) / ROUTES_FILE, json.dumps(recorded, indent=2).encode("utf-8"))
    return recorded


def route_for_workdir(workdir, setting: str, sources: dict) -> tuple[str, dict | None]:
    """(route, record): the route `cobb_angles` takes for this workdir's networks, and the
    fresh routes.json record behind it (None when there is none). Reads no data: with "auto"
    and no fresh record, the route is `DEFAULT_ROUTE`, with a warning naming the command
    that records the routes."""
    recorded = read_routes(workdir, sources)
    if setting == "auto" and recorded is None:
        _LOG.warning("%s has no %s for its current networks: inference.angles auto answers with the %s; "
                     "`python -m seg4reg_tf.evaluate --workdir %s` records the routes (it needs the training data)",
                     workdir, ROUTES_FILE, DEFAULT_ROUTE, workdir)
    return choose_route(setting, recorded), recorded
