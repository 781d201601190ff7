"""Per-sample random parameters of one augmented view (:class:`AugmentParams`), drawn from
one fixed-size uniform draw per call (:func:`sample_params`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from crlc_engine.augment.config import AugmentConfig

__all__ = ["CROP_ATTEMPTS", "AugmentParams", "sample_params"]

#: Number of (area, aspect) candidates per sample, as torchvision's RandomResizedCrop.
CROP_ATTEMPTS = 10

# Column layout of the [B, _N_RANDOM] uniform draws of one call.
_SCALE = slice(0, CROP_ATTEMPTS)
_RATIO = slice(CROP_ATTEMPTS, 2 * CROP_ATTEMPTS)
_TOP = 2 * CROP_ATTEMPTS
_LEFT = _TOP + 1
_FLIP = _TOP + 2
_JITTER = _TOP + 3
_BRIGHT = _TOP + 4
_CONTRAST = _TOP + 5
_SAT = _TOP + 6
_HUE = _TOP + 7
_ORDER = slice(_TOP + 8, _TOP + 12)
_GRAY = _TOP + 12
_BLUR = _TOP + 13
_SIGMA = _TOP + 14
_N_RANDOM = _TOP + 15


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample random parameters of one augmented view (all tensors on one device).

    Attributes:
        top: ``[B]`` float32, crop top row in pixels (whole numbers).
        left: ``[B]`` float32, crop left column in pixels (whole numbers).
        height: ``[B]`` float32, crop height in pixels (whole numbers, ``>= 1``).
        width: ``[B]`` float32, crop width in pixels (whole numbers, ``>= 1``).
        flip: ``[B]`` bool, horizontal flip.
        jitter: ``[B]`` bool, colour jitter applied.
        brightness: ``[B]`` float32 brightness factor.
        contrast: ``[B]`` float32 contrast factor.
        saturation: ``[B]`` float32 saturation factor.
        hue: ``[B]`` float32 hue shift (fraction of a turn).
        order: ``[B, 4]`` int64; ``order[b, k]`` is the jitter operation applied
            k-th to sample ``b`` (0 brightness, 1 contrast, 2 saturation, 3 hue).
        grayscale: ``[B]`` bool, converted to grayscale.
        blur: ``[B]`` bool, Gaussian blur applied (always False when blur is off).
        sigma: ``[B]`` float32 blur sigma.
    """

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor
    jitter: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    order: Tensor
    grayscale: Tensor
    blur: Tensor
    sigma: Tensor


def _factor_range(strength: float) -> tuple[float, float]:
    return max(0.0, 1.0 - strength), 1.0 + strength


def _uniform(u: Tensor, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * u


def _sample_crop(
    u: Tensor, height: int, width: int, config: AugmentConfig
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Vectorised torchvision ``RandomResizedCrop.get_params``.

    Args:
        u: ``[B, _N_RANDOM]`` uniform draws in ``[0, 1)``.
        height: Image height H.
        width: Image width W.
        config: Crop scale / ratio ranges.

    Returns:
        ``(top, left, h, w)``, each ``[B]`` float32 whole numbers of pixels.
    """
    area = float(height * width)
    log_lo, log_hi = math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])
    target_area = area * _uniform(u[:, _SCALE], *config.crop_scale)  # [B, 10]
    aspect = torch.exp(_uniform(u[:, _RATIO], log_lo, log_hi))  # [B, 10]
    w_try = torch.round(torch.sqrt(target_area * aspect))
    h_try = torch.round(torch.sqrt(target_area / aspect))
    valid = (w_try >= 1) & (w_try <= width) & (h_try >= 1) & (h_try <= height)
    attempt = torch.arange(CROP_ATTEMPTS, device=u.device).expand_as(valid)
    first = torch.where(valid, attempt, CROP_ATTEMPTS).amin(dim=1)  # [B]
    found = first < CROP_ATTEMPTS
    pick = first.clamp(max=CROP_ATTEMPTS - 1).unsqueeze(1)
    w_pick = w_try.gather(1, pick).squeeze(1)
    h_pick = h_try.gather(1, pick).squeeze(1)

    # torchvision's fallback: the largest centred crop with the ratio clamped to range.
    in_ratio = width / height
    if in_ratio < config.crop_ratio[0]:
        w_fb, h_fb = float(width), float(round(width / config.crop_ratio[0]))
    elif in_ratio > config.crop_ratio[1]:
        w_fb, h_fb = float(round(height * config.crop_ratio[1])), float(height)
    else:
        w_fb, h_fb = float(width), float(height)
    w_fb, h_fb = min(max(w_fb, 1.0), float(width)), min(max(h_fb, 1.0), float(height))

    w = torch.where(found, w_pick, w_fb)
    h = torch.where(found, h_pick, h_fb)
    top_rand = torch.minimum(torch.floor(u[:, _TOP] * (height - h + 1)), height - h)
    left_rand = torch.minimum(torch.floor(u[:, _LEFT] * (width - w + 1)), width - w)
    top = torch.where(found, top_rand, torch.floor((height - h) / 2))
    left = torch.where(found, left_rand, torch.floor((width - w) / 2))
    return top, left, h, w


# ------------------------------------------------------------ functional helpers


def sample_params(
    config: AugmentConfig,
    batch_size: int,
    height: int,
    width: int,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> AugmentParams:
    """Draw the per-sample parameters of one view (one ``[B, 35]`` uniform draw).

    Args:
        config: Augmentation ranges and probabilities.
        batch_size: B.
        height: Source image height H.
        width: Source image width W.
        device: Device of the returned tensors.
        generator: Source of randomness (default RNG when None). Random numbers are
            drawn on the generator's device and moved to ``device`` if it differs.

    Returns:
        AugmentParams with ``[B]`` (``order``: ``[B, 4]``) tensors on ``device``.
    """
    cfg = config
    device = torch.device(device)
    rand_device = generator.device if generator is not None else device
    u = torch.rand(batch_size, _N_RANDOM, generator=generator, device=rand_device)
    u = u.to(device)
    top, left, h, w = _sample_crop(u, height, width, cfg)
    return AugmentParams(
        top=top,
        left=left,
        height=h,
        width=w,
        flip=u[:, _FLIP] < cfg.flip_p,
        jitter=u[:, _JITTER] < cfg.jitter_p,
        brightness=_uniform(u[:, _BRIGHT], *_factor_range(cfg.brightness)),
        contrast=_uniform(u[:, _CONTRAST], *_factor_range(cfg.contrast)),
        saturation=_uniform(u[:, _SAT], *_factor_range(cfg.saturation)),
        hue=_uniform(u[:, _HUE], -cfg.hue, cfg.hue),
        order=torch.argsort(u[:, _ORDER], dim=1, stable=True),
        grayscale=u[:, _GRAY] < cfg.grayscale_p,
        blur=(u[:, _BLUR] < cfg.blur_p) & cfg.blur,
        sigma=_uniform(u[:, _SIGMA], *cfg.blur_sigma),
    )
