"""Radiographs for prediction: find them among files, folders and globs, and read each one.

Every input becomes the encoded bytes the exported `serving_default` signature takes, so
`predict` and a TF Serving client see the same preprocessing: JPEG and PNG files pass through
unchanged once `data/admission.py` has admitted them (before any decoding); a JPEG with an
EXIF orientation is turned upright as image viewers show it and handed over as a lossless
PNG; a DICOM file is read with pydicom (`data/dicom.py`: modality and VOI LUTs,
MONOCHROME1 inverted) and handed over as a lossless 16-bit PNG.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib

import cv2
import numpy as np

from seg4reg_tf.data import admission, dicom

# Suffixes picked up inside folders; DICOM files often have none, so extension-less files
# are tried as well. Files named explicitly are always tried.
FOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm", ".dicom")


@dataclasses.dataclass(frozen=True)
class Radiograph:
    """One readable input.

    Attributes:
        path: the file, as found.
        encoded: JPEG or PNG bytes for the model.
        pixels: (H, W) float32 in [0, 1], the image as displayed (for overlays).
        file_format: "JPEG", "PNG" or "DICOM".
        pixel_spacing_mm: (row, column) spacing from DICOM, else None.
        patient_orientation: DICOM PatientOrientation, else None (`clinical_reading`).
        dicom: the DICOM file as read (`dicom.DicomImage`), else None.
    """

    path: str
    encoded: bytes
    pixels: np.ndarray
    file_format: str
    pixel_spacing_mm: tuple[float, float] | None = None
    patient_orientation: tuple[str, ...] | None = None
    dicom: dicom.DicomImage | None = dataclasses.field(default=None, repr=False, compare=False)


def _in_folder(folder: pathlib.Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file() and not hidden and (path.suffix.lower() in FOLDER_SUFFIXES or not path.suffix):
            found.append(str(path))
    return found


def find_inputs(arguments: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expands command-line inputs.

    Args:
        arguments: files, folders (searched recursively) and glob patterns (`**` allowed).

    Returns:
        (files in order without repeats, [(argument, error)] for arguments matching nothing:
        a missing path, a broken or looping link, a folder or pattern without images).
    """
    files, missing = [], []
    for argument in arguments:
        matches = []
        if os.path.isdir(argument):
            matches = _in_folder(pathlib.Path(argument))
            if not matches:
                missing.append((argument, f"{argument}: no JPEG, PNG or DICOM file in this folder"))
        elif os.path.isfile(argument):
            matches = [argument]
        elif glob.has_magic(argument):
            matches = []
            for match in sorted(glob.glob(argument, recursive=True)):
                matches += _in_folder(pathlib.Path(match)) if os.path.isdir(match) else [match]
            if not matches:
                missing.append((argument, f"{argument}: no file matches this pattern"))
        elif os.path.islink(argument):
            missing.append((argument, f"{argument}: a broken or looping symbolic link"))
        else:
            missing.append((argument, f"{argument}: no such file or folder"))
        files += [match for match in matches if match not in files]
    return files, missing


def _decode(encoded: bytes, path: str) -> np.ndarray:
    """Decodes admitted JPEG/PNG bytes to (H, W) gray, as stored (uint8 or uint16)."""
    image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: the image data is corrupt and cannot be decoded")
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
    return image


def _check_contrast(pixels: np.ndarray, path: str) -> None:
    """A blank image (every pixel the same value) holds no spine to measure."""
    if pixels.size and pixels.min() == pixels.max():
        raise ValueError(f"{path}: blank image (every pixel has the value {pixels.flat[0]}): no radiograph to measure")


def read_radiograph(path: str, max_pixels: int | None = None) -> Radiograph:
    """Reads one input file, admitting it before decoding.

    Args:
        path: a JPEG, PNG or DICOM file.
        max_pixels: largest height × width admitted (the export's limit); None for none.

    Raises:
        ValueError: empty, neither JPEG, PNG nor DICOM, refused by `admission.admit` (size,
            end marker, header), undecodable, blank, or a DICOM file `dicom.read_dicom`
            refuses; the message names the file.
        OSError: the file cannot be read.
    """
    return radiograph_from_bytes(pathlib.Path(path).read_bytes(), path, max_pixels)


def radiograph_from_bytes(data: bytes, path: str, max_pixels: int | None = None) -> Radiograph:
    """`read_radiograph` of a file already read (e.g. from a Beam file system): the same
    admission and decoding; `path` names the file in the row and in messages.

    Raises:
        ValueError: as `read_radiograph`.
    """
    if not data:
        raise ValueError(f"{path}: empty file")
    if admission.file_format(data) == "DICOM":
        image = dicom.read_dicom(path, max_pixels, data)  # its size bounds checked before decoding
        _check_contrast(image.pixels, path)
        encoded = dicom.to_png16(image.pixels)
        return Radiograph(path, encoded, image.pixels.astype(np.float32), "DICOM", image.pixel_spacing_mm, image.patient_orientation, image)
    if admission.file_format(data) is None:
        raise ValueError(f"{path}: not a JPEG, PNG or DICOM file (starts with {data[:8]!r})")
    admitted = admission.admit(data, data, path, max_pixels)
    stored = _decode(data, path)
    _check_contrast(stored, path)
    if admitted.orientation != 1:
        stored = admission.orient(stored, admitted.orientation)
        data = cv2.imencode(".png", stored)[1].tobytes()  # lossless, upright, no EXIF left
    scale = 65535.0 if stored.dtype == np.uint16 else 255.0
    return Radiograph(path, data, stored.astype(np.float32) / scale, admitted.file_format)
