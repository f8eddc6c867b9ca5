"""Decoding encoded X-rays in TensorFlow, after the graph twin of the admission checks:
JPEG/PNG signature and end marker, size bounds read from the header before any pixel is
decoded, 8- or 16-bit, gray or colour → (H, W, 1) float32 in [0, 1].

Runs eagerly, inside `tf.data` and inside the exported serving graph, so training and
serving decode identically; `data/admission.py` is the same policy for files on disk.
"""

from __future__ import annotations

import tensorflow as tf

from seg4reg_tf.data.admission import JPEG_EOI, JPEG_MAGIC, MAX_ASPECT, MIN_SIDE, PNG_END, PNG_MAGIC, TAIL_BYTES

# Signature, IHDR chunk and IEND chunk: the smallest a valid PNG can be.
_PNG_MINIMUM = 8 + 25 + 12


def _contains(haystack: tf.Tensor, needle: bytes) -> tf.Tensor:
    """Whether the uint8 vector `haystack` contains the byte string `needle` (scalar bool)."""
    count = tf.shape(haystack)[0] - len(needle) + 1
    if_any = tf.ones([tf.maximum(count, 0)], tf.bool)
    for offset, byte in enumerate(needle):
        if_any &= tf.equal(haystack[offset : offset + tf.maximum(count, 0)], byte)
    return tf.reduce_any(if_any)


def check_encoded_image(data: tf.Tensor, name: tf.Tensor | str) -> tf.Tensor:
    """Asserts that `data` is a complete JPEG or PNG; errors name `name` and the problem.
    The graph twin of `admission.admit` (same signatures and end-marker window).

    Args:
        data: scalar tf.string, the encoded file.
        name: scalar tf.string used in the error (a file path, or a request index).

    Returns:
        `data`, with the checks as control dependencies.

    Raises:
        tf.errors.InvalidArgumentError: empty, not JPEG/PNG, or truncated (no end marker).
    """
    length = tf.strings.length(data)
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 2), JPEG_MAGIC)
    is_png = tf.equal(tf.strings.substr(data, 0, 8), PNG_MAGIC)
    tail = tf.io.decode_raw(tf.strings.substr(data, tf.maximum(length - TAIL_BYTES, 0), TAIL_BYTES), tf.uint8)
    complete = tf.logical_or(
        tf.logical_and(is_jpeg, _contains(tail, JPEG_EOI)),
        tf.logical_and(is_png, _contains(tail, PNG_END)),
    )
    checks = [
        tf.debugging.Assert(length > 0, ["empty image data:", name]),
        tf.debugging.Assert(is_jpeg | is_png, ["not a JPEG or PNG image:", name]),
        tf.debugging.Assert(complete, ["truncated image (no end-of-image marker):", name]),
        tf.debugging.Assert(is_jpeg | (length >= _PNG_MINIMUM), ["PNG too short to hold a header:", name]),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(data)


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """Decodes a JPEG or PNG (8- or 16-bit, gray, gray+alpha, RGB or RGBA) to one channel.

    `dtype=tf.float32` matters: with the default uint8, 16-bit PNGs are cut to 8 bits.
    JPEGs are decoded with the accurate integer IDCT: `tf.io.decode_image`'s default fast
    IDCT differs from OpenCV and Pillow by up to 12 grey levels at quality 95 and wraps
    saturated pixels from white to black at quality 100.

    Args:
        data: scalar tf.string.

    Returns:
        (H, W, 1) float32 in [0, 1].
    """

    def jpeg():
        decoded = tf.io.decode_jpeg(data, channels=0, dct_method="INTEGER_ACCURATE")
        return tf.image.convert_image_dtype(decoded, tf.float32)

    def other():
        return tf.io.decode_image(data, channels=0, dtype=tf.float32, expand_animations=False)

    image = tf.cond(tf.equal(tf.strings.substr(data, 0, 2), JPEG_MAGIC), jpeg, other)
    image = tf.cond(
        tf.shape(image)[-1] >= 3,
        lambda: tf.image.rgb_to_grayscale(image[..., :3]),
        lambda: image[..., :1],
    )
    image.set_shape([None, None, 1])
    return image


def encoded_image_size(data: tf.Tensor) -> tf.Tensor:
    """(height, width) int64 of a JPEG or PNG read from its header, without decoding.

    Args:
        data: scalar tf.string that passed `check_encoded_image`.

    Returns:
        (2,) int64.
    """

    def png_size():
        # IHDR: width then height as big-endian uint32 at bytes 16–23.
        fields = tf.io.decode_raw(tf.strings.substr(data, 16, 8), tf.uint8)
        fields = tf.cast(tf.reshape(fields, [2, 4]), tf.int64)
        width_height = tf.reduce_sum(fields * tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64), axis=1)
        return tf.reverse(width_height, [0])

    def jpeg_size():
        return tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)

    return tf.cond(tf.equal(tf.strings.substr(data, 0, 2), JPEG_MAGIC), jpeg_size, png_size)


def check_image_bounds(data: tf.Tensor, name: tf.Tensor | str, max_pixels: int | None = None) -> tf.Tensor:
    """Asserts, before anything is decoded, that the header's size is one a radiograph can
    have (the graph twin of `admission.check_bounds`): at least MIN_SIDE pixels per side,
    an aspect ratio within MAX_ASPECT, and at most `max_pixels` pixels, so a decompression
    bomb fails fast instead of exhausting memory.

    Returns:
        `data`, with the checks as control dependencies.

    Raises:
        tf.errors.InvalidArgumentError: the image breaks a bound.
    """
    size = encoded_image_size(data)
    short, long = tf.reduce_min(size), tf.reduce_max(size)
    checks = [
        tf.debugging.Assert(short >= MIN_SIDE, ["image too small:", name, "has", size[0], "x", size[1], f"pixels; at least {MIN_SIDE} per side"]),
        tf.debugging.Assert(
            tf.cast(long, tf.float64) <= MAX_ASPECT * tf.cast(short, tf.float64),
            ["extreme aspect ratio:", name, "has", size[0], "x", size[1], f"pixels; at most {MAX_ASPECT:g}:1"],
        ),
    ]
    if max_pixels is not None:
        checks.append(tf.debugging.Assert(
            size[0] * size[1] <= max_pixels,
            ["image too large:", name, "has", size[0], "x", size[1], "pixels; the limit is", max_pixels, "pixels"],
        ))
    with tf.control_dependencies(checks):
        return tf.identity(data)


def decode_checked(data: tf.Tensor, name: tf.Tensor | str, max_pixels: int | None = None) -> tf.Tensor:
    """`check_encoded_image`, the size bounds (with the optional pixel limit), then
    `decode_image`.

    Returns:
        (H, W, 1) float32 in [0, 1].
    """
    data = check_encoded_image(data, name)
    data = check_image_bounds(data, name, max_pixels)
    return decode_image(data)
