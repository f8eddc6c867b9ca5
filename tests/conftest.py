"""Shared fixtures: a small synthetic data set, and the real AASCE split when available."""

import importlib.metadata
import json
import os

import pytest

import seg4reg_tf

# TensorFlow's C++ start-up lines (CUDA probing, CPU features) stay out of the test run's
# output, as the commands keep them out of theirs (unless --verbose is on the command line).
seg4reg_tf.quiet_start()

from seg4reg_tf.data import synthetic  # noqa: E402
from tests.harness import make_workdir  # noqa: E402

SMALL = synthetic.SyntheticConfig(height_range=(300, 420))


# The session fixtures below take minutes to build. Under pytest-xdist (`make test` runs two
# workers with --dist loadgroup) the tests sharing one are kept on one worker, so it is built
# once, while the other worker runs everything else.
SHARED_FIXTURE_GROUPS = (("exported", "export"), ("smoke_ablation", "ablation"))


def pytest_configure(config):
    """Refuses `--dist loadgroup` where pytest-xdist cannot group: with pytest 9.2, xdist 3.8
    writes the group into a node-id field pytest no longer reads (xdist issue #1386), so each
    worker would build every shared fixture, minutes of the suite. setup.py pins pytest."""
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    xdist = tuple(int(part) for part in importlib.metadata.version("pytest-xdist").split(".")[:2])
    if pytest.version_tuple[:2] >= (9, 2) and xdist <= (3, 8):
        raise pytest.UsageError(
            f"--dist loadgroup groups nothing with pytest {pytest.__version__} and pytest-xdist "
            f"{'.'.join(map(str, xdist))} (pytest-xdist issue #1386): install setup.py's 'test' extra (pytest<9.2)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Marks the tests of each shared fixture with its group, and as slow (`make test-fast`
    leaves them out). First: xdist's own hook turns the marks into the node-id suffixes it
    schedules by, and a plain hook here ran after it."""
    for item in items:
        for fixture, group in SHARED_FIXTURE_GROUPS:
            if fixture in item.fixturenames:
                item.add_marker(pytest.mark.xdist_group(group))
                item.add_marker(pytest.mark.slow)  # it needs a fixture that trains for minutes
                break


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A read-only synthetic data set: 6 training and 2 test images, 300–420 px high."""
    root = tmp_path_factory.mktemp("synthetic") / "set"
    return synthetic.generate_dataset(root, train=6, test=2, seed=3, config=SMALL)


@pytest.fixture(scope="session")
def aasce_root():
    """The real AASCE root from SEG4REG_AASCE_ROOT; tests using it skip when it is unset."""
    root = os.environ.get("SEG4REG_AASCE_ROOT")
    if not root:
        pytest.skip("SEG4REG_AASCE_ROOT is not set")
    if not os.path.isdir(root):
        pytest.fail(f"SEG4REG_AASCE_ROOT={root} is not a folder")
    return root


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """An untrained smoke-sized workdir with its route record, as `train` leaves it, and its
    export (version 1), shared by the session: tracing both signatures costs about two
    minutes. Tests must not change either. Its N_S has the tilt head, so all three routes
    answer."""
    import tensorflow as tf

    from seg4reg_tf.evaluation.scoring import record_workdir_routes
    from seg4reg_tf.serving import saved_model
    from seg4reg_tf.workdir import final_networks

    workdir = make_workdir(tmp_path_factory.mktemp("export") / "workdir", segmenter={"tilt_weight": 1.0})
    record_workdir_routes(workdir)
    base = workdir.parent / "models"
    path = saved_model.export_saved_model(workdir, base)
    config, segmenter, regressor, _ = final_networks(workdir)
    info = json.loads((path / "assets.extra" / "seg4reg.json").read_text())
    return {"workdir": workdir, "base": base, "path": path, "config": config, "segmenter": segmenter,
            "regressor": regressor, "loaded": tf.saved_model.load(str(path)), "route": info["angles"]["route"]}


SMOKE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "smoke.yaml")


@pytest.fixture(scope="session")
def workdir_model(exported):
    """The `exported` fixture's workdir loaded as predict loads one (`serving.loaded_system`)."""
    from seg4reg_tf.serving import loaded_system

    return loaded_system.load_workdir(str(exported["workdir"]))


@pytest.fixture(scope="session")
def smoke_ablation(synthetic_root, tmp_path_factory):
    """Paper Table 1's rows for the image ⊕ mask input on the smoke config with the light
    networks (ResNet-18 N_S, plain-CNN N_R: the table's mechanics do not depend on them, and
    the paper's networks take most of the suite's time), N_R's trunk pretrained on a few
    drawn masks (`regressor.weights: pretrain`), trained through
    `python -m seg4reg_tf.train` (eagerly): its "+ TCL" workdir (`image+mask-ar`) is a whole
    run of Algorithm 1 from the command line, which tests/test_train.py inspects too."""
    from seg4reg_tf import evaluate
    from seg4reg_tf.config import config_from_dict, load_config, save_config

    folder = tmp_path_factory.mktemp("ablation")
    values = load_config(SMOKE_CONFIG).to_dict()
    light = folder / "light.yaml"
    save_config(config_from_dict({
        **values, "segmenter": {**values["segmenter"], "backbone": "resnet18"},
        "regressor": {**values["regressor"], "backbone": "plain_cnn", "weights": "pretrain"},
        "pretrain": {**values["pretrain"], "count": 8, "validation_count": 4, "epochs": 1, "batch_size": 4},
    }), light)
    out = folder / "smoke"
    args = ["--ablation", "--config", str(light), "--data", str(synthetic_root), "--split", "test",
            "--inputs", "image+mask", "--run-eagerly", "--out", str(out)]
    assert evaluate.main(args) == 0
    return {"out": out, "args": args}
