"""Assignments from a trained model: per-sub-head probabilities, features, label-free choice."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crlc_engine.augment.config import AugmentConfig
from crlc_engine.augment.normalize import normalize_only
from crlc_engine.core.control import JobControl
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.library.disk_pixels import DiskPixels
from crlc_engine.models import CRLCModel


@dataclass(frozen=True)
class Predictions:
    """Model outputs for every image.

    Attributes:
        probabilities: float32 [H, N, C], softmax of each sub-head.
        features: float32 [N, D], the L2-normalised RL-head output z.
    """

    probabilities: np.ndarray
    features: np.ndarray

    def labels(self, head: int) -> np.ndarray:
        """Cluster index per image for one sub-head, int64 [N]."""
        labels: np.ndarray = self.probabilities[head].argmax(axis=1).astype(np.int64)
        return labels

    def confidences(self, head: int) -> np.ndarray:
        """Max probability per image for one sub-head, float32 [N]."""
        conf: np.ndarray = self.probabilities[head].max(axis=1)
        return conf

    def all_labels(self) -> np.ndarray:
        """Cluster index per sub-head and image, int64 [H, N]."""
        labels: np.ndarray = self.probabilities.argmax(axis=2).astype(np.int64)
        return labels


@torch.no_grad()
def predict(
    model: CRLCModel,
    images: np.ndarray | Tensor | DiskPixels,
    augment_config: AugmentConfig,
    device: torch.device,
    batch_size: int = 512,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
) -> Predictions:
    """Run the model in eval mode over uint8 images [N, S, S, 3] (no augmentation).

    Args:
        model: A trained model (moved to ``device`` by the caller).
        images: uint8 [N, S, S, 3] (in memory, or read a batch at a time from disk).
        augment_config: Supplies the normalisation mean/std used in training.
        device: Where to run.
        batch_size: Images per forward pass.
        reporter: Receives progress (images done / N).
        control: Cancelling raises ``InterruptedError``.
    """
    reporter = reporter or NullReporter()
    data = images if isinstance(images, DiskPixels) else torch.as_tensor(images)
    n = data.shape[0]
    model.eval()
    amp: contextlib.AbstractContextManager[Any] = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    probs: list[Tensor] = []
    feats: list[Tensor] = []
    for start in range(0, n, batch_size):
        if control is not None and control.cancelled:
            raise InterruptedError("prediction cancelled")
        if isinstance(data, DiskPixels):
            rows = torch.from_numpy(data.block(start, start + batch_size))
        else:
            rows = data[start : start + batch_size]
        batch = rows.to(device, non_blocking=True)
        x = normalize_only(batch, augment_config)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            out = model(x)
        probs.append(torch.softmax(out.logits.float(), dim=-1).cpu())
        feats.append(out.z.float().cpu())
        reporter.progress(min(start + batch_size, n), n)
    return Predictions(
        probabilities=torch.cat(probs, dim=1).numpy(),
        features=torch.cat(feats, dim=0).numpy(),
    )
