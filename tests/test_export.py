"""Export for TF Serving: layout, signatures, atomic versions, bad input, clients, Keras loading.

Angles are compared to 1e-3°: the geometric readout's float32 matrix products differ in
the last bits between batch sizes and graphs. One export of an untrained smoke-sized system (gated N_S with α = 0.5 so the two-pass ROIE
path matters; the `exported` fixture of conftest.py) is shared by the session: tracing
ResNet-50 + EfficientNet-B1 into two signatures is the expensive part.
"""

import hashlib
import io
import json
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf import export, serving_client
from seg4reg_tf.data import pipeline, requests
from seg4reg_tf.inference import predict_images
from seg4reg_tf.serving import client, loaded_system, saved_model
from seg4reg_tf.serving.loopback_server import LoopbackServer
from seg4reg_tf.workdir import final_networks
from tests.harness import make_workdir

BIN = pathlib.Path(sys.executable).parent

pytestmark = pytest.mark.slow


def synthetic_images(synthetic_root) -> list[bytes]:
    return [path.read_bytes() for path in sorted((pathlib.Path(synthetic_root) / "data" / "training").glob("*.jpg"))[:2]]


def in_memory(system_: dict, encoded: bytes) -> dict:
    """One encoded image through the export's preprocessing and `predict_images`, eagerly, with
    the {"config", "segmenter", "regressor", "route"} of `system_` (e.g. the `exported` fixture)."""
    image = pipeline.preprocess_encoded(tf.constant(encoded), "test", system_["config"].data)[None]
    out = predict_images(system_["segmenter"], system_["regressor"], image, system_["config"], system_["route"])
    return {key: keras.ops.convert_to_numpy(value)[0] for key, value in out.items()}


def test_layout_follows_tf_serving(exported):
    path = exported["path"]
    assert path == exported["base"] / "seg4reg" / "1"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    assert sorted(p.name for p in (path / "assets.extra").iterdir()) == ["seg4reg.json", saved_model.WARMUP_FILE]
    assert [p.name for p in path.parent.iterdir()] == ["1"]  # no temporary left behind


def test_the_export_stores_each_weight_once(exported):
    """The checkpoint holds as many values as the two networks have weights (keras#23553
    stored each twice), so the export is the size of the networks, not twice it."""
    stored = sum(int(np.prod(shape)) for _, shape in tf.train.list_variables(str(exported["path"] / "variables" / "variables")))
    networks = exported["segmenter"].count_params() + exported["regressor"].count_params()
    assert stored <= 1.05 * networks  # the optimizer-free networks, plus at most a few counters
    assert stored >= networks - exported["segmenter"].count_params() // 50  # and every network is there


def test_warmup_requests_are_valid_requests_of_the_signature(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(str(exported["path"] / "assets.extra" / saved_model.WARMUP_FILE)))
    assert 1 <= len(records) <= 1000  # TF Serving's limit
    for record in records:
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        assert request.model_spec.name == "seg4reg" and request.model_spec.signature_name == "serving_default"
        inputs = {key: tf.constant(tf.make_ndarray(value)) for key, value in request.inputs.items()}
        out = exported["loaded"].signatures["serving_default"](**inputs)
        assert out["cobb_angles"].shape == (1, 3) and np.all(np.isfinite(out["cobb_angles_regressor"].numpy()))
        assert out["spine_found"].shape == (1,)


def test_saved_model_cli_shows_both_signatures(exported):
    shown = subprocess.run([BIN / "saved_model_cli", "show", "--dir", str(exported["path"]), "--all"],
                           capture_output=True, text=True, check=True).stdout
    serving = shown[shown.index("signature_def['serving_default']"):]
    tensor = shown[shown.index("signature_def['predict_tensor']"):shown.index("signature_def['serving_default']")]
    assert "dtype: DT_STRING" in serving and "shape: (-1)" in serving
    assert "shape: (-1, 64, 32, 1)" in tensor
    for output in ("cobb_angles", "cobb_angles_regressor", "cobb_angles_geometric", "landmarks", "end_vertebrae", "spine_found", "mask", "cam",
                   "cobb_angles_vertebrae", "vertebra_landmarks", "vertebra_end_vertebrae", "vertebra_confidence",
                   "curve_end_vertebrae", "curve_apex", "curve_region", "curve_cobb_angles", "curve_side", "major_curve"):
        assert f"outputs['{output}']" in serving and f"outputs['{output}']" in tensor
    assert "outputs['letterbox']" in serving


def test_export_records_the_routes_and_answers_with_the_chosen_one(exported):
    import json

    info = json.loads((exported["path"] / "assets.extra" / "seg4reg.json").read_text())
    recorded = json.loads((exported["workdir"] / "routes.json").read_text())
    scores = recorded["validation_smape"]
    assert info["angles"]["setting"] == "auto" and info["angles"]["validation_smape"] == scores and info["angles"]["recorded"] is True
    assert set(scores) == {"regressor", "geometric", "vertebrae"} and all(np.isfinite(list(scores.values())))
    assert info["angles"]["route"] == recorded["choice"] == min(scores, key=scores.get)
    image = np.random.default_rng(3).random((1, 64, 32, 1)).astype(np.float32)
    out = exported["loaded"].signatures["predict_tensor"](images=tf.constant(image))
    np.testing.assert_array_equal(out["cobb_angles"].numpy(), out[f"cobb_angles_{recorded['choice']}"].numpy())


def test_serving_landmarks_are_in_original_pixels(exported, synthetic_root):
    images = synthetic_images(synthetic_root)[:1]
    out = exported["loaded"].signatures["serving_default"](images=tf.constant(images))
    tensor = exported["loaded"].signatures["predict_tensor"](images=in_memory_input(exported, images[0]))
    scale, offset_y, offset_x = out["letterbox"][0].numpy()
    assert bool(out["spine_found"][0]) == bool(tensor["spine_found"][0])
    expected = (tensor["landmarks"][0].numpy() + 0.5 - np.array([offset_x, offset_y])) / scale - 0.5
    np.testing.assert_allclose(out["landmarks"][0].numpy(), expected, rtol=1e-4, atol=1e-2)


def in_memory_input(exported, encoded: bytes):
    return pipeline.preprocess_encoded(tf.constant(encoded), "test", exported["config"].data)[None]


def test_saved_model_cli_run_matches_in_memory_model(exported, tmp_path):
    image = np.random.default_rng(2).random((1, 64, 32, 1)).astype(np.float32)
    np.save(tmp_path / "images.npy", image)
    subprocess.run(
        [BIN / "saved_model_cli", "run", "--dir", str(exported["path"]), "--tag_set", "serve",
         "--signature_def", "predict_tensor", "--inputs", f"images={tmp_path / 'images.npy'}",
         "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, check=True,
    )
    angles = np.load(tmp_path / "out" / "cobb_angles.npy")
    expected = predict_images(exported["segmenter"], exported["regressor"], image, exported["config"], exported["route"])
    np.testing.assert_allclose(angles, keras.ops.convert_to_numpy(expected["cobb_angles"]), atol=1e-3)


def test_reloaded_export_gives_the_in_memory_angles(exported, synthetic_root):
    images = synthetic_images(synthetic_root)
    out = exported["loaded"].signatures["serving_default"](images=tf.constant(images))
    assert out["cobb_angles"].shape == (2, 3) and out["mask"].shape == (2, 64, 32) and out["cam"].shape == (2, 2, 1)
    for i, encoded in enumerate(images):
        expected = in_memory(exported, encoded)
        np.testing.assert_allclose(out["cobb_angles"][i].numpy(), expected["cobb_angles"], atol=1e-3)
        np.testing.assert_allclose(out["mask"][i].numpy(), expected["mask"], atol=1e-4)
        for key in ("cobb_angles_regressor", "cobb_angles_geometric", "end_vertebrae", "spine_found",
                    "cobb_angles_vertebrae", "vertebra_end_vertebrae", "vertebra_confidence",
                    "curve_end_vertebrae", "curve_apex", "curve_region", "curve_cobb_angles", "curve_side", "major_curve"):
            np.testing.assert_allclose(out[key][i].numpy(), expected[key], atol=1e-3)  # NaN equals NaN here
        if expected["spine_found"]:
            assert np.isfinite(out["cobb_angles_vertebrae"][i].numpy()).all() and np.isfinite(out["vertebra_landmarks"][i].numpy()).all()
    # the letterbox output maps the original onto the model frame: width-limited here
    height, width = tf.io.decode_jpeg(images[0]).shape[:2]
    scale = out["letterbox"][0, 0].numpy()
    np.testing.assert_allclose(scale, min(64 / height, 32 / width), rtol=1e-6)


def test_png16_rgb_and_jpeg_of_one_image_agree(exported):
    gray = (np.random.default_rng(1).random((200, 90)) * 65535).astype(np.uint16)
    png16 = tf.io.encode_png(gray[..., None]).numpy()
    rgb = tf.io.encode_png(np.repeat((gray >> 8).astype(np.uint8)[..., None], 3, axis=-1)).numpy()
    png8 = tf.io.encode_png((gray >> 8).astype(np.uint8)[..., None]).numpy()
    out = exported["loaded"].signatures["serving_default"](images=tf.constant([png16, rgb, png8]))
    masks = out["mask"].numpy()
    np.testing.assert_allclose(masks[1], masks[2], atol=1e-3)  # RGB collapses to the same gray
    np.testing.assert_allclose(masks[0], masks[2], atol=0.05)  # 16-bit differs only below 8 bits


def encode(array) -> bytes:
    return tf.io.encode_png(np.asarray(array, np.uint8)[..., None]).numpy()


BAD_INPUTS = {
    "empty": (b"", "empty image data"),
    "not an image": (b"GIF89a, or any other bytes", "not a JPEG or PNG image"),
    "truncated JPEG": (None, "truncated image"),
    "decompression bomb": (None, "image too large"),
}


def bad_input(kind: str) -> bytes:
    if kind == "truncated JPEG":
        data = tf.io.encode_jpeg(np.full((120, 60, 1), 128, np.uint8)).numpy()
        return data[: len(data) // 2]
    if kind == "decompression bomb":
        return encode(np.zeros((8000, 6000)))  # 48 Mpixel, 47 kB on disk; limit 40 Mpixel
    return BAD_INPUTS[kind][0]


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_is_an_invalid_argument_and_the_next_request_works(exported, kind):
    serve = exported["loaded"].signatures["serving_default"]
    good = encode(np.full((100, 50), 90))
    with pytest.raises(tf.errors.InvalidArgumentError, match=BAD_INPUTS[kind][1] + r".*image 1 of the request"):
        serve(images=tf.constant([good, bad_input(kind)]))
    served = serve(images=tf.constant([good]))
    assert served["cobb_angles"].shape == (1, 3) and np.isfinite(served["cobb_angles_regressor"].numpy()).all()


def test_a_second_export_is_version_2_and_leaves_version_1_intact(exported, monkeypatch):
    first = exported["path"]
    digest = hashlib.sha256((first / "saved_model.pb").read_bytes()).hexdigest()

    # Tracing the networks again would cost two minutes and prove nothing new here: the
    # versioning around `write_archive` is what is under test, so it copies version 1.
    def copy_first(segmenter, regressor, config, path, max_pixels, route, refiner=None):
        shutil.copytree(first, path, ignore=shutil.ignore_patterns("assets.extra"))

    monkeypatch.setattr(saved_model, "write_archive", copy_first)
    code = export.main(["--workdir", str(exported["workdir"]), "--out", str(exported["base"])])
    assert code == 0
    assert sorted(p.name for p in first.parent.iterdir()) == ["1", "2"]
    assert hashlib.sha256((first / "saved_model.pb").read_bytes()).hexdigest() == digest
    assert (first.parent / "2" / "assets.extra" / "seg4reg.json").is_file()
    with pytest.raises(FileExistsError, match="already exists"):
        saved_model.export_saved_model(exported["workdir"], exported["base"], version=1)


def test_a_failed_export_leaves_no_version_behind(exported, monkeypatch, tmp_path):
    def fail(segmenter, regressor, config, path, max_pixels, route, refiner=None):
        (path / "variables").mkdir(parents=True)
        (path / "saved_model.pb").write_bytes(b"half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(saved_model, "write_archive", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        saved_model.export_saved_model(exported["workdir"], tmp_path)
    assert list((tmp_path / "seg4reg").iterdir()) == []


def test_export_names_the_missing_phase(tmp_path):
    workdir = make_workdir(tmp_path / "workdir")
    (workdir / "reg" / "regressor.keras").unlink()
    with pytest.raises(FileNotFoundError, match="no trained regressor.*train phase 'reg'"):
        saved_model.export_saved_model(workdir, tmp_path / "models")
    assert export.main(["--workdir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "models")]) == 2


def readme_snippet(heading: str) -> str:
    """The first ```python block after `heading` in docs/serving.md (the user documentation)."""
    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "serving.md").read_text()
    after = text[text.index(heading):]
    return after[after.index("```python\n") + len("```python\n"):after.index("```\n", after.index("```python"))]


def test_readme_snippet_loads_the_export_in_other_keras_code(exported, synthetic_root):
    image_path = sorted((pathlib.Path(synthetic_root) / "data" / "training").glob("*.jpg"))[0]
    code = readme_snippet("### Using the model in other Keras").replace('"exports/seg4reg/1"', repr(str(exported["path"])))
    code = code.replace('"xray1.jpg"', repr(str(image_path)))
    namespace = {}
    exec(compile(code, "docs/serving.md", "exec"), namespace)
    image = image_path.read_bytes()
    reference = exported["loaded"].signatures["serving_default"](images=tf.constant([image]))["cobb_angles"].numpy()

    # 1. TFSMLayer inside another Keras model
    np.testing.assert_allclose(namespace["angles_model"].predict(tf.constant([image]), verbose=0), reference, atol=1e-5)
    # 2. tf.saved_model.load
    np.testing.assert_allclose(namespace["loaded"].signatures["serving_default"](images=tf.constant([image]))["cobb_angles"], reference, atol=1e-3)
    # 3. the .keras files, loaded with this package's registered layers, compute the same angles
    decoded = pipeline.preprocess_encoded(tf.constant(image), "x", exported["config"].data)[None]
    out = predict_images(namespace["segmenter"], namespace["regressor"], decoded, exported["config"], exported["route"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["cobb_angles"]), reference, atol=1e-3)


@pytest.fixture(scope="module")
def server(exported):
    with LoopbackServer("seg4reg", str(exported["path"])) as running:
        yield running


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_clients_round_trip(exported, server, synthetic_root, protocol):
    images = synthetic_images(synthetic_root)
    direct = exported["loaded"].signatures["serving_default"](images=tf.constant(images))
    call = client.grpc_predict if protocol == "grpc" else client.rest_predict
    port = server.grpc_port if protocol == "grpc" else server.rest_port
    out = call("127.0.0.1", port, images)
    np.testing.assert_allclose(out["cobb_angles"], direct["cobb_angles"].numpy(), atol=1e-3)
    assert out["mask"].shape == (2, 64, 32)
    for kind in sorted(BAD_INPUTS):
        with pytest.raises(client.ServingError, match=BAD_INPUTS[kind][1]):
            call("127.0.0.1", port, [images[0], bad_input(kind)])
    np.testing.assert_allclose(call("127.0.0.1", port, images[:1])["cobb_angles"], direct["cobb_angles"].numpy()[:1], atol=1e-3)
    with pytest.raises(client.ServingError, match="not found|NOT_FOUND"):
        call("127.0.0.1", port, images[:1], model="other")


def test_client_command_line(server, synthetic_root, capsys, tmp_path):
    paths = sorted(str(p) for p in (pathlib.Path(synthetic_root) / "data" / "training").glob("*.jpg"))[:2]
    assert serving_client.main(["--grpc", "--host", "127.0.0.1", "--port", str(server.grpc_port), *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("image\tlargest_deg") and len(lines) == 3
    assert all(len(line.split("\t")) == 4 for line in lines[1:])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert serving_client.main(["--rest", "--port", str(server.rest_port), str(empty)]) == 2
    assert "empty.png: empty file" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(io.BytesIO(b"\xff\xd8 not really").read())
    # Refused before sending, by the same admission as predict (the server's own refusals
    # of raw bytes are tested above).
    assert serving_client.main(["--rest", "--host", "127.0.0.1", "--port", str(server.rest_port), str(broken)]) == 2
    assert f"{broken}: corrupt JPEG header" in capsys.readouterr().err


def test_concurrent_clients_of_both_protocols_get_their_own_answers_and_refusals(exported, server, synthetic_root):
    """Four clients at once, two over gRPC and two over REST, each alternating good images
    with every kind of bad input: each good request gets the angles of its own image, each bad
    one is refused in words (the 2-minute soak with 8 clients is bench/load.py)."""
    import threading

    images = synthetic_images(synthetic_root)
    direct = exported["loaded"].signatures["serving_default"](images=tf.constant(images))["cobb_angles"].numpy()
    kinds = sorted(BAD_INPUTS)
    failures, lock = [], threading.Lock()

    def run(protocol: str, offset: int):
        call = client.grpc_predict if protocol == "grpc" else client.rest_predict
        port = server.grpc_port if protocol == "grpc" else server.rest_port
        for step, kind in enumerate(kinds):
            index = (offset + step) % len(images)
            try:
                out = call("127.0.0.1", port, [images[index]])["cobb_angles"]
                np.testing.assert_allclose(out, direct[index : index + 1], atol=1e-3)
                with pytest.raises(client.ServingError, match=BAD_INPUTS[kind][1]):
                    call("127.0.0.1", port, [bad_input(kind)])
            except Exception as error:  # noqa: BLE001 (collected, asserted below)
                with lock:
                    failures.append(f"{protocol} client {offset}, {kind}: {error!r}"[:300])

    threads = [threading.Thread(target=run, args=(protocol, offset)) for offset, protocol in enumerate(["grpc", "rest", "grpc", "rest"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []


def test_a_bfloat16_export_answers_close_to_float32_and_says_so(synthetic_root, tmp_path):
    """An export with `--precision bfloat16`: its signatures compute in bfloat16 (the outputs
    differ from float32's, by little), and seg4reg.json and the loaded export say so. The networks are configs/aasce_cpu.yaml's
    light ones (ResNet-18 N_S with the stride-4 decoder, plain-CNN N_R): their export
    traces in a fraction of the paper networks' time."""
    workdir = make_workdir(tmp_path / "light", segmenter={"backbone": "resnet18", "decoder": "low_level"}, regressor={"backbone": "plain_cnn"})
    code = export.main(["--workdir", str(workdir), "--out", str(tmp_path), "--precision", "bfloat16"])
    assert code == 0
    path = tmp_path / "seg4reg" / "1"
    info = json.loads((path / "assets.extra" / "seg4reg.json").read_text())
    assert info["precision"] == "bfloat16"
    encoded = synthetic_images(synthetic_root)
    fast = tf.saved_model.load(str(path)).signatures["serving_default"](images=tf.constant(encoded))
    config, segmenter, regressor, _ = final_networks(workdir)
    float32 = {"config": config, "segmenter": segmenter, "regressor": regressor, "route": info["angles"]["route"]}
    default = [in_memory(float32, image) for image in encoded]  # the same path in float32, in Python
    assert fast["mask"].dtype == tf.float32 and fast["cobb_angles_regressor"].dtype == tf.float32
    mask_change = np.abs(fast["mask"].numpy() - np.stack([out["mask"] for out in default]))
    assert 0 < mask_change.max() and mask_change.mean() < 0.01  # computed in bfloat16, close to float32
    # bfloat16 keeps 8 significant bits: one rounding of an answer near 90° (sigmoid ≈ 0.5) is
    # up to 0.35°; measured on the trained recipe, N_R's answers moved by 0.93° at most.
    np.testing.assert_allclose(fast["cobb_angles_regressor"].numpy(), np.stack([out["cobb_angles_regressor"] for out in default]), atol=1.0)
    model = loaded_system.load_saved_model(str(tmp_path / "seg4reg"))
    assert model.config.export.precision == "bfloat16"


def test_an_export_with_the_tilt_refiner_reads_fine_images_and_answers_as_in_memory(synthetic_root, tmp_path):
    """With `refiner.enabled`, serving_default decodes each X-ray once into the model frame and
    the fine frame, and both signatures give the in-memory vertebra route with the refiner."""
    from seg4reg_tf.workdir import load_refiner

    workdir = make_workdir(tmp_path / "workdir", segmenter={"tilt_weight": 1.0}, refiner={"enabled": True, "crop_size": 16, "scale": 2},
                           inference={"angles": "vertebrae"})
    path = saved_model.export_saved_model(workdir, tmp_path / "models")
    loaded = tf.saved_model.load(str(path))
    config, segmenter, regressor, sources = final_networks(workdir)
    refiner = load_refiner(sources)
    encoded = synthetic_images(synthetic_root)
    served = loaded.signatures["serving_default"](images=tf.constant(encoded))
    decoded = requests.decode_requests(tf.constant(encoded), config, config.export.max_image_pixels)
    assert decoded["fine_images"].shape[1:] == (128, 64, 1)
    tensor = loaded.signatures["predict_tensor"](images=decoded["images"], fine_images=decoded["fine_images"])
    for i in range(len(encoded)):
        one = {key: value[i : i + 1] for key, value in decoded.items()}
        refined = predict_images(segmenter, regressor, one["images"], config, "vertebrae", one["letterbox"], refiner, one["fine_images"])
        plain = predict_images(segmenter, regressor, one["images"], config, "vertebrae", one["letterbox"])
        for key in ("cobb_angles", "cobb_angles_vertebrae", "vertebra_landmarks"):
            np.testing.assert_allclose(served[key].numpy()[i], keras.ops.convert_to_numpy(refined[key])[0], atol=1e-3)
        np.testing.assert_allclose(tensor["cobb_angles_vertebrae"].numpy()[i], served["cobb_angles_vertebrae"].numpy()[i], atol=1e-3)
        moved = np.abs(keras.ops.convert_to_numpy(plain["vertebra_landmarks"]) - keras.ops.convert_to_numpy(refined["vertebra_landmarks"]))
        assert moved.max() > 0.5  # the refiner's residual turned the vertebrae
    with pytest.raises(tf.errors.InvalidArgumentError, match="images and fine_images must hold the same number of X-rays"):
        loaded.signatures["predict_tensor"](images=decoded["images"], fine_images=decoded["fine_images"][:1])
    info = json.loads((path / "assets.extra" / "seg4reg.json").read_text())
    assert info["networks"]["refiner"].endswith("tilt_refiner.keras")


@pytest.mark.parametrize("count", [0, 1, 3, 9])
def test_every_batch_size_a_client_can_send_answers_or_is_refused_in_words(exported, synthetic_root, count):
    """Both signatures take any batch of one X-ray or more, and answer one row per X-ray; an
    empty batch is INVALID_ARGUMENT saying so (it failed deep inside N_S before)."""
    encoded = (synthetic_images(synthetic_root) * 5)[:count]
    signatures = exported["loaded"].signatures
    calls = {"serving_default": lambda: signatures["serving_default"](images=tf.constant(encoded, tf.string)),
             "predict_tensor": lambda: signatures["predict_tensor"](images=tf.random.uniform((count, 64, 32, 1), seed=count))}
    for name, call in calls.items():
        if count == 0:
            with pytest.raises(tf.errors.InvalidArgumentError, match="the request holds no images: send at least one"):
                call()
            continue
        out = call()
        assert out["cobb_angles"].shape == (count, 3) and out["vertebra_landmarks"].shape == (count, 68, 2), name
        assert out["curve_apex"].shape[0] == out["spine_found"].shape[0] == count, name
