"""Normalisation: uint8 NHWC batches to normalised float NCHW, the deterministic evaluation
transform (:func:`normalize_only`) and a data set's per-channel statistics
(:func:`dataset_mean_std`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from crlc_engine.augment.config import AugmentConfig

__all__ = ["dataset_mean_std", "normalize_channels", "normalize_only", "to_float_nchw"]


def normalize_channels(
    x: Tensor, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> Tensor:
    """Per-channel ``(x - mean) / std`` with Python scalars (no host->device copy).

    Args:
        x: ``[B, 3, H, W]`` float images.
        mean: Per-channel means.
        std: Per-channel standard deviations.

    Returns:
        ``[B, 3, H, W]`` normalised images (a new tensor).
    """
    return torch.cat([(x[:, c : c + 1] - mean[c]) / std[c] for c in range(3)], dim=1)


def to_float_nchw(images: Tensor) -> Tensor:
    """``[B, H, W, 3]`` uint8 (or float in [0, 1]) -> ``[B, 3, H, W]`` float32 in [0, 1]."""
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [B, H, W, 3], got shape {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2)
    if images.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if images.is_floating_point():
        return x.to(torch.float32)
    raise ValueError(f"images must be uint8 (or float in [0, 1]), got dtype {images.dtype}")


# ---------------------------------------------------------------------- augmenter


def normalize_only(
    images: Tensor,
    config: AugmentConfig,
    out_size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Deterministic evaluation transform: optional resize, then normalisation.

    Args:
        images: ``[B, H, W, 3]`` uint8 (or float in ``[0, 1]``) on any device.
        config: Supplies the per-channel mean / std.
        out_size: Output side length; the images are resized (bilinear, antialiased
            where the backend supports it) to ``out_size x out_size`` only if their
            size differs. None keeps the size.
        dtype: Floating dtype of the result.

    Returns:
        ``[B, 3, out, out]`` (or ``[B, 3, H, W]``) normalised images on the same device.

    Raises:
        ValueError: On a bad shape / dtype or ``out_size < 1``.
    """
    x = to_float_nchw(images)
    if out_size is not None:
        if out_size < 1:
            raise ValueError(f"out_size must be >= 1, got {out_size}")
        if tuple(x.shape[2:]) != (out_size, out_size):
            size = (out_size, out_size)
            try:
                x = F.interpolate(
                    x, size=size, mode="bilinear", align_corners=False, antialias=True
                )
            except (RuntimeError, NotImplementedError):  # backend without antialias
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            x = x.clamp(0.0, 1.0)
    return normalize_channels(x, config.mean, config.std).to(dtype)


def dataset_mean_std(
    images: Tensor, max_images: int = 10000, chunk_pixels: int = 1 << 22
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and (population) standard deviation in ``[0, 1]`` units.

    Sums and sums of squares are accumulated exactly in int64, in chunks of at most
    ``chunk_pixels`` pixels, so memory stays bounded and there is no rounding drift.

    Args:
        images: ``[N, H, W, 3]`` uint8 on any device.
        max_images: If ``N > max_images``, use every ``ceil(N / max_images)``-th image.
        chunk_pixels: Pixels per chunk (bounds the temporary int32 copy).

    Returns:
        ``((mean_r, mean_g, mean_b), (std_r, std_g, std_b))``.

    Raises:
        ValueError: On a bad shape / dtype, an empty tensor or ``max_images < 1``.
    """
    if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
        raise ValueError(
            f"images must be uint8 [N, H, W, 3], got {images.dtype} {tuple(images.shape)}"
        )
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    N, H, W, _ = images.shape
    if N == 0 or H == 0 or W == 0:
        raise ValueError("images must not be empty")
    subset = images[:: math.ceil(N / max_images)] if max_images < N else images
    chunk = max(1, chunk_pixels // (H * W))
    total = torch.zeros(3, dtype=torch.int64, device=images.device)
    total_sq = torch.zeros(3, dtype=torch.int64, device=images.device)
    for start in range(0, subset.shape[0], chunk):
        block = subset[start : start + chunk].to(torch.int32).reshape(-1, 3)
        total += block.sum(dim=0, dtype=torch.int64)
        total_sq += (block * block).sum(dim=0, dtype=torch.int64)
    n = subset.shape[0] * H * W
    sums, sq_sums = total.tolist(), total_sq.tolist()
    means = [s / (n * 255.0) for s in sums]
    # var = (n * sum(x^2) - sum(x)^2) / n^2, exact in Python ints.
    stds = [
        math.sqrt(max(n * q - s * s, 0) / n**2) / 255.0 for s, q in zip(sums, sq_sums, strict=True)
    ]
    return (means[0], means[1], means[2]), (stds[0], stds[1], stds[2])
