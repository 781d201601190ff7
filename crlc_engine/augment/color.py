"""Colour operations on batches of float RGB images: grayscale, HSV and the ColorJitter
adjustments (brightness, contrast, saturation, hue), each with a per-sample factor."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "LUMA_WEIGHTS",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "blend",
    "hsv_to_rgb",
    "per_sample",
    "rgb_to_grayscale",
    "rgb_to_hsv",
]

#: ITU-R BT.601 luma weights (R, G, B).
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """ITU-R 601 luma of RGB images.

    Args:
        x: ``[..., 3, H, W]`` float RGB.

    Returns:
        ``[..., 1, H, W]`` luma ``0.299 R + 0.587 G + 0.114 B``.
    """
    r, g, b = x.unbind(dim=-3)
    wr, wg, wb = LUMA_WEIGHTS
    return (wr * r + wg * g + wb * b).unsqueeze(-3)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """Convert RGB to HSV, elementwise and vectorised.

    Args:
        x: ``[..., 3, H, W]`` float RGB in ``[0, 1]``.

    Returns:
        ``[..., 3, H, W]`` (hue, saturation, value), hue in ``[0, 1]`` as a fraction
        of a turn (0 = red, 1/3 = green, 2/3 = blue; 0 for grey pixels), saturation
        and value in ``[0, 1]``.
    """
    r, g, b = x.unbind(dim=-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    chroma = maxc - minc
    has_chroma = chroma > 0
    safe_chroma = torch.where(has_chroma, chroma, torch.ones_like(chroma))
    # Sector of the colour hexagon, in units of 60 degrees.
    h_r = torch.remainder((g - b) / safe_chroma, 6.0)
    h_g = (b - r) / safe_chroma + 2.0
    h_b = (r - g) / safe_chroma + 4.0
    h6 = torch.where(maxc == r, h_r, torch.where(maxc == g, h_g, h_b))
    hue = torch.where(has_chroma, h6 / 6.0, torch.zeros_like(h6))
    positive = maxc > 0
    sat = torch.where(positive, chroma / torch.where(positive, maxc, torch.ones_like(maxc)), 0.0)
    return torch.stack((hue, sat, maxc), dim=-3)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """Convert HSV to RGB, elementwise and vectorised.

    Uses ``c_n = V - V S clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 H) mod 6``
    and ``n = 5, 3, 1`` for R, G, B.

    Args:
        x: ``[..., 3, H, W]`` (hue as a fraction of a turn, any real value;
            saturation and value in ``[0, 1]``).

    Returns:
        ``[..., 3, H, W]`` RGB in ``[0, 1]``.
    """
    hue, sat, val = x.unbind(dim=-3)
    h6 = hue * 6.0
    vs = val * sat
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(h6 + n, 6.0)
        channels.append(val - vs * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, dim=-3)


def per_sample(v: Tensor) -> Tensor:
    """``[B]`` -> ``[B, 1, 1, 1]`` for broadcasting against ``[B, C, H, W]``."""
    return v.reshape(-1, 1, 1, 1)


def blend(x: Tensor, target: Tensor | float, factor: Tensor) -> Tensor:
    """``clamp(f x + (1 - f) target, 0, 1)``; exactly ``x`` where ``f == 1``."""
    f = per_sample(factor).to(x.dtype)
    return (f * x + (1.0 - f) * target).clamp(0.0, 1.0)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Multiply by a per-sample factor and clamp (torchvision semantics).

    Args:
        x: ``[B, 3, H, W]`` float RGB in ``[0, 1]``.
        factor: ``[B]`` brightness factors (1 = unchanged).

    Returns:
        ``[B, 3, H, W]`` adjusted images in ``[0, 1]``.
    """
    return blend(x, 0.0, factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the per-image mean of the grayscale image and clamp.

    Args:
        x: ``[B, 3, H, W]`` float RGB in ``[0, 1]``.
        factor: ``[B]`` contrast factors (1 = unchanged, 0 = flat grey).

    Returns:
        ``[B, 3, H, W]`` adjusted images in ``[0, 1]``.
    """
    mean = rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    return blend(x, mean, factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the grayscale image and clamp.

    Args:
        x: ``[B, 3, H, W]`` float RGB in ``[0, 1]``.
        factor: ``[B]`` saturation factors (1 = unchanged, 0 = grayscale).

    Returns:
        ``[B, 3, H, W]`` adjusted images in ``[0, 1]``.
    """
    return blend(x, rgb_to_grayscale(x), factor)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue in HSV space by a per-sample shift.

    Args:
        x: ``[B, 3, H, W]`` float RGB in ``[0, 1]``.
        shift: ``[B]`` hue shifts as fractions of a full turn.

    Returns:
        ``[B, 3, H, W]`` adjusted images in ``[0, 1]``.
    """
    hue, sat, val = rgb_to_hsv(x).unbind(dim=-3)
    hue = torch.remainder(hue + shift.reshape(-1, 1, 1).to(hue.dtype), 1.0)
    return hsv_to_rgb(torch.stack((hue, sat, val), dim=-3)).clamp(0.0, 1.0)
