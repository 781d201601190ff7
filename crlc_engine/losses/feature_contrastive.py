"""Feature contrastive loss L_FC (SimCLR NT-Xent over the two views)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from crlc_engine.losses._precision import at_least_float32

__all__ = ["FeatureContrastiveOutput", "feature_contrastive_loss", "nt_xent_from_logits"]


class FeatureContrastiveOutput(NamedTuple):
    """Parts of the feature contrastive loss.

    Attributes:
        loss: Scalar NT-Xent loss, mean over the 2B rows.
        positive_similarity: Scalar, mean cosine similarity ``z_a[i] . z_b[i]`` of
            the B positive pairs (detached; for logging).
    """

    loss: Tensor
    positive_similarity: Tensor


def nt_xent_from_logits(logits: Tensor) -> Tensor:
    """NT-Xent (InfoNCE) loss from a full pairwise logit matrix over 2B rows.

    Rows ``0..B-1`` are the first view and rows ``B..2B-1`` the second view, so
    row ``i``'s positive is column ``(i + B) mod 2B``. The diagonal (each row
    paired with itself) is excluded from the denominator by masking it with
    ``-inf``; the softmax runs over the remaining 2B-1 columns, positive
    included. No temperature is applied here.

    Args:
        logits: ``[..., 2B, 2B]`` pairwise logits; leading dims are batch dims.

    Returns:
        ``[...]`` loss: mean over the 2B rows of the per-row cross-entropy.

    Raises:
        ValueError: If the last two dims are not square with an even size >= 2.
    """
    if logits.dim() < 2 or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"logits must be [..., 2B, 2B], got shape {tuple(logits.shape)}")
    n = logits.shape[-1]
    if n < 2 or n % 2 != 0:
        raise ValueError(f"logits must have an even number (>= 2) of rows, got {n}")
    b = n // 2
    rows = torch.arange(n, device=logits.device)
    positives = (rows + b) % n
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    masked = logits.masked_fill(eye, -math.inf)
    positive_logits = logits[..., rows, positives]  # [..., 2B]
    per_row = torch.logsumexp(masked, dim=-1) - positive_logits  # [..., 2B]
    return per_row.mean(dim=-1)


def feature_contrastive_loss(
    z_a: Tensor, z_b: Tensor, tau: float = 0.1
) -> FeatureContrastiveOutput:
    """SimCLR NT-Xent loss L_FC on the projected features of two views.

    The 2B rows ``[z_a; z_b]`` are compared with logits ``z_i . z_j / tau``. Row
    ``i``'s positive is the other view of the same image; the denominator runs
    over the 2B-1 other rows (positive included, the row itself excluded). The
    computation is done in at least float32 (bf16/fp16 inputs are cast up,
    float64 stays float64).

    Note:
        ``z_a`` and ``z_b`` must already be L2-normalised along the feature
        dimension; this function does **not** renormalise them, so the dot
        products are cosine similarities only if the caller normalised.

    Args:
        z_a: ``[B, D]`` L2-normalised features of the first view.
        z_b: ``[B, D]`` L2-normalised features of the second view.
        tau: Temperature, > 0 (CRLC uses 0.1).

    Returns:
        FeatureContrastiveOutput with a scalar ``loss`` (mean over the 2B rows)
        and the detached scalar ``positive_similarity``.

    Raises:
        ValueError: On mismatched or non-2-D shapes, an empty batch or ``tau <= 0``.
    """
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a finite number > 0, got {tau}")
    if z_a.dim() != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must both be [B, D] with equal shapes, got "
            f"{tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if z_a.shape[0] == 0:
        raise ValueError("feature_contrastive_loss needs a non-empty batch")
    za = at_least_float32(z_a)
    zb = at_least_float32(z_b)
    dtype = torch.promote_types(za.dtype, zb.dtype)
    z = torch.cat([za.to(dtype), zb.to(dtype)], dim=0)  # [2B, D]
    logits = (z @ z.transpose(0, 1)) / tau  # [2B, 2B]
    loss = nt_xent_from_logits(logits)
    positive_similarity = (za.to(dtype) * zb.to(dtype)).sum(dim=-1).mean().detach()
    return FeatureContrastiveOutput(loss=loss, positive_similarity=positive_similarity)
