"""The workdir's layout (seg4reg_tf/workdir.py): which file each phase writes and needs, which
networks the system has after each phase, and the errors that name what to train."""

import pathlib

import pytest

from seg4reg_tf.config import config_from_dict, load_config, save_config
from seg4reg_tf.workdir import PHASES, final_networks, missing_predecessor, network_path, phase_dir, phase_monitor, phase_sources

SMOKE = load_config(pathlib.Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml")


def touch(workdir, phase: str, network: str) -> pathlib.Path:
    """An (empty) network file where `phase` writes `network`."""
    path = network_path(workdir, phase, network)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_the_networks_after_each_phase_are_the_latest_written_up_to_it(tmp_path):
    seg, reg, roie, tcl = (touch(tmp_path, *pair) for pair in (("seg", "segmenter"), ("reg", "regressor"), ("roie", "segmenter"), ("tcl", "segmenter")))
    assert phase_sources(tmp_path, "seg") == {"segmenter": seg, "regressor": None}
    assert phase_sources(tmp_path, "reg") == {"segmenter": seg, "regressor": reg}
    assert phase_sources(tmp_path, "roie") == {"segmenter": roie, "regressor": reg}
    # refine has not run: N_R is still reg's
    assert phase_sources(tmp_path, "refine") == {"segmenter": tcl, "regressor": reg}


def test_a_phase_names_the_first_file_it_lacks(tmp_path):
    assert missing_predecessor(tmp_path, "seg") is None
    assert missing_predecessor(tmp_path, "roie") == ("seg", network_path(tmp_path, "seg", "segmenter"))
    touch(tmp_path, "seg", "segmenter")
    assert missing_predecessor(tmp_path, "roie") == ("reg", network_path(tmp_path, "reg", "regressor"))
    touch(tmp_path, "reg", "regressor")
    assert missing_predecessor(tmp_path, "roie") is None
    assert missing_predecessor(tmp_path, "tcl") == ("roie", network_path(tmp_path, "roie", "segmenter"))


def test_the_monitor_is_the_tables_unless_the_phase_says_readout():
    assert phase_monitor("seg", SMOKE) == ("val_dice", "max")
    assert phase_monitor("reg", SMOKE) == ("val_smape", "min")
    readout = config_from_dict({**SMOKE.to_dict(), "roie": {**SMOKE.to_dict()["roie"], "monitor": "readout"}})
    assert phase_monitor("roie", readout) == ("val_readout_smape", "min")
    assert phase_monitor("seg", readout) == ("val_dice", "max")


def test_an_unknown_phase_is_refused():
    with pytest.raises(ValueError, match="unknown phase 'segment'"):
        phase_dir("w", "segment")
    assert [phase_dir("w", phase).name for phase in PHASES] == ["seg", "reg", "roie", "tcl", "refine"]


def test_final_networks_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a training workdir"):
        final_networks(tmp_path)
    save_config(SMOKE, tmp_path / "config.yaml")
    with pytest.raises(FileNotFoundError, match="no trained segmenter .*train phase 'seg' first"):
        final_networks(tmp_path)
    touch(tmp_path, "seg", "segmenter")
    with pytest.raises(FileNotFoundError, match="no trained regressor .*train phase 'reg' first"):
        final_networks(tmp_path)
