"""Checks every custom layer and model gets: config round-trip and .keras reload."""

import pathlib

import cv2
import keras
import numpy as np
import tensorflow as tf

from seg4reg_tf.config import config_from_dict, load_config
from seg4reg_tf.data import synthetic
from seg4reg_tf.geometry import VERTEBRA_NAMES
from seg4reg_tf.models import build_regressor, build_segmenter, segmenter_layer
from seg4reg_tf.models.tilt_refiner import build_tilt_refiner
from seg4reg_tf.workdir import write_networks

SMOKE = pathlib.Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"


def assert_same_outputs(first, second, atol=1e-4):
    flat_a, flat_b = keras.tree.flatten(first), keras.tree.flatten(second)
    assert len(flat_a) == len(flat_b)
    for a, b in zip(flat_a, flat_b):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=atol)


def assert_layer_config_round_trip(layer, inputs):
    """A layer rebuilt from its config, given the same weights, computes the same outputs."""
    expected = layer(inputs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    assert_same_outputs(expected, clone(inputs))
    assert clone.get_config() == layer.get_config()


def assert_keras_file_round_trip(model, inputs, path):
    """model.save(.keras) → keras.saving.load_model → equal outputs (inference mode)."""
    expected = model(inputs, training=False)
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert_same_outputs(expected, loaded(inputs, training=False))
    return loaded


def make_workdir(folder: pathlib.Path, **sections) -> pathlib.Path:
    """A workdir as phases roie and reg leave it, with seeded untrained smoke-sized networks
    (the gate's α = 0.5, so the two-pass ROIE path matters). N_S's classifier bias is +3, so
    it marks most of the frame as spine and the geometric readout finds one: predict's rows
    are "ok" rather than "spine not found".

    Args:
        sections: overrides of the smoke config's sections, e.g.
            `segmenter={"backbone": "resnet18"}`.
    """
    values = load_config(SMOKE).to_dict()
    config = config_from_dict({**values, **{name: {**values[name], **changes} for name, changes in sections.items()}})
    keras.utils.set_random_seed(0)
    segmenter = build_segmenter(config.segmenter, config.data.image_size, with_roie=True)
    segmenter_layer(segmenter, "classifier").bias.assign(np.array([3.0], "float32"))
    refiner = build_tilt_refiner(config.refiner) if config.refiner.enabled else None
    if refiner is not None:  # an untrained refiner that turns every vertebra by ~3° or more
        refiner.get_layer("residual").bias.assign(np.array([0.6], "float32"))
    return write_networks(folder, config, segmenter, build_regressor(config.regressor, config.data.image_size), alpha=0.5, refiner=refiner)


def write_dicom(path, stored: np.ndarray, photometric="MONOCHROME2", bits=12, syntax=None, frames_data=None, **elements):
    """Writes a DICOM Part 10 file with pydicom: (H, W) or (F, H, W) stored values, the
    transfer syntax (default explicit VR little endian), encapsulated `frames_data` for a
    compressed syntax, and any further data elements; returns `path`."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    syntax = syntax or ExplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "DX"
    dataset.Rows, dataset.Columns = stored.shape[-2:]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = 16
    dataset.BitsStored = bits
    dataset.HighBit = bits - 1
    dataset.PixelRepresentation = 0
    dataset.PixelData = stored.astype(np.uint16).tobytes()
    if frames_data is not None:  # encapsulated (compressed) frames
        from pydicom.encaps import encapsulate

        dataset.BitsAllocated = 8
        dataset.PixelData = encapsulate(frames_data)
        dataset["PixelData"].VR = "OB"
    for key, value in elements.items():
        setattr(dataset, key, value)
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_dx(path, stored: np.ndarray, **elements):
    """Writes a DX radiograph (Digital X-Ray Image Storage - For Presentation) with the
    patient, study and series attributes a PACS holds; `elements` add or replace any (None
    removes one). Returns `path`."""
    from pydicom.uid import DigitalXRayImageStorageForPresentation, generate_uid

    study = {
        "SOPClassUID": DigitalXRayImageStorageForPresentation, "PatientID": "SEG4REG-TEST-1", "PatientName": "Test^Spine",
        "PatientBirthDate": "20100101", "PatientSex": "F", "StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid(),
        "StudyDate": "20260101", "StudyTime": "120000", "StudyID": "1", "AccessionNumber": "ACC1", "ReferringPhysicianName": "",
        "SeriesNumber": 1, "InstanceNumber": 1, "PatientOrientation": ["L", "F"], "ImagerPixelSpacing": [0.2, 0.2],
        "ImageType": ["ORIGINAL", "PRIMARY"], "Manufacturer": "test", "PresentationIntentType": "FOR PRESENTATION",
        "ViewPosition": "AP", "BodyPartExamined": "SPINE",
    }  # fmt: skip
    study.update(elements)
    path = write_dicom(path, stored, **{key: value for key, value in study.items() if value is not None})
    if any(value is None for value in elements.values()) or "SOPClassUID" in study:
        import pydicom

        dataset = pydicom.dcmread(path)
        dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
        for key, value in elements.items():
            if value is None and key in dataset:
                delattr(dataset, key)
        dataset.save_as(path, enforce_file_format=True)
    return path


def in_dataset(function, *args):
    """Runs `function(*args)` as a tf.data map (graph mode) and returns the result."""
    dataset = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args))
    return tf.nest.map_structure(lambda t: t.numpy(), dataset.map(function).get_single_element())


def eager(function, *args):
    """Runs `function(*args)` eagerly on tensors and returns NumPy results."""
    return tf.nest.map_structure(lambda t: t.numpy(), function(*[tf.convert_to_tensor(a) for a in args]))


def encode_png(array) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def encode_jpeg(array, quality=95) -> bytes:
    return cv2.imencode(".jpg", array, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def drawn_spines(count: int, seed: int, split: str):
    """(count, 68, 2) spines drawn by the synthetic generator, in original pixels, and their
    image sizes (count, 2) (height, width); spine i depends only on (seed, split, i)."""
    generator = synthetic.SyntheticConfig()
    points, sizes = [], []
    for index in range(count):
        rng = synthetic.image_rng(seed, split, index)
        height, width = synthetic.draw_image_size(rng, generator)
        points.append(synthetic.draw_spine(rng, height, width, generator).landmarks)
        sizes.append((height, width))
    return np.stack(points).astype(np.float64), np.array(sizes)


def drawn_spine(pivots: dict[str, float], width: float = 40.0, height: float = 24.0, gap: float = 8.0) -> np.ndarray:
    """(68, 2) corners (TL, TR, BL, BR) of a spine whose tilts (degrees, y down) are
    `pivots` at the named vertebrae, linear between them and constant beyond: each vertebra
    is a rectangle turned by its tilt, below the previous one along the spine's axis, which
    is perpendicular to the mean tilt of the two (for the clinical reading's tests)."""
    known = sorted((VERTEBRA_NAMES.index(name), tilt) for name, tilt in pivots.items())
    tilts = np.radians(np.interp(np.arange(17), [k for k, _ in known], [t for _, t in known]))
    centre = np.array([300.0, 100.0])
    corners = []
    for i, tilt in enumerate(tilts):
        if i:
            mean = (tilts[i - 1] + tilt) / 2
            centre = centre + (height + gap) * np.array([-np.sin(mean), np.cos(mean)])
        across = width / 2 * np.array([np.cos(tilt), np.sin(tilt)])
        down = height / 2 * np.array([-np.sin(tilt), np.cos(tilt)])
        corners += [centre - across - down, centre + across - down, centre - across + down, centre + across + down]
    return np.array(corners)


def drawn_system(landmarks, height=768, width=640, mask=None, found=True):
    """A loaded system whose route answers with the given (68, 2) vertebra corners and
    their AASCE angles, and N_S's `mask` ((height, width) probabilities, default empty).
    The model frame is the original (radiographs of `height` × `width`, letterbox scale 1)."""
    from seg4reg_tf.geometry import cobb_angles
    from seg4reg_tf.serving import loaded_system

    angles = cobb_angles(landmarks[None], float(height)).astype(np.float32)
    ends = np.array([[[5, 11], [0, 5], [11, 16]]], np.int32)

    def run(images, fine_images=None):
        views = len(images)
        masks = np.repeat((np.zeros((height, width)) if mask is None else mask)[None].astype(np.float32), views, 0)
        return {"spine_found": np.full(views, found), "cobb_angles": np.repeat(angles, views, 0),
                **{f"cobb_angles_{route}": np.repeat(angles, views, 0) for route in ("regressor", "geometric", "vertebrae")},
                "mask": masks, "cam": np.zeros((views, height // 32, width // 32), np.float32),
                **{key: np.repeat(landmarks[None].astype(np.float32), views, 0) for key in ("landmarks", "vertebra_landmarks")},
                **{key: np.repeat(ends, views, 0) for key in ("end_vertebrae", "vertebra_end_vertebrae")}}  # fmt: skip

    config = config_from_dict({"data": {"image_height": height, "image_width": width}})
    return loaded_system.LoadedSystem(config, {"drawn": True}, run, height * width, route="vertebrae")
