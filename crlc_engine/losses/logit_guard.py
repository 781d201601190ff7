"""Soft guard that pulls cluster logits back into ``[-bound, bound]``."""

from __future__ import annotations

import math

from torch import Tensor

from crlc_engine.losses._precision import at_least_float32

__all__ = ["logit_guard"]


def logit_guard(logits: Tensor, bound: float = 25.0) -> Tensor:
    """Logit-range regulariser of the official CRLC code.

    With ``e_c = min(u_c + bound, 0) + max(u_c - bound, 0)`` (the excess of logit
    ``u_c`` beyond ``[-bound, bound]``) **detached**, the value is
    ``mean over the batch of sum_c u_c * e_c``. Because ``e`` is detached, the
    gradient w.r.t. ``u_c`` is ``e_c / B``: zero inside the bound and a linear
    pull back towards it outside. The value is zero when every logit lies in
    ``[-bound, bound]``. Note that, by design, the gradient is *not* the
    derivative of the returned value (that would be ``(u_c + e_c) / B``).
    Computed in at least float32.

    Args:
        logits: ``[..., B, C]`` raw cluster logits (e.g. ``[H, B, C]``).
        bound: Half-width of the allowed interval, >= 0 (CRLC uses 25).

    Returns:
        ``[...]`` guard value per leading index (e.g. ``[H]``; scalar for 2-D input).

    Raises:
        ValueError: If ``bound`` is negative / not finite, or ``logits`` is not
            at least 2-D with a non-empty batch.
    """
    if not (math.isfinite(bound) and bound >= 0):
        raise ValueError(f"bound must be a finite number >= 0, got {bound}")
    if logits.dim() < 2 or logits.shape[-2] == 0:
        raise ValueError(f"logits must be [..., B, C] with B >= 1, got {tuple(logits.shape)}")
    u = at_least_float32(logits)
    excess = ((u + bound).clamp_max(0.0) + (u - bound).clamp_min(0.0)).detach()
    return (u * excess).sum(dim=-1).mean(dim=-1)
