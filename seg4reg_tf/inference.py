"""The inference path, from a model-frame image to every output the system gives; the one
home that export, evaluate and predict import.

    image (B, H, W, 1) → N_S (two passes when gated by ROIE, α ≠ 0)  → mask
                       → N_R on the config's input            → cobb_angles_regressor
                       → geometric readout of the mask        → cobb_angles_geometric,
                                                                landmarks, end_vertebrae,
                                                                spine_found
                       → vertebra route (mask and N_S's tilt  → cobb_angles_vertebrae,
                         field, when N_S has the tilt head)     vertebra_landmarks,
                                                                vertebra_end_vertebrae,
                                                                vertebra_confidence
                       → the curves of the answering route's  → curve_end_vertebrae,
                         vertebrae (the centre line's for N_R)  curve_apex, curve_region,
                                                                curve_cobb_angles,
                                                                curve_side, major_curve
    cobb_angles = the route chosen by `inference.angles` (regressor | geometric | vertebrae | auto)

"auto" is resolved once per workdir from its route record (`routes`).

`predict_records` runs the path over labelled records in order (what evaluation scores).
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from seg4reg_tf.curves_graph import find_curves
from seg4reg_tf.data import pipeline, transforms
from seg4reg_tf.data.transforms import ANGLE_SCALE_DEGREES
from seg4reg_tf.geometric_readout import read_spine, read_spine_traced
from seg4reg_tf.models.regressor import REGRESSOR_STRIDE, regressor_inputs
from seg4reg_tf.models.segment import segment
from seg4reg_tf.models.tilt_refiner import MARGIN, RESIDUAL_UNIT_DEGREES
from seg4reg_tf.routes import ROUTES
from seg4reg_tf.tilt_field import mirror_tilt
from seg4reg_tf.vertebra_crops import crop_vertebrae
from seg4reg_tf.vertebra_readout import read_vertebrae


def predict_images(segmenter, regressor, images, config, route: str, letterbox=None, refiner=None, fine_images=None) -> dict:
    """The inference path on preprocessed images.

    Args:
        segmenter, regressor: N_S (gated or not) and N_R; N_R may be None with an ungated
            N_S (a workdir after phase seg): its angles are then NaN and the CAM zero.
        images: (B, H, W, 1) float32 in [0, 1], letterboxed into the model frame.
        config: uses `regressor.input_mode` and `readout`.
        route: "regressor", "geometric" or "vertebrae": which route `cobb_angles` repeats.
        letterbox: (B, 3) scale, offset_y, offset_x of each original in the model frame, or
            None: landmarks then stay in the model frame.
        refiner: the tilt refiner (`models.tilt_refiner`), or None: the vertebra route then
            reads each tilt off N_S's field alone.
        fine_images: with a refiner, (B, s·H, s·W, 1) the same X-rays at `refiner.scale`
            times the size (`data.requests.decode_requests`), which it reads its crops from.

    Returns:
        {"cobb_angles", "cobb_angles_regressor", "cobb_angles_geometric": (B, 3) degrees
        (the geometric ones NaN where no spine was found), "landmarks" (B, 68, 2) pseudo
        corners in original pixels, "end_vertebrae" (B, 3, 2) int32 (0 = T1 … 16 = L5, −1
        when not found), "spine_found" (B,) bool, "mask" (B, H, W) probabilities,
        "cam" (B, H/32, W/32) in [0, 1], the mean of the three angles' maps;
        the vertebra route's "cobb_angles_vertebrae" (B, 3), "vertebra_landmarks" (B, 68, 2)
        corners of the 17 fitted vertebrae in original pixels, "vertebra_end_vertebrae"
        (B, 3, 2) int32, "vertebra_confidence" (B, 17) in [0, 1]: NaN, −1 and 0 where no
        spine was found or N_S has no tilt head; and the named curves of the answering
        route's vertebrae (`curves_graph.find_curves`: "curve_end_vertebrae",
        "curve_apex", "curve_region", "curve_cobb_angles", "curve_side", "major_curve")}.
    """
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    images = ops.convert_to_tensor(images, "float32")
    mode = config.regressor.input_mode
    drawn = segmenter_outputs(segmenter, regressor, images, mode)
    mask = drawn["mask"]
    if regressor is None:
        batch, height, width = ops.shape(images)[0], ops.shape(images)[1], ops.shape(images)[2]
        by_regressor = ops.full((batch, 3), float("nan"))
        cam = ops.zeros((batch, height // REGRESSOR_STRIDE, width // REGRESSOR_STRIDE))
    else:
        out = regressor(regressor_inputs(images, mask, mode), training=False)
        by_regressor = ops.cast(out["angles"], "float32") * ANGLE_SCALE_DEGREES
        cam = ops.cast(out["cam"][..., -1], "float32")
    positions, readout = read_spine_traced(mask[..., 0], config.readout, letterbox)  # the centre line
    refine = None if refiner is None else refined_tilts(refiner, fine_images, config.refiner)
    vertebrae = vertebra_route(mask[..., 0], drawn["tilt"], config, letterbox, refine, (positions, readout))
    chosen = {"regressor": by_regressor, "geometric": readout["cobb_angles"], "vertebrae": vertebrae["cobb_angles"]}
    return {
        "cobb_angles": chosen[route],
        "cobb_angles_regressor": by_regressor,
        "cobb_angles_geometric": readout["cobb_angles"],
        "landmarks": readout["landmarks"],
        "end_vertebrae": readout["end_vertebrae"],
        "spine_found": readout["found"],
        "mask": mask[..., 0],
        "cam": cam,
        "cobb_angles_vertebrae": vertebrae["cobb_angles"],
        "vertebra_landmarks": vertebrae["landmarks"],
        "vertebra_end_vertebrae": vertebrae["end_vertebrae"],
        "vertebra_confidence": vertebrae["confidence"],
        **find_curves(vertebrae["landmarks"] if route == "vertebrae" else readout["landmarks"], readout["found"]),
    }


def vertebra_route(mask, tilt, config, letterbox=None, refine=None, centre_line=None) -> dict:
    """`vertebra_readout.read_vertebrae` on N_S's (B, H, W) mask and (B, H, W, 2) tilt
    field (`refine`: its second look, `refined_tilts`; `centre_line`: the centre line's
    reading of the mask, as `read_vertebrae` takes it); with no tilt field (None: N_S has no
    tilt head) the same keys, all NaN, −1 and 0."""
    if tilt is not None:
        return read_vertebrae(mask, tilt, config.readout, letterbox, refine, centre_line)
    batch = ops.shape(mask)[0]
    return {
        "cobb_angles": ops.full((batch, 3), float("nan")),
        "landmarks": ops.full((batch, 68, 2), float("nan")),
        "end_vertebrae": ops.full((batch, 3, 2), -1, dtype="int32"),
        "confidence": ops.zeros((batch, 17)),
    }


def refined_tilts(refiner, fine_images, settings):
    """The vertebra route's second look: (`vertebra_frames`, θ (B, 17) radians) → θ plus the
    tilt refiner's residual on each vertebra's crop of `fine_images` (B, s·H, s·W, 1), turned
    by θ, `MARGIN` times the vertebra's width on a side (`vertebra_crops`)."""
    if fine_images is None:
        raise ValueError("the tilt refiner needs the fine images (refiner.scale times the model frame)")
    fine_images = ops.convert_to_tensor(fine_images, "float32")

    def refine(frames, theta):
        batch, count = ops.shape(theta)[0], ops.shape(theta)[1]
        index = ops.repeat(ops.arange(batch, dtype="int32"), count)
        side = 2.0 * MARGIN * ops.reshape(frames["half_width"], [-1])
        crops = crop_vertebrae(fine_images, index, ops.reshape(frames["centre"], [-1, 2]), ops.reshape(theta, [-1]), side,
                               settings.crop_size, settings.scale)
        residual = ops.cast(refiner(crops, training=False), "float32")
        return theta + ops.reshape(residual, [batch, count]) * (math.pi / 180.0 * RESIDUAL_UNIT_DEGREES)

    return refine


def mask_probabilities(segmenter, regressor, images, mode: str, flips: bool = False):
    """N_S's mask on fixed networks: (B, H, W, 1) float32 probabilities (`segmenter_outputs`)."""
    return segmenter_outputs(segmenter, regressor, images, mode, flips)["mask"]


def segmenter_outputs(segmenter, regressor, images, mode: str, flips: bool = False) -> dict:
    """N_S's mask and tilt field on fixed networks: {"mask": (B, H, W, 1) float32
    probabilities (also of bfloat16 N_S), "tilt": (B, H, W, 2) float32, or None without
    the tilt head}.

    An idle ROIE gate (α = 0) is skipped: the same mask in one pass. With `flips`, the
    probabilities are the mean of the image's and of its left-right mirror's (mirrored
    back): test-time flips, N_S run on a batch twice as large.

    Args:
        segmenter, regressor: N_S (gated or not) and N_R (used only by a gated N_S).
        images: (B, H, W, 1) in [0, 1].
        mode: N_R's input mode (the CAM pass of a gated N_S).
        flips: average over the image and its mirror image.
    """
    if flips:
        images = ops.concatenate([images, ops.flip(images, axis=2)], axis=0)
    out = segment(segmenter, regressor, images, mode, skip_idle_gate=True)
    mask = ops.cast(out["mask"], "float32")
    tilt = ops.cast(out["tilt"], "float32") if "tilt" in out else None
    if not flips:
        return {"mask": mask, "tilt": tilt}
    direct, mirrored = ops.split(mask, 2, axis=0)
    if tilt is not None:
        tilt_direct, tilt_mirrored = ops.split(tilt, 2, axis=0)
        tilt = (tilt_direct + mirror_tilt(tilt_mirrored)) / 2.0
    return {"mask": (direct + ops.flip(mirrored, axis=2)) / 2.0, "tilt": tilt}


def record_letterboxes(records, config) -> np.ndarray:
    """(N, 3) scale, offset_y, offset_x placing each record's image in the model frame."""
    heights = np.array([record.height for record in records], np.float32)
    widths = np.array([record.width for record in records], np.float32)
    box = transforms.letterbox(heights, widths, config.data.image_height, config.data.image_width)
    return np.stack([np.asarray(value) for value in box], axis=1)


def fine_batches(records, config, batch_size: int) -> list:
    """The records' fine images (`pipeline.fine_images`), one (b, s·H, s·W, 1) tensor per
    batch of `predict_records`: what the tilt refiner reads."""
    return [pipeline.fine_images(records[start : start + batch_size], config.data, config.refiner.scale)
            for start in range(0, len(records), batch_size)]


def predict_records(segmenter, regressor, records, config, batch_size: int = 8, route: str = "regressor", refiner=None, fine=None) -> dict:
    """Runs the inference path over records in order, and the readout on their true masks
    (`refiner`: the tilt refiner, or None; it reads `fine`, the records' `fine_batches`,
    made here when not given).

    Returns:
        {"angles" (N, 3) degrees of `route`, "angles_regressor", "angles_geometric",
        "angles_geometric_truth" (the readout on the true masks), "angles_vertebrae" (N, 3)
        degrees (NaN where no spine was found, or all NaN without N_S's tilt head),
        "landmarks" (N, 68, 2) original pixels (the centre line's pseudo vertebrae),
        "vertebra_landmarks" (N, 68, 2) the vertebra route's, "masks" (N, H, W)
        probabilities, "cams" (N, h, w) in [0, 1], "images" (N, H, W) model inputs in
        [0, 1], "truth_angles" (N, 3) degrees, "truth_masks" (N, H, W) in {0, 1}}.
    """
    dataset = pipeline.make_dataset(records, config.data, training=False, batch_size=batch_size)
    letterboxes = record_letterboxes(records, config)
    keys = ("angles", "angles_regressor", "angles_geometric", "angles_geometric_truth", "angles_vertebrae", "landmarks",
            "vertebra_landmarks", "masks", "cams", "images", "truth_masks")
    outputs = {key: [] for key in keys}
    if refiner is not None and fine is None:
        fine = fine_batches(records, config, batch_size)
    start = 0
    for index, batch in enumerate(dataset):
        letterbox = letterboxes[start : start + len(batch["image"])]
        start += len(letterbox)
        out = predict_images(segmenter, regressor, batch["image"], config, route, letterbox, refiner, None if refiner is None else fine[index])
        truth = read_spine(batch["mask"][..., 0], config.readout, letterbox)
        outputs["angles"].append(np.asarray(out["cobb_angles"], np.float64))
        outputs["angles_regressor"].append(np.asarray(out["cobb_angles_regressor"], np.float64))
        outputs["angles_geometric"].append(np.asarray(out["cobb_angles_geometric"], np.float64))
        outputs["angles_geometric_truth"].append(truth["cobb_angles"].numpy().astype(np.float64))
        outputs["angles_vertebrae"].append(np.asarray(out["cobb_angles_vertebrae"], np.float64))
        outputs["landmarks"].append(np.asarray(out["landmarks"]))
        outputs["vertebra_landmarks"].append(np.asarray(out["vertebra_landmarks"]))
        outputs["masks"].append(np.asarray(out["mask"]))
        outputs["cams"].append(np.asarray(out["cam"]))
        outputs["images"].append(batch["image"].numpy()[..., 0])
        outputs["truth_masks"].append(batch["mask"].numpy()[..., 0])
    return {key: np.concatenate(value) for key, value in outputs.items()} | {
        "truth_angles": np.stack([record.angles for record in records])
    }
