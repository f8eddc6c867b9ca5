"""Image admission (data/admission.py) and its graph twin: the hostile-input rows of the
issue, and property-based (fuzz) checks that only documented errors ever come out."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seg4reg_tf.data import admission, decoding, radiographs

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
RNG = np.random.default_rng(0)


def png(height=64, width=24, dtype=np.uint8) -> bytes:
    image = RNG.integers(0, np.iinfo(dtype).max, (height, width)).astype(dtype)
    return cv2.imencode(".png", image)[1].tobytes()


def jpeg(height=64, width=24) -> bytes:
    return cv2.imencode(".jpg", RNG.integers(0, 255, (height, width)).astype(np.uint8))[1].tobytes()


def with_png_size(data: bytes, height: int, width: int) -> bytes:
    """The PNG with its IHDR size patched (and the chunk CRC fixed): a header bomb."""
    ihdr = data[12:16] + struct.pack(">II", width, height) + data[24:29]
    return data[:8] + data[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def with_jpeg_size(data: bytes, height: int, width: int) -> bytes:
    """The JPEG with its first frame header's size patched."""
    position = 2
    while data[position + 1] not in (0xC0, 0xC1, 0xC2):
        position += 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
    return data[: position + 5] + struct.pack(">HH", height, width) + data[position + 9 :]


def graph_refusal(data: bytes, max_pixels=None):
    """The serving graph's checks (without decoding): None when admitted, else the message."""
    try:
        checked = decoding.check_encoded_image(tf.constant(data), "request")
        decoding.check_image_bounds(checked, "request", max_pixels)
    except tf.errors.InvalidArgumentError as error:
        return error.message
    return None


# --- the rows of the hostile-input issue ---------------------------------------------------


@pytest.mark.parametrize("make", [png, jpeg])
@pytest.mark.parametrize("size", [(60000, 60000), (20000, 20000)])
def test_header_bombs_are_refused_before_decoding(make, size, tmp_path, monkeypatch):
    patch = with_png_size if make is png else with_jpeg_size
    path = tmp_path / "bomb.img"
    path.write_bytes(patch(make(), *size))
    decoded = []
    monkeypatch.setattr(radiographs.cv2, "imdecode", lambda *a: decoded.append(1))
    with pytest.raises(ValueError, match=rf"{path}: image too large: {size[0]}x{size[1]} pixels; the limit is 40000000"):
        radiographs.read_radiograph(str(path), max_pixels=40_000_000)
    assert not decoded
    assert "image too large" in graph_refusal(path.read_bytes(), 40_000_000)


@pytest.mark.parametrize("make", [png, jpeg])
def test_bytes_after_the_end_marker_are_admitted(make, tmp_path):
    data = make() + b"\x00scanner trailer" * 100
    path = tmp_path / "trailer.img"
    path.write_bytes(data)
    radiograph = radiographs.read_radiograph(str(path))
    assert radiograph.pixels.shape == (64, 24)
    assert graph_refusal(data) is None
    image = decoding.decode_checked(tf.constant(data), "trailer")
    assert image.shape == (64, 24, 1)


@pytest.mark.parametrize("size, message", [
    ((1, 1), "image too small: 1x1"),
    ((1, 1000), "image too small: 1x1000"),
    ((10, 1000), "extreme aspect ratio: 10x1000"),
    ((1000, 40), "extreme aspect ratio: 1000x40"),
])
def test_degenerate_sizes_are_refused_everywhere(size, message, tmp_path):
    data = png(*size)
    path = tmp_path / "odd.png"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=f"{path}: {message}"):
        radiographs.read_radiograph(str(path))
    assert message.split(":")[0] in graph_refusal(data)
    with pytest.raises(ValueError, match=message):
        admission.image_size(path)  # the training and evaluation data checks


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_blank_images_are_refused(dtype, tmp_path):
    path = tmp_path / "black.png"
    path.write_bytes(cv2.imencode(".png", np.zeros((200, 80), dtype))[1].tobytes())
    with pytest.raises(ValueError, match=f"{path}: blank image"):
        radiographs.read_radiograph(str(path))


def exif_jpeg(pixels: np.ndarray, orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif, quality=100)
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_viewers_do(orientation, tmp_path):
    from PIL import Image, ImageOps

    pixels = np.zeros((90, 40), np.uint8)
    pixels[5:30, 3:12] = 255  # an asymmetric mark: every orientation moves it differently
    pixels[60:70, 25:38] = 128
    data = exif_jpeg(pixels, orientation)
    assert admission.admit(data, data, "x").orientation == orientation
    path = tmp_path / "exif.jpg"
    path.write_bytes(data)
    radiograph = radiographs.read_radiograph(str(path))
    viewer = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("L"), np.float32) / 255
    assert radiograph.pixels.shape == viewer.shape
    np.testing.assert_allclose(radiograph.pixels, viewer, atol=2 / 255)
    # What the model gets is the upright image too (a lossless PNG once turned; the JPEG
    # itself when upright, decoded by TensorFlow as OpenCV does, even at quality 100).
    model_input = decoding.decode_image(tf.constant(radiograph.encoded)).numpy()[..., 0]
    np.testing.assert_allclose(model_input, radiograph.pixels, atol=1e-6)
    assert radiograph.file_format == "JPEG"


# --- property-based: only documented errors, every error names its file ---------------------


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_are_admitted_or_refused_by_name(data):
    try:
        admitted = admission.admit(data, data, "fuzz.bin", 10**8)
    except admission.ImageRefused as error:
        assert str(error).startswith("fuzz.bin: ")
        return
    assert admitted.file_format in ("JPEG", "PNG")
    assert min(admitted.height, admitted.width) >= admission.MIN_SIDE


@FUZZ
@given(st.sampled_from(["png", "jpeg"]), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6), st.integers(1, 4000))
def test_patched_and_truncated_headers_give_named_refusals(kind, patches, keep):
    data = bytearray(png(80, 30) if kind == "png" else jpeg(80, 30))
    for position, value in patches:
        if position < len(data):
            data[position] = value
    data = bytes(data[:keep])
    try:
        admitted = admission.admit(data, data, "patched.img")
    except admission.ImageRefused as error:
        assert str(error).startswith("patched.img: ")
    else:
        assert admission.MIN_SIDE <= min(admitted.height, admitted.width)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 70000), st.integers(0, 70000), st.sampled_from([None, 10**6]))
def test_the_graph_and_the_files_admit_the_same_sizes(height, width, max_pixels):
    data = with_png_size(png(40, 20), height, width)
    try:
        admission.admit(data, data, "sized.png", max_pixels)
        python = None
    except admission.ImageRefused as error:
        python = str(error).split(": ")[1]
    graph = graph_refusal(data, max_pixels)
    assert (python is None) == (graph is None), (height, width, python, graph)
    if python is not None:
        assert python in graph


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(8, 20), st.integers(8, 20))
def test_orient_matches_pillow(orientation, height, width):
    from PIL import Image

    pixels = RNG.integers(0, 255, (height, width)).astype(np.uint8)
    pil = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
    expected = pixels if orientation == 1 else np.asarray(Image.fromarray(pixels).transpose(pil[orientation]))
    np.testing.assert_array_equal(admission.orient(pixels, orientation), expected)
