"""Spatial operations on batches of float images: the fused crop / resize / flip and the
separable Gaussian blur, each with per-sample parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["crop_resize_flip", "gaussian_blur"]


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with a per-sample sigma and reflect padding.

    Implemented as two grouped convolutions (one group per sample and channel), so
    the whole batch is one op per direction.

    Args:
        x: ``[B, C, H, W]`` float images; ``H, W > kernel_size // 2``.
        sigma: ``[B]`` standard deviations in pixels, ``> 0``.
        kernel_size: Odd kernel size.

    Returns:
        ``[B, C, H, W]`` blurred images.

    Raises:
        ValueError: If ``kernel_size`` is even or too large for reflect padding.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
    B, C, H, W = x.shape
    half = kernel_size // 2
    if half >= min(H, W):
        raise ValueError(f"kernel_size {kernel_size} too large for {H}x{W} images")
    if half == 0:
        return x
    offsets = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half  # [k]
    s = sigma.to(device=x.device, dtype=x.dtype).reshape(B, 1)
    weights = torch.exp(-0.5 * (offsets / s) ** 2)  # [B, k]
    weights = weights / weights.sum(dim=1, keepdim=True)
    weights = weights.unsqueeze(1).expand(B, C, kernel_size).reshape(B * C, 1, kernel_size)
    y = x.reshape(1, B * C, H, W)
    y = F.conv2d(F.pad(y, (half, half, 0, 0), mode="reflect"), weights.unsqueeze(2), groups=B * C)
    y = F.conv2d(F.pad(y, (0, 0, half, half), mode="reflect"), weights.unsqueeze(3), groups=B * C)
    return y.reshape(B, C, H, W)


def crop_resize_flip(
    x: Tensor,
    top: Tensor,
    left: Tensor,
    height: Tensor,
    width: Tensor,
    flip: Tensor,
    out_size: int,
) -> Tensor:
    """Crop a per-sample box, optionally mirror it, and resize it, in one batched op.

    The box ``[left, left + width) x [top, top + height)`` (pixel edges) is mapped onto
    the ``out_size x out_size`` output with ``affine_grid`` + ``grid_sample``
    (bilinear, ``align_corners=False``, border padding); a flip negates the x scale.
    A full-image box without flip at ``out_size == H == W`` reproduces the input.

    Args:
        x: ``[B, C, H, W]`` float images.
        top: ``[B]`` box top in pixels.
        left: ``[B]`` box left in pixels.
        height: ``[B]`` box height in pixels.
        width: ``[B]`` box width in pixels.
        flip: ``[B]`` bool, mirror horizontally.
        out_size: Output side length.

    Returns:
        ``[B, C, out_size, out_size]`` float images.
    """
    B, C, H, W = x.shape
    dt = x.dtype
    top, left, height, width = (t.to(dt) for t in (top, left, height, width))
    sign = torch.where(flip, -1.0, 1.0).to(dt)
    sx = width / W
    sy = height / H
    cx = (2.0 * left + width) / W - 1.0
    cy = (2.0 * top + height) / H - 1.0
    zero = torch.zeros_like(sx)
    theta = torch.stack(
        (torch.stack((sx * sign, zero, cx), dim=1), torch.stack((zero, sy, cy), dim=1)), dim=1
    )  # [B, 2, 3]
    grid = F.affine_grid(theta, [B, C, out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
