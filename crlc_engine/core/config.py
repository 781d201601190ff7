"""The resolved settings of a training run.

:class:`TrainConfig` is what a run stores in ``config.json``; it is built from a preset
(:mod:`crlc_engine.pipeline.presets`) plus explicit overrides by :func:`resolve_train_config`.
:class:`LossSettings` declares the CRLC loss settings once: ``TrainConfig``, the quick
method's :class:`~crlc_engine.training.quick_settings.QuickSettings` and the loss functions
(:mod:`crlc_engine.losses`) all use it. The checks more than one settings type makes, and
their messages, are declared once too (:func:`shared_checks`).

Torch-free: the CLI, the presets and the facade import this module.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from crlc_engine.core.errors import InvalidSettingError

#: Names in ``crlc_engine.models.BACKBONES`` (kept here so that settings, presets and the CLI
#: import without torch: the scan's worker processes re-import the CLI module).
BACKBONE_NAMES = ("small", "resnet18", "resnet34", "resnet50", "efficientnet_lite0")

STEMS = ("auto", "cifar", "imagenet")
#: Backbones with ImageNet weights (efficientnet_lite0 is always pretrained).
PRETRAINED_BACKBONES = ("resnet18", "resnet50", "efficientnet_lite0")
CRITIC_NAMES = ("log_dot", "dot", "neg_l2", "neg_js")
FRAMEWORKS = ("simclr", "memorybank")
LR_SCHEDULES = ("constant", "cosine")
#: ``end_to_end``: one run trains everything (CRLC). ``two_stage``: a request that
#: :func:`crlc_engine.pipeline.jobs.train_folder` expands into a ``stage1`` run and a ``stage2``
#: run.
STAGES = ("end_to_end", "two_stage", "stage1", "stage2")
#: ``sgd``: SGD with momentum (no Nesterov). ``adam``: Adam with L2 weight decay (the paper's
#: fine-tuned stage 2); see :func:`crlc_engine.training.optim.make_optimizer`.
OPTIMIZERS = ("sgd", "adam")
#: How the stages of a two-stage request get their optimiser: ``paper`` (each stage the
#: paper's, :data:`PAPER_STAGE_OPTIMIZERS`) or ``run`` (both stages the request's own).
STAGE_OPTIMS = ("paper", "run")
#: How the network computes; ``auto`` picks per device
#: (:mod:`crlc_engine.training.compute_settings`). Precision: ``bfloat16`` is autocast for
#: the network, the losses stay float32 (auto: bfloat16 on CUDA, float32 elsewhere).
PRECISIONS = ("auto", "float32", "bfloat16")
#: Memory layout of the network's weights and input views (auto: channels-last on CUDA,
#: contiguous elsewhere).
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
#: Whether the network's forward runs through ``torch.compile`` (auto: on for CUDA, off
#: elsewhere); a forward that fails to compile runs eagerly instead.
COMPILE_CHOICES = ("auto", "off", "on")
#: How the heads' weights start: ``torch`` (``nn.Linear``'s default, uniform in
#: +-1/sqrt(fan_in), biases too) or ``he_uniform`` (the official code's: uniform in
#: +-sqrt(6 / fan_in), biases zero); see :mod:`crlc_engine.models.heads`.
HEAD_INITS = ("torch", "he_uniform")
#: The longest time budget (a year, in minutes), the largest seed (what every random
#: generator of torch and NumPy accepts) and the most epochs a run may ask for.
MAX_MINUTES = 525_600
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 1_000_000

#: The optimiser settings of two-stage CRLC in the paper (Appdx. A.7), per stage: stage 1
#: (SimCLR pre-training), stage 2 fine-tuning the backbone (its CIFAR/STL setting) and stage 2
#: with a frozen backbone, C-head only (its ImageNet setting). The paper gives no final
#: learning rate for stage 1's cosine decay; it uses "the same settings as SCAN", whose cosine
#: schedule ends at lr x 0.1^3, hence 4e-4. Constant schedules set ``lr_min`` to ``lr``.
#: These values were tuned for batch 512 on a GPU (ResNet-18/50). On 300 generated shape
#: images with the ``cpu`` preset (small CNN, batch 64; two image sets, two seeds each) the
#: fine-tuned stage 2 scored as well as the run's own SGD lr 0.1, the frozen one's lr 5.0 as
#: well on one image set and about 10 ACC points worse on the other.
PAPER_STAGE_OPTIMIZERS: dict[str, dict[str, Any]] = {
    "stage1": {
        "optimizer": "sgd",
        "lr": 0.4,
        "lr_schedule": "cosine",
        "lr_min": 4e-4,
        "momentum": 0.9,
        "weight_decay": 1e-4,
    },
    "stage2": {
        "optimizer": "adam",
        "lr": 1e-4,
        "lr_schedule": "constant",
        "lr_min": 1e-4,
        "weight_decay": 1e-4,
    },
    "stage2_frozen": {
        "optimizer": "sgd",
        "lr": 5.0,
        "lr_schedule": "constant",
        "lr_min": 5.0,
        "momentum": 0.9,
        "weight_decay": 0.0,
    },
}


#: One validation rule: (whether the value is good, the message when it is not).
Check = tuple[bool, str]


def raise_first_problem(checks: Iterable[Check]) -> None:
    """Raise the message of the first failed check.

    Raises:
        InvalidSettingError: a check failed.
    """
    for ok, message in checks:
        if not ok:
            raise InvalidSettingError(message)


def choice_check(what: str, value: str, choices: tuple[str, ...]) -> Check:
    """``value`` is one of ``choices``; the message names ``what`` and lists the choices."""
    return value in choices, f"unknown {what} {value!r}; choose one of {', '.join(choices)}"


def finite_check(settings: Any) -> Check:
    """Every float field of the dataclass ``settings`` is finite (no inf or nan)."""
    not_finite = [
        f"{f.name.replace('_', '-')} {value}"
        for f in dataclasses.fields(settings)
        if isinstance(value := getattr(settings, f.name), float) and not math.isfinite(value)
    ]
    return (
        not not_finite,
        f"number settings must be finite (no inf or nan): {', '.join(not_finite)}",
    )


class SharedFields(Protocol):
    """The fields :class:`TrainConfig` and the quick method's settings both have."""

    @property
    def clusters(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def epochs(self) -> int | None: ...
    @property
    def minutes(self) -> float | None: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def lr_schedule(self) -> str: ...
    @property
    def lr_min(self) -> float: ...
    @property
    def subheads(self) -> int: ...
    @property
    def feature_dim(self) -> int: ...
    @property
    def neighbors(self) -> int: ...
    @property
    def lambda_xent(self) -> float: ...
    @property
    def labelled_batch(self) -> int: ...
    @property
    def checkpoint_every(self) -> int: ...


#: The fewest clusters a run makes.
MIN_CLUSTERS = 2


def clusters_problem(clusters: int) -> str | None:
    """Why ``clusters`` is not a usable number of clusters, or ``None`` (the one rule; the
    CLI and the settings both read it)."""
    if clusters < MIN_CLUSTERS:
        return f"number of clusters must be at least {MIN_CLUSTERS} (got {clusters})"
    return None


def shared_checks(s: SharedFields) -> dict[str, Check]:
    """The checks of the fields in :class:`SharedFields`, by name (one message each)."""
    return {
        "clusters": (clusters_problem(s.clusters) is None, clusters_problem(s.clusters) or ""),
        "batch_size": (s.batch_size >= 2, f"batch size must be at least 2 (got {s.batch_size})"),
        "epochs": (
            s.epochs is None or 1 <= s.epochs <= MAX_EPOCHS,
            f"epochs must be 1 to {MAX_EPOCHS:,} (got {s.epochs})",
        ),
        "minutes": (
            s.minutes is None or 0 < s.minutes <= MAX_MINUTES,
            f"minutes must be more than 0 and at most {MAX_MINUTES:,} (a year); got {s.minutes}",
        ),
        "seed": (
            0 <= s.seed <= MAX_SEED,
            f"seed must be a whole number from 0 to {MAX_SEED} (got {s.seed})",
        ),
        "budget": (s.epochs is not None or s.minutes is not None, "give epochs or minutes"),
        "lr": (s.lr > 0, f"learning rate must be > 0 (got {s.lr})"),
        "weight_decay": (s.weight_decay >= 0, "weight decay must be >= 0"),
        "lr_schedule": (
            s.lr_schedule in LR_SCHEDULES,
            f"lr schedule must be constant or cosine (got {s.lr_schedule!r})",
        ),
        "lr_min": (
            s.lr_schedule != "cosine" or 0 <= s.lr_min <= s.lr,
            f"lr-min must be in [0, lr] for the cosine schedule (got {s.lr_min} with lr {s.lr})",
        ),
        "subheads": (1 <= s.subheads <= 100, f"sub-heads must be 1..100 (got {s.subheads})"),
        "feature_dim": (s.feature_dim >= 2, "feature dim must be >= 2"),
        "neighbors": (s.neighbors >= 1, f"neighbours must be >= 1 (got {s.neighbors})"),
        "lambda_xent": (s.lambda_xent >= 0, f"lambda-xent must be >= 0 (got {s.lambda_xent})"),
        "labelled_batch": (s.labelled_batch >= 1, "labelled batch must be >= 1"),
        "checkpoint_every": (s.checkpoint_every >= 1, "checkpoint-every must be >= 1"),
    }


#: The fields of :class:`LossSettings`.
LOSS_FIELDS = ("lambda_fc", "lambda_ent", "tau", "gamma", "critic", "guard_weight", "guard_bound")


@dataclass(frozen=True, kw_only=True)
class LossSettings:
    """The settings of the CRLC loss: the one place they, their defaults and their checks are
    declared. :class:`TrainConfig` and the quick method's settings extend it (keyword-only
    fields), and the loss functions of :mod:`crlc_engine.losses` take it.

    ``total = lambda_fc * L_FC + mean_h L_cluster,h`` with
    ``L_cluster,h = L_PC,h - lambda_ent * H_h + guard_weight * G_h``
    (:func:`crlc_engine.losses.crlc_loss.combine_loss_parts`).

    Attributes:
        lambda_fc: Weight of the feature contrastive loss L_FC (>= 0; 10 in the paper and
            the official code). 0 disables it (C-head-only ablation).
        lambda_ent: Weight of the marginal entropy (>= 0). 2.0 as in the official runner;
            the paper states 1.0, which reproduces much worse.
        tau: Temperature of the feature contrastive loss (> 0).
        gamma: Probability smoothing before the critic, in ``[0, 1]``.
        critic: Critic of the probability contrastive loss, one of :data:`CRITIC_NAMES`.
        guard_weight: Weight of the logit guard (>= 0).
        guard_bound: Logits are pulled back into [-bound, bound] (> 0).

    Raises:
        InvalidSettingError: a value out of range (a ``ValueError``).
    """

    lambda_fc: float = 10.0
    lambda_ent: float = 2.0
    tau: float = 0.1
    gamma: float = 0.01
    critic: str = "log_dot"
    guard_weight: float = 0.01
    guard_bound: float = 25.0

    def __post_init__(self) -> None:
        raise_first_problem([finite_check(self), *self.loss_checks()])

    def loss_checks(self) -> list[Check]:
        """The checks of the loss fields, in the order their messages are given."""
        return [
            (self.lambda_fc >= 0, f"lambda-fc must be >= 0 (got {self.lambda_fc})"),
            (self.lambda_ent >= 0, f"lambda-ent must be >= 0 (got {self.lambda_ent})"),
            (self.tau > 0, f"tau must be > 0 (got {self.tau})"),
            (0 <= self.gamma <= 1, f"gamma must be in [0, 1] (got {self.gamma})"),
            (
                self.critic in CRITIC_NAMES,
                f"unknown critic {self.critic!r}; choose one of {', '.join(CRITIC_NAMES)}",
            ),
            (self.guard_weight >= 0 and self.guard_bound > 0, "guard weight/bound out of range"),
        ]

    def loss_settings(self, **changes: Any) -> LossSettings:
        """The loss fields alone, as a plain :class:`LossSettings`, with ``changes``."""
        values = {name: getattr(self, name) for name in LOSS_FIELDS}
        return LossSettings(**{**values, **changes})


@dataclass(frozen=True)
class TrainConfig(LossSettings):
    """Every setting of a CRLC run (end-to-end or one stage of two-stage CRLC).

    Attributes:
        clusters: Number of clusters C (>= 2).
        preset: Name of the preset the run started from.
        backbone: Registered backbone name (see ``crlc_engine.models.BACKBONES``).
        pretrained: Start the backbone from ImageNet weights (ResNet-18/50: torchvision weights
            downloaded once into the cache; ``efficientnet_lite0`` is always pretrained, its
            weights come with the ``pretrained`` extra).
        stem: ``cifar`` (3x3 conv stride 1, no max-pool), ``imagenet`` or ``auto`` (CIFAR
            stem for inputs up to 64 px).
        image_size: Side S of the square training images, in pixels.
        batch_size: Images per step B (two views each with the SimCLR framework, one with
            the MemoryBank framework); capped at the data set size.
        epochs: Number of epochs, or ``None`` when a time budget is used.
        minutes: Training time budget in minutes, or ``None``.
        lr: Learning rate of the optimiser (the start of a cosine schedule).
        momentum: SGD momentum (Adam does not use it; its betas are 0.9 and 0.999).
        weight_decay: L2 weight decay on weight matrices and conv kernels only (with Adam
            too: added to the gradient, not decoupled).
        optimizer: ``sgd`` (SGD with momentum, no Nesterov) or ``adam`` (Adam, L2 weight
            decay), see :data:`OPTIMIZERS`.
        lambda_fc, lambda_ent, tau, gamma, critic, guard_weight, guard_bound: The loss
            settings, see :class:`LossSettings` (keyword-only fields, same defaults).
        subheads: Number of clustering sub-heads H.
        feature_dim: Width of the RL-head output z.
        blur: Whether views get a Gaussian blur.
        crop_min_scale: Smallest area fraction of a random resized crop (official: 0.2).
        lambda_xent: Weight of the cross-entropy on labelled images (CRLC-semi; 0: off).
        labelled_batch: Labelled images per step in CRLC-semi (official: 64).
        lr_schedule: ``constant`` (end-to-end CRLC) or ``cosine`` (decay to ``lr_min``,
            CRLC-semi, stage 1 of two-stage CRLC).
        lr_min: Final learning rate of the cosine schedule.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` as requested.
        seed: Seed of every random number generator of the run.
        checkpoint_every: Write a checkpoint every this many epochs (and at the end/cancel).
        framework: How the contrastive losses get their positives and negatives: ``simclr``
            (two views per image, the other rows of the batch are the negatives) or
            ``memorybank`` (one view per image; positive and negatives are rows of a
            memory bank of past outputs, paper Sec. 3.1).
        bank_negatives: MemoryBank: negatives M drawn uniformly from the bank per step
            (capped at N - 1).
        bank_momentum: MemoryBank: alpha of the bank update ``q <- alpha q + (1-alpha) q_new``.
        stage: ``end_to_end`` (CRLC), ``two_stage`` (stage 1 then stage 2, as two runs),
            ``stage1`` (backbone + RL-head with L_FC only) or ``stage2`` (L_cluster with a
            k-nearest-neighbour of each image as its positive, from a stage-1 run).
        stage1_epochs: Two-stage: epochs of stage 1 (``None``: the same budget as stage 2).
        neighbors: Two-stage: neighbours K per image mined after stage 1 (capped at N - 1).
        freeze_backbone: Stage 2: train only the C-head; the backbone (weights and BatchNorm
            statistics) stays exactly as stage 1 left it.
        stage_optim: Two-stage: ``paper`` gives each stage the paper's optimiser, learning
            rate, schedule, momentum and weight decay (:data:`PAPER_STAGE_OPTIMIZERS`;
            :func:`crlc_engine.training.two_stage.stage_configs` writes them into the stage's
            settings); ``run`` gives both stages this config's own values.
        precision: Compute precision of the network (:data:`PRECISIONS`): ``bfloat16``
            autocasts the network's forward (the losses stay float32), ``float32`` does
            not; ``auto`` is bfloat16 on CUDA, float32 elsewhere.
        memory_format: Layout of the network's weights and input views
            (:data:`MEMORY_FORMATS`); ``auto`` is channels-last on CUDA, contiguous elsewhere.
        compile: ``on`` runs the network's forward through ``torch.compile`` (eagerly if
            compiling fails), ``off`` eagerly; ``auto`` is on for CUDA, off elsewhere
            (:data:`COMPILE_CHOICES`).

        head_init: How the RL-head's and the C-head's weights start (:data:`HEAD_INITS`).

    ``precision``, ``memory_format`` and ``compile`` change how the network computes, not
    what it is: a run may be resumed with other values (its checkpoint records the resolved
    ones it was last saved with).
    """

    clusters: int
    preset: str = "custom"
    backbone: str = "small"
    pretrained: bool = False
    stem: str = "auto"
    image_size: int = 32
    batch_size: int = 128
    epochs: int | None = 60
    minutes: float | None = None
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    subheads: int = 10
    feature_dim: int = 128
    blur: bool = False
    crop_min_scale: float = 0.2
    lambda_xent: float = 0.0
    labelled_batch: int = 64
    lr_schedule: str = "constant"
    lr_min: float = 0.001
    device: str = "auto"
    seed: int = 0
    checkpoint_every: int = 10
    framework: str = "simclr"
    bank_negatives: int = 4096
    bank_momentum: float = 0.5
    stage: str = "end_to_end"
    stage1_epochs: int | None = None
    neighbors: int = 50
    freeze_backbone: bool = False
    optimizer: str = "sgd"
    stage_optim: str = "paper"
    precision: str = "auto"
    memory_format: str = "auto"
    compile: str = "auto"
    head_init: str = "torch"

    def __post_init__(self) -> None:
        shared = shared_checks(self)
        raise_first_problem(
            [
                *self._model_checks(shared),
                *self._budget_checks(shared),
                *self._optimizer_checks(shared),
                *self.loss_checks(),
                *self._head_checks(shared),
                *self._framework_checks(shared),
                *self._compute_checks(),
            ]
        )

    def _model_checks(self, shared: dict[str, Check]) -> list[Check]:
        """Clusters, backbone, stem, image size and batch size."""
        return [
            shared["clusters"],
            (
                self.backbone in BACKBONE_NAMES,
                f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONE_NAMES)}",
            ),
            (
                not self.pretrained or self.backbone in PRETRAINED_BACKBONES,
                f"{self.backbone} has no pretrained weights; pretrained works with "
                f"{', '.join(PRETRAINED_BACKBONES)}",
            ),
            (self.stem in STEMS, f"unknown stem {self.stem!r}; choose one of {', '.join(STEMS)}"),
            (
                8 <= self.image_size <= 1024,
                f"image size must be 8..1024 px (got {self.image_size})",
            ),
            shared["batch_size"],
        ]

    def _budget_checks(self, shared: dict[str, Check]) -> list[Check]:
        """Epochs, minutes, seed and finite numbers."""
        return [
            shared["epochs"],
            shared["minutes"],
            shared["seed"],
            finite_check(self),
            shared["budget"],
        ]

    def _optimizer_checks(self, shared: dict[str, Check]) -> list[Check]:
        """Learning rate, optimiser, momentum and weight decay."""
        return [
            shared["lr"],
            (
                self.optimizer in OPTIMIZERS,
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}",
            ),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1) (got {self.momentum})"),
            shared["weight_decay"],
        ]

    def _head_checks(self, shared: dict[str, Check]) -> list[Check]:
        """Sub-heads, crops, CRLC-semi, the schedule, the feature width and checkpoints."""
        return [
            shared["subheads"],
            (
                0 < self.crop_min_scale <= 1,
                f"crop-min-scale must be in (0, 1] (got {self.crop_min_scale})",
            ),
            shared["lambda_xent"],
            shared["labelled_batch"],
            shared["lr_schedule"],
            shared["lr_min"],
            shared["feature_dim"],
            shared["checkpoint_every"],
        ]

    def _framework_checks(self, shared: dict[str, Check]) -> list[Check]:
        """Framework, memory bank, stages and neighbours."""
        return [
            (
                self.framework in FRAMEWORKS,
                f"unknown framework {self.framework!r}; choose one of {', '.join(FRAMEWORKS)}",
            ),
            (
                self.bank_negatives >= 1,
                f"bank negatives must be >= 1 (got {self.bank_negatives})",
            ),
            (
                0 <= self.bank_momentum <= 1,
                f"bank momentum must be in [0, 1] (got {self.bank_momentum})",
            ),
            (
                self.stage in STAGES,
                f"unknown stage {self.stage!r}; choose one of {', '.join(STAGES)}",
            ),
            (
                self.stage1_epochs is None or 1 <= self.stage1_epochs <= MAX_EPOCHS,
                f"stage-1 epochs must be 1 to {MAX_EPOCHS:,} (got {self.stage1_epochs})",
            ),
            shared["neighbors"],
            (
                self.stage_optim in STAGE_OPTIMS,
                f"unknown stage optimiser choice {self.stage_optim!r}; choose one of "
                f"{', '.join(STAGE_OPTIMS)}",
            ),
            (
                not self.freeze_backbone or self.stage in ("two_stage", "stage2"),
                "freezing the backbone only applies to stage 2 of two-stage training",
            ),
        ]

    def _compute_checks(self) -> list[Check]:
        """Precision, memory format, compilation and the heads' initialisation."""
        return [
            choice_check("precision", self.precision, PRECISIONS),
            choice_check("memory format", self.memory_format, MEMORY_FORMATS),
            choice_check("compile setting", self.compile, COMPILE_CHOICES),
            choice_check("head init", self.head_init, HEAD_INITS),
        ]

    def resolved_stem(self) -> str:
        """The stem actually used: ``auto`` picks ``cifar`` for inputs <= 64 px."""
        if self.stem != "auto":
            return self.stem
        return "cifar" if self.image_size <= 64 else "imagenet"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field, in the order of the fields of
        ``config.json`` files written before :class:`LossSettings` had its own type (the
        loss settings after ``weight_decay``)."""
        values = dataclasses.asdict(self)
        own = [name for name in values if name not in LOSS_FIELDS]
        at = own.index("weight_decay") + 1
        return {name: values[name] for name in (*own[:at], *LOSS_FIELDS, *own[at:])}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (forward compatibility).

        Settings saved before ``stage_optim`` existed read as ``run``: those runs used
        their own optimiser for both stages.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values.setdefault("stage_optim", "run")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


#: Steps a run of heads on cached features trains at least (with an epoch count): a small
#: library has few steps per epoch (500 images, batch 256: one), too few to converge. Read
#: by the head settings and by the estimates.
QUICK_MIN_STEPS = 300
#: Steps it trains at most (with an epoch count; 0: no cap): a big library reaches the
#: accuracy of its epochs long before (docs/benchmarks.md, "Heads in seconds").
QUICK_MAX_STEPS = 300


def quick_epochs(epochs: int, per_epoch: int, min_steps: int, max_steps: int) -> int:
    """Epochs of heads on cached features: ``epochs`` lowered to stay within ``max_steps``
    (0: no cap; at least one epoch), then raised to reach ``min_steps``."""
    if max_steps > 0:
        epochs = min(epochs, max(1, max_steps // per_epoch))
    return max(epochs, math.ceil(min_steps / per_epoch))


def check_cluster_count(clusters: int, images: int) -> None:
    """The one check that a run has at least as many usable images as clusters.

    Raises:
        InvalidSettingError: more clusters than images.
    """
    if clusters > images:
        raise InvalidSettingError(
            f"{clusters} clusters requested but the folder(s) hold only {images} usable images"
        )
