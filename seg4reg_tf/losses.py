"""Losses of Seg4Reg+ (paper Eqs. 1, 3, 4), written with keras.ops (backend-agnostic).

All return the mean over the batch of a per-image value, so a step's loss does not depend on
the batch size. Under a tf.distribute strategy, divide by the number of replicas before
taking gradients (the optimizer sums them across replicas).
"""

from __future__ import annotations

from keras import ops

_DICE_EPSILON = 1e-6


def dice_loss(y_true, y_pred):
    """1 − soft Dice per image: 1 − 2Σ(p·y) / (Σp + Σy + ε), averaged over the batch.

    Args:
        y_true: (B, H, W, 1) masks in {0, 1}.
        y_pred: (B, H, W, 1) probabilities.

    Returns:
        Scalar; 0 for a perfect or an empty-on-empty prediction, near 1 when disjoint.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape)))
    overlap = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return ops.mean(1.0 - (2.0 * overlap + _DICE_EPSILON) / (total + _DICE_EPSILON))


def boundary_band(y_true, width: int):
    """Pixels within `width` pixels (chessboard distance) of the true mask's outline, on
    either side: the mask dilated minus the mask eroded by a (2·width + 1)² square.

    Args:
        y_true: (B, H, W, 1) masks in {0, 1}.
        width: band half-width in pixels (≥ 1).

    Returns:
        (B, H, W, 1) float in {0, 1}; 0 everywhere for an empty or a full mask.
    """
    y_true = ops.cast(y_true, "float32")
    size = 2 * width + 1
    dilated = ops.max_pool(y_true, pool_size=size, strides=1, padding="same")
    eroded = 1.0 - ops.max_pool(1.0 - y_true, pool_size=size, strides=1, padding="same")
    return dilated - eroded


# half-width in pixels of the band along the true outline that `boundary_weight` weighs
BOUNDARY_WIDTH = 2


def weighted_cross_entropy(y_true, logits, boundary_weight: float = 0.0, boundary_width: int = BOUNDARY_WIDTH):
    """Binary cross-entropy from logits, the pixels of the outline band (`boundary_band`,
    `boundary_width` pixels either side) weighted 1 + `boundary_weight`.

    Args:
        y_true: (B, H, W, 1) masks in {0, 1}.
        logits: (B, H, W, 1) pre-sigmoid scores.

    Returns:
        Scalar: mean over pixels and images of b·(−y·log σ(z) − (1 − y)·log(1 − σ(z))),
        b = 1 + boundary_weight on the band and 1 elsewhere.
    """
    y_true = ops.cast(y_true, logits.dtype)
    # log σ(z) = −softplus(−z), log(1 − σ(z)) = −softplus(z): stable for large |z|.
    per_pixel = y_true * ops.softplus(-logits) + (1.0 - y_true) * ops.softplus(logits)
    if boundary_weight:
        per_pixel = per_pixel * (1.0 + boundary_weight * ops.cast(boundary_band(y_true, boundary_width), logits.dtype))
    return ops.mean(per_pixel)


def segmentation_loss(y_true, logits, ce_weight: float = 1.0, boundary_weight: float = 0.0):
    """Eq. 1: Dice loss + λ · (outline-weighted) cross-entropy.

    Args:
        y_true: (B, H, W, 1) masks in {0, 1}.
        logits: (B, H, W, 1) pre-sigmoid scores of N_S.
        ce_weight: λ.
        boundary_weight: extra cross-entropy weight of the pixels within `BOUNDARY_WIDTH`
            pixels of the true outline (0: the paper's Eq. 1).

    Returns:
        Scalar.
    """
    cross_entropy = weighted_cross_entropy(y_true, logits, boundary_weight)
    return dice_loss(y_true, ops.sigmoid(logits)) + ce_weight * cross_entropy


def smape_loss(y_true, y_pred, epsilon: float = 1e-6):
    """Eq. 3: Σ_i |ŷ_i − r_i| / Σ_i |ŷ_i + r_i + ε| over the 3 angles, averaged over the batch.

    Args:
        y_true, y_pred: (B, 3) angles, both in the same units (here [0, 1]).
        epsilon: ε, keeps the ratio finite when every angle is 0.

    Returns:
        Scalar in [0, 1] for non-negative angles.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    error = ops.sum(ops.abs(y_true - y_pred), axis=-1)
    total = ops.sum(ops.abs(y_true + y_pred + epsilon), axis=-1)
    return ops.mean(error / total)


def angle_loss(name: str, y_true, y_pred, epsilon: float = 1e-6):
    """N_R's training loss by config name (`reg.loss`): "smape" or "l1"
    (mean absolute difference of the scaled angles); (B, 3), (B, 3) → scalar."""
    if name == "smape":
        return smape_loss(y_true, y_pred, epsilon)
    if name == "l1":
        return ops.mean(ops.abs(ops.cast(y_true, y_pred.dtype) - y_pred))
    raise ValueError(f"unknown angle loss {name!r}; expected 'smape' or 'l1'")


def attention_regularization_loss(cam_a, cam_b):
    """Eq. 4: L1 distance between the CAMs of the two Siamese branches (mean per pixel).

    Args:
        cam_a: (B, h, w, K) CAMs of branch A (image ⊕ mask).
        cam_b: (B, h, w, K) CAMs of branch B (mask only).

    Returns:
        Scalar.
    """
    return ops.mean(ops.abs(cam_a - cam_b))
