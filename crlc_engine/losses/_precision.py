"""Numerical-precision helpers shared by the CRLC losses."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["at_least_float32"]


def at_least_float32(x: Tensor) -> Tensor:
    """Promote a tensor to at least single precision.

    Low-precision floating types (``float16``, ``bfloat16``) and non-floating
    types are cast to ``float32``; ``float32`` and ``float64`` tensors are
    returned unchanged (so float64 gradchecks keep their precision). The cast
    is differentiable, so gradients flow back in the input's own dtype.

    Args:
        x: Tensor of any shape.

    Returns:
        ``x`` itself if it is already ``float32``/``float64``, otherwise
        ``x.to(torch.float32)``; same shape as ``x``.
    """
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.to(torch.float32)
