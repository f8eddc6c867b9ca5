"""Decoding encoded X-rays in TensorFlow: eager == tf.data, formats and bit depths, named
refusals, header size and pixel limit before decoding."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.data import decoding
from tests.harness import eager, in_dataset
from tests.harness import encode_jpeg as jpeg
from tests.harness import encode_png as png

RNG = np.random.default_rng(0)
GRAY8 = RNG.integers(0, 256, (30, 14), dtype=np.uint8)


@pytest.mark.parametrize(
    "name, function, args",
    [
        ("decode", decoding.decode_image, (png(GRAY8),)),
        ("check+decode", lambda d: decoding.decode_checked(d, "x.png"), (png(GRAY8),)),
        ("header size png", decoding.encoded_image_size, (png(GRAY8),)),
        ("header size jpeg", decoding.encoded_image_size, (jpeg(GRAY8),)),
    ],
)
def test_eager_and_tf_data_agree(name, function, args):
    expected = eager(function, *args)
    actual = in_dataset(function, *args)
    np.testing.assert_allclose(expected, actual, atol=1e-6, err_msg=name)


def test_decode_formats_and_bit_depths():
    np.testing.assert_allclose(decoding.decode_image(png(GRAY8)).numpy()[..., 0], GRAY8 / 255.0, atol=1e-7)
    deep = (RNG.integers(0, 65536, (20, 10))).astype(np.uint16)
    deep[0, 0] = 1000  # not a multiple of 257: 8-bit decoding could not return it
    decoded = decoding.decode_image(png(deep)).numpy()[..., 0]
    np.testing.assert_allclose(decoded, deep / 65535.0, atol=1e-6)
    assert abs(decoded[0, 0] * 65535 - 1000) < 0.1
    rgb = np.repeat(GRAY8[..., None], 3, axis=2)
    np.testing.assert_allclose(decoding.decode_image(png(rgb)).numpy()[..., 0], GRAY8 / 255.0, atol=1.5 / 255)
    rgba = np.concatenate([rgb, np.full_like(GRAY8[..., None], 255)], axis=2)
    assert decoding.decode_image(png(rgba)).shape == (30, 14, 1)
    smooth = cv2.GaussianBlur(GRAY8, (0, 0), 3)
    np.testing.assert_allclose(decoding.decode_image(jpeg(smooth)).numpy()[..., 0], smooth / 255.0, atol=6 / 255)


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"", "empty image data"),
        (b"GIF89a not what we accept", "not a JPEG or PNG image"),
        (jpeg(GRAY8)[:-40], "truncated image"),
        (png(GRAY8)[:-20], "truncated image"),
    ],
)
def test_bad_bytes_raise_naming_the_source(data, problem):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)" + problem + r".*bad-file\.jpg"):
        decoding.decode_checked(tf.constant(data), tf.constant("bad-file.jpg"))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)" + problem + r".*bad-file\.jpg"):
        in_dataset(lambda d: decoding.decode_checked(d, "bad-file.jpg"), data)


def test_header_size_and_pixel_limit_come_before_decoding():
    deep = RNG.integers(0, 65536, (37, 23)).astype(np.uint16)
    for data in (png(GRAY8), jpeg(GRAY8), png(deep), png(np.repeat(GRAY8[..., None], 3, axis=2))):
        decoded = decoding.decode_image(data).shape[:2]
        assert tuple(decoding.encoded_image_size(tf.constant(data)).numpy()) == tuple(decoded)
    data = png(GRAY8)  # 30 x 14 = 420 pixels
    assert decoding.decode_checked(tf.constant(data), "small.png", max_pixels=420).shape == (30, 14, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)image too large.*big\.png.*30.*14.*419"):
        decoding.decode_checked(tf.constant(data), "big.png", max_pixels=419)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)PNG too short.*tiny\.png"):
        decoding.decode_checked(tf.constant(b"\x89PNG\r\n\x1a\nIEND"), "tiny.png", max_pixels=419)
