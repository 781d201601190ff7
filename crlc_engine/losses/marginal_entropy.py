"""Entropy of the batch-marginal cluster distribution."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from crlc_engine.losses._precision import at_least_float32

__all__ = ["MarginalEntropyOutput", "marginal_entropy"]


class MarginalEntropyOutput(NamedTuple):
    """Parts of the marginal entropy.

    Attributes:
        entropy: ``[H]`` (or scalar) entropy ``H(mean_b p)`` in nats.
        marginal: ``[H, C]`` (or ``[C]``) batch-mean probabilities (detached).
    """

    entropy: Tensor
    marginal: Tensor


def marginal_entropy(p: Tensor, eps: float = 1e-12) -> MarginalEntropyOutput:
    """Entropy of the marginal cluster distribution of a batch.

    ``m = mean over the batch of p`` and
    ``entropy = -sum_c m_c log(max(m_c, eps))`` (natural log). CRLC maximises
    this (subtracts it from the loss) to avoid degenerate clusterings.
    Computed in at least float32.

    Args:
        p: ``[..., B, C]`` probabilities (e.g. ``[H, B, C]`` for H sub-heads, or
            ``[B, C]``); leading dims are batch dims.
        eps: Floor, > 0, applied inside the log only. It keeps the value and the
            gradient finite when a cluster gets (numerically) zero mass: such a
            cluster contributes ``m_c log eps ~ 0`` instead of ``0 * -inf = nan``.
            It does not change the result for ``m_c >= eps``.

    Returns:
        MarginalEntropyOutput with ``entropy`` of shape ``[...]`` and the detached
        ``marginal`` of shape ``[..., C]``.

    Raises:
        ValueError: If ``p`` is not at least 2-D, has an empty batch, or ``eps <= 0``.
    """
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps}")
    if p.dim() < 2 or p.shape[-2] == 0:
        raise ValueError(f"p must be [..., B, C] with B >= 1, got shape {tuple(p.shape)}")
    p32 = at_least_float32(p)
    m = p32.mean(dim=-2)  # [..., C]
    entropy = -(m * torch.log(m.clamp_min(eps))).sum(dim=-1)
    return MarginalEntropyOutput(entropy=entropy, marginal=m.detach())
