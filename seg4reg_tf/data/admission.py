"""Image admission: what an encoded radiograph must be before anything decodes it.

One set of rules for every way in: `predict` (files, before decoding), the training and
evaluation data checks (`image_size`), and the serving graph, whose TensorFlow twin
(`decoding.check_encoded_image` and `decoding.check_image_bounds`) imports the same
constants. The rules, read from the first and last `TAIL_BYTES` of the file only:

- the format, from the signature bytes: JPEG or PNG (DICOM is read by `data/dicom.py` and
  handed on as a PNG);
- complete: the end marker (JPEG EOI, PNG IEND) lies in the last `TAIL_BYTES` — some
  scanners write bytes after it, which decoders ignore;
- the size from the header: at least `MIN_SIDE` pixels per side, an aspect ratio within
  `MAX_ASPECT`, at most `max_pixels` pixels (a decompression bomb is refused unread);
- the EXIF orientation of a JPEG (1–8, 1 when absent), which `predict` applies as image
  viewers do (`orient`).

Errors are `ImageRefused` (a ValueError) and name the file and the rule it broke.
"""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

JPEG_MAGIC = b"\xff\xd8"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DICOM_MAGIC, DICOM_MAGIC_OFFSET = b"DICM", 128
JPEG_EOI = b"\xff\xd9"
PNG_END = b"IEND"
# The end marker must lie within the file's last TAIL_BYTES (bytes after it are allowed).
TAIL_BYTES = 1 << 16
HEAD_BYTES = 1 << 16
MIN_SIDE = 8
MAX_ASPECT = 12.0
# Start-of-frame markers that carry the image size (all but DHT C4, JPG C8, DAC CC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_EXIF_ORIENTATION_TAG = 0x0112


class ImageRefused(ValueError):
    """An image that breaks an admission rule; the message names the file and the rule."""


@dataclasses.dataclass(frozen=True)
class Admitted:
    """What the header says about an admitted image.

    Attributes:
        file_format: "JPEG" or "PNG".
        height, width: stored size in pixels (before the orientation is applied).
        orientation: EXIF orientation 1–8 (1: stored upright).
    """

    file_format: str
    height: int
    width: int
    orientation: int = 1


def file_format(data: bytes) -> str | None:
    """"JPEG", "PNG", "DICOM" or None, from the signature bytes."""
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        return "DICOM"
    return None


def admit(head: bytes, tail: bytes, name: str, max_pixels: int | None = None) -> Admitted:
    """Applies the admission rules to a JPEG or PNG.

    Args:
        head: the first bytes of the file (the whole file, or at least `HEAD_BYTES`).
        tail: its last bytes (the whole file, or at least `TAIL_BYTES`).
        name: the file (or request) named in errors.
        max_pixels: largest height × width admitted; None for no limit.

    Raises:
        ImageRefused: empty, not JPEG/PNG, corrupt or truncated header, no end marker,
            too small, too elongated or too large.
    """
    if not head:
        raise ImageRefused(f"{name}: empty image file")
    kind = file_format(head)
    if kind == "JPEG":
        height, width, orientation = _jpeg_header(name, head)
        if JPEG_EOI not in tail[-TAIL_BYTES:]:
            raise ImageRefused(f"{name}: truncated JPEG (no end-of-image marker)")
    elif kind == "PNG":
        height, width, orientation = *_png_header(name, head), 1
        if PNG_END not in tail[-TAIL_BYTES:]:
            raise ImageRefused(f"{name}: truncated PNG (no IEND chunk)")
    else:
        raise ImageRefused(f"{name}: not a JPEG or PNG file (starts with {head[:8]!r})")
    check_bounds(height, width, name, max_pixels)
    return Admitted(kind, height, width, orientation)


def check_bounds(height: int, width: int, name: str, max_pixels: int | None = None) -> None:
    """Raises ImageRefused for a size a radiograph cannot have (see the module rules)."""
    if min(height, width) < MIN_SIDE:
        raise ImageRefused(f"{name}: image too small: {height}x{width} pixels; at least {MIN_SIDE} per side")
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ImageRefused(f"{name}: extreme aspect ratio: {height}x{width} pixels; at most {MAX_ASPECT:g}:1")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageRefused(f"{name}: image too large: {height}x{width} pixels; the limit is {max_pixels} pixels")


def admit_file(path: str | os.PathLike[str], max_pixels: int | None = None) -> Admitted:
    """`admit` on a file, reading only its first and last 64 KiB.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageRefused: see `admit`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
        handle.seek(max(0, size - TAIL_BYTES))
        tail = handle.read()
    return admit(head, tail, path, max_pixels)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) stored in a JPEG or PNG file that passes admission (no pixel limit)."""
    admitted = admit_file(path)
    return admitted.height, admitted.width


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF orientation to (H, W[, C]) pixels as image viewers do (1: unchanged;
    2 mirror; 3 rotate 180°; 4 flip; 5 transpose; 6 rotate 90° clockwise; 7 transverse;
    8 rotate 90° counter-clockwise)."""
    transforms = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(transforms[orientation](pixels))


def _jpeg_header(name: str, head: bytes) -> tuple[int, int, int]:
    """(height, width, orientation): walks the marker segments up to the first frame header."""
    position, orientation = 2, 1
    while position + 4 <= len(head):
        if head[position] != 0xFF:
            raise ImageRefused(f"{name}: corrupt JPEG header (no marker at byte {position})")
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack(">H", head[position + 2 : position + 4])
        if length < 2:
            raise ImageRefused(f"{name}: corrupt JPEG header (segment length {length} at byte {position})")
        if marker == 0xE1:
            orientation = _exif_orientation(head[position + 4 : position + 2 + length]) or orientation
        if marker in _JPEG_SOF:
            if position + 9 > len(head):
                break
            height, width = struct.unpack(">HH", head[position + 5 : position + 9])
            return height, width, orientation  # a zero size is refused by check_bounds
        if marker == 0xDA:  # start of scan before any frame header
            break
        position += 2 + length
    raise ImageRefused(f"{name}: corrupt or truncated JPEG header (no frame size found)")


def _exif_orientation(segment: bytes) -> int | None:
    """The orientation tag of an APP1 Exif segment (without marker and length), or None
    when the segment is not Exif, has no such tag, or is malformed (then ignored)."""
    if not segment.startswith(b"Exif\x00\x00") or len(segment) < 14:
        return None
    tiff = segment[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    try:
        (offset,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
        for index in range(count):
            entry = tiff[offset + 2 + 12 * index : offset + 14 + 12 * index]
            tag, kind, _, value = struct.unpack(order + "HHI4s", entry)
            if tag == _EXIF_ORIENTATION_TAG and kind == 3:  # SHORT
                (orientation,) = struct.unpack(order + "H", value[:2])
                return orientation if 1 <= orientation <= 8 else None
    except struct.error:
        return None
    return None


def _png_header(name: str, head: bytes) -> tuple[int, int]:
    """(height, width) from the IHDR chunk."""
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise ImageRefused(f"{name}: corrupt PNG (no IHDR chunk)")
    width, height = struct.unpack(">II", head[16:24])
    return height, width  # a zero size is refused by check_bounds
