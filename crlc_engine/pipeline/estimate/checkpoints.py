"""What a checkpoint of a configuration holds, counted without building or saving it.

:func:`checkpoint_size` counts the network the config builds (parameters and buffers, from a
table of the registered backbones checked against a build on PyTorch's ``meta`` device; no
weights are read or downloaded), the optimiser state of the parts that train (SGD momentum:
one more copy; Adam: two), the MemoryBank framework's banks, the quick preset's
standardisation and neighbour table, the history and the random generator states. A
checkpoint written while a run trains holds all of it; the one a finished run keeps leaves
out the optimiser state and banks (:func:`crlc_engine.training.checkpoint.finished_state`).
No torch import, microseconds.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from crlc_engine.core.config import TrainConfig
from crlc_engine.pipeline.estimate.costs import is_quick, quick_plan


@dataclass(frozen=True)
class BackboneShape:
    """What a backbone contributes to a checkpoint.

    Attributes:
        feature_dim: Width d of its pooled features.
        parameters: Parameter elements (float32).
        parameter_tensors: Parameter tensors.
        buffer_bytes: Bytes of its buffers (BatchNorm statistics, counters).
        buffer_tensors: Buffer tensors.
    """

    feature_dim: int
    parameters: int
    parameter_tensors: int
    buffer_bytes: int
    buffer_tensors: int


#: Every registered backbone per stem (pretrained or not: the same tensors). A test checks this
#: table against a build on the meta device; an unknown backbone is built there.
BACKBONE_SHAPES: dict[tuple[str, str], BackboneShape] = {
    ("small", "cifar"): BackboneShape(256, 536_608, 15, 4_904, 15),
    ("small", "imagenet"): BackboneShape(256, 536_608, 15, 4_904, 15),
    ("resnet18", "cifar"): BackboneShape(512, 11_168_832, 60, 38_560, 60),
    ("resnet18", "imagenet"): BackboneShape(512, 11_176_512, 60, 38_560, 60),
    ("resnet34", "cifar"): BackboneShape(512, 21_276_992, 108, 68_384, 108),
    ("resnet34", "imagenet"): BackboneShape(512, 21_284_672, 108, 68_384, 108),
    ("resnet50", "cifar"): BackboneShape(2048, 23_500_352, 159, 212_904, 159),
    ("resnet50", "imagenet"): BackboneShape(2048, 23_508_032, 159, 212_904, 159),
    ("efficientnet_lite0", "cifar"): BackboneShape(1280, 3_371_008, 147, 168_456, 147),
    ("efficientnet_lite0", "imagenet"): BackboneShape(1280, 3_371_008, 147, 168_456, 147),
}
#: EfficientNet-Lite0's feature width (the quick preset's heads read 1280-d features).
QUICK_FEATURE_DIM = 1280
#: The quick preset's hidden width of every head (``QuickSettings.hidden``).
QUICK_HIDDEN = 256
#: What ``torch.save`` adds per tensor (zip entry, alignment, pickled rebuild call) and per
#: file; the state of a CPU random generator.
_BYTES_PER_TENSOR = 330
_BYTES_PER_FILE = 3_000
_GENERATOR_BYTES = 5_056 + _BYTES_PER_TENSOR


def backbone_shape(backbone: str, stem: str) -> BackboneShape:
    """The tensors of ``backbone`` with ``stem`` (table, else built on the meta device)."""
    shape = BACKBONE_SHAPES.get((backbone, stem))
    return shape if shape is not None else meta_backbone_shape(backbone, stem)


@lru_cache(maxsize=32)
def meta_backbone_shape(backbone: str, stem: str) -> BackboneShape:
    """Build ``backbone`` on PyTorch's meta device (no memory, no weights) and count it."""
    import torch

    from crlc_engine.models.backbones import BACKBONES, Backbone

    with torch.device("meta"):
        if backbone == "efficientnet_lite0":  # its builder always loads the weights
            from crlc_engine.models.efficientnet_lite import LITE0_FEATURE_DIM, efficientnet_lite0

            net = efficientnet_lite0(pretrained=False)
            net.drop_classifier()
            module = Backbone(net, LITE0_FEATURE_DIM)
        else:
            module = BACKBONES[backbone].build(stem, False)
    params = dict(module.named_parameters())
    buffers = [v for k, v in module.state_dict().items() if k not in params]
    return BackboneShape(
        feature_dim=int(module.feature_dim),
        parameters=sum(p.numel() for p in params.values()),
        parameter_tensors=len(params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in buffers),
        buffer_tensors=len(buffers),
    )


@dataclass(frozen=True)
class CheckpointSize:
    """What one checkpoint of a run holds, in bytes (as written by ``torch.save``).

    Attributes:
        model_bytes: Network weights and buffers (the quick preset: its heads).
        optimizer_bytes: Optimiser state of the parts that train (only while training).
        resume_bytes: Other state only continuing needs that a finished run drops (the
            MemoryBank framework's banks).
        state_bytes: Everything else (history, neighbour table, generators, settings).
    """

    model_bytes: int
    optimizer_bytes: int
    resume_bytes: int
    state_bytes: int

    @property
    def training_bytes(self) -> int:
        """A checkpoint written while the run trains (what ``--resume`` continues)."""
        return self.model_bytes + self.optimizer_bytes + self.resume_bytes + self.state_bytes

    @property
    def final_bytes(self) -> int:
        """The checkpoint a finished run keeps (no optimiser state, no banks)."""
        return self.model_bytes + self.state_bytes


@lru_cache(maxsize=64)
def _history_record_bytes(subheads: int, clusters: int, extra: int, count_bytes: int) -> int:
    """Pickled bytes one more epoch record adds to a checkpoint's history (protocol 2)."""

    def record(epoch: int) -> dict[str, Any]:
        count = {1: 200, 2: 60_000}.get(count_bytes, 10_000_000)
        parts = ("total", "feature", "cluster", "probability_contrastive", "entropy", "guard")
        return {
            "epoch": epoch,
            "partial": False,
            "steps": 7,
            "losses": {name: 0.1 + epoch * 1e-3 for name in (*parts, *["x"] * extra)},
            "head_losses": [1.0 + h * 1e-3 + epoch for h in range(subheads)],
            "head_counts": [[count + c for c in range(clusters)] for _ in range(subheads)],
            "samples_per_s": 123.4 + epoch,
            "elapsed_s": 5.6 + epoch,
        }

    one = len(pickle.dumps([record(1)], protocol=2))
    two = len(pickle.dumps([record(1), record(2)], protocol=2))
    return two - one


def _history_bytes(epochs: float, subheads: int, clusters: int, images: int, extra: int) -> int:
    count_bytes = 1 if images // max(1, clusters) < 256 else 2 if images < 65536 else 4
    per = _history_record_bytes(subheads, clusters, extra, count_bytes)
    return int(max(0.0, epochs) * per)


def _sums_bytes(subheads: int, clusters: int, extra: int) -> int:
    """The epoch's running sums: a scalar per loss part, ``[H]`` and ``[H, C]``."""
    scalars = 6 + extra
    return 4 * (scalars + subheads + subheads * clusters) + (scalars + 2) * _BYTES_PER_TENSOR


def _trained_parts(config: TrainConfig) -> tuple[str, ...]:
    """Parts of the network whose parameters get gradients (and so optimiser state)."""
    stage = config.stage
    if stage == "stage1":
        return ("backbone", "rl_head")
    if stage == "stage2":
        return ("c_head",) if config.freeze_backbone else ("backbone", "c_head")
    if config.lambda_fc > 0:
        return ("backbone", "rl_head", "c_head")
    return ("backbone", "c_head")  # L_FC off: the RL-head gets no gradient


def _optimizer_copies(config: TrainConfig) -> tuple[int, int]:
    """Copies of each trained parameter the optimiser keeps, and extra tensors per parameter
    tensor (Adam's step counter)."""
    if config.optimizer == "adam":
        return 2, 1
    return (1 if config.momentum > 0 else 0), 0


def _pixel_checkpoint(config: TrainConfig, images: int, epochs: float) -> CheckpointSize:
    shape = backbone_shape(config.backbone, config.resolved_stem())
    d, f, h, c = shape.feature_dim, config.feature_dim, config.subheads, config.clusters
    parts = {
        "backbone": (shape.parameters, shape.parameter_tensors),
        "rl_head": (d * d + d + d * f + f, 4),
        "c_head": (h * (d * d + d + d * c + c), 4),
    }
    params = sum(n for n, _ in parts.values())
    tensors = sum(t for _, t in parts.values()) + shape.buffer_tensors
    model = 4 * params + shape.buffer_bytes + _BYTES_PER_TENSOR * tensors
    copies, extra = _optimizer_copies(config)
    trained = [parts[name] for name in _trained_parts(config)]
    optimizer = sum(
        copies * (4 * n + _BYTES_PER_TENSOR * t) + extra * t * (4 + _BYTES_PER_TENSOR)
        for n, t in trained
    )
    bank = 0
    if config.framework == "memorybank":
        bank = 4 * images * (h * c + f) + 2 * _BYTES_PER_TENSOR
    state = (
        _BYTES_PER_FILE
        + 2 * _GENERATOR_BYTES
        + _history_bytes(epochs, h, c, images, 0)
        + _sums_bytes(h, c, extra=0)
    )
    return CheckpointSize(model, optimizer, bank, state)


def _quick_checkpoint(config: TrainConfig, images: int, epochs: float) -> CheckpointSize:
    d = QUICK_FEATURE_DIM
    hidden = int(getattr(config, "head_hidden", None) or QUICK_HIDDEN)
    f, h, c = config.feature_dim, config.subheads, config.clusters
    rl = (d * hidden + hidden + hidden * f + f, 4)
    heads = (h * (d * hidden + hidden + hidden * c + c), 4)
    model = sum(4 * n + _BYTES_PER_TENSOR * t for n, t in (rl, heads))
    trained = [heads, rl] if config.lambda_fc > 0 else [heads]
    optimizer = sum(
        2 * (4 * n + _BYTES_PER_TENSOR * t) + t * (4 + _BYTES_PER_TENSOR) for n, t in trained
    )
    k = min(config.neighbors, max(1, images - 1))
    state = (
        _BYTES_PER_FILE
        + 2 * (4 * d + _BYTES_PER_TENSOR)  # standardisation
        + 4 * images * k
        + _BYTES_PER_TENSOR  # neighbour table (int32)
        + 2 * _GENERATOR_BYTES
        + _history_bytes(epochs, h, c, images, 1)
        + _sums_bytes(h, c, extra=1)
    )
    return CheckpointSize(model, optimizer, 0, state)


def checkpoint_size(
    config: TrainConfig, images: int, epochs: float | None = None
) -> CheckpointSize:
    """What a checkpoint of ``config`` over ``images`` photos holds after ``epochs`` epochs
    (default: the planned epochs; quick: raised to the minimum steps)."""
    images = max(2, int(images))
    if is_quick(config):
        if epochs is None:
            epochs = float(quick_plan(config, images)[2] if config.epochs else 20)
        return _quick_checkpoint(config, images, epochs)
    if epochs is None:
        epochs = float(config.epochs or 100)
    return _pixel_checkpoint(config, images, epochs)
