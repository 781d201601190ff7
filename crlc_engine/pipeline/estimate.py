"""What a run will cost before it starts: its time, calibrated on this computer, and its disk.

**Disk.** :func:`checkpoint_size` counts what a checkpoint of a configuration holds: the
network the config builds (parameters and buffers, from a table of the registered backbones
checked against a build on PyTorch's ``meta`` device; no weights are read or downloaded), the
optimiser state of the parts that train (SGD momentum: one more copy; Adam: two), the
MemoryBank framework's banks, the quick preset's standardisation and neighbour table, the
history and the random generator states. A checkpoint written while a run trains holds all of
it; the one a finished run keeps leaves out the optimiser state and banks
(:func:`crlc_engine.training.checkpoint.finished_state`). No torch import, microseconds.

**Time.** :func:`estimate_training` adds up the parts of the job a user waits for: reading
the photos at the training size (when the pixel cache lacks it), the quick preset's
backbone features, the training steps, the per-epoch work and checkpoints, the assignments.
Without a :class:`Calibration` it uses fixed typical speeds (a rough guess: 25-40 % off on a
busy 2-core computer). :func:`measure_speed` times a few real steps of the configuration on
synthetic tensors of its size (and, for the quick preset, a few backbone batches): 1-4 s on
2 CPU cores, cancellable. :class:`SpeedCache` keeps calibrations per computer and
configuration in the user cache folder, and the speed a finished run really had
(:func:`remember_run`), which is preferred for later estimates of the same configuration.

The API another dialog uses::

    speeds = SpeedCache()
    calibration = speeds.get(config, "cpu")            # instant; None when never measured
    estimate = estimate_training(config, images, "cpu", calibration)
    # off the GUI thread, when calibration is None:
    calibration = speeds.measure(config, "cpu", control)   # measure_speed + store
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CRLCError
from crlc_engine.core.events import NullReporter, Reporter

if TYPE_CHECKING:
    import torch

    from crlc_engine.library.runs import RunDir
    from crlc_engine.training.frozen_features import FeatureExtractor

__all__ = [
    "CPU_IMAGES_PER_S",
    "MODEL_PARAMETERS",
    "Calibration",
    "CheckpointSize",
    "SpeedCache",
    "TrainingEstimate",
    "checkpoint_size",
    "estimate_training",
    "format_bytes",
    "format_duration",
    "images_per_second",
    "measure_speed",
    "remember_run",
    "run_calibration",
    "speed_key",
]

# ------------------------------------------------------------------- typical speeds (rough)
#: Images per second (two augmented views each) of a training step at 32 px on 2 CPU cores,
#: per (backbone, resolved stem). ``small`` and ``resnet18`` were measured
#: (docs/benchmarks.md, 2026-11-26); ``resnet34`` and ``resnet50`` are ``resnet18`` scaled by
#: their compute (about 2x and 2.3x ResNet-18's), not measured.
CPU_IMAGES_PER_S: dict[tuple[str, str], float] = {
    ("small", "imagenet"): 1300.0,
    ("small", "cifar"): 315.0,
    ("resnet18", "imagenet"): 315.0,
    ("resnet18", "cifar"): 21.0,
    ("resnet34", "imagenet"): 158.0,
    ("resnet34", "cifar"): 10.5,
    ("resnet50", "imagenet"): 137.0,
    ("resnet50", "cifar"): 9.1,
    # 0.4 x ResNet-18 (ImageNet stem) in one run of benchmarks/train_throughput.py on a loaded
    # machine (ratio only, absolute figures of that run were not usable).
    ("efficientnet_lite0", "imagenet"): 125.0,
    ("efficientnet_lite0", "cifar"): 125.0,
}
#: ResNet-18 with the CIFAR stem at 32 px on a current CUDA GPU (CRLC_NOTES.md: H200 run).
CUDA_RESNET18_IMAGES_PER_S = 18500.0
#: Speed of each backbone on a GPU relative to ResNet-18 (rough, not measured).
CUDA_BACKBONE_FACTOR: dict[str, float] = {
    "small": 3.0,
    "resnet18": 1.0,
    "resnet34": 0.5,
    "resnet50": 0.4,
    "efficientnet_lite0": 0.5,
}
#: The ImageNet stem works on 16x fewer positions; on a GPU that buys much less than on a CPU.
CUDA_IMAGENET_STEM_FACTOR = 4.0
#: An Apple GPU relative to a current CUDA GPU (rough, not measured).
MPS_FACTOR = 1.0 / 6.0
#: Trainable parameters of the whole CRLC model (backbone + heads, 10 clusters), for display;
#: checkpoint sizes come from :func:`checkpoint_size`.
MODEL_PARAMETERS: dict[str, float] = {
    "small": 1.32e6,
    "resnet18": 14.2e6,
    "resnet34": 24.3e6,
    "resnet50": 70.1e6,
    "efficientnet_lite0": 5.0e6,
}
#: Step time of the MemoryBank framework relative to SimCLR at the same batch (one view per
#: image instead of two; docs/benchmarks.md, CPU: 0.53-0.55).
MEMORYBANK_TIME_FACTOR = 0.55
#: The quick preset on a 2-core CPU (benchmarks/imagenette_quick.py, quiet machine, bf16):
#: EfficientNet-Lite0 features at 224 px per second, and seconds per head-training step.
QUICK_CPU_FEATURES_PER_S = 126.0
QUICK_CPU_STEP_S = 0.1
#: A GPU relative to those CPU figures (rough, not measured).
QUICK_GPU_FACTOR = 20.0
#: The quick preset trains at least this many steps (crlc_engine.training.feature_trainer).
QUICK_MIN_STEPS = 300
#: A frozen stage-2 backbone only runs forward (about a third of a training step).
FROZEN_STAGE2_FACTOR = 1.0 / 3.0
#: Rates above are for 32 px images; the cost grows with the pixel count.
_REFERENCE_SIZE = 32

# ------------------------------------------------------------ job parts around the steps
#: Reading the photos at a training size the pixel cache lacks: starting the decoding
#: processes, then photos per second and process. The rate depends on the photos, which an
#: estimate does not see: 224 px Imagenette JPEGs decode at several hundred per second
#: (2,000 in 6.9 s, 400 in 4.9 s with one process, start included); 12-megapixel camera
#: JPEGs, even at 1/4 scale in the draft mode, at a few dozen. This is a middle value.
DECODE_START_S = 3.5
DECODE_PER_S = 200.0
#: Fixed seconds of a job besides its parts below (opening the library, checking the files,
#: the run folder, naming the groups), and seconds per photo (catalog reads and writes).
JOB_OVERHEAD_S = 0.5
JOB_PER_IMAGE_S = 0.0005
#: The quick preset: loading EfficientNet-Lite0 and finding the neighbours.
QUICK_SETUP_S = 0.5
#: Seconds per epoch besides its steps (the epoch's record, history line and event).
EPOCH_OVERHEAD_S = 0.003
#: Writing a checkpoint (flush and fsync included) against serialising it in memory.
DISK_WRITE_FACTOR = 2.0
#: Serialising a checkpoint in memory, bytes per second, without a calibration.
TYPICAL_SAVE_BYTES_PER_S = 1.0e9
#: An assignment pass (one view, forward only) against a training step per image (two views,
#: forward and backward).
ASSIGN_SPEEDUP = 6.0
#: How long a measured calibration stays valid: the load of a computer changes.
MEASURED_MAX_AGE_S = 3600.0
#: How long the speed of a finished run stays valid.
RUN_MAX_AGE_S = 30 * 86400.0
#: A CPU run longer than this gets a hint to pick a lighter setting.
SLOW_CPU_S = 3 * 3600

_DEVICE_WORDS = {"cpu": "the CPU", "cuda": "the GPU", "mps": "the Apple GPU"}
_BASIS_TEXT = {
    "rough": "a rough guess from typical speeds",
    "measured": "speed measured on this computer",
    "run": "speed of an earlier run on this computer",
}


# ------------------------------------------------------------------------------ formatting
def format_duration(seconds: float, device_kind: str = "cpu") -> str:
    """A duration in words; GPU runs are counted in minutes."""
    if device_kind != "cpu":
        minutes = seconds / 60.0
        if minutes < 1.0:
            return "under a minute"
        text = f"{math.ceil(minutes):,} minute{'s' if math.ceil(minutes) != 1 else ''}"
        if minutes >= 180.0:
            text += f" ({minutes / 60.0:,.0f} hours)"
        return text
    if seconds < 10.0:
        return "a few seconds"
    if seconds < 90.0:
        return f"{seconds:.0f} seconds"
    if seconds < 90 * 60.0:
        return f"{seconds / 60.0:.0f} minutes"
    hours = seconds / 3600.0
    if hours < 48.0:
        return f"{hours:.1f} hours" if hours < 10.0 else f"{hours:.0f} hours"
    return f"{hours / 24.0:,.0f} days"


def format_bytes(size: float) -> str:
    """A byte count in decimal units (kB, MB, GB)."""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= factor:
            value = size / factor
            return f"{value:.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    return f"{size:.0f} bytes"


# ------------------------------------------------------------------------------ checkpoints
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
QUICK_HIDDEN = 512
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


def _is_quick(config: TrainConfig) -> bool:
    return bool(getattr(config, "cached_features", False)) or config.preset == "quick"


def _quick_plan(config: TrainConfig, images: int) -> tuple[int, int, int]:
    """Batch, steps per epoch and epochs of the quick preset's heads (``epochs`` raised to
    reach the minimum steps, as :class:`~crlc_engine.training.feature_trainer.FeatureTrainer`
    does)."""
    batch = max(1, min(config.batch_size, images))
    per_epoch = max(1, images // batch)
    epochs = int(config.epochs or 0)
    return batch, per_epoch, max(epochs, math.ceil(QUICK_MIN_STEPS / per_epoch))


def checkpoint_size(
    config: TrainConfig, images: int, epochs: float | None = None
) -> CheckpointSize:
    """What a checkpoint of ``config`` over ``images`` photos holds after ``epochs`` epochs
    (default: the planned epochs; quick: raised to the minimum steps)."""
    images = max(2, int(images))
    if _is_quick(config):
        if epochs is None:
            epochs = float(_quick_plan(config, images)[2] if config.epochs else 20)
        return _quick_checkpoint(config, images, epochs)
    if epochs is None:
        epochs = float(config.epochs or 100)
    return _pixel_checkpoint(config, images, epochs)


# ------------------------------------------------------------------------------ calibration
def _machine() -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"host": platform.node(), "arch": platform.machine(), "cores": cores}


def speed_key(config: TrainConfig, device_kind: str) -> str:
    """What the speed of ``config`` on ``device_kind`` depends on, on this computer, as text
    (the settings that change a step's cost; not its length, stage or labels, which the
    estimate accounts for)."""
    if _is_quick(config):
        parts: dict[str, Any] = {
            "mode": "quick",
            "size": config.image_size,
            "batch": config.batch_size,
            "subheads": config.subheads,
            "clusters": config.clusters,
            "feature_dim": config.feature_dim,
            "z": config.lambda_fc > 0,
            "hidden": getattr(config, "head_hidden", None),
            "precision": getattr(config, "feature_precision", "auto"),
        }
    else:
        parts = {
            "mode": "pixels",
            "backbone": config.backbone,
            "stem": config.resolved_stem(),
            "size": config.image_size,
            "batch": config.batch_size,
            "framework": config.framework,
            "negatives": config.bank_negatives if config.framework == "memorybank" else None,
            "subheads": config.subheads,
            "clusters": config.clusters,
            "feature_dim": config.feature_dim,
            "z": config.lambda_fc > 0,
            "optimizer": config.optimizer,
        }
    parts["device"] = device_kind
    parts["machine"] = _machine()
    return json.dumps(parts, sort_keys=True)


@dataclass(frozen=True)
class Calibration:
    """How fast a configuration trains on this computer.

    Attributes:
        key: :func:`speed_key` of the configuration and device.
        device_kind: ``cpu``, ``cuda`` or ``mps``.
        step_s: Seconds per training step of ``batch`` images.
        batch: Images per step ``step_s`` was measured (or scaled) for.
        feature_images_per_s: Quick preset: backbone features per second (``None``: unknown).
        save_bytes_per_s: Checkpoint serialisation speed (``None``: unknown).
        source: ``measured`` (:func:`measure_speed`) or ``run`` (:func:`remember_run`).
        created: When, in seconds since the epoch.
        includes_overhead: ``step_s`` includes the per-epoch work and checkpoints (a run's).
    """

    key: str
    device_kind: str
    step_s: float
    batch: int
    feature_images_per_s: float | None = None
    save_bytes_per_s: float | None = None
    source: str = "measured"
    created: float = 0.0
    includes_overhead: bool = False

    @property
    def images_per_s(self) -> float:
        """Training images per second."""
        return self.batch / self.step_s if self.step_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`as_dict` (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _calibration_config(config: TrainConfig, batch: int) -> TrainConfig:
    """``config`` as one end-to-end run of ``batch``-image steps on synthetic images (no
    pretrained weights to fetch: the same tensors and the same speed)."""
    pretrained = config.backbone == "efficientnet_lite0"  # always pretrained, installed
    return config.replace(
        batch_size=batch,
        epochs=1,
        minutes=None,
        stage="end_to_end",
        freeze_backbone=False,
        lambda_xent=0.0,
        pretrained=pretrained,
        lr_schedule="constant",
    )


class _Timer:
    """Times calls of ``step(batch)`` until a share of the budget is spent."""

    def __init__(
        self,
        clock: Callable[[], float],
        control: JobControl,
        sync: Callable[[], None],
    ) -> None:
        self.clock = clock
        self.control = control
        self.sync = sync

    def once(self, step: Callable[[int], object], batch: int) -> float:
        if self.control.cancelled:
            raise InterruptedError("speed measurement cancelled")
        started = self.clock()
        step(batch)
        self.sync()
        return max(self.clock() - started, 1e-9)

    def per_item(
        self, step: Callable[[int], object], full: int, budget_s: float, first: int = 4
    ) -> tuple[float, int]:
        """Seconds per step of ``full`` items, from steps of up to ``full`` items that fit in
        ``budget_s``.

        Steps start at ``first`` items (twice: the first step builds kernels and optimiser
        state) and double while a step stays under a sixth of the budget, up to ``full``;
        one more step warms the final size up, then up to 8 steps are timed (at least 2)
        until half the budget is spent. The time is the mean of the faster half (a burst of
        another program does not count twice), scaled to ``full`` items per item when the
        steps stayed smaller. Returns (seconds per step of ``full`` items, items per step).
        """
        target = budget_s / 6
        batch = max(1, min(full, first))
        self.once(step, batch)
        last = self.once(step, batch)
        while batch < full and last * min(full, 2 * batch) / batch <= target:
            bigger = min(full, 2 * batch)
            last = self.once(step, bigger)
            batch = bigger
        self.once(step, batch)
        spent, times = 0.0, list[float]()
        while len(times) < 8 and (len(times) < 2 or spent < budget_s / 2):
            times.append(self.once(step, batch))
            spent += times[-1]
        times.sort()
        fast = times[: max(1, len(times) // 2)]
        return sum(fast) / len(fast) * full / batch, batch


def measure_speed(
    config: TrainConfig,
    device: str | torch.device = "cpu",
    control: JobControl | None = None,
    *,
    budget_s: float = 3.0,
    clock: Callable[[], float] = time.perf_counter,
    reporter: Reporter | None = None,
    extractor: FeatureExtractor | None = None,
) -> Calibration:
    """Time a few real training steps of ``config`` on synthetic tensors of its size.

    Pixel training: steps of :class:`~crlc_engine.training.trainer.CRLCTrainer` (end to end,
    the config's network, image size and framework) on random images, the batch lowered
    where a full step would not fit in the budget (the time is scaled back up per image).
    The quick preset: a few batches of the frozen backbone (loaded from the installed
    weights), then steps of the heads on random features. Both also time serialising the
    trainer's checkpoint. Takes about ``budget_s`` (more on a slow GPU start); nothing is
    written to disk.

    Args:
        config: The run's settings.
        device: Where to measure.
        control: Cancel token, checked between steps.
        budget_s: Seconds to spend, roughly.
        clock: Monotonic seconds (tests pass a fake clock).
        reporter: Told the progress (0..1) and what is being timed.
        extractor: Quick preset: the backbone (default: EfficientNet-Lite0; tests pass a
            small one).

    Raises:
        InterruptedError: cancelled.
        CRLCError: the settings cannot run here (e.g. the quick preset's weights are
            missing).
    """
    import torch

    control = control or JobControl()
    reporter = reporter or NullReporter()
    dev = torch.device(device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    timer = _Timer(clock, control, sync)
    generator = torch.Generator().manual_seed(0)
    if _is_quick(config):
        return _measure_quick(config, dev, timer, budget_s, reporter, extractor, generator)
    return _measure_pixels(config, dev, timer, budget_s, reporter, generator)


def _save_rate(state: dict[str, Any], timer: _Timer) -> float:
    import io

    import torch

    buffer = io.BytesIO()

    def save(_: int) -> None:
        buffer.seek(0)
        torch.save(state, buffer)

    seconds = timer.once(save, 1)
    return buffer.tell() / seconds


def _measure_pixels(
    config: TrainConfig,
    dev: torch.device,
    timer: _Timer,
    budget_s: float,
    reporter: Reporter,
    generator: torch.Generator,
) -> Calibration:
    import torch

    from crlc_engine.training.trainer import CRLCTrainer

    full = config.batch_size
    size = config.image_size
    reporter.status(f"Measuring training steps of {config.backbone} at {size} px")
    rows = max(full, config.clusters, 2)
    if config.framework == "memorybank" and size <= 64:  # the bank's negatives
        rows = max(rows, min(config.bank_negatives + 1, 4097))
    shape = (rows, size, size, 3)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    trainer = CRLCTrainer(_calibration_config(config, full), images, dev)
    reporter.progress(0.1, 1.0)

    def step(batch: int) -> None:  # a step of any batch size: its images are the first rows
        trainer._step(torch.arange(batch, device=dev))

    step_s, _ = timer.per_item(step, full, budget_s * 0.85)
    reporter.progress(0.9, 1.0)
    return _measured(config, dev, trainer.state_dict(), timer, reporter, step_s, full)


def _measure_quick(
    config: TrainConfig,
    dev: torch.device,
    timer: _Timer,
    budget_s: float,
    reporter: Reporter,
    extractor: FeatureExtractor | None,
    generator: torch.Generator,
) -> Calibration:
    import numpy as np
    import torch

    from crlc_engine.training.feature_trainer import FeatureTrainer, QuickSettings

    reporter.status("Loading the pretrained backbone")
    if extractor is None:
        from crlc_engine.pipeline.quick import quick_extractor

        extractor = quick_extractor(config, dev)
    side = extractor.spec.side
    images = torch.randint(0, 256, (32, side, side, 3), dtype=torch.uint8, generator=generator)
    reporter.progress(0.2, 1.0)
    reporter.status(f"Measuring the backbone's features at {side} px")
    per_image, _ = timer.per_item(
        lambda batch: extractor(images[:batch]), extractor.batch_size, budget_s * 0.4, first=2
    )
    feature_rate = extractor.batch_size / per_image
    reporter.progress(0.6, 1.0)
    reporter.status("Measuring steps of the grouping heads")
    settings = QuickSettings.from_train_config(config)
    rows = max(settings.batch_size, settings.clusters, 2)
    rng = np.random.default_rng(0)
    features = np.abs(rng.normal(size=(rows, extractor.spec.dim))).astype(np.float32)
    k = min(settings.neighbors, rows - 1)
    table = (np.arange(rows)[:, None] + 1 + np.arange(k)[None, :]) % rows
    trainer = FeatureTrainer(settings, features, dev, neighbors=table)
    knn = trainer.neighbors
    assert knn is not None

    def step(batch: int) -> None:  # a step of any batch size: its anchors are the first rows
        trainer._step(torch.arange(batch, device=dev), knn)

    step_s, _ = timer.per_item(step, settings.batch_size, budget_s * 0.5, first=16)
    reporter.progress(0.95, 1.0)
    return _measured(
        config,
        dev,
        trainer.state_dict(),
        timer,
        reporter,
        step_s,
        settings.batch_size,
        feature_rate,
    )


def _measured(
    config: TrainConfig,
    dev: torch.device,
    state: dict[str, Any],
    timer: _Timer,
    reporter: Reporter,
    step_s: float,
    batch: int,
    feature_rate: float | None = None,
) -> Calibration:
    """The calibration of a measurement: its step time, and how fast a checkpoint of
    ``state`` is saved (timed now)."""
    save_rate = _save_rate(state, timer)
    reporter.progress(1.0, 1.0)
    return Calibration(
        key=speed_key(config, dev.type),
        device_kind=dev.type,
        step_s=step_s,
        batch=batch,
        feature_images_per_s=feature_rate,
        save_bytes_per_s=save_rate,
        source="measured",
        created=time.time(),
    )


# ------------------------------------------------------------------------------ the cache
def default_cache_path() -> Path:
    """``<user cache folder>/speeds.json``."""
    import platformdirs

    from crlc_engine.library.runs import APP_NAME

    return Path(platformdirs.user_cache_dir(APP_NAME)) / "speeds.json"


class SpeedCache:
    """Calibrations per computer and configuration, in a small JSON file.

    Each configuration keeps its newest measurement and the speed of its newest finished
    run; :meth:`get` prefers the run's (:data:`RUN_MAX_AGE_S`) over a measurement
    (:data:`MEASURED_MAX_AGE_S`). Reads and writes never raise: an unreadable or unwritable
    file means no cached speeds.

    Args:
        path: The file (default: :func:`default_cache_path`).
        clock: Seconds since the epoch (tests pass a fake clock).
    """

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path if path is not None else default_cache_path()
        self.clock = clock

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, config: TrainConfig, device_kind: str) -> Calibration | None:
        """The speed to estimate ``config`` on ``device_kind`` with, or ``None``."""
        entry = self._read().get(speed_key(config, device_kind))
        if not isinstance(entry, dict):
            return None
        now = self.clock()
        for source, max_age in (("run", RUN_MAX_AGE_S), ("measured", MEASURED_MAX_AGE_S)):
            data = entry.get(source)
            if not isinstance(data, dict):
                continue
            try:
                calibration = Calibration.from_dict(data)
            except (TypeError, ValueError):
                continue
            if calibration.step_s > 0 and now - calibration.created <= max_age:
                return calibration
        return None

    def put(self, calibration: Calibration) -> None:
        """Keep ``calibration`` (replacing the older one of its source and key)."""
        from crlc_engine.core.fileio import atomic_write_json

        data = self._read()
        entry = data.get(calibration.key)
        entry = entry if isinstance(entry, dict) else {}
        entry[calibration.source] = calibration.as_dict()
        data[calibration.key] = entry
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, data)
        except OSError:
            pass

    def measure(
        self,
        config: TrainConfig,
        device_kind: str,
        control: JobControl | None = None,
        **options: Any,
    ) -> Calibration:
        """:func:`measure_speed` on ``device_kind``, kept in the cache (call it off the GUI
        thread). ``options`` go to :func:`measure_speed`."""
        calibration = measure_speed(config, device_kind, control, **options)
        self.put(calibration)
        return calibration


def run_calibration(run: RunDir) -> Calibration | None:
    """The speed a completed end-to-end run really had (its ``status.json``: training
    images per second, per-epoch work and checkpoints included; the quick preset's feature
    speed), or ``None``. A refine run's speed is given without its labelled images."""
    try:
        stored = run.read_config()
        config = TrainConfig.from_dict(stored["train"])
    except (OSError, ValueError, KeyError, TypeError, CRLCError):
        return None
    status = run.read_status()
    rate = status.get("samples_per_s")
    images = int(stored.get("images") or 0)
    if status.get("state") != "completed" or not rate or rate <= 0 or images < 2:
        return None
    if config.stage != "end_to_end":  # a stage's steps cost another share of a step
        return None
    kind = str(stored.get("device") or "cpu").split(":", 1)[0]
    if _is_quick(config):
        batch = _quick_plan(config, images)[0]
    else:
        batch = max(1, min(config.batch_size, images))
    computed = int(status.get("features_computed") or 0)
    feature_seconds = float(status.get("features_s") or 0.0)
    feature_rate = computed / feature_seconds if computed >= 32 and feature_seconds > 0 else None
    return Calibration(
        key=speed_key(config, kind),
        device_kind=kind,
        step_s=batch / float(rate) / _labelled_factor(config),  # a refine's labelled rows out
        batch=batch,
        feature_images_per_s=feature_rate,
        source="run",
        created=time.time(),
        includes_overhead=True,
    )


def remember_run(run: RunDir, cache: SpeedCache | None = None) -> Calibration | None:
    """Keep the speed of a completed run for later estimates of its configuration (best
    effort: never raises). A quick run that reused cached features keeps the feature speed
    measured before."""
    try:
        calibration = run_calibration(run)
        if calibration is None:
            return None
        cache = cache or SpeedCache()
        if calibration.feature_images_per_s is None:
            before = cache.get(
                TrainConfig.from_dict(run.read_config()["train"]), calibration.device_kind
            )
            if before is not None and before.feature_images_per_s:
                calibration = dataclasses.replace(
                    calibration, feature_images_per_s=before.feature_images_per_s
                )
        cache.put(calibration)
        return calibration
    except Exception:  # an estimate's bookkeeping must never fail a run
        return None


# ------------------------------------------------------------------------------ estimates
@dataclass(frozen=True)
class TrainingEstimate:
    """The cost of a run, before it starts.

    Attributes:
        seconds: Time of the whole job (the budget itself for a time-budget run).
        images_per_s: Training speed (quick preset: the backbone's feature speed).
        epochs: Planned epochs, or the epochs that fit in the time budget.
        budget: Whether the time is a budget (``minutes``) rather than a prediction.
        pixel_cache_bytes: Pixel cache at the training size (quick: plus the feature cache).
        checkpoint_bytes: The checkpoint each run keeps once finished (no optimiser state).
        device_kind: ``cpu``, ``cuda`` or ``mps``.
        images: Number of photos.
        download_bytes: Weights to download first (0: none).
        head_steps: Quick preset: training steps of the heads after the features (``None``
            for training on the pixels, where ``images_per_s`` is the training speed).
        training_checkpoint_bytes: A checkpoint while the run trains (with the optimiser).
        runs: Runs the job makes, each keeping one checkpoint (two-stage: 2).
        basis: ``rough`` (typical speeds), ``measured`` or ``run`` (see :class:`Calibration`).
        parts: Seconds per part of the job (``decode``, ``features``, ``steps``,
            ``epochs``, ``checkpoints``, ``assign``, ``overhead``).
    """

    seconds: float
    images_per_s: float
    epochs: float
    budget: bool
    pixel_cache_bytes: int
    checkpoint_bytes: int
    device_kind: str
    images: int
    download_bytes: int = 0
    head_steps: int | None = None
    training_checkpoint_bytes: int = 0
    runs: int = 1
    basis: str = "rough"
    parts: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def rough(self) -> bool:
        """Whether the time comes from typical speeds, not this computer's."""
        return self.basis == "rough"

    def text(self) -> str:
        """Two lines for a dialog: time, then disk."""
        where = _DEVICE_WORDS.get(self.device_kind, self.device_kind)
        rate = f"~{self.images_per_s:,.0f} photos/s on {where}"
        duration = format_duration(self.seconds, self.device_kind)
        basis = _BASIS_TEXT.get(self.basis, self.basis)
        if self.head_steps is not None and self.parts.get("features", 1.0) <= 0.0:
            head = (
                f"About {duration}: the features of the {self.images:,} photos are computed "
                f"already, then {self.head_steps:,} quick steps of the grouping heads ({basis})."
            )
        elif self.head_steps is not None:
            head = (
                f"About {duration}: pretrained features of {self.images:,} photos, once, at "
                f"{rate}, then {self.head_steps:,} quick steps of the grouping heads ({basis})."
            )
        elif self.budget:
            head = (
                f"Time budget {duration}: about {self.epochs:,.0f} epochs of "
                f"{self.images:,} photos at {rate} ({basis})."
            )
        else:
            head = (
                f"About {duration} of training ({self.images:,} photos × "
                f"{self.epochs:,.0f} epochs at {rate}; {basis})."
            )
        kept = format_bytes(self.checkpoint_bytes)
        training = format_bytes(max(self.training_checkpoint_bytes, self.checkpoint_bytes))
        if self.runs > 1:
            checkpoint = f"{self.runs} checkpoints of {kept}"
        else:
            checkpoint = f"a {kept} checkpoint"
        disk = f"\nDisk: {format_bytes(self.pixel_cache_bytes)} pixel cache + {checkpoint}"
        if self.training_checkpoint_bytes > self.checkpoint_bytes:
            disk += f" ({training} while training)"
        disk += "."
        if self.download_bytes:
            disk += f" First a {format_bytes(self.download_bytes)} download of ImageNet weights."
        hint = ""
        if self.device_kind == "cpu" and not self.budget and self.seconds > SLOW_CPU_S:
            hint = " That is slow: try the cpu preset, fewer epochs or a time budget."
        return head + hint + disk


def images_per_second(backbone: str, stem: str, size: int, device_kind: str) -> float:
    """Typical training speed (images/s) for a backbone, resolved stem, size and device."""
    scale = (_REFERENCE_SIZE / max(1, size)) ** 2
    if device_kind == "cpu":
        rate = CPU_IMAGES_PER_S.get((backbone, stem), CPU_IMAGES_PER_S[("resnet18", "cifar")])
        return rate * scale
    rate = CUDA_RESNET18_IMAGES_PER_S * CUDA_BACKBONE_FACTOR.get(backbone, 1.0) * scale
    if stem == "imagenet":
        rate *= CUDA_IMAGENET_STEM_FACTOR
    if device_kind == "mps":
        rate *= MPS_FACTOR
    return rate


def _decode_seconds(count: int) -> float:
    if count <= 0:
        return 0.0
    cores = _machine()["cores"] or 1
    return DECODE_START_S + count / (DECODE_PER_S * max(1, int(cores) - 1))


def _labelled_factor(config: TrainConfig) -> float:
    """A CRLC-semi step also runs ``labelled_batch`` labelled images (assumed available)."""
    if config.lambda_xent <= 0:
        return 1.0
    return 1.0 + config.labelled_batch / max(1, config.batch_size)


def _save_seconds(bytes_: int, calibration: Calibration | None) -> float:
    rate = (calibration.save_bytes_per_s if calibration else None) or TYPICAL_SAVE_BYTES_PER_S
    return DISK_WRITE_FACTOR * bytes_ / rate


def _saves(epochs: float, every: int) -> int:
    """Checkpoints a run of ``epochs`` writes: every ``every`` epochs before the end, then one."""
    whole = max(0, math.ceil(epochs))
    return max(0, (whole - 1) // max(1, every)) + 1


def _estimate_quick(
    config: TrainConfig,
    count: int,
    device_kind: str,
    calibration: Calibration | None,
    cached_features: int,
    decode_images: int,
) -> TrainingEstimate:
    """The quick preset: features once per photo, then the heads' steps."""
    batch, per_epoch, planned = _quick_plan(config, max(2, count))
    epochs = float(config.epochs or 20)
    new_features = max(0, count - max(0, cached_features))
    size = checkpoint_size(config, max(2, count), planned)
    parts: dict[str, float] = {"decode": _decode_seconds(decode_images)}
    if calibration is None:  # typical speeds (docs/benchmarks.md)
        speed = 1.0 if device_kind == "cpu" else QUICK_GPU_FACTOR
        feature_rate = QUICK_CPU_FEATURES_PER_S * speed * (224.0 / config.image_size) ** 2
        steps = max(QUICK_MIN_STEPS, epochs * max(1, count // max(1, config.batch_size)))
        parts["features"] = new_features / feature_rate
        parts["steps"] = steps * QUICK_CPU_STEP_S / speed * _labelled_factor(config)
        basis = "rough"
    else:
        steps = planned * per_epoch
        feature_rate = calibration.feature_images_per_s or (
            QUICK_CPU_FEATURES_PER_S * (1.0 if device_kind == "cpu" else QUICK_GPU_FACTOR)
        )
        step_s = calibration.step_s * batch / max(1, calibration.batch) * _labelled_factor(config)
        parts["features"] = new_features / feature_rate
        parts["steps"] = steps * step_s
        if not calibration.includes_overhead:
            parts["epochs"] = planned * EPOCH_OVERHEAD_S
            saves = _saves(planned, config.checkpoint_every)
            parts["checkpoints"] = (saves - 1) * _save_seconds(
                size.training_bytes, calibration
            ) + _save_seconds(size.final_bytes, calibration)
        parts["overhead"] = JOB_OVERHEAD_S + QUICK_SETUP_S + count * JOB_PER_IMAGE_S
        basis = calibration.source
    return TrainingEstimate(
        seconds=sum(parts.values()),
        images_per_s=feature_rate,
        epochs=epochs,
        budget=False,
        pixel_cache_bytes=count * config.image_size**2 * 3 + count * QUICK_FEATURE_DIM * 2,
        checkpoint_bytes=size.final_bytes,
        training_checkpoint_bytes=size.training_bytes,
        device_kind=device_kind,
        images=count,
        head_steps=int(steps),
        basis=basis,
        parts=parts,
    )


def estimate_training(
    config: TrainConfig,
    images: int,
    device_kind: str,
    calibration: Calibration | None = None,
    *,
    cached_features: int = 0,
    decode_images: int = 0,
) -> TrainingEstimate:
    """Time and disk a run of ``config`` over ``images`` photos needs on ``device_kind``.

    Args:
        config: The run's settings (a two-stage request counts both runs).
        images: Photos the run trains on.
        device_kind: ``cpu``, ``cuda`` or ``mps``.
        calibration: This computer's speed for ``config`` (:meth:`SpeedCache.get`,
            :func:`measure_speed`); ``None``: typical speeds, marked ``rough``.
        cached_features: Quick preset: photos whose backbone features are cached already
            (a refine of a quick run: all of them).
        decode_images: Photos to read at the training size first (not in the pixel cache).
    """
    count = max(0, int(images))
    if _is_quick(config):
        return _estimate_quick(
            config, count, device_kind, calibration, cached_features, decode_images
        )
    size = config.image_size
    batch = max(1, min(config.batch_size, max(1, count)))
    per_epoch = max(1, count // batch)
    if calibration is None:
        rate = images_per_second(config.backbone, config.resolved_stem(), size, device_kind)
        if config.framework == "memorybank":
            rate /= MEMORYBANK_TIME_FACTOR
    else:
        rate = calibration.batch / calibration.step_s / _labelled_factor(config)
    parts: dict[str, float] = {"decode": _decode_seconds(decode_images)}
    stage1 = float(config.stage1_epochs or config.epochs or 0)
    stage2_cost = FROZEN_STAGE2_FACTOR if config.freeze_backbone else 1.0
    if config.epochs is None and config.minutes is not None:
        seconds = config.minutes * 60.0
        epochs = seconds * rate / max(1, count)
        budget = True
        parts["steps"] = seconds
    else:
        epochs = float(config.epochs or 0)
        work = epochs
        if config.stage == "two_stage":  # stage 1 (features only), then stage 2
            work = stage1 + epochs * stage2_cost
        if calibration is None:
            parts["steps"] = count * work / rate
        else:
            parts["steps"] = work * per_epoch * batch / rate
        if config.stage == "two_stage":
            epochs += stage1
        budget = False
    runs = 2 if config.stage == "two_stage" else 1
    checkpoint = checkpoint_size(config, max(2, count), epochs / runs)
    if calibration is not None and not budget:
        if not calibration.includes_overhead:
            parts["epochs"] = epochs * EPOCH_OVERHEAD_S
            saves = sum(
                _saves(length, config.checkpoint_every)
                for length in ((stage1, epochs - stage1) if runs == 2 else (epochs,))
            )
            parts["checkpoints"] = (saves - runs) * _save_seconds(
                checkpoint.training_bytes, calibration
            ) + runs * _save_seconds(checkpoint.final_bytes, calibration)
        parts["assign"] = count / max(1e-9, rate * ASSIGN_SPEEDUP)
        parts["overhead"] = JOB_OVERHEAD_S + count * JOB_PER_IMAGE_S
    return TrainingEstimate(
        seconds=sum(parts.values()),
        images_per_s=rate,
        epochs=epochs,
        budget=budget,
        pixel_cache_bytes=count * size * size * 3,
        checkpoint_bytes=checkpoint.final_bytes,
        training_checkpoint_bytes=checkpoint.training_bytes,
        device_kind=device_kind,
        images=count,
        download_bytes=_download_bytes(config),
        runs=runs,
        basis="rough" if calibration is None else calibration.source,
        parts=parts,
    )


def _download_bytes(config: TrainConfig) -> int:
    """Bytes of pretrained weights the run must download first (0 when cached or none)."""
    if not config.pretrained:
        return 0
    from crlc_engine.models.weights import WEIGHTS, weights_cached

    spec = WEIGHTS.get(config.backbone)
    if spec is None or weights_cached(config.backbone):
        return 0
    return int(spec.size or 0)
