"""Serving requests → model inputs: a batch of encoded images (JPEG / PNG bytes, as TF
Serving's `serving_default` and predict receive them) checked, decoded once, and letterboxed
into the model frame and, for the tilt refiner, the fine frame. TF ops only (it runs inside
the SavedModel)."""

from __future__ import annotations

import tensorflow as tf

from seg4reg_tf.data import decoding, pipeline, transforms


def decode_requests(encoded, config, max_pixels: int, names=None) -> dict:
    """A batch of encoded images → model inputs and where each original lies in them.

    Args:
        encoded: (B,) tf.string.
        config: the run's config (model size, CLAHE, the tilt refiner's fine image).
        max_pixels: per-image pixel limit checked on the header before decoding.
        names: (B,) tf.string naming each image in errors (default "image i of the request").

    Returns:
        {"images": (B, H, W, 1) float32 in [0, 1], "letterbox": (B, 3) float32 scale,
        offset_y, offset_x, and with `refiner.enabled` "fine_images": (B, s·H, s·W, 1), the
        same X-rays at `refiner.scale` times the size (`pipeline.fine_frame`)}; each
        image is decoded once.
    """
    height, width = config.data.image_height, config.data.image_width
    fine = pipeline.fine_frame(config.data, config.refiner.scale) if config.refiner.enabled else None
    if names is None:
        indices = tf.strings.as_string(tf.range(tf.shape(encoded, out_type=tf.int64)[0]))
        names = tf.strings.join(["image ", indices, " of the request"])

    def one(element):
        data, name = element
        image = decoding.decode_checked(data, name, max_pixels)  # checks once
        size = tf.shape(image)
        scale, ty, tx = transforms.letterbox(size[0], size[1], height, width)
        out = {"images": pipeline.prepare_decoded(image, config.data), "letterbox": tf.stack([scale, ty, tx])}
        if fine is not None:
            out["fine_images"] = pipeline.prepare_decoded(image, fine)
        return out

    signature = {"images": tf.TensorSpec([height, width, 1], tf.float32), "letterbox": tf.TensorSpec([3], tf.float32)}
    if fine is not None:
        signature["fine_images"] = tf.TensorSpec([fine.image_height, fine.image_width, 1], tf.float32)
    return tf.map_fn(one, (encoded, names), fn_output_signature=signature)
