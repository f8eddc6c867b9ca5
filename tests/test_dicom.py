"""DICOM reading: modality and VOI LUTs, polarity, bit depths, spacing, refusals. The files
are built with pydicom itself."""

import functools
import pathlib
import tempfile

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit

from seg4reg_tf.data import admission, decoding, dicom
from tests.harness import write_dicom as write

RNG = np.random.default_rng(0)
IMAGE = RNG.random((40, 20))  # the "true" radiograph in [0, 1], bone bright


def stored_values(bits=12, invert=False):
    top = 2**bits - 1
    values = np.round(IMAGE * top)
    return (top - values if invert else values).astype(np.uint16)


def test_monochrome1_and_2_and_bit_depths_agree(tmp_path):
    expected = IMAGE
    for bits in (12, 16):
        two = dicom.read_dicom(write(tmp_path / f"m2-{bits}.dcm", stored_values(bits), bits=bits))
        one = dicom.read_dicom(write(tmp_path / f"m1-{bits}.dcm", stored_values(bits, invert=True), "MONOCHROME1", bits))
        np.testing.assert_allclose(two.pixels, expected, atol=0.5 / (2**bits - 1) + 1e-6)
        np.testing.assert_allclose(one.pixels, expected, atol=0.5 / (2**bits - 1) + 1e-6)
        assert two.pixels.dtype == np.float32 and two.bits_stored == bits
    assert one.photometric == "MONOCHROME1"


def test_window_and_rescale_follow_the_standard(tmp_path):
    stored = stored_values(12)
    # Rescale to "HU-like" values v = 2·s − 1000, then a LINEAR window of centre c, width w.
    path = write(tmp_path / "window.dcm", stored, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=3000, WindowWidth=2001)
    values = 2.0 * stored - 1000
    expected = np.clip((values - 2999.5) / 2000 + 0.5, 0, 1)  # PS3.3 C.11.2.1.2.1, by hand
    np.testing.assert_allclose(dicom.read_dicom(path).pixels, expected, atol=1e-6)
    assert 0 < (expected == 0).mean() < 1 and 0 < (expected == 1).mean() < 1  # the window clips both ends
    sigmoid = write(tmp_path / "sigmoid.dcm", stored, WindowCenter=2048, WindowWidth=1000, VOILUTFunction="SIGMOID")
    np.testing.assert_allclose(dicom.read_dicom(sigmoid).pixels, 1 / (1 + np.exp(-4 * (stored - 2048.0) / 1000)), atol=1e-6)


def test_voi_lut_sequence(tmp_path):
    stored = stored_values(12)
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    table = np.round(65535 * np.sqrt(np.arange(4096) / 4095)).astype(np.uint16)  # a 12 → 16-bit gamma
    lut.add_new(0x00283006, "US", table.tolist())  # LUTData
    path = write(tmp_path / "lut.dcm", stored, VOILUTSequence=pydicom.Sequence([lut]))
    np.testing.assert_allclose(dicom.read_dicom(path).pixels, table[stored] / 65535.0, atol=1e-6)


def test_pixel_spacing_is_carried(tmp_path):
    path = write(tmp_path / "spacing.dcm", stored_values(), ImagerPixelSpacing=[0.143, 0.139])
    assert dicom.read_dicom(path).pixel_spacing_mm == pytest.approx((0.143, 0.139))
    assert dicom.read_dicom(write(tmp_path / "none.dcm", stored_values())).pixel_spacing_mm is None


def test_png16_hand_over_keeps_the_precision(tmp_path):
    image = dicom.read_dicom(write(tmp_path / "deep.dcm", stored_values(16), bits=16))
    decoded = decoding.decode_image(dicom.to_png16(image.pixels)).numpy()[..., 0]
    np.testing.assert_allclose(decoded, image.pixels, atol=0.6 / 65535)
    assert admission.file_format((tmp_path / "deep.dcm").read_bytes()[:256]) == "DICOM"


def test_refusals_name_the_file_and_the_problem(tmp_path):
    not_dicom = tmp_path / "note.dcm"
    not_dicom.write_bytes(b"this is not a DICOM file at all" * 10)
    with pytest.raises(ValueError, match=r"note\.dcm: not a DICOM file"):
        dicom.read_dicom(not_dicom)
    assert admission.file_format(not_dicom.read_bytes()[:256]) is None
    frames = np.stack([stored_values(), stored_values()])
    multi = write(tmp_path / "multi.dcm", frames, NumberOfFrames=2)
    with pytest.raises(ValueError, match=r"multi\.dcm: multi-frame DICOM \(2 frames\)"):
        dicom.read_dicom(multi)
    with pytest.raises(FileNotFoundError, match=r"missing\.dcm"):
        dicom.read_dicom(tmp_path / "missing.dcm")


def test_compressed_syntax_is_decoded_or_refused_clearly(tmp_path):
    """A JPEG Baseline file whose encapsulated frame is not a valid JPEG: with or without a
    decoder plugin installed, the error names the file and the transfer syntax."""
    path = write(tmp_path / "compressed.dcm", stored_values(8), bits=8, syntax=JPEGBaseline8Bit,
                 frames_data=[b"\xff\xd8 not a real JPEG stream \xff\xd9"])
    with pytest.raises(ValueError, match=r"compressed\.dcm: cannot decode the compressed transfer syntax 'JPEG Baseline"):
        dicom.read_dicom(path)


@functools.lru_cache(maxsize=1)
def valid_dicom_bytes() -> bytes:
    """One valid DICOM file's bytes (built once: its UIDs, and so its length, are random)."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "valid.dcm"
        write(path, np.arange(64 * 32, dtype=np.uint16).reshape(64, 32) % 4096)
        return path.read_bytes()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_dicom_files_are_read_or_refused_by_name(tmp_path, data):
    """Random bytes after the preamble, or a valid file with bytes patched or cut: only a
    ValueError naming the file, or pixels."""
    path = tmp_path / "fuzz.dcm"
    if data.draw(st.booleans()):
        payload = b"\x00" * 128 + b"DICM" + data.draw(st.binary(max_size=400))
    else:
        valid = bytearray(valid_dicom_bytes())
        for position, value in data.draw(st.lists(st.tuples(st.integers(128, len(valid) - 1), st.integers(0, 255)), max_size=8)):
            valid[position] = value
        payload = bytes(valid[: data.draw(st.integers(132, len(valid)))])
    path.write_bytes(payload)
    try:
        image = dicom.read_dicom(path)
    except ValueError as error:
        assert str(path) in str(error)
    else:
        assert image.pixels.ndim == 2 and np.isfinite(image.pixels).all()


def test_a_dicom_bomb_is_refused_before_its_pixels_are_decoded(tmp_path, monkeypatch):
    path = tmp_path / "bomb.dcm"
    write(path, np.zeros((64, 32), np.uint16) + 7)
    dataset = pydicom.dcmread(path)
    dataset.Rows, dataset.Columns = 60000, 60000  # the header claims 3.6 Gpixel
    dataset.save_as(path)
    decoded = []
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(lambda self: decoded.append(1)))
    with pytest.raises(ValueError, match=rf"{path}: image too large: 60000x60000 pixels; the limit is 40000000"):
        dicom.read_dicom(path, max_pixels=40_000_000)
    assert not decoded
