"""Loading a system to answer with (serving/loaded_system.py): finding an export's version
and reading what the export recorded, without loading its networks."""

import json

import pytest

from seg4reg_tf.config import Config
from seg4reg_tf.serving.loaded_system import read_export, resolve_saved_model


def version(folder, number: int):
    """A version folder holding an (empty) saved_model.pb."""
    path = folder / str(number)
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")
    return path


def test_a_model_folder_resolves_to_its_highest_numeric_version(tmp_path):
    for number in (2, 10, 9):
        version(tmp_path / "seg4reg", number)
    (tmp_path / "seg4reg" / "11-incomplete").mkdir()  # not numeric: an export being written
    (tmp_path / "seg4reg" / "12").mkdir()  # numeric but no saved_model.pb
    assert resolve_saved_model(str(tmp_path / "seg4reg")) == tmp_path / "seg4reg" / "10"  # 10 > 9, as numbers
    assert resolve_saved_model(str(tmp_path / "seg4reg" / "2")) == tmp_path / "seg4reg" / "2"


def test_a_folder_without_a_saved_model_is_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no saved_model.pb"):
        resolve_saved_model(str(tmp_path))


def test_read_export_gives_the_recorded_config_and_names_what_is_missing(tmp_path):
    path = version(tmp_path, 1)
    with pytest.raises(FileNotFoundError, match="seg4reg.json not found: .* is not a seg4reg export"):
        read_export(str(tmp_path))
    (path / "assets.extra").mkdir()
    values = Config().to_dict()
    values["data"]["image_height"] = 256
    (path / "assets.extra" / "seg4reg.json").write_text(json.dumps({"config": values, "angles": {"route": "geometric"}}))
    found, info, config = read_export(str(tmp_path))
    assert found == path and info["angles"]["route"] == "geometric" and config.data.image_height == 256
    values["data"]["image_height"] = 100  # not a multiple of 32
    (path / "assets.extra" / "seg4reg.json").write_text(json.dumps({"config": values}))
    with pytest.raises(ValueError, match="seg4reg.json: in 'data': 'image_height' must be a positive multiple of 32"):
        read_export(str(tmp_path))
