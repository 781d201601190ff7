"""CRLC heads trained on cached, frozen backbone features (the ``quick`` mode), two-stage style.

Inputs are the backbone features [N, d] standardised per dimension with their own mean and
standard deviation (fed L2-normalised features directly, every sub-head stays at the uniform
saddle point of L_PC: all images in one cluster, see ``CRLC_NOTES.md``). The positive of an
image is a neighbour drawn uniformly from its K nearest neighbours (FAISS inner product on the
L2-normalised raw features, itself excluded), as in stage 2 of two-stage CRLC.

Both losses see the pair (image, sampled neighbour):

* L_PC, marginal entropy and logit guard per sub-head exactly as in end-to-end CRLC
  (:func:`crlc_engine.losses.crlc_loss` with the neighbour in the place of the second view);
* L_FC is the same NT-Xent on the RL-head outputs z of the image and of its neighbour: with
  no pixel views, the neighbour is the "other view" (SCAN's and two-stage CRLC's positive);
  feature dropout (0.2 by default) and optional Gaussian noise on the standardised inputs act
  as a mild feature-space augmentation of both rows.

One permutation per epoch from a CPU generator, ``floor(N / batch)`` steps; neighbour draws
and feature noise come from a second generator. Both states, the position in the epoch, the
standardisation statistics and the neighbour table are checkpointed, so a resumed run
continues exactly (bit-identical on the CPU). Adam, lr 1e-3, batch 256, 20 epochs but at least
300 steps by default (measured on Imagenette features: accuracy is flat from about 150 steps
on; see ``docs/benchmarks.md``).

Note: with the backbone frozen, the RL-head and the C-head share no trainable parameter, so
L_FC trains the RL-head only (the 128-d z stored for similarity search) and cannot change the
clusters: lambda_FC 0 and 1 give bit-identical cluster probabilities.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crlc_engine.core.config import CRITIC_NAMES, TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CheckpointError, InvalidSettingError
from crlc_engine.core.events import (
    CheckpointSaved,
    NullReporter,
    Reporter,
    TrainingFinished,
    TrainingStarted,
)
from crlc_engine.core.neighbors import all_pairs_knn
from crlc_engine.losses import CRLCLossConfig, crlc_loss
from crlc_engine.losses.group_cross_entropy import group_cross_entropy
from crlc_engine.training.checkpoint import (
    FINISHED_NOTE,
    finished_state,
    has_resume_state,
    load_checkpoint,
    restore_generator,
    save_checkpoint,
)
from crlc_engine.training.epoch_stats import (
    LOSS_PARTS,
    add_step_sums,
    chosen_head_of,
    epoch_record,
    log_epoch,
    zero_epoch_sums,
)
from crlc_engine.training.feature_heads import FeatureHeads
from crlc_engine.training.frozen_features import PRECISIONS, resolve_precision
from crlc_engine.training.inference import Predictions
from crlc_engine.training.labelled import labelled_masks
from crlc_engine.training.neighbor_positives import (
    check_neighbor_table,
    sample_neighbor_positives,
)
from crlc_engine.training.optim import make_adam
from crlc_engine.training.pace import TrainingClock
from crlc_engine.training.trainer import FitResult

__all__ = [
    "CHECKPOINT_KIND",
    "FeatureTrainer",
    "QuickSettings",
    "mine_neighbors",
    "standardization",
]

CHECKPOINT_KIND = "feature_heads"
_STD_FLOOR = 1e-6

#: Fields a :class:`~crlc_engine.core.config.TrainConfig` shares with :class:`QuickSettings`.
_SHARED_FIELDS = (
    "clusters",
    "seed",
    "epochs",
    "minutes",
    "batch_size",
    "lambda_fc",
    "lambda_ent",
    "tau",
    "gamma",
    "critic",
    "guard_weight",
    "guard_bound",
    "subheads",
    "feature_dim",
    "neighbors",
    "lambda_xent",
    "labelled_batch",
    "lr_schedule",
    "checkpoint_every",
)


@dataclass(frozen=True)
class QuickSettings:
    """Settings of CRLC head training on cached features.

    Attributes:
        clusters: Clusters C (>= 2).
        seed: Seed of the head initialisation, data order, neighbour draws and noise.
        epochs: Epochs, or ``None`` with a time budget. Raised to reach ``min_steps``.
        minutes: Time budget in minutes, or ``None``.
        batch_size: Anchor images per step (capped at N); each brings one neighbour.
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay on weight matrices only.
        lr_schedule: ``constant`` or ``cosine`` (decay to ``lr_min`` over the budget).
        lr_min: Final learning rate of the cosine schedule.
        lambda_fc: Weight of L_FC between the RL-head outputs of image and neighbour.
        lambda_ent: Weight of the marginal entropy.
        tau: Temperature of L_FC.
        gamma: Probability smoothing before the critic.
        critic: Critic of L_PC.
        guard_weight: Weight of the logit guard.
        guard_bound: Logits are pulled back into [-bound, bound].
        subheads: C-sub-heads H.
        feature_dim: Width of the RL-head output z (stored as the images' features).
        hidden: Hidden width of every head.
        neighbors: Neighbours K per image (capped at N - 1).
        feature_dropout: Dropout probability on the standardised inputs during training.
        feature_noise: Standard deviation of Gaussian noise added to the standardised inputs
            during training.
        lambda_xent: Weight of the cross-entropy on labelled images (CRLC-semi; 0: off).
        labelled_batch: Labelled images per step.
        checkpoint_every: Checkpoint every this many epochs (and at the end / on cancel).
        min_steps: With an epoch count, train at least this many steps: a small library has
            few steps per epoch (500 images, batch 256: one), too few to converge.
        precision: Matrix products of the heads in ``float32`` or ``bfloat16`` (autocast;
            losses and optimiser state stay float32); ``auto`` picks bfloat16 where the
            hardware runs it natively (see
            :func:`crlc_engine.training.frozen_features.resolve_precision`).
    """

    clusters: int
    seed: int = 0
    epochs: int | None = 20
    minutes: float | None = None
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_min: float = 1e-5
    lambda_fc: float = 1.0
    lambda_ent: float = 2.0
    tau: float = 0.1
    gamma: float = 0.01
    critic: str = "log_dot"
    guard_weight: float = 0.01
    guard_bound: float = 25.0
    subheads: int = 10
    feature_dim: int = 128
    hidden: int = 512
    neighbors: int = 20
    feature_dropout: float = 0.2
    feature_noise: float = 0.0
    lambda_xent: float = 0.0
    labelled_batch: int = 64
    checkpoint_every: int = 10
    min_steps: int = 300
    precision: str = "auto"

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.clusters >= 2, f"number of clusters must be at least 2 (got {self.clusters})"),
            (self.epochs is None or self.epochs >= 1, f"epochs must be >= 1 (got {self.epochs})"),
            (self.minutes is None or self.minutes > 0, f"minutes must be > 0 (got {self.minutes})"),
            (self.epochs is not None or self.minutes is not None, "give epochs or minutes"),
            (self.batch_size >= 2, f"batch size must be at least 2 (got {self.batch_size})"),
            (self.lr > 0, f"learning rate must be > 0 (got {self.lr})"),
            (self.weight_decay >= 0, "weight decay must be >= 0"),
            (
                self.lr_schedule in ("constant", "cosine"),
                f"lr schedule must be constant or cosine (got {self.lr_schedule!r})",
            ),
            (0 <= self.lr_min <= self.lr, "lr-min must be in [0, lr]"),
            (self.lambda_fc >= 0 and self.lambda_ent >= 0, "loss weights must be >= 0"),
            (self.tau > 0, f"tau must be > 0 (got {self.tau})"),
            (0 <= self.gamma <= 1, f"gamma must be in [0, 1] (got {self.gamma})"),
            (
                self.critic in CRITIC_NAMES,
                f"unknown critic {self.critic!r}; choose one of {', '.join(CRITIC_NAMES)}",
            ),
            (self.guard_weight >= 0 and self.guard_bound > 0, "guard weight/bound out of range"),
            (1 <= self.subheads <= 100, f"sub-heads must be 1..100 (got {self.subheads})"),
            (self.feature_dim >= 2, "feature dim must be >= 2"),
            (self.hidden >= 1, f"hidden width must be >= 1 (got {self.hidden})"),
            (self.neighbors >= 1, f"neighbours must be >= 1 (got {self.neighbors})"),
            (0 <= self.feature_dropout < 1, "feature dropout must be in [0, 1)"),
            (self.feature_noise >= 0, "feature noise must be >= 0"),
            (self.lambda_xent >= 0, f"lambda-xent must be >= 0 (got {self.lambda_xent})"),
            (self.labelled_batch >= 1, "labelled batch must be >= 1"),
            (self.checkpoint_every >= 1, "checkpoint-every must be >= 1"),
            (self.min_steps >= 0, f"min steps must be >= 0 (got {self.min_steps})"),
            (
                self.precision in PRECISIONS,
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidSettingError(message)

    @classmethod
    def from_train_config(cls, config: TrainConfig, **overrides: Any) -> QuickSettings:
        """Quick settings from a run's :class:`TrainConfig` (plus explicit ``overrides``).

        Shared fields are copied. ``TrainConfig.lr`` / ``weight_decay`` are SGD values unless
        the config names ``optimizer="adam"``: only then are they used; the Adam defaults
        here apply otherwise. A cosine schedule keeps the config's ratio
        ``lr_min / lr``. ``head_hidden``, ``feature_dropout`` and ``feature_noise`` are read
        when the config has them.
        """
        values: dict[str, Any] = {name: getattr(config, name) for name in _SHARED_FIELDS}
        if getattr(config, "optimizer", "sgd") == "adam":
            values["lr"] = config.lr
            values["weight_decay"] = config.weight_decay
        for source, target in (
            ("head_hidden", "hidden"),
            ("feature_dropout", "feature_dropout"),
            ("feature_noise", "feature_noise"),
        ):
            value = getattr(config, source, None)
            if value is not None:
                values[target] = value
        values.update(overrides)
        if values["lr_schedule"] == "cosine" and "lr_min" not in overrides:
            lr = float(values.get("lr", cls.lr))
            values["lr_min"] = lr * config.lr_min / config.lr
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)

    def loss_config(self) -> CRLCLossConfig:
        """The CRLC loss settings."""
        return CRLCLossConfig(
            lambda_fc=self.lambda_fc,
            lambda_ent=self.lambda_ent,
            tau=self.tau,
            gamma=self.gamma,
            critic=self.critic,  # type: ignore[arg-type]
            guard_weight=self.guard_weight,
            guard_bound=self.guard_bound,
        )


def standardization(features: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation (population, floored at 1e-6) of [N, d]."""
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False).clamp_min(_STD_FLOOR)
    return mean, std


def mine_neighbors(features: np.ndarray, k: int, threads: int | None = None) -> np.ndarray:
    """The K nearest other images of every image: int64 [N, min(K, N - 1)].

    Cosine similarity (inner product of L2-normalised rows) with FAISS, exact up to
    :data:`crlc_engine.core.neighbors.EXACT_MAX` images, HNSW above. A row of zeros (possible after
    the backbone's final ReLU, e.g. for a blank image) has no direction: it is searched as the
    all-ones direction, i.e. next to the images whose features are most evenly spread.
    """
    x = np.array(features, dtype=np.float32)
    x[~np.any(x != 0, axis=1)] = 1.0
    table: np.ndarray = all_pairs_knn(x, k=k, threads=threads).ids
    return table.astype(np.int64)


class FeatureTrainer:
    """Trains :class:`FeatureHeads` on cached features with kNN positives.

    Args:
        settings: Head-training settings.
        features: Raw backbone features [N, d] (float32, numpy or torch).
        device: Training device.
        checkpoint_path: Where checkpoints go (``None``: never written).
        history_path: Where one JSON line per epoch is appended (``None``: not written).
        run_id: Shown in events.
        labelled: CRLC-semi: (rows [L], targets [L] in 0..C-1); each step adds
            ``lambda_xent`` x the cross-entropy of every sub-head on ``labelled_batch``
            labelled rows drawn uniformly.
        neighbors: A ready neighbour table [N, K'] (else mined when training starts).
        extra_state: Stored with every checkpoint (e.g. the run's settings, the feature spec).
    """

    def __init__(
        self,
        settings: QuickSettings,
        features: np.ndarray | Tensor,
        device: torch.device | None = None,
        checkpoint_path: Path | None = None,
        history_path: Path | None = None,
        run_id: str = "",
        labelled: tuple[np.ndarray, np.ndarray] | None = None,
        neighbors: np.ndarray | None = None,
        extra_state: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.device = device or torch.device("cpu")
        self.checkpoint_path = checkpoint_path
        self.history_path = history_path
        self.run_id = run_id
        self.extra_state = dict(extra_state or {})
        raw = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if raw.dim() != 2 or raw.shape[0] < 2:
            raise InvalidSettingError(f"features must be [N >= 2, d], got {list(raw.shape)}")
        if not bool(torch.isfinite(raw).all()):
            raise InvalidSettingError("the features contain NaN or infinite values")
        n, d = raw.shape
        if settings.clusters > n:
            raise InvalidSettingError(
                f"{settings.clusters} clusters requested but there are only {n} images"
            )
        self.raw = raw
        self.num_images = n
        self.in_dim = d
        self.mean, self.std = standardization(raw)
        self.inputs = self._standardize(raw)
        self.neighbors: Tensor | None = None
        if neighbors is not None:
            self.set_neighbors(neighbors)
        self.labelled_rows: Tensor | None = None
        self.labelled_targets: Tensor | None = None
        if labelled is not None and len(labelled[0]) > 0 and settings.lambda_xent > 0:
            self.labelled_rows, self.labelled_targets = labelled_masks(
                labelled, n, settings.clusters, self.device
            )
        self.autocast = resolve_precision(settings.precision, self.device) == "bfloat16"
        self.batch_size = min(settings.batch_size, n)
        self.steps_per_epoch = n // self.batch_size

        torch.manual_seed(settings.seed)
        self.heads = FeatureHeads(
            d, settings.hidden, settings.clusters, settings.subheads, settings.feature_dim
        ).to(self.device)
        self.optimizer = make_adam(self.heads, settings.lr, settings.weight_decay)
        self.loss_config = settings.loss_config()
        self.order_generator = torch.Generator().manual_seed(settings.seed)
        self.sample_generator = torch.Generator(device=self.device).manual_seed(settings.seed + 1)

        self.epoch = 0
        self.step_in_epoch = 0
        self.total_steps = 0
        self.elapsed_s = 0.0
        self.permutation: Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self._sum_steps = 0
        self._sums = self._zero_sums()
        #: Monotonic seconds for training time and speed (tests substitute a fake clock).
        self.clock: Callable[[], float] = time.monotonic
        #: Whether the checkpoint written when the training is done keeps the Adam state
        #: (needed only to train on; ``False``: :func:`finished_state`, 29 MB instead of
        #: 88 MB with the quick preset's heads; what a quick run does once it completes).
        self.keep_resume_state = True
        self._loaded_finished = False  # restored from a finished run's checkpoint

    # ------------------------------------------------------------------ data
    def _standardize(self, raw: Tensor) -> Tensor:
        return ((raw - self.mean) / self.std).to(self.device)

    def set_standardization(self, mean: Tensor, std: Tensor) -> None:
        """Use these statistics (e.g. a parent run's) instead of the features' own."""
        if mean.shape != (self.in_dim,) or std.shape != (self.in_dim,):
            raise CheckpointError(
                f"standardisation statistics are for {list(mean.shape)}-d features, "
                f"not {self.in_dim}-d"
            )
        self.mean, self.std = mean.float().cpu(), std.float().cpu()
        self.inputs = self._standardize(self.raw)

    def set_neighbors(self, table: np.ndarray | Tensor) -> None:
        """Use this neighbour table [N, K'] of row indices."""
        knn = torch.as_tensor(np.asarray(table), dtype=torch.long)
        check_neighbor_table(knn, self.num_images)
        self.neighbors = knn.to(self.device)

    def _ensure_neighbors(self, reporter: Reporter) -> Tensor:
        if self.neighbors is None:
            reporter.status(
                f"Finding the {min(self.settings.neighbors, self.num_images - 1)} nearest "
                f"neighbours of {self.num_images} images"
            )
            table = mine_neighbors(
                self.raw.numpy(), self.settings.neighbors, threads=torch.get_num_threads()
            )
            self.set_neighbors(table)
        assert self.neighbors is not None
        return self.neighbors

    # ------------------------------------------------------------------ bookkeeping
    def _zero_sums(self) -> dict[str, Tensor]:
        self._sum_steps = 0
        return zero_epoch_sums(
            self.settings.subheads, self.settings.clusters, self.device, extra=("xent",)
        )

    @property
    def chosen_head(self) -> int:
        """Sub-head with the lowest mean L_cluster over the last full epoch (0 before any)."""
        return chosen_head_of(self.history)

    @property
    def target_epochs(self) -> int | None:
        """Epochs to train: ``epochs``, raised to reach ``min_steps`` (``None``: time budget)."""
        epochs = self.settings.epochs
        if epochs is None:
            return None
        return max(epochs, math.ceil(self.settings.min_steps / self.steps_per_epoch))

    def _training_done(self) -> bool:
        return self._done_at(self.epoch, self.elapsed_s)

    def _done_at(self, epoch: int, elapsed_s: float) -> bool:
        """Whether the training is done after ``epoch`` epochs and ``elapsed_s`` seconds."""
        settings = self.settings
        target = self.target_epochs
        if target is not None and epoch >= target:
            return True
        return settings.minutes is not None and elapsed_s >= settings.minutes * 60.0

    def _eta(self, steps_per_s: float) -> float | None:
        settings = self.settings
        options: list[float] = []
        if settings.minutes is not None:
            options.append(settings.minutes * 60.0 - self.elapsed_s)
        target = self.target_epochs
        if target is not None and steps_per_s > 0:
            remaining = (target - self.epoch) * self.steps_per_epoch - self.step_in_epoch
            options.append(remaining / steps_per_s)
        return max(0.0, min(options)) if options else None

    def _learning_rate(self) -> float:
        settings = self.settings
        if settings.lr_schedule == "constant":
            return settings.lr
        target = self.target_epochs
        if target is not None:
            progress = self.total_steps / max(1, target * self.steps_per_epoch)
        else:
            progress = self.elapsed_s / max(1e-9, (settings.minutes or 0.0) * 60.0)
        progress = min(max(progress, 0.0), 1.0)
        return settings.lr_min + 0.5 * (settings.lr - settings.lr_min) * (
            1 + math.cos(math.pi * progress)
        )

    # ------------------------------------------------------------------ one step
    def _view(self, x: Tensor) -> Tensor:
        """Feature-space augmentation of standardised rows [B, d] (identity by default)."""
        settings = self.settings
        if settings.feature_dropout > 0:
            keep = 1.0 - settings.feature_dropout
            mask = torch.rand(x.shape, generator=self.sample_generator, device=x.device) < keep
            x = x * mask / keep
        if settings.feature_noise > 0:
            noise = torch.randn(x.shape, generator=self.sample_generator, device=x.device)
            x = x + settings.feature_noise * noise
        return x

    def _labelled_batch(self) -> tuple[Tensor, Tensor] | None:
        if self.labelled_rows is None or self.labelled_targets is None:
            return None
        count = min(self.settings.labelled_batch, int(self.labelled_rows.shape[0]))
        pick = torch.randint(
            0,
            int(self.labelled_rows.shape[0]),
            (count,),
            generator=self.sample_generator,
            device=self.device,
        )
        return self.labelled_rows[pick], self.labelled_targets[pick]

    def _step(self, indices: Tensor, knn: Tensor) -> None:
        b = indices.shape[0]
        positives = sample_neighbor_positives(knn, indices, self.sample_generator)
        parts = [self._view(self.inputs[indices]), self._view(self.inputs[positives])]
        labelled = self._labelled_batch()
        if labelled is not None:
            parts.append(self._view(self.inputs[labelled[0]]))
        with_z = self.loss_config.lambda_fc > 0
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = self.heads(torch.cat(parts), with_z=with_z)
        z = out.z
        loss = crlc_loss(
            None if z is None else z[:b],
            None if z is None else z[b : 2 * b],
            out.logits[:, :b],
            out.logits[:, b : 2 * b],
            self.loss_config,
        )
        objective = loss.total
        xent = torch.zeros((), device=self.device)
        if labelled is not None:
            logits = out.logits[:, 2 * b :].float()  # [H, L, C]
            xent = group_cross_entropy(logits.flatten(0, 1), labelled[1].repeat(logits.shape[0], 1))
            objective = objective + self.settings.lambda_xent * xent
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate()
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self._sum_steps += 1
        add_step_sums(self._sums, loss, out.logits[:, :b], {"xent": xent})

    # ------------------------------------------------------------------ epochs
    def _iter_epoch_indices(self) -> Iterator[Tensor]:
        if self.permutation is None:
            self.permutation = torch.randperm(self.num_images, generator=self.order_generator)
        on_device = self.permutation.to(self.device)
        b = self.batch_size
        while self.step_in_epoch < self.steps_per_epoch:
            start = self.step_in_epoch * b
            yield on_device[start : start + b]

    def _close_epoch(self, pace: TrainingClock, reporter: Reporter, partial: bool) -> None:
        """Record the epoch: its speed from the previous close (or the start of ``fit``) to
        now, per-epoch work included; the ETA at the speed of the whole ``fit`` call."""
        steps, seconds = pace.lap()
        record = epoch_record(
            self._sums,
            self._sum_steps,
            (*LOSS_PARTS, "xent"),
            self.epoch + 1,
            partial,
            steps * self.batch_size / seconds if seconds > 0 else 0.0,
            self.elapsed_s,
        )
        if not partial:
            self.epoch += 1
            self.step_in_epoch = 0
            self.permutation = None
        eta = self._eta(pace.steps_per_s())
        reporter.event(log_epoch(record, self.history, self.history_path, eta))
        self._sums = self._zero_sums()

    def fit(self, reporter: Reporter | None = None, control: JobControl | None = None) -> FitResult:
        """Train until the epoch count or time budget is reached, or until cancelled.

        Checkpoints every ``checkpoint_every`` epochs, at the end and on cancel (when a path
        is set). Calling ``fit`` again after a cancel, or after :meth:`load`, continues.

        Raises:
            TrainingDivergedError: the loss became NaN or infinite.
        """
        reporter = reporter or NullReporter()
        control = control or JobControl()
        knn = self._ensure_neighbors(reporter)
        settings = self.settings
        if self.target_epochs is not None and self.target_epochs != settings.epochs:
            reporter.status(
                f"{settings.epochs} epochs asked for, but the grouping heads train for at "
                f"least {settings.min_steps} steps and {self.num_images} images make "
                f"{self.steps_per_epoch} step(s) per epoch: training {self.target_epochs} "
                "epochs instead"
            )
        reporter.event(
            TrainingStarted(
                run_id=self.run_id,
                device=str(self.device),
                images=self.num_images,
                batch_size=self.batch_size,
                steps_per_epoch=self.steps_per_epoch,
                total_epochs=self.target_epochs,
                budget_s=None if settings.minutes is None else settings.minutes * 60.0,
                start_epoch=self.epoch,
            )
        )
        self.heads.train()
        target = self.target_epochs
        planned = None if target is None else target * self.steps_per_epoch
        pace = TrainingClock(self.elapsed_s, self.clock)
        state = "completed"
        while not self._training_done():
            steps = 0
            stop: str | None = None
            for indices in self._iter_epoch_indices():
                if pace.paused(control.checkpoint_wait):
                    stop = "cancelled"
                    break
                self._step(indices, knn)
                pace.step()
                steps += 1
                self.step_in_epoch += 1
                self.total_steps += 1
                self.elapsed_s = pace.elapsed_s
                if planned is not None:
                    reporter.progress(self.total_steps, planned)
                else:
                    reporter.progress(self.elapsed_s, (settings.minutes or 0.0) * 60.0)
                if settings.minutes is not None and self.elapsed_s >= settings.minutes * 60.0:
                    stop = "budget"
                    break
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.elapsed_s = pace.elapsed_s
            finished_epoch = self.step_in_epoch >= self.steps_per_epoch
            if steps > 0 and (finished_epoch or stop == "budget"):
                self._close_epoch(pace, reporter, partial=not finished_epoch)
            if stop == "cancelled":
                state = "cancelled"
                break
            if stop == "budget":
                break
            if self.epoch % settings.checkpoint_every == 0 and not self._training_done():
                self.save(reporter)
                self.elapsed_s = pace.elapsed_s
        self.elapsed_s = pace.elapsed_s
        call_seconds = pace.seconds
        self.save(reporter)
        reporter.event(TrainingFinished(state, self.epoch, self.elapsed_s))
        return FitResult(
            state=state,
            epochs=self.epoch,
            steps=self.total_steps,
            chosen_head=self.chosen_head,
            head_losses=list(self.history[-1]["head_losses"]) if self.history else [],
            elapsed_s=self.elapsed_s,
            samples_per_s=pace.steps * self.batch_size / call_seconds if call_seconds > 0 else 0.0,
        )

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def predict(
        self, features: np.ndarray | Tensor | None = None, batch_size: int = 4096
    ) -> Predictions:
        """Probabilities of every sub-head [H, N, C] and z [N, feature_dim] (no augmentation).

        Args:
            features: Raw features [M, d] to assign (default: the training features), put
                through this trainer's standardisation.
            batch_size: Rows per forward pass.
        """
        inputs = (
            self.inputs
            if features is None
            else self._standardize(torch.as_tensor(np.asarray(features, dtype=np.float32)))
        )
        self.heads.eval()
        probs: list[Tensor] = []
        feats: list[Tensor] = []
        for start in range(0, inputs.shape[0], batch_size):
            out = self.heads(inputs[start : start + batch_size])
            assert out.z is not None
            probs.append(torch.softmax(out.logits.float(), dim=-1).cpu())
            feats.append(out.z.cpu())
        self.heads.train()
        return Predictions(
            probabilities=torch.cat(probs, dim=1).numpy(),
            features=torch.cat(feats, dim=0).numpy(),
        )

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly or to assign new features."""
        return {
            **self.extra_state,
            "kind": CHECKPOINT_KIND,
            "settings": self.settings.as_dict(),
            "in_dim": self.in_dim,
            "heads": self.heads.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "standardization": {"mean": self.mean.clone(), "std": self.std.clone()},
            "neighbors": None if self.neighbors is None else self.neighbors.cpu().int(),
            "knn": {
                "k": self.settings.neighbors,
                "similarity": "cosine (inner product of L2-normalised raw features)",
            },
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "total_steps": self.total_steps,
            "elapsed_s": self.elapsed_s,
            "permutation": self.permutation,
            "order_generator": self.order_generator.get_state(),
            "sample_generator": self.sample_generator.get_state(),
            "sums": {k: v.detach().cpu() for k, v in self._sums.items()},
            "sum_steps": self._sum_steps,
            "history": self.history,
            "num_images": self.num_images,
            "chosen_head": self.chosen_head,
        }

    def save(self, reporter: Reporter | None = None) -> None:
        """Write a checkpoint atomically (no-op without a checkpoint path).

        Once the training is done, without :attr:`keep_resume_state` (or when this trainer
        was restored from such a checkpoint) the optimiser state is left out
        (:func:`~crlc_engine.training.checkpoint.finished_state`): that is the run's final
        checkpoint, and no step follows it.
        """
        if self.checkpoint_path is None:
            return
        state = self.state_dict()
        dropped = not self.keep_resume_state or self._loaded_finished
        if dropped and self._training_done():
            state = finished_state(state)
        save_checkpoint(self.checkpoint_path, state)
        if reporter is not None:
            reporter.event(
                CheckpointSaved(str(self.checkpoint_path), self.epoch, self.step_in_epoch)
            )

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        """A checkpoint written by a :class:`FeatureTrainer`.

        Raises:
            CheckpointError: unreadable, or not a feature-heads checkpoint.
        """
        state = load_checkpoint(path)
        if state.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"{path} is not a checkpoint of heads on cached features")
        return state

    def _check_structure(self, state: dict[str, Any], source: Path, names: tuple[str, ...]) -> None:
        saved = state["settings"]
        if int(state["in_dim"]) != self.in_dim:
            raise CheckpointError(
                f"checkpoint {source} was trained on {state['in_dim']}-d features, "
                f"not {self.in_dim}-d"
            )
        for name in names:
            if saved[name] != getattr(self.settings, name):
                raise CheckpointError(
                    f"checkpoint {source} was trained with {name}={saved[name]!r}, "
                    f"not {getattr(self.settings, name)!r}"
                )

    def load(self, path: Path | None = None) -> None:
        """Restore a checkpoint of the same settings and data to continue training.

        Raises:
            CheckpointError: unreadable, or written for other data or head settings.
        """
        source = path or self.checkpoint_path
        if source is None:
            raise CheckpointError("no checkpoint path given")
        state = self.read(source)
        self._check_structure(state, source, ("clusters", "subheads", "hidden", "feature_dim"))
        if int(state["num_images"]) != self.num_images:
            raise CheckpointError(
                f"checkpoint {source} was trained on {state['num_images']} images, "
                f"the data now has {self.num_images}"
            )
        resumable = has_resume_state(state)
        if not resumable and not self._done_at(int(state["epoch"]), float(state["elapsed_s"])):
            raise CheckpointError(f"checkpoint {source} {FINISHED_NOTE}")
        norm = state["standardization"]
        self.set_standardization(norm["mean"], norm["std"])
        if state["neighbors"] is not None:
            self.set_neighbors(state["neighbors"])
        self.heads.load_state_dict(state["heads"])
        self._loaded_finished = not resumable
        if resumable:  # a finished run's checkpoint has none: no step follows
            self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.total_steps = int(state["total_steps"])
        self.elapsed_s = float(state["elapsed_s"])
        perm = state["permutation"]
        self.permutation = None if perm is None else perm.cpu()
        self.order_generator.set_state(state["order_generator"].cpu())
        restore_generator(self.sample_generator, state["sample_generator"], source, self.device)
        self._sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self._sum_steps = int(state["sum_steps"])
        self.history = list(state["history"])
        if self.history_path is not None:  # drop epochs logged after this checkpoint
            lines = "".join(json.dumps(record) + "\n" for record in self.history)
            self.history_path.write_text(lines, encoding="utf-8")

    def load_heads(self, path: Path) -> None:
        """Take a checkpoint's trained heads and standardisation only (to assign with them).

        Raises:
            CheckpointError: unreadable, or other head settings.
        """
        state = self.read(path)
        self._check_structure(state, path, ("clusters", "subheads", "hidden", "feature_dim"))
        norm = state["standardization"]
        self.set_standardization(norm["mean"], norm["std"])
        self.heads.load_state_dict(state["heads"])

    def init_from_parent(self, path: Path) -> None:
        """Start from a parent run's heads and standardisation (not its optimiser or position).

        The C-head may have more clusters than the parent's (CRLC-semi with more classes than
        clusters): the parent's output columns are copied, new ones keep their initialisation.

        Raises:
            CheckpointError: unreadable, or different features / head widths.
        """
        state = self.read(path)
        self._check_structure(state, path, ("subheads", "hidden", "feature_dim"))
        norm = state["standardization"]
        self.set_standardization(norm["mean"], norm["std"])
        weights = dict(state["heads"])
        own = self.heads.state_dict()
        for key in ("weight2", "bias2"):
            old, new = weights[key], own[key]
            if old.shape != new.shape:
                if old.shape[-1] > new.shape[-1]:
                    raise CheckpointError("the parent has more clusters than this run")
                grown = new.clone()
                grown[..., : old.shape[-1]] = old
                weights[key] = grown
        self.heads.load_state_dict(weights)
