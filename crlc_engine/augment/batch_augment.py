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

The package's modules, along the pipeline: :mod:`~crlc_engine.augment.config` (the
hyper-parameters), :mod:`~crlc_engine.augment.sampling` (the per-sample random parameters),
:mod:`~crlc_engine.augment.spatial` (crop, resize, flip, blur),
:mod:`~crlc_engine.augment.color` (jitter, grayscale) and
:mod:`~crlc_engine.augment.normalize` (normalisation, the evaluation transform, data set
statistics); this module puts them together.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crlc_engine.augment.color import adjust_hue, blend, per_sample, rgb_to_grayscale
from crlc_engine.augment.config import AugmentConfig
from crlc_engine.augment.normalize import normalize_channels, to_float_nchw
from crlc_engine.augment.sampling import AugmentParams, sample_params
from crlc_engine.augment.spatial import crop_resize_flip, gaussian_blur

__all__ = ["AugmentConfig", "AugmentParams", "BatchAugmenter"]


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
        """Draw the per-sample parameters of one view with this augmenter's config
        (:func:`~crlc_engine.augment.sampling.sample_params`)."""
        return sample_params(self.config, batch_size, height, width, device, generator)

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
        return self._augment(to_float_nchw(images), params).to(dtype)

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
        x = to_float_nchw(images)
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
        x = to_float_nchw(images)
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
            x = torch.where(per_sample(p.grayscale), rgb_to_grayscale(x).expand_as(x), x)
        if cfg.blur and cfg.blur_p > 0 and cfg.blur_kernel > 1:
            blurred = gaussian_blur(x, p.sigma, cfg.blur_kernel)
            x = torch.where(per_sample(p.blur), blurred, x)
        return normalize_channels(x, cfg.mean, cfg.std)

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
            x = torch.where(per_sample(p.jitter), adjust_hue(x, p.hue), x)
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
        kind4 = per_sample(kind)
        target = torch.where(kind4 == 2, gray, torch.where(kind4 == 1, mean, 0.0))
        return blend(x, target, factor)


# ---------------------------------------------------------------- evaluation path
