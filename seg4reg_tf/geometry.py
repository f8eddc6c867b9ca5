"""Clinical geometry of the spine: Cobb angles from landmarks, landmarks to a spine mask.

Landmarks follow the AASCE convention: 68 (x, y) points in pixels of the original image,
4 per vertebra for the 17 vertebrae T1..L5 from top to bottom, stored in the order
top-left, top-right, bottom-left, bottom-right. Pixel (row i, column j) has its centre at
(x=j, y=i). All geometry is NumPy float64: the organisers' algorithm is sensitive to
rounding (a float32 port gets 33 of the 609 AASCE images wrong).
"""

from __future__ import annotations

import cv2
import numpy as np

NUM_VERTEBRAE = 17
NUM_LANDMARKS = 4 * NUM_VERTEBRAE
VERTEBRA_NAMES = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
# Corner indices (within one vertebra's four points) that walk the outline:
# top-left, top-right, bottom-right, bottom-left.
OUTLINE_ORDER = (0, 1, 3, 2)


def validate_landmarks(landmarks: np.ndarray, *, context: str = "landmarks") -> np.ndarray:
    """Checks landmarks and returns them as float64 with a batch axis.

    Args:
        landmarks: (68, 2) or (batch, 68, 2) pixel coordinates, any numeric dtype (AASCE
            stores uint16; it is cast before any difference is taken).
        context: what to call the input in error messages (e.g. a file name).

    Returns:
        (batch, 68, 2) float64 array.

    Raises:
        ValueError: wrong shape, a NaN or infinite coordinate, or a vertebra whose mid-line
            (from the midpoint of its left side to the midpoint of its right side) has zero
            length; the message names the vertebra.
    """
    points = np.asarray(landmarks)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(
            f"{context}: expected shape (68, 2) or (batch, 68, 2), got {np.shape(landmarks)}"
        )
    if not np.issubdtype(points.dtype, np.number):
        raise ValueError(f"{context}: expected numbers, got dtype {points.dtype}")
    points = points.astype(np.float64)
    finite = np.isfinite(points).reshape(points.shape[0], NUM_VERTEBRAE, 8).all(axis=2)
    _raise_for_vertebra(~finite, context, "has a NaN or infinite coordinate")
    midline_length = np.linalg.norm(midline_vectors(points), axis=2)
    _raise_for_vertebra(midline_length == 0, context, "has a zero-length mid-line")
    return points


def _raise_for_vertebra(bad: np.ndarray, context: str, problem: str) -> None:
    """Raises for the first True in a (batch, 17) array, naming the vertebra."""
    if not bad.any():
        return
    spine, vertebra = np.argwhere(bad)[0]
    where = f" (spine {spine} of the batch)" if bad.shape[0] > 1 else ""
    raise ValueError(
        f"{context}: vertebra {VERTEBRA_NAMES[vertebra]} (index {vertebra}, landmarks "
        f"{4 * vertebra}-{4 * vertebra + 3}){where} {problem}"
    )


def endplate_centres(points: np.ndarray) -> np.ndarray:
    """Midpoints of the 34 endplates: (batch, 68, 2) → (batch, 34, 2) pixels.

    Even index j is the upper endplate of vertebra j/2, odd j its lower endplate.
    """
    return (points[:, 0::2] + points[:, 1::2]) / 2.0


def midline_vectors(points: np.ndarray) -> np.ndarray:
    """Vectors from each vertebra's left-side midpoint to its right-side midpoint.

    Args:
        points: (batch, 68, 2) float64 pixels.

    Returns:
        (batch, 17, 2) float64 pixels.
    """
    corners = points.reshape(points.shape[0], NUM_VERTEBRAE, 4, 2)
    left = (corners[:, :, 0] + corners[:, :, 2]) / 2.0
    right = (corners[:, :, 1] + corners[:, :, 3]) / 2.0
    return right - left


def angle_matrix(points: np.ndarray) -> np.ndarray:
    """Angles between every pair of vertebra mid-lines, as the organisers compute them.

    The cosine is rounded to 8 decimals before arccos and is not clipped to [0, 1], so
    angles above 90° survive (they exist in AASCE).

    Args:
        points: (batch, 68, 2) float64 pixels.

    Returns:
        (batch, 17, 17) degrees, symmetric, zero diagonal up to rounding.
    """
    vectors = midline_vectors(points)
    norms = np.linalg.norm(vectors, axis=2)
    cosine = np.einsum("bid,bjd->bij", vectors, vectors) / (norms[:, :, None] * norms[:, None, :])
    return np.degrees(np.arccos(np.round(cosine, 8)))


def is_s_shaped(points: np.ndarray) -> np.ndarray:
    """The organisers' S-test on the 34 endplate centres.

    d_i = (y_i − y_{N−1}) / (y_0 − y_{N−1}) − (x_i − x_{N−1}) / (x_0 − x_{N−1}) for
    i = 0..N−3; the spine is S-shaped when some d_i > 0 and some d_i < 0. When
    x_0 == x_{N−1} the original code divides by zero, gets NaN and calls the spine S-shaped;
    that rule is kept.

    Args:
        points: (batch, 68, 2) float64 pixels.

    Returns:
        (batch,) bool.
    """
    centres = endplate_centres(points)
    x, y = centres[..., 0], centres[..., 1]
    vertical = x[:, 0] == x[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (y[:, :-2] - y[:, -1:]) / (y[:, :1] - y[:, -1:]) - (x[:, :-2] - x[:, -1:]) / (
            x[:, :1] - x[:, -1:]
        )
    two_signs = (d > 0).any(axis=1) & (d < 0).any(axis=1)
    return vertical | two_signs


def cobb_angles(landmarks: np.ndarray, image_height: float | np.ndarray) -> np.ndarray:
    """The three AASCE Cobb angles, exactly as the challenge organisers computed them.

    Column 1 is the largest angle between any two vertebra mid-lines. Columns 2 and 3
    depend on the S-test (see `is_s_shaped` and ../shared/cobb_algorithm.md, steps 5–9):
    they are not anatomical PT/MT/TL regions.

    Args:
        landmarks: (68, 2) or (batch, 68, 2) pixel coordinates in the original image.
        image_height: original image height H in pixels, a scalar or one per spine.

    Returns:
        (3,) or (batch, 3) float64 degrees, matching the shape of `landmarks`.

    Raises:
        ValueError: invalid landmarks (see `validate_landmarks`) or a non-positive height.
    """
    single = np.ndim(landmarks) == 2
    points = validate_landmarks(landmarks)
    batch = points.shape[0]
    height = np.broadcast_to(np.asarray(image_height, dtype=np.float64), (batch,))
    if not np.all(height > 0):
        raise ValueError(f"image_height must be positive, got {image_height}")

    angles = angle_matrix(points)
    rows = np.arange(batch)
    index = np.arange(NUM_VERTEBRAE)
    column_max = angles.max(axis=1)
    largest = column_max.max(axis=1)
    upper = np.argmax(column_max, axis=1)  # np.argmax returns the first maximum
    lower = np.argmax(angles[rows, :, upper], axis=1)

    upper_row = angles[rows, upper]  # (batch, 17): A[u, j]
    above_upper = np.where(index[None] <= upper[:, None], upper_row, -np.inf)
    upper_second = above_upper.max(axis=1)
    m = np.argmax(above_upper, axis=1)
    below_lower = np.where(index[None] >= lower[:, None], angles[rows, lower], -np.inf).max(axis=1)
    above_m = np.where(index[None] <= m[:, None], angles[rows, m], -np.inf).max(axis=1)

    centres_y = endplate_centres(points)[..., 1]
    ends_in_upper_half = centres_y[rows, 2 * upper + 1] + centres_y[rows, 2 * lower + 1] < height
    s_shaped = is_s_shaped(points)

    second = np.where(s_shaped, upper_second, angles[rows, 0, upper])
    third = np.where(
        s_shaped,
        np.where(ends_in_upper_half, below_lower, above_m),
        angles[rows, NUM_VERTEBRAE - 1, lower],
    )
    result = np.stack([largest, second, third], axis=1)
    return result[0] if single else result


def vertebra_outlines(landmarks: np.ndarray) -> np.ndarray:
    """Each vertebra's four corners in outline order (TL, TR, BR, BL).

    Args:
        landmarks: (68, 2) pixels.

    Returns:
        (17, 4, 2) float64 pixels.
    """
    corners = np.asarray(landmarks, dtype=np.float64).reshape(NUM_VERTEBRAE, 4, 2)
    return corners[:, OUTLINE_ORDER]


def landmarks_to_mask(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterises the 17 vertebra bodies into a binary spine mask.

    Each vertebra is filled as the convex hull of its four corners, so the mask does not
    depend on the corner order (about 11 AASCE images break TL, TR, BL, BR) and stays
    correct after any affine transform of the landmarks, including flips. Coordinates may
    fall outside the image; they are clipped by the rasteriser. Sub-pixel positions are
    kept (1/16 pixel).

    Args:
        landmarks: (68, 2) pixels in the frame of the mask.
        height, width: mask size in pixels.

    Returns:
        (height, width) uint8 array of 0 (background) and 1 (spine).

    Raises:
        ValueError: invalid landmarks or a non-positive size.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    points = validate_landmarks(landmarks)[0]
    mask = np.zeros((int(height), int(width)), dtype=np.uint8)
    shift = 4
    for quad in vertebra_outlines(points):
        hull = cv2.convexHull(np.round(quad * (1 << shift)).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=shift)
    return mask
