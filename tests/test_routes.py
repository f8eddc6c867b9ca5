"""The route record (`routes`): the choice behind `inference.angles: auto`, routes.json, and
a workdir without a record answering with the stated default without reading any data."""

import json
import logging
import os

import pytest

from seg4reg_tf import routes
from seg4reg_tf.config import config_from_dict, load_config, save_config


def test_auto_chooses_the_best_of_three_routes_and_centre_line_names_the_geometric_one():
    choose = routes.choose_route
    assert choose("auto", {"validation_smape": {"regressor": 14.6, "geometric": 10.3, "vertebrae": 9.7}}) == "vertebrae"
    assert choose("auto", {"validation_smape": {"regressor": 14.6, "geometric": 10.3, "vertebrae": None}}) == "geometric"
    assert choose("auto", {"validation_smape": {"regressor": 9.0, "geometric": 10.3, "vertebrae": float("nan")}}) == "regressor"
    assert choose("auto", {"validation_smape": {"regressor": 10.3, "geometric": 10.3, "vertebrae": 10.3}}) == "regressor"  # ties: ROUTES order
    assert choose("auto", None) == routes.DEFAULT_ROUTE == "regressor"
    assert choose("geometric", None) == "geometric" and choose("vertebrae", None) == "vertebrae"
    # the config's other name for the centre line is read as the one name the outputs use
    centre_line = config_from_dict({"inference": {"angles": "centre_line"}})
    assert centre_line.inference.angles == "geometric" and choose(centre_line.inference.angles, None) == "geometric"
    with pytest.raises(ValueError, match="inference.angles"):
        choose("best", None)


def networks(folder):
    """Two stand-in network files, as `workdir.final_networks` names them."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = {"segmenter": folder / "segmenter.keras", "regressor": folder / "regressor.keras"}
    for path in sources.values():
        path.write_bytes(b"weights")
    return sources


def test_a_written_record_is_read_back_until_a_network_changes(tmp_path):
    sources = networks(tmp_path / "tcl")
    written = routes.write_routes(tmp_path, {"regressor": 14.5, "geometric": 10.3, "vertebrae": 8.5}, 96, sources)
    assert written["choice"] == "vertebrae" and written["images"] == 96
    assert json.loads((tmp_path / routes.ROUTES_FILE).read_text()) == written == routes.read_routes(tmp_path, sources)
    assert routes.route_for_workdir(tmp_path, "auto", sources) == ("vertebrae", written)
    assert routes.route_for_workdir(tmp_path, "geometric", sources)[0] == "geometric"
    stamp = sources["regressor"].stat().st_mtime_ns
    os.utime(sources["regressor"], ns=(stamp + 10**9, stamp + 10**9))  # retrained after the record
    assert routes.read_routes(tmp_path, sources) is None
    (tmp_path / routes.ROUTES_FILE).write_text("{not json")
    assert routes.read_routes(tmp_path, sources) is None
    (tmp_path / routes.ROUTES_FILE).write_text("[1, 2]")
    assert routes.read_routes(tmp_path, sources) is None


def test_without_a_record_auto_answers_with_the_default_writes_nothing_and_says_how_to_record(tmp_path, caplog):
    sources = networks(tmp_path / "tcl")
    with caplog.at_level(logging.WARNING, logger="seg4reg_tf.routes"):
        route, recorded = routes.route_for_workdir(tmp_path, "auto", sources)
    assert (route, recorded) == ("regressor", None)
    assert not (tmp_path / routes.ROUTES_FILE).exists()
    assert "seg4reg_tf.evaluate --workdir" in caplog.text and "regressor" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="seg4reg_tf.routes"):
        assert routes.route_for_workdir(tmp_path, "vertebrae", sources) == ("vertebrae", None)
    assert caplog.text == ""  # a route named in the config needs no record


@pytest.mark.slow
def test_predict_loads_a_workdir_without_its_training_data(exported, tmp_path):
    """A serving machine: the workdir's networks, but its config's data root is gone and there
    is no route record. Loading it for predict reads no data and answers with the default."""
    import shutil

    from seg4reg_tf.serving import loaded_system

    workdir = tmp_path / "workdir"
    shutil.copytree(exported["workdir"], workdir)
    (workdir / routes.ROUTES_FILE).unlink()
    config = load_config(workdir / "config.yaml").to_dict()
    save_config(config_from_dict({**config, "data": {**config["data"], "root": str(tmp_path / "gone")}}), workdir / "config.yaml")
    loaded = loaded_system.load_workdir(str(workdir))
    assert loaded.route == routes.DEFAULT_ROUTE
    assert not (workdir / routes.ROUTES_FILE).exists() and not (tmp_path / "gone").exists()
