"""What a benchmark run measures: the request (:class:`BenchRequest`, what was asked, gaps
allowed), the plan (:class:`BenchPlan`, every value filled in for the device) and the training
settings every measurement builds its network from (:meth:`BenchPlan.train_config`).

Torch-free, like :mod:`crlc_engine.core.config`: the command line reads it before any tensor
exists. The checks of the network settings are :class:`~crlc_engine.core.config.TrainConfig`'s
own (one message per rule); this module only adds the step counts'.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import InvalidSettingError

#: The trainer's speed settings ``crlc bench`` passes on, where this version's
#: :class:`TrainConfig` has them (precision, memory format, torch.compile).
TRAINER_SPEED_FIELDS = ("precision", "memory_format", "compile")
#: The value of a speed setting that lets the trainer choose for the device.
AUTO = "auto"
#: Clusters of the benchmark network (the head's width; no effect on the speed to speak of).
BENCH_CLUSTERS = 10


@dataclass(frozen=True)
class BenchDefaults:
    """The values a device kind gets for what the request leaves out."""

    backbone: str
    stem: str
    size: int
    batch: int
    steps: int
    warmup: int


#: On a CPU: the ``cpu`` preset's network (the small CNN with the stride-2 stem, 32 px, batch
#: 64), few steps (the three measurements finish in a few minutes on 2 cores).
CPU_DEFAULTS = BenchDefaults("small", "imagenet", 32, 64, steps=10, warmup=2)
#: On a GPU: ResNet-18 with the CIFAR stem at 32 px, batch 512 (the paper's CIFAR setting
#: with the backbone of its two-stage runs); more warm-up steps for cudnn and compilation.
GPU_DEFAULTS = BenchDefaults("resnet18", "auto", 32, 512, steps=30, warmup=5)


@dataclass(frozen=True)
class BenchRequest:
    """What the caller asked for; ``None`` means the device's default (:func:`plan_bench`).

    Attributes:
        device: ``auto``, ``cpu``, ``cuda`` (``cuda:N``) or ``mps``.
        backbone: A registered backbone name.
        stem: ``auto``, ``cifar`` or ``imagenet`` (default: the device's with the default
            backbone, ``auto`` with a backbone given).
        size: Side of the square images in pixels.
        batch: Images per step (two views each).
        steps: Timed steps per measurement.
        warmup: Untimed steps before them.
        precision, memory_format, compile: The trainer's speed settings (``auto`` lets it
            choose for the device); passed on only where ``TrainConfig`` has the field.
    """

    device: str = "auto"
    backbone: str | None = None
    stem: str | None = None
    size: int | None = None
    batch: int | None = None
    steps: int | None = None
    warmup: int | None = None
    precision: str = AUTO
    memory_format: str = AUTO
    compile: str = AUTO


@dataclass(frozen=True)
class BenchPlan:
    """A request with every value filled in and checked.

    Attributes:
        device_kind: ``cpu``, ``cuda`` or ``mps`` (the resolved device's type).
        backbone, stem, size, batch: The network and its input.
        steps: Timed steps per measurement (>= 1).
        warmup: Untimed steps before them (>= 1: the first step builds caches).
        trainer_options: The trainer's speed settings to pass on (field name -> value).

    Raises:
        InvalidSettingError: a value out of range (the message of the rule it breaks).
    """

    device_kind: str
    backbone: str
    stem: str
    size: int
    batch: int
    steps: int
    warmup: int
    trainer_options: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InvalidSettingError(f"steps must be at least 1 (got {self.steps})")
        if self.warmup < 1:
            raise InvalidSettingError(f"warm-up steps must be at least 1 (got {self.warmup})")
        self.train_config()  # TrainConfig's own checks of the network settings

    def train_config(self) -> TrainConfig:
        """The settings every measurement builds its network, losses and SGD from (the
        trainer's speed settings included)."""
        base = TrainConfig(
            clusters=BENCH_CLUSTERS,
            preset="bench",
            backbone=self.backbone,
            stem=self.stem,
            image_size=self.size,
            batch_size=self.batch,
            device=self.device_kind,
        )
        return base.replace(**self.trainer_options) if self.trainer_options else base

    @property
    def gpu(self) -> bool:
        """Whether the device is a CUDA GPU (the fast path: bf16 autocast, channels-last)."""
        return self.device_kind == "cuda"


def trainer_speed_options(request: BenchRequest) -> dict[str, str]:
    """The request's trainer speed settings (``precision``, ``memory_format``, ``compile``),
    by ``TrainConfig`` field."""
    return {name: str(getattr(request, name)) for name in TRAINER_SPEED_FIELDS}


def plan_bench(request: BenchRequest, device_kind: str) -> BenchPlan:
    """Fill the request's gaps with the defaults of ``device_kind`` and check the result.

    Raises:
        InvalidSettingError: a value out of range.
    """
    defaults = GPU_DEFAULTS if device_kind == "cuda" else CPU_DEFAULTS
    default_stem = defaults.stem if request.backbone is None else AUTO
    return BenchPlan(
        device_kind=device_kind,
        backbone=request.backbone or defaults.backbone,
        stem=request.stem or default_stem,
        size=defaults.size if request.size is None else request.size,
        batch=defaults.batch if request.batch is None else request.batch,
        steps=defaults.steps if request.steps is None else request.steps,
        warmup=defaults.warmup if request.warmup is None else request.warmup,
        trainer_options=trainer_speed_options(request),
    )
