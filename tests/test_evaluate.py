"""evaluate: the table's figures equal those recomputed from predictions.csv, the baseline is
the training-mean predictor, N_S rows with and without ROIE."""

import csv
import dataclasses
import json
import shutil

import cv2
import keras
import numpy as np
import pytest

from seg4reg_tf import evaluate
from seg4reg_tf.config import load_config
from seg4reg_tf.data import pipeline
from seg4reg_tf.data.aasce import read_split
from seg4reg_tf.evaluation import ablation, figures, scoring
from seg4reg_tf.evaluation import results as evaluation_results
from seg4reg_tf.models import build_segmenter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluated(exported, synthetic_root, tmp_path_factory):
    """The shared export's workdir plus an ungated N_S as phase seg left it, evaluated."""
    workdir = tmp_path_factory.mktemp("evaluate") / "workdir"
    shutil.copytree(exported["workdir"], workdir)
    keras.utils.set_random_seed(5)
    (workdir / "seg").mkdir()
    saved = load_config(workdir / "config.yaml")
    build_segmenter(saved.segmenter, saved.data.image_size).save(workdir / "seg" / "segmenter.keras")
    # Training logs as CSVLogger leaves them, for the training-curve figure.
    (workdir / "seg" / "history.csv").write_text("epoch,dice,loss,val_dice,val_loss\n0,20,1.0,15,1.1\n1,40,0.8,30,0.9\n2,50,0.7,35,0.85\n")
    out = workdir / "evaluation"
    assert evaluate.main(["--workdir", str(workdir), "--data", str(synthetic_root), "--split", "test", "--out", str(out)]) == 0
    return {"workdir": workdir, "out": out, "metrics": json.loads((out / "metrics.json").read_text())}


def test_evaluate_records_the_routes_of_a_workdir_without_a_fresh_record(evaluated):
    """The copied workdir's routes.json names the original's network files, so it is stale
    here; evaluate (which has the data) wrote a fresh one, which export and predict read."""
    from seg4reg_tf import routes
    from seg4reg_tf.workdir import final_networks

    sources = final_networks(evaluated["workdir"])[3]
    recorded = routes.read_routes(evaluated["workdir"], sources)
    assert recorded is not None and recorded["choice"] == evaluated["metrics"]["route"]
    assert set(recorded["validation_smape"]) == set(routes.ROUTES)


def test_angle_figures_equal_those_recomputed_from_predictions_csv(evaluated):
    with open(evaluated["out"] / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == evaluated["metrics"]["images"] == 2
    def columns(prefix):
        return np.array([[float(row[f"{prefix}_{c}_deg"]) for c in ("largest", "second", "third")] for row in rows])

    truth = columns("gt")
    angles = evaluated["metrics"]["angles"]
    for label, prefix in (("N_R", "regressor"), ("readout on N_S masks", "geometric")):
        predicted = columns(prefix)
        assert np.isfinite(predicted).all()  # the fixture's N_S marks a spine in every image
        smape = 100 * np.mean(np.abs(truth - predicted).sum(axis=1) / (truth + predicted).sum(axis=1))
        assert angles[label]["smape"] == pytest.approx(smape, abs=1e-3)
        assert angles[label]["mae"] == pytest.approx(np.abs(truth - predicted).mean(), abs=1e-3)
        np.testing.assert_allclose(angles[label]["mae_columns"], np.abs(truth - predicted).mean(axis=0), atol=1e-3)
        assert angles[label]["within_5"] == pytest.approx(100 * np.mean(np.abs(truth[:, 0] - predicted[:, 0]) <= 5))
    route = evaluated["metrics"]["route"]
    system = angles[f"system (route: {route})"]
    assert system == angles["N_R" if route == "regressor" else "readout on N_S masks"]
    np.testing.assert_allclose(columns("pred"), columns(route), atol=1e-3)


def test_readout_on_true_masks_row_reads_the_rasterised_landmarks(evaluated, synthetic_root):
    import tensorflow as tf

    from seg4reg_tf import geometry
    from seg4reg_tf.data import transforms
    from seg4reg_tf.geometric_readout import read_spine

    config = load_config(evaluated["workdir"] / "config.yaml")
    records = read_split(synthetic_root, "test")
    height, width = config.data.image_height, config.data.image_width
    masks, boxes = [], []
    for record in records:
        frame = transforms.letterbox_landmarks(record.landmarks.astype(np.float64), record.height, record.width, height, width).numpy()
        masks.append(geometry.landmarks_to_mask(frame, height, width))
        boxes.append([float(v) for v in transforms.letterbox(record.height, record.width, height, width)])
    predicted = read_spine(tf.constant(np.stack(masks), tf.float32), config.readout, np.array(boxes, np.float32))["cobb_angles"].numpy()
    truth = np.stack([record.angles for record in records])
    row = evaluated["metrics"]["angles"]["readout on true masks"]
    assert row["mae"] == pytest.approx(np.abs(truth - predicted).mean(), abs=0.05)


def test_baseline_row_is_the_training_mean_predictor(evaluated, synthetic_root):
    config = load_config(evaluated["workdir"] / "config.yaml")
    training, _ = pipeline.split_records(read_split(synthetic_root, "training"), config.data.validation_fraction, config.data.seed)
    truth = np.stack([record.angles for record in read_split(synthetic_root, "test")])
    mean = np.stack([record.angles for record in training]).mean(axis=0)
    baseline = evaluated["metrics"]["angles"]["baseline (training-mean angles)"]
    assert baseline["mae"] == pytest.approx(np.abs(truth - mean).mean(), rel=1e-9)
    assert baseline["smape"] == pytest.approx(100 * np.mean(np.abs(truth - mean).sum(1) / (truth + mean).sum(1)), rel=1e-9)


def test_segmentation_rows_with_and_without_roie(evaluated):
    rows = evaluated["metrics"]["segmentation"]
    assert list(rows) == ["N_S", "N_S + ROIE", "baseline (training-mean mask)"]
    for scores in rows.values():
        assert set(scores) == set(scoring.SEGMENTATION_COLUMNS)
        assert all(0.0 <= value <= 100.0 for value in scores.values())
    assert rows["N_S"] != rows["N_S + ROIE"]  # two different networks were evaluated
    table = (evaluated["out"] / "table.md").read_text()
    for label in (*rows, *evaluated["metrics"]["angles"]):
        assert f"| {label} |" in table


def test_dice_of_the_final_system_by_hand(exported, synthetic_root):
    results = scoring.evaluate_workdir(exported["workdir"], str(synthetic_root), "test")
    truth = results["predictions"]["truth_masks"] > 0.5
    predicted = results["predictions"]["masks"] > 0.5
    dice = [2 * (t & p).sum() / (t.sum() + p.sum()) if t.sum() + p.sum() else 1.0 for t, p in zip(truth, predicted)]
    assert results["segmentation"]["N_S + ROIE"]["dice"] == pytest.approx(100 * np.mean(dice), abs=1e-3)


def test_a_missing_split_is_an_error(exported, synthetic_root, capsys):
    assert evaluate.main(["--workdir", str(exported["workdir"]), "--data", str(synthetic_root), "--split", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["scatter.png", "segmentation.png", "cam.png", "training_curves.png"])
def test_figures_are_written_and_not_blank(evaluated, name):
    picture = cv2.imread(str(evaluated["out"] / name))
    assert picture is not None, f"{name} was not written"
    height, width = picture.shape[:2]
    assert height >= 200 and width >= 200
    assert picture.std() > 0 and picture.reshape(-1, 3).std(axis=0).max() > 5
    if name == "scatter.png":
        assert 0.7 * width < height < 1.4 * width  # three rows (routes) of three square panels


def test_segmentation_figure_colours_outcomes():
    truth = np.array([[1, 1, 0, 0]])
    predicted = np.array([[0.9, 0.1, 0.8, 0.2]])
    colours = figures.outcome_colours(truth, predicted)
    np.testing.assert_allclose(colours[0], [figures.TRUE_POSITIVE, figures.FALSE_NEGATIVE, figures.FALSE_POSITIVE, (0, 0, 0)])


def test_history_reads_all_epochs_across_resumes(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,1.0,1.2\n1,0.9,1.1\n2,0.8,\n")
    assert figures.read_history(tmp_path) == {"loss": [1.0, 0.9, 0.8], "val_loss": [1.2, 1.1]}


def test_ablation_tables_follow_table_1_layout():
    cell = {"smape": 12.345, "mae": 4.5, "mae_columns": [5.0, 4.0, 4.5]}
    cells = {"image": {row: cell for row in ablation.ROWS}, "mask": {"Baseline": cell}}
    lines = ablation.markdown_table(cells).splitlines()
    assert lines[0] == "| method | image: SMAPE (%) / MAE (°) | mask: SMAPE (%) / MAE (°) |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| Baseline", "| + AR", "| + ROIE", "| + TCL"]
    assert lines[2] == "| Baseline | 12.35 / 4.50 | 12.35 / 4.50 |"
    assert lines[3] == "| + AR | 12.35 / 4.50 | – |"
    rows = list(csv.reader(ablation.csv_table(cells).splitlines()))
    assert rows[0][:4] == ["method", "input", "smape", "mae"] and len(rows) == 1 + 4 + 1


def test_ablation_pretrains_n_r_once_for_every_variant(smoke_ablation):
    out = smoke_ablation["out"]
    shared = out / "shared" / "pretrain"
    written = {path.name: path.read_bytes() for path in shared.iterdir()}
    assert set(written) == {"regressor_trunk.weights.h5", "regressor_trunk.json"}
    for variant in ("image+mask-baseline", "image+mask-ar"):
        assert {path.name: path.read_bytes() for path in (out / variant / "pretrain").iterdir()} == written
        summary = json.loads((out / variant / "reg" / "summary.json").read_text())
        assert summary["pretraining"] == json.loads(written["regressor_trunk.json"])


def contents(folder):
    return {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_ablation_reuses_a_trained_workdirs_seg_and_pretrained_trunk(smoke_ablation, tmp_path):
    source = smoke_ablation["out"] / "shared"
    config = load_config(source / "config.yaml")
    # With no input column, only the shared part runs: copied, nothing trained.
    assert ablation.run_ablation(config, tmp_path / "out", inputs=(), log=lambda _: None, reuse=source) == {}
    for part in ("seg", "pretrain"):
        assert contents(tmp_path / "out" / "shared" / part) == contents(source / part)
    # Another seg recipe, or a workdir without phase seg, is refused before anything is written.
    other = dataclasses.replace(config, seg=dataclasses.replace(config.seg, epochs=config.seg.epochs + 1))
    with pytest.raises(ValueError, match=r"config\.yaml: differs from the ablation's config in seg,"):
        ablation.reuse_trained(other, source, tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="no finished phase seg"):
        ablation.reuse_trained(config, tmp_path / "empty", tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_ablation_on_the_smoke_config_produces_every_row(smoke_ablation):
    out, args = smoke_ablation["out"], smoke_ablation["args"]
    lines = (out / "ablation.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| Baseline", "| + AR", "| + ROIE", "| + TCL"]
    assert all("–" not in line for line in lines[2:])
    rows = list(csv.DictReader((out / "ablation.csv").open()))
    assert [row["method"] for row in rows] == list(ablation.ROWS) and all(float(row["smape"]) >= 0 for row in rows)
    figure = cv2.imread(str(out / "cam_ar.png"))  # paper Fig. 3: baseline vs + AR CAMs
    assert figure is not None and figure.shape[0] > 200 and figure.std() > 0
    # One phase-seg N_S shared by every variant; + TCL ran the whole of Algorithm 1.
    seg = [(out / name / "seg" / "segmenter.keras").read_bytes() for name in ("shared", "image+mask-baseline", "image+mask-ar")]
    assert seg[0] == seg[1] == seg[2]
    assert (out / "image+mask-ar" / "refine" / "regressor.keras").exists()
    baseline = load_config(out / "image+mask-baseline" / "config.yaml")
    assert baseline.reg.ar_weight == 0.0 and load_config(out / "image+mask-ar" / "config.yaml").reg.ar_weight > 0
    # Started again, every cell is already done: nothing is trained, the table is the same.
    before = (out / "ablation.md").read_text()
    stamp = (out / "image+mask-ar" / "tcl" / "summary.json").stat().st_mtime
    assert evaluate.main(args) == 0
    assert (out / "ablation.md").read_text() == before
    assert (out / "image+mask-ar" / "tcl" / "summary.json").stat().st_mtime == stamp


def test_phase_table_scores_the_system_as_each_phase_left_it(evaluated):
    metrics = evaluated["metrics"]
    rows = metrics["phases"]
    assert list(rows) == ["seg", "reg", "roie"]  # the phases whose networks the workdir holds
    segmentation = metrics["segmentation"]
    assert rows["seg"]["dice"] == pytest.approx(segmentation["N_S"]["dice"], abs=1e-6)
    assert rows["reg"]["dice"] == pytest.approx(segmentation["N_S"]["dice"], abs=1e-6)  # reg trains N_R only
    assert rows["roie"]["dice"] == pytest.approx(segmentation["N_S + ROIE"]["dice"], abs=1e-6)
    assert rows["roie"]["jaccard"] == pytest.approx(segmentation["N_S + ROIE"]["jaccard"], abs=1e-6)
    # After roie the workdir's networks are the final ones.
    assert rows["roie"]["readout"] == pytest.approx(metrics["angles"]["readout on N_S masks"]["smape"], abs=1e-6)
    assert rows["roie"]["regressor"] == pytest.approx(metrics["angles"]["N_R"]["smape"], abs=1e-6)
    assert rows["seg"]["regressor"] is None and rows["seg"]["route"] == "geometric"
    # On the test split an auto system (smoke.yaml's setting) is not decided per phase:
    # training decides it on the validation split.
    assert rows["reg"]["system"] is None and rows["reg"]["route"] is None
    # except after the phase that left the final networks: the route training recorded
    final = metrics["route"]
    assert rows["roie"]["route"] == final
    assert rows["roie"]["system"] == pytest.approx(metrics["angles"][f"system (route: {final})"]["smape"], abs=1e-6)
    table = (evaluated["out"] / "table.md").read_text()
    assert "| after phase | Dice (%)" in table and "| roie |" in table and "| baselines (training means) |" in table


def test_phase_table_decides_auto_on_the_validation_split(evaluated, synthetic_root):
    results = scoring.evaluate_workdir(evaluated["workdir"], str(synthetic_root), "validation")
    row = results["phases"]["roie"]
    assert row["route"] in ("geometric", "regressor")
    assert row["system"] == min(row["readout"], row["regressor"])


def test_a_near_constant_column_is_named_in_the_table():
    """N_R's third angle stuck near the mean (the demo's case): the table says so, for that
    column only; the baseline row, constant by construction, is not flagged."""
    rng = np.random.default_rng(0)
    truth = np.stack([rng.uniform(10, 60, 40), rng.uniform(5, 40, 40), rng.uniform(5, 40, 40)], axis=1)
    stuck = truth + rng.normal(0, 2, truth.shape)
    stuck[:, 2] = 7.0 + rng.normal(0, 0.5, 40)  # the third column barely moves
    mean = truth.mean(axis=0)
    figures_ = scoring.angle_figures(truth, stuck, mean)
    assert figures_["flat_columns"] == [2] and scoring.angle_figures(truth, truth, mean)["flat_columns"] == []
    results = {"images": 40, "split": "test", "data": "drawn", "segmentation": {},
               "angles": {"N_R": figures_, "baseline (training-mean angles)": scoring.angle_figures(truth, np.broadcast_to(mean, truth.shape), mean)}}
    text = evaluation_results.table(results)
    assert "**N_R: the third angle barely varies**" in text and "largest angle barely" not in text and "baseline (training-mean angles): the" not in text
