"""Cheap checks of image files on disk: size from the header, completeness from the trailer.

Reading 481 full-resolution X-rays just to learn their sizes would take seconds; the JPEG
and PNG headers hold the size, and a missing end marker reveals a truncated file. Decoding
errors inside the compressed data are caught later, where the pixels are decoded.
"""

from __future__ import annotations

import os
import struct

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
# Start-of-frame markers that carry the image size (all but DHT C4, JPG C8, DAC CC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_HEAD_BYTES = 1 << 16
_TAIL_BYTES = 1 << 16


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Returns (height, width) in pixels of a JPEG or PNG file after checking it is complete.

    Args:
        path: the image file.

    Returns:
        (height, width) from the file header.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: empty file, not a JPEG or PNG, no size in the header, or truncated (no
            end-of-image marker); the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"{path}: empty image file")
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    if head.startswith(_JPEG_SOI):
        return _jpeg_size(path, head, tail)
    if head.startswith(_PNG_SIGNATURE):
        return _png_size(path, head, tail)
    raise ValueError(f"{path}: not a JPEG or PNG file (starts with {head[:8]!r})")


def _jpeg_size(path: str, head: bytes, tail: bytes) -> tuple[int, int]:
    """Walks the JPEG marker segments up to the first start-of-frame."""
    position = 2
    while position + 4 <= len(head):
        if head[position] != 0xFF:
            raise ValueError(f"{path}: corrupt JPEG header (no marker at byte {position})")
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack(">H", head[position + 2 : position + 4])
        if marker in _JPEG_SOF:
            if position + 9 > len(head):
                break
            height, width = struct.unpack(">HH", head[position + 5 : position + 9])
            if height == 0 or width == 0:
                raise ValueError(f"{path}: JPEG header gives a zero size {height}x{width}")
            if _JPEG_EOI not in tail:
                raise ValueError(f"{path}: truncated JPEG (no end-of-image marker)")
            return height, width
        if marker == 0xDA:  # start of scan before any frame header
            break
        position += 2 + length
    raise ValueError(f"{path}: corrupt or truncated JPEG header (no frame size found)")


def _png_size(path: str, head: bytes, tail: bytes) -> tuple[int, int]:
    """Reads the IHDR chunk and checks the IEND chunk closes the file."""
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: corrupt PNG (no IHDR chunk)")
    width, height = struct.unpack(">II", head[16:24])
    if height == 0 or width == 0:
        raise ValueError(f"{path}: PNG header gives a zero size {height}x{width}")
    if b"IEND" not in tail[-64:]:
        raise ValueError(f"{path}: truncated PNG (no IEND chunk)")
    return height, width
