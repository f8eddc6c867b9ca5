"""How much Dice N_S's output stride leaves reachable: the true AASCE masks rebuilt from a
logit map at 1/stride of the input, upsampled bilinearly as N_S's last layer does.

    python bench/mask_ceiling.py --data ../shared/aasce [--size 256x128] [--strides 4,8,16]

For each stride and each training image (its true mask letterboxed into the model frame,
as the pipeline rasterises it), the best logit map in the least-squares sense (the ±1 mask
projected onto what bilinear upsampling of a 1/stride map can draw) is upsampled and
thresholded at 0; its Dice against the true mask is the ceiling of any N_S whose classifier
works at that stride (PSPNet: the output stride; `segmenter.decoder: low_level`: 4). The
area-averaged map (plain downsampling) is shown beside it. Prints a table.
"""

import argparse
import time

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from readout import true_masks  # noqa: E402  (bench/readout.py, beside this script)

from seg4reg_tf.data.aasce import read_split  # noqa: E402
from seg4reg_tf.metrics import segmentation_per_image  # noqa: E402


def upsampling_basis(height: int, width: int, stride: int) -> np.ndarray:
    """(H·W, h·w) float64 matrix of bilinear ×stride upsampling (Keras' UpSampling2D)."""
    small = (height // stride, width // stride)
    units = tf.reshape(tf.eye(small[0] * small[1]), (-1, *small, 1))
    images = tf.image.resize(units, (height, width), method="bilinear")
    return tf.reshape(images, (small[0] * small[1], height * width)).numpy().T.astype(np.float64)


def ceilings(masks: np.ndarray, stride: int) -> tuple[float, float]:
    """Mean Dice (%) over `masks` (N, H, W) of the least-squares and the area-averaged
    1/stride logit maps, upsampled bilinearly and thresholded at 0."""
    count, height, width = masks.shape
    basis = upsampling_basis(height, width, stride)
    solve = np.linalg.solve(basis.T @ basis, basis.T)  # (h·w, H·W): least squares
    targets = masks.reshape(count, -1).astype(np.float64) * 2.0 - 1.0
    fitted = (targets @ solve.T) @ basis.T
    pooled = tf.nn.avg_pool2d(tf.constant(targets.reshape(count, height, width, 1)), stride, stride, "VALID")
    averaged = tf.image.resize(pooled, (height, width), method="bilinear").numpy().reshape(count, -1)
    truth = masks[..., None]
    return tuple(
        100.0 * float(np.mean(segmentation_per_image(truth, (logits > 0).reshape(truth.shape), "dice")))
        for logits in (fitted, averaged)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="AASCE-layout root")
    parser.add_argument("--size", default="256x128", help="model input HxW (default 256x128)")
    parser.add_argument("--strides", default="4,8,16", help="strides of the logit map")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    records = read_split(args.data, "training")
    masks, _ = true_masks(records, height, width)
    print(f"{len(records)} training images of {args.data}, true masks at {height}×{width}\n")
    print("| logit map stride | map | Dice ceiling, least squares (%) | area average (%) | seconds |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for stride in (int(v) for v in args.strides.split(",")):
        start = time.perf_counter()
        fitted, averaged = ceilings(masks, stride)
        print(f"| {stride} | {height // stride}×{width // stride} | {fitted:.1f} | {averaged:.1f} | {time.perf_counter() - start:.0f} |")


if __name__ == "__main__":
    main()
