"""DICOM results of one DICOM radiograph, written with highdicom: a Structured Report of the
curves and a Segmentation of the spine, both in the source's study.

highdicom is the maintained library that builds standard-conformant DICOM SR and SEG
objects on pydicom (the Imaging Data Commons' library); writing the templates by hand
would be hundreds of lines of tags that a validator then has to find wrong.

- **SR** (Comprehensive SR, TID 1500 Measurement Report): one measurement group (TID 1501)
  per curve of `clinical_reading`, each with its Cobb angle (SCT 285285000 "Cobb angle",
  UCUM "deg"), its upper and lower end vertebrae and apex as SNOMED CT vertebra and disc
  codes, its convexity (SCT Right / Left), its severity (SCT Mild / Moderate / Severe), its
  region and, on the major curve, the provisional Lenke type. Concepts without a standard
  code (the region, the end and apex vertebra roles, the Lenke type) use this project's
  private coding scheme `99SEG4REG` (`PRIVATE`). Every group references the source image
  and names the algorithm and its version; the observer is the device (the algorithm).
  The research-software notice is in the series description of both objects.
- **SEG** (binary Segmentation): N_S's spine mask in the source image's own pixel grid,
  one segment, "Spine" (SCT 421060004, category SCT 91723000 "Anatomical structure"),
  automatic, with the same algorithm identification.

Both are new series of the source's study (same Study Instance UID, patient module copied by
highdicom) and reference the source's Series and SOP Instance UIDs.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib

import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from seg4reg_tf import files

ALGORITHM_NAME = "seg4reg_tf"
MANUFACTURER = "seg4reg_tf (research software)"
PRIVATE_SCHEME = "99SEG4REG"
PRIVATE = {
    "region": Code("R-0001", PRIVATE_SCHEME, "Scoliosis curve region"),
    "upper": Code("R-0002", PRIVATE_SCHEME, "Upper end vertebra"),
    "lower": Code("R-0003", PRIVATE_SCHEME, "Lower end vertebra"),
    "apex": Code("R-0004", PRIVATE_SCHEME, "Apex of curve"),
    "lenke": Code("R-0005", PRIVATE_SCHEME, "Provisional Lenke curve type"),
    "PT": Code("R-0011", PRIVATE_SCHEME, "Proximal thoracic curve"),
    "MT": Code("R-0012", PRIVATE_SCHEME, "Main thoracic curve"),
    "TL/L": Code("R-0013", PRIVATE_SCHEME, "Thoracolumbar/lumbar curve"),
}
LENKE_CODES = {number: Code(f"R-003{number}", PRIVATE_SCHEME, f"Lenke type {number} (provisional)") for number in range(1, 7)}
SEVERITY_CODES = {"mild": codes.SCT.Mild, "moderate": codes.SCT.Moderate, "severe": codes.SCT.Severe}
SIDE_CODES = {"right": codes.SCT.Right, "left": codes.SCT.Left}
SR_SERIES_NUMBER, SEG_SERIES_NUMBER = 9101, 9102


def version() -> str:
    """The installed seg4reg_tf version ("unknown" when not installed)."""
    try:
        return importlib.metadata.version("seg4reg_tf")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def position_code(name: str) -> Code:
    """A vertebra ("T6") or disc ("T6–T7") name → its SNOMED CT code from pydicom's table."""
    key = name.replace("–", "") + ("Disc" if "–" in name else "Vertebra")
    return getattr(codes.SCT, key)


def check_source(source: pydicom.Dataset, path: str) -> None:
    """Refuses a source the results cannot reference: no Study, Series or SOP Instance UID.

    Raises:
        ValueError: naming `path` and the missing attribute.
    """
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not getattr(source, keyword, None):
            raise ValueError(f"{path}: the DICOM file has no {keyword}: its results cannot reference it")


def structured_report(source: pydicom.Dataset, reading: dict, route: str):
    """The Comprehensive SR of a clinical reading (see the module docstring).

    Args:
        source: the DICOM radiograph the reading was made on.
        reading: `clinical_reading.read_spine`'s result.
        route: the route the vertebrae came from ("vertebrae", "geometric", ...).

    Returns:
        A `highdicom.sr.ComprehensiveSR`.
    """
    import highdicom as hd

    algorithm = hd.sr.AlgorithmIdentification(name=f"{ALGORITHM_NAME} ({route} route)", version=version())
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=generate_uid(), name=ALGORITHM_NAME, manufacturer_name=MANUFACTURER),
    )
    image = hd.sr.SourceImageForMeasurementGroup.from_source_image(source)
    groups = []
    for number, curve in enumerate(reading["curves"], start=1):
        evaluations = [
            hd.sr.QualitativeEvaluation(PRIVATE["region"], PRIVATE[curve["region"]]),
            hd.sr.QualitativeEvaluation(PRIVATE["upper"], position_code(curve["upper_end_vertebra"])),
            hd.sr.QualitativeEvaluation(PRIVATE["lower"], position_code(curve["lower_end_vertebra"])),
            hd.sr.QualitativeEvaluation(PRIVATE["apex"], position_code(curve["apex"])),
            hd.sr.QualitativeEvaluation(codes.SCT.Laterality, SIDE_CODES[curve["convexity"]]),
            hd.sr.QualitativeEvaluation(codes.SCT.Severity, SEVERITY_CODES[curve["severity"]]),
        ]
        if curve["major"] and reading["lenke_type_provisional"]:
            evaluations.append(hd.sr.QualitativeEvaluation(PRIVATE["lenke"], LENKE_CODES[reading["lenke_type_provisional"]]))
        cobb = hd.sr.Measurement(
            name=codes.SCT.CobbAngle, value=float(curve["cobb_deg"]), unit=codes.UCUM.Degree, algorithm_id=algorithm,
            referenced_images=[hd.sr.SourceImageForMeasurement.from_source_image(source)],
        )  # fmt: skip
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"curve {number}: {curve['region']}"),
            finding_type=codes.SCT.CobbAngle, algorithm_id=algorithm, finding_sites=[hd.sr.FindingSite(codes.SCT.Spine)],
            measurements=[cobb], qualitative_evaluations=evaluations, source_images=[image],
        ))  # fmt: skip
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.DCM.ProjectionXRay, imaging_measurements=groups or None,
    )  # fmt: skip
    return hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_instance_uid=generate_uid(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description=f"{ALGORITHM_NAME} Cobb angles (research software, not a medical device)",
    )  # fmt: skip


def segmentation(source: pydicom.Dataset, mask: np.ndarray):
    """The binary SEG of N_S's spine mask.

    Args:
        source: the DICOM radiograph.
        mask: (Rows, Columns) bool, the spine in the source's pixel grid.

    Returns:
        A `highdicom.seg.Segmentation`.

    Raises:
        ValueError: the mask's shape is not the source's.
    """
    import highdicom as hd

    if mask.shape != (int(source.Rows), int(source.Columns)):
        raise ValueError(f"the mask is {mask.shape}, the source image {(int(source.Rows), int(source.Columns))}")
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="spine", segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Spine, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(name=ALGORITHM_NAME, family=codes.DCM.ArtificialIntelligence, version=version()),
    )  # fmt: skip
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=mask.astype(bool)[None], segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=ALGORITHM_NAME,
        software_versions=version(), device_serial_number="none", omit_empty_frames=False,
        series_description=f"{ALGORITHM_NAME} spine mask (research software, not a medical device)",
    )  # fmt: skip
    # General Image's Type 2C PatientOrientation: required without a frame of reference, as
    # for a projection radiograph; the source's, or empty (unknown)
    seg.PatientOrientation = list(getattr(source, "PatientOrientation", None) or []) or None
    return seg


def encode(dataset: pydicom.Dataset) -> bytes:
    """A dataset as DICOM Part 10 bytes."""
    import io

    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_results(source: pydicom.Dataset, reading: dict, mask: np.ndarray, route: str, out: str | os.PathLike[str], stem: str) -> dict[str, str]:
    """Writes OUT/<stem>.sr.dcm and OUT/<stem>.seg.dcm, each atomically, both built before
    either is written (so a failure leaves neither).

    Returns:
        {"dicom_sr": path, "dicom_seg": path}.
    """
    data = {"dicom_sr": encode(structured_report(source, reading, route)), "dicom_seg": encode(segmentation(source, mask))}
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, suffix in (("dicom_sr", ".sr.dcm"), ("dicom_seg", ".seg.dcm")):
        path = out / f"{stem}{suffix}"
        files.atomic_write(path, data[key])
        written[key] = str(path)
    return written

