"""DICOM radiographs → gray images in [0, 1] the networks can read, with pixel spacing.

The display pipeline of DICOM PS3.3 C.11 is applied in order: stored values → Modality LUT
(RescaleSlope / RescaleIntercept, or a Modality LUT Sequence) → VOI LUT (the first
WindowCenter / WindowWidth pair with its VOILUTFunction, or a VOI LUT Sequence) → the
presentation polarity (MONOCHROME1 is inverted so that bone is bright, as in MONOCHROME2
and in the training data). Without a VOI the full range the stored bits can hold, passed
through the Modality LUT, maps to [0, 1]: 12- and 16-bit images keep their precision.

Refused with a message naming the file: files that are not DICOM, no pixel data, several
frames (an AP radiograph is one frame; picking one silently could pick the wrong view),
colour images other than RGB, and compressed transfer syntaxes whose decoder plugin is not
installed (the message says which package to install).
"""

from __future__ import annotations

import dataclasses
import io
import pathlib

import cv2
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space

from seg4reg_tf.data import admission


@dataclasses.dataclass(frozen=True)
class DicomImage:
    """A decoded radiograph.

    Attributes:
        pixels: (H, W) float32 in [0, 1], bone bright.
        pixel_spacing_mm: (row spacing, column spacing) in mm, from PixelSpacing or
            ImagerPixelSpacing, or None when the file has neither.
        photometric: the file's PhotometricInterpretation.
        bits_stored: the file's BitsStored.
        patient_orientation: PatientOrientation (0020,0020), e.g. ("L", "F"): the patient
            directions of the rows and columns; None when the file has none.
        dataset: the file as pydicom read it (its UIDs and patient module, for the DICOM
            outputs that reference it).
    """
    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    photometric: str
    bits_stored: int
    patient_orientation: tuple[str, ...] | None = None
    dataset: pydicom.Dataset | None = dataclasses.field(default=None, repr=False, compare=False)


def _stored_range(dataset) -> tuple[float, float]:
    """The smallest and largest value BitsStored can hold, signed or not."""
    bits = int(dataset.BitsStored)
    if int(getattr(dataset, "PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """The VOI window of DICOM PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT, SIGMOID) onto [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width < 1:
        raise ValueError(f"WindowWidth must be >= 1 for a LINEAR window, got {width}")
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _first(value) -> float:
    """The first value of a possibly multi-valued DICOM element."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _to_unit_range(dataset, stored: np.ndarray, path) -> np.ndarray:
    """Modality LUT then VOI (or the full modality range) → (H, W) float64 in [0, 1]."""
    values = apply_modality_lut(stored, dataset).astype(np.float64)
    if "VOILUTSequence" in dataset:
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        return apply_voi_lut(stored if "ModalityLUTSequence" in dataset else values, dataset, index=0).astype(np.float64) / (2.0**bits - 1)
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        function = str(getattr(dataset, "VOILUTFunction", "LINEAR") or "LINEAR").upper()
        return _window(values, _first(dataset.WindowCenter), _first(dataset.WindowWidth), function)
    low, high = _stored_range(dataset)
    ends = apply_modality_lut(np.array([low, high]), dataset).astype(np.float64)
    low, high = float(ends.min()), float(ends.max())
    if high <= low:
        raise ValueError(f"{path}: degenerate pixel value range [{low}, {high}]")
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def read_dicom(path, max_pixels: int | None = None, data: bytes | None = None) -> DicomImage:
    """Reads one single-frame DICOM radiograph.

    Args:
        path: a DICOM Part 10 file (with `data`: its name, for messages).
        max_pixels: largest Rows × Columns admitted, checked with the other size bounds of
            `admission.check_bounds` before the pixel data is decoded; None for no limit.
        data: the file's bytes, already read (e.g. from a Beam file system); None reads `path`.

    Returns:
        A `DicomImage` with pixels (H, W) float32 in [0, 1].

    Raises:
        FileNotFoundError: no such file.
        ValueError: not DICOM, no pixel data, multi-frame, a size out of bounds, unsupported
            colour, or a compressed transfer syntax without its decoder; the message names
            the file.
    """
    try:
        return _read_dicom(pathlib.Path(path), max_pixels, data)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as error:  # pydicom parses lazily and raises many types on damaged files
        raise ValueError(f"{path}: damaged DICOM file ({type(error).__name__}: {error})") from error


def _read_dicom(path: pathlib.Path, max_pixels: int | None, data: bytes | None = None) -> DicomImage:
    """`read_dicom` without the final translation of pydicom's errors."""
    if data is None and not path.is_file():
        raise FileNotFoundError(f"{path}: no such DICOM file")
    try:
        dataset = pydicom.dcmread(path if data is None else io.BytesIO(data))
    except InvalidDicomError as error:
        raise ValueError(f"{path}: not a DICOM file ({error})") from error
    except (EOFError, OSError) as error:
        raise ValueError(f"{path}: unreadable DICOM file ({type(error).__name__}: {error})") from error
    if "PixelData" not in dataset:
        raise ValueError(f"{path}: DICOM file without pixel data (SOP class {getattr(dataset, 'SOPClassUID', 'unknown')})")
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(f"{path}: multi-frame DICOM ({frames} frames); save the AP radiograph as a single-frame file")
    rows, columns = int(dataset.Rows), int(dataset.Columns)  # missing or damaged: read_dicom names the file
    admission.check_bounds(rows, columns, str(path), max_pixels)
    photometric = str(getattr(dataset, "PhotometricInterpretation", ""))
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        raise ValueError(f"{path}: DICOM file without a transfer syntax in its file meta information")
    try:
        stored = dataset.pixel_array
    except (RuntimeError, NotImplementedError, ValueError) as error:
        if syntax.is_transfer_syntax and syntax.is_compressed:
            raise ValueError(
                f"{path}: cannot decode the compressed transfer syntax '{syntax.name}' ({syntax}): "
                f"install a pydicom decoder plugin (`pip install pylibjpeg pylibjpeg-libjpeg "
                f"pylibjpeg-openjpeg`) or convert the file to an uncompressed syntax ({error})"
            ) from error
        raise ValueError(f"{path}: cannot decode pixel data ({error})") from error
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") and stored.ndim == 3:

        rgb = convert_color_space(stored, photometric, "RGB") if photometric != "RGB" else stored
        stored = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    elif photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"{path}: unsupported PhotometricInterpretation '{photometric}' (expected MONOCHROME1/2 or RGB)")
    pixels = _to_unit_range(dataset, stored, path)
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    spacing = getattr(dataset, "PixelSpacing", None) or getattr(dataset, "ImagerPixelSpacing", None)
    spacing = (float(spacing[0]), float(spacing[1])) if spacing else None
    orientation = tuple(str(value) for value in getattr(dataset, "PatientOrientation", None) or ()) or None
    return DicomImage(pixels.astype(np.float32), spacing, photometric, int(dataset.BitsStored), orientation, dataset)


def to_png16(pixels: np.ndarray) -> bytes:
    """(H, W) values in [0, 1] → a 16-bit gray PNG, the lossless way to hand a DICOM image to
    the encoded-image signature (whose 16-bit decoding keeps the precision)."""
    ok, encoded = cv2.imencode(".png", np.round(np.clip(pixels, 0.0, 1.0) * 65535).astype(np.uint16))
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()
