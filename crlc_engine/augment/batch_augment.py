"""Batched, per-sample random image augmentation on the training device.

CRLC (like SimCLR) trains on two independently augmented views of every image.
A PIL + ``DataLoader`` pipeline cannot feed a GPU at its bf16 rate, so this module
keeps the whole data set on the device as ``uint8 [N, S, S, 3]`` and augments a
gathered batch with a handful of batched tensor ops: no Python loop over samples,
no host<->device synchronisation (no ``.item()``, ``.cpu()`` or branching on tensor
values). Every sample gets its own random parameters.

The pipeline follows the official CRLC code (torchvision semantics), in this order:

1. ``RandomResizedCrop(out, scale=(0.2, 1.0), ratio=(3/4, 4/3))`` and
   ``RandomHorizontalFlip(0.5)``, fused into one ``affine_grid`` + ``grid_sample``
   (bilinear, ``align_corners=False``, border padding).
2. ``RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.8)``; the four adjustments are
   applied in a random order drawn **per sample** (as torchvision does per call).
3. ``RandomGrayscale(0.2)`` (ITU-R 601 luma, replicated to three channels).
4. Optional ``GaussianBlur(9, sigma=(0.1, 2.0))`` applied with probability 0.5 (as the
   official code does for STL-10 / ImageNet subsets), reflect padding.
5. ``Normalize(mean, std)``.

Deviations from torchvision, all by design:

* Crop box: torchvision draws up to 10 (area, aspect) candidates one after another
  and takes the first that fits, else a centre-crop fallback. Here the 10 candidates
  are drawn for every sample at once and the first fitting one is selected with
  tensor ops (same distribution; the fallback is identical). The box size is rounded
  to whole pixels as in torchvision; the offset is ``floor(u * (H - h + 1))``.
* The resize of the crop is bilinear without antialiasing (``grid_sample``); this
  only matters when a crop is shrunk by more than 2x.
* A fixed number of random numbers is drawn per call (35 per sample), so the result
  depends only on the generator state, the batch size and the configuration.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "BatchAugmenter",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "crop_resize_flip",
    "dataset_mean_std",
    "gaussian_blur",
    "hsv_to_rgb",
    "normalize_only",
    "rgb_to_grayscale",
    "rgb_to_hsv",
]

#: ITU-R BT.601 luma weights (R, G, B).
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

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


# --------------------------------------------------------------------------- config


def _is_finite(*values: float) -> bool:
    return all(isinstance(v, numbers.Real) and math.isfinite(v) for v in values)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation hyper-parameters (defaults: official CRLC code, CIFAR-10 statistics).

    Attributes:
        crop_scale: ``(lo, hi)`` range of the crop area as a fraction of the image,
            ``0 < lo <= hi <= 1``.
        crop_ratio: ``(lo, hi)`` range of the crop aspect ratio (width / height),
            ``0 < lo <= hi``; sampled log-uniformly.
        flip_p: Probability of a horizontal flip.
        jitter_p: Probability of applying colour jitter to a sample.
        brightness: Brightness factor drawn from ``[max(0, 1 - b), 1 + b]``.
        contrast: Contrast factor drawn from ``[max(0, 1 - c), 1 + c]``.
        saturation: Saturation factor drawn from ``[max(0, 1 - s), 1 + s]``.
        hue: Hue shift drawn from ``[-hue, hue]`` (fraction of a full turn),
            ``0 <= hue <= 0.5``.
        grayscale_p: Probability of converting a sample to grayscale.
        blur: Whether Gaussian blur is part of the pipeline at all.
        blur_p: Probability of blurring a sample when ``blur`` is on.
        blur_kernel: Odd kernel size of the blur.
        blur_sigma: ``(lo, hi)`` range of the per-sample blur sigma, ``0 < lo <= hi``.
        mean: Per-channel (R, G, B) mean in ``[0, 1]`` units used for normalisation.
        std: Per-channel (R, G, B) standard deviation, all ``> 0``.

    Raises:
        ValueError: From ``__post_init__`` if any value is out of range.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur: bool = False
    blur_p: float = 0.5
    blur_kernel: int = 9
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    mean: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

    def __post_init__(self) -> None:
        # Normalise sequence fields to tuples of floats (keeps the config hashable).
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list | tuple):
                try:
                    converted = tuple(float(v) for v in value)
                except (TypeError, ValueError):
                    raise ValueError(f"{f.name} must contain numbers, got {value!r}") from None
                object.__setattr__(self, f.name, converted)
        self._check_pair("crop_scale")
        self._check_pair("crop_ratio")
        self._check_pair("blur_sigma")
        lo, hi = self.crop_scale
        if not (0.0 < lo <= hi <= 1.0):
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        lo, hi = self.crop_ratio
        if not (0.0 < lo <= hi):
            raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi, got {self.crop_ratio}")
        lo, hi = self.blur_sigma
        if not (0.0 < lo <= hi):
            raise ValueError(f"blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            p = getattr(self, name)
            if not (_is_finite(p) and 0.0 <= p <= 1.0):
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not (_is_finite(v) and v >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (_is_finite(self.hue) and 0.0 <= self.hue <= 0.5):
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue!r}")
        if not isinstance(self.blur, bool):
            raise ValueError(f"blur must be a bool, got {self.blur!r}")
        if (
            isinstance(self.blur_kernel, bool)
            or not isinstance(self.blur_kernel, int)
            or self.blur_kernel < 1
            or self.blur_kernel % 2 == 0
        ):
            raise ValueError(f"blur_kernel must be an odd int >= 1, got {self.blur_kernel!r}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or len(v) != 3 or not _is_finite(*v):
                raise ValueError(f"{name} must be three finite numbers (R, G, B), got {v!r}")
        if min(self.std) <= 0.0:
            raise ValueError(f"std must be > 0 for every channel, got {self.std}")

    def _check_pair(self, name: str) -> None:
        v = getattr(self, name)
        if not isinstance(v, tuple) or len(v) != 2 or not _is_finite(*v):
            raise ValueError(f"{name} must be a pair of finite numbers (lo, hi), got {v!r}")


# ----------------------------------------------------------------------- params


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


def _per_sample(v: Tensor) -> Tensor:
    """``[B]`` -> ``[B, 1, 1, 1]`` for broadcasting against ``[B, C, H, W]``."""
    return v.reshape(-1, 1, 1, 1)


def _blend(x: Tensor, target: Tensor | float, factor: Tensor) -> Tensor:
    """``clamp(f x + (1 - f) target, 0, 1)``; exactly ``x`` where ``f == 1``."""
    f = _per_sample(factor).to(x.dtype)
    return (f * x + (1.0 - f) * target).clamp(0.0, 1.0)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Multiply by a per-sample factor and clamp (torchvision semantics).

    Args:
        x: ``[B, 3, H, W]`` float RGB in ``[0, 1]``.
        factor: ``[B]`` brightness factors (1 = unchanged).

    Returns:
        ``[B, 3, H, W]`` adjusted images in ``[0, 1]``.
    """
    return _blend(x, 0.0, factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the per-image mean of the grayscale image and clamp.

    Args:
        x: ``[B, 3, H, W]`` float RGB in ``[0, 1]``.
        factor: ``[B]`` contrast factors (1 = unchanged, 0 = flat grey).

    Returns:
        ``[B, 3, H, W]`` adjusted images in ``[0, 1]``.
    """
    mean = rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the grayscale image and clamp.

    Args:
        x: ``[B, 3, H, W]`` float RGB in ``[0, 1]``.
        factor: ``[B]`` saturation factors (1 = unchanged, 0 = grayscale).

    Returns:
        ``[B, 3, H, W]`` adjusted images in ``[0, 1]``.
    """
    return _blend(x, rgb_to_grayscale(x), factor)


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


def _normalize(
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


def _to_float_nchw(images: Tensor) -> Tensor:
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


class BatchAugmenter:
    """Per-sample random augmentation of a batch, entirely on the images' device.

    Calling it twice on the same batch gives the two views CRLC trains on. All random
    numbers come from the given ``torch.Generator`` (one ``[B, 35]`` uniform draw per
    call), so the same generator state reproduces the output bit for bit on the CPU.
    The colour-jitter operations run in a random order per sample (like torchvision's
    ``ColorJitter``, which draws a permutation per call); hue is computed once and the
    three blend operations (brightness, contrast, saturation) are placed before or
    after it as each sample's order says.

    Args:
        config: Augmentation parameters.
        out_size: Side length of the output views.

    Raises:
        ValueError: If ``out_size < 1`` or the blur kernel is too large for it.
    """

    def __init__(self, config: AugmentConfig, out_size: int) -> None:
        if isinstance(out_size, bool) or not isinstance(out_size, int) or out_size < 1:
            raise ValueError(f"out_size must be an int >= 1, got {out_size!r}")
        if config.blur and config.blur_kernel // 2 >= out_size:
            raise ValueError(
                f"blur_kernel {config.blur_kernel} too large for out_size {out_size} "
                "(reflect padding needs kernel // 2 < out_size)"
            )
        self.config = config
        self.out_size = out_size

    def __repr__(self) -> str:
        return f"BatchAugmenter(out_size={self.out_size}, config={self.config!r})"

    def sample_params(
        self,
        batch_size: int,
        height: int,
        width: int,
        device: torch.device | str,
        generator: torch.Generator | None = None,
    ) -> AugmentParams:
        """Draw the per-sample parameters of one view.

        Args:
            batch_size: B.
            height: Source image height H.
            width: Source image width W.
            device: Device of the returned tensors.
            generator: Source of randomness (default RNG when None). Random numbers are
                drawn on the generator's device and moved to ``device`` if it differs.

        Returns:
            AugmentParams with ``[B]`` (``order``: ``[B, 4]``) tensors on ``device``.
        """
        cfg = self.config
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

    def apply(
        self, images: Tensor, params: AugmentParams, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Augment a batch with given parameters (deterministic).

        Args:
            images: ``[B, H, W, 3]`` uint8 (or float in ``[0, 1]``), any device.
            params: Per-sample parameters on the same device, batch size B.
            dtype: Floating dtype of the result (computation is float32).

        Returns:
            ``[B, 3, out, out]`` normalised views of dtype ``dtype`` on the images' device.
        """
        return self._augment(_to_float_nchw(images), params).to(dtype)

    def __call__(
        self,
        images: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Draw fresh per-sample parameters and augment one view of the batch.

        Args:
            images: ``[B, H, W, 3]`` uint8 (channels-last storage; float in ``[0, 1]``
                is accepted too) on any device.
            generator: Source of randomness, normally on the images' device; the
                default RNG when None.
            dtype: Floating dtype of the result (computation is float32).

        Returns:
            ``[B, 3, out, out]`` normalised view of dtype ``dtype`` on the same device.
        """
        x = _to_float_nchw(images)
        params = self.sample_params(x.shape[0], x.shape[2], x.shape[3], x.device, generator)
        return self._augment(x, params).to(dtype)

    def two_views(
        self,
        images: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[Tensor, Tensor]:
        """Two independently augmented views; same as calling the augmenter twice.

        Args:
            images: ``[B, H, W, 3]`` uint8 on any device.
            generator: Source of randomness (default RNG when None).
            dtype: Floating dtype of the results.

        Returns:
            Two ``[B, 3, out, out]`` tensors.
        """
        x = _to_float_nchw(images)
        B, _, H, W = x.shape
        p1 = self.sample_params(B, H, W, x.device, generator)
        v1 = self._augment(x, p1).to(dtype)
        p2 = self.sample_params(B, H, W, x.device, generator)
        v2 = self._augment(x, p2).to(dtype)
        return v1, v2

    # ------------------------------------------------------------------ internals

    def _augment(self, x: Tensor, p: AugmentParams) -> Tensor:
        """``[B, 3, H, W]`` float32 in [0, 1] -> ``[B, 3, out, out]`` normalised float32."""
        cfg = self.config
        x = crop_resize_flip(x, p.top, p.left, p.height, p.width, p.flip, self.out_size)
        if cfg.jitter_p > 0:
            x = self._color_jitter(x, p)
        if cfg.grayscale_p > 0:
            x = torch.where(_per_sample(p.grayscale), rgb_to_grayscale(x).expand_as(x), x)
        if cfg.blur and cfg.blur_p > 0 and cfg.blur_kernel > 1:
            blurred = gaussian_blur(x, p.sigma, cfg.blur_kernel)
            x = torch.where(_per_sample(p.blur), blurred, x)
        return _normalize(x, cfg.mean, cfg.std)

    def _color_jitter(self, x: Tensor, p: AugmentParams) -> Tensor:
        """Per-sample ColorJitter in a per-sample random order.

        Brightness, contrast and saturation are all blends ``f x + (1 - f) t`` with
        target ``t`` = 0, the mean grey level, or the grey image. Hue (the expensive
        one) is computed once; each blend is done in a slot before or after it. In a
        slot every sample does at most one blend; inactive samples use ``f = 1``,
        which leaves them bit-identical.
        """
        position = torch.argsort(p.order, dim=1)  # [B, 4] position of each op
        pos_blend, pos_hue = position[:, :3], position[:, 3:]
        factors = torch.stack((p.brightness, p.contrast, p.saturation), dim=1)  # [B, 3]
        active = p.jitter.unsqueeze(1)
        before = active & (pos_blend < pos_hue)
        after = active & (pos_blend > pos_hue)
        for slot in range(3):
            x = self._blend_slot(x, factors, before & (pos_blend == slot))
        if self.config.hue > 0:
            x = torch.where(_per_sample(p.jitter), adjust_hue(x, p.hue), x)
        for slot in range(1, 4):
            x = self._blend_slot(x, factors, after & (pos_blend == slot))
        return x

    @staticmethod
    def _blend_slot(x: Tensor, factors: Tensor, select: Tensor) -> Tensor:
        """One blend per selected sample.

        Args:
            x: ``[B, 3, H, W]`` images.
            factors: ``[B, 3]`` brightness / contrast / saturation factors.
            select: ``[B, 3]`` bool, at most one True per row: which blend to apply.

        Returns:
            ``[B, 3, H, W]``.
        """
        any_sel = select.any(dim=1)
        factor = torch.where(any_sel, (factors * select).sum(dim=1), 1.0)
        kind = (select * torch.arange(3, device=x.device)).sum(dim=1)  # 0 b, 1 c, 2 s
        gray = rgb_to_grayscale(x)  # [B, 1, H, W]
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)
        kind4 = _per_sample(kind)
        target = torch.where(kind4 == 2, gray, torch.where(kind4 == 1, mean, 0.0))
        return _blend(x, target, factor)


# ---------------------------------------------------------------- evaluation path


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
    x = _to_float_nchw(images)
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
    return _normalize(x, config.mean, config.std).to(dtype)


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
