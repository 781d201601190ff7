"""Augmentation hyper-parameters (:class:`AugmentConfig`), validated on construction.

Torch-free: the settings of a run name them before any tensor exists.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

__all__ = ["AugmentConfig"]


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
