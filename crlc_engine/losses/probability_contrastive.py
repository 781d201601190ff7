"""Probability contrastive loss L_PC with the critics studied in the CRLC paper."""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from crlc_engine.losses._precision import at_least_float32
from crlc_engine.losses.feature_contrastive import nt_xent_from_logits

__all__ = [
    "CRITICS",
    "Critic",
    "ProbabilityContrastiveOutput",
    "critic_matrix",
    "probability_contrastive_loss",
    "smooth_probabilities",
]

Critic = Literal["log_dot", "dot", "neg_l2", "neg_js"]
"""Name of a critic f(p, q) on two probability vectors."""

CRITICS: tuple[str, ...] = ("log_dot", "dot", "neg_l2", "neg_js")
"""All valid critic names; ``"log_dot"`` is the paper's choice."""


def _check_critic(critic: str) -> None:
    if critic not in CRITICS:
        raise ValueError(f"unknown critic {critic!r}; valid critics are {', '.join(CRITICS)}")


def _check_gamma(gamma: float) -> None:
    if not (math.isfinite(gamma) and 0.0 <= gamma <= 1.0):
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


def smooth_probabilities(p: Tensor, gamma: float) -> Tensor:
    """Mix probabilities with the uniform distribution: ``(1 - gamma) p + gamma / C``.

    Computed in at least float32 (bf16/fp16 inputs are cast up).

    Args:
        p: ``[..., C]`` probability vectors (last dim sums to 1).
        gamma: Smoothing coefficient in ``[0, 1]`` (CRLC uses 0.01).

    Returns:
        ``[..., C]`` smoothed probabilities; every entry is ``>= gamma / C``.

    Raises:
        ValueError: If ``gamma`` is outside ``[0, 1]`` or ``p`` has no class dim.
    """
    _check_gamma(gamma)
    if p.dim() < 1 or p.shape[-1] == 0:
        raise ValueError(f"p must be [..., C] with C >= 1, got shape {tuple(p.shape)}")
    p32 = at_least_float32(p)
    num_classes = p32.shape[-1]
    return (1.0 - gamma) * p32 + gamma / num_classes


def _neg_js_matrix(p: Tensor, q: Tensor) -> Tensor:
    """``-JS(p_i || q_j)`` for all pairs; zeros are handled like ``0 log 0 = 0``."""
    # JS(p||q) = sum_c [0.5 p log p + 0.5 q log q - m log m],  m = (p + q) / 2.
    p_self = torch.xlogy(p, p).sum(dim=-1)  # [..., M]
    q_self = torch.xlogy(q, q).sum(dim=-1)  # [..., N]
    m = 0.5 * (p.unsqueeze(-2) + q.unsqueeze(-3))  # [..., M, N, C]
    m_self = torch.xlogy(m, m).sum(dim=-1)  # [..., M, N]
    return m_self - 0.5 * (p_self.unsqueeze(-1) + q_self.unsqueeze(-2))


def critic_matrix(p: Tensor, q: Tensor, critic: Critic) -> Tensor:
    """Pairwise critic values ``f(p_i, q_j)``.

    Critics (natural log throughout):

    * ``"log_dot"``: ``log(p . q)``, not clamped, so it is ``-inf`` when the
      supports of ``p`` and ``q`` are disjoint (smooth first to avoid that).
    * ``"dot"``: ``p . q``.
    * ``"neg_l2"``: ``-||p - q||^2``.
    * ``"neg_js"``: ``-JS(p || q) = -0.5 (KL(p || m) + KL(q || m))``, ``m = (p + q) / 2``,
      with ``0 log 0 = 0`` so zero entries are fine in the forward pass.

    Computed in at least float32 (bf16/fp16 inputs are cast up).

    Args:
        p: ``[..., M, C]`` probabilities; leading dims are batch dims.
        q: ``[..., N, C]`` probabilities; leading dims broadcast with ``p``'s.
        critic: One of ``CRITICS``.

    Returns:
        ``[..., M, N]`` critic matrix.

    Raises:
        ValueError: For an unknown critic or incompatible shapes.
    """
    _check_critic(critic)
    if p.dim() < 2 or q.dim() < 2 or p.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"p and q must be [..., M, C] and [..., N, C], got "
            f"{tuple(p.shape)} and {tuple(q.shape)}"
        )
    p32 = at_least_float32(p)
    q32 = at_least_float32(q)
    dtype = torch.promote_types(p32.dtype, q32.dtype)
    p32 = p32.to(dtype)
    q32 = q32.to(dtype)
    if critic == "neg_js":
        return _neg_js_matrix(p32, q32)
    dots = p32 @ q32.transpose(-1, -2)  # [..., M, N]
    if critic == "dot":
        return dots
    if critic == "log_dot":
        return torch.log(dots)
    # neg_l2: -(|p|^2 + |q|^2 - 2 p.q)
    p_sq = (p32 * p32).sum(dim=-1)
    q_sq = (q32 * q32).sum(dim=-1)
    return 2.0 * dots - p_sq.unsqueeze(-1) - q_sq.unsqueeze(-2)


class ProbabilityContrastiveOutput(NamedTuple):
    """Parts of the probability contrastive loss.

    Attributes:
        loss: ``[H]`` one loss per sub-head (scalar for 2-D inputs).
        positive_critic: Same shape as ``loss``: mean critic value of the positive
            pairs ``f(p_a[i], p_b[i])`` after smoothing (detached; for logging).
    """

    loss: Tensor
    positive_critic: Tensor


def probability_contrastive_loss(
    p_a: Tensor, p_b: Tensor, critic: Critic = "log_dot", gamma: float = 0.01
) -> ProbabilityContrastiveOutput:
    """Probability contrastive loss L_PC (CRLC, Eq. 8-10).

    Both views are smoothed with ``gamma`` and stacked into 2B rows
    ``[p_a; p_b]``. The NT-Xent structure of L_FC is then applied with the
    critic matrix as logits and **no temperature**: row ``i``'s positive is the
    other view of the same image, the denominator runs over the 2B-1 other rows
    (positive included, the row itself excluded), and the loss is the mean over
    the 2B rows. Computed in at least float32.

    With ``critic="log_dot"`` and ``gamma=0`` nothing is clamped: disjoint
    one-hot positives give ``log 0 = -inf`` and a non-finite loss.

    Args:
        p_a: ``[H, B, C]`` (or ``[B, C]``) softmax probabilities of view a; leading
            dims are independent batch dims (e.g. H sub-heads).
        p_b: Same shape as ``p_a``, probabilities of view b.
        critic: One of ``CRITICS`` (default ``"log_dot"``).
        gamma: Smoothing coefficient in ``[0, 1]`` (default 0.01).

    Returns:
        ProbabilityContrastiveOutput with ``loss`` and ``positive_critic`` of shape
        ``[H]`` (or scalars for 2-D inputs).

    Raises:
        ValueError: For an unknown critic, ``gamma`` outside ``[0, 1]``, or
            mismatched / too-small shapes.
    """
    _check_critic(critic)
    _check_gamma(gamma)
    if p_a.dim() < 2 or p_a.shape != p_b.shape:
        raise ValueError(
            f"p_a and p_b must both be [..., B, C] with equal shapes, got "
            f"{tuple(p_a.shape)} and {tuple(p_b.shape)}"
        )
    if p_a.shape[-2] == 0 or p_a.shape[-1] == 0:
        raise ValueError(f"need B >= 1 and C >= 1, got shape {tuple(p_a.shape)}")
    qa = smooth_probabilities(p_a, gamma)
    qb = smooth_probabilities(p_b, gamma)
    dtype = torch.promote_types(qa.dtype, qb.dtype)
    rows = torch.cat([qa.to(dtype), qb.to(dtype)], dim=-2)  # [..., 2B, C]
    logits = critic_matrix(rows, rows, critic)  # [..., 2B, 2B]
    loss = nt_xent_from_logits(logits)
    b = p_a.shape[-2]
    positive = torch.diagonal(logits[..., :b, b:], dim1=-2, dim2=-1)  # [..., B]
    return ProbabilityContrastiveOutput(loss=loss, positive_critic=positive.mean(-1).detach())
