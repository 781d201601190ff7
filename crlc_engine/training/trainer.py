"""CRLC trainer (SimCLR or MemoryBank framework; end-to-end or one stage of two-stage CRLC)
with checkpoints, cancel, pause and resume.

The data set lives on the training device as a uint8 tensor [N, S, S, 3]; each step draws
augmented views of a batch on that device
(:class:`~crlc_engine.augment.batch_augment.BatchAugmenter`),
runs the network once on all of them (bf16 autocast and channels-last on CUDA, float32
elsewhere), computes the loss in float32 and takes an optimiser step (SGD or Adam,
``config.optimizer``). Per-epoch statistics are summed on the device, so the step loop never
waits for the GPU; the host syncs once per epoch. Training time and speed include the
per-epoch work around the steps (:mod:`crlc_engine.training.pace`); pauses do not count.

Frameworks (``config.framework``):

* ``simclr``: two views per image; the positive of a view is the other view, the negatives
  are the other rows of the batch (:func:`~crlc_engine.losses.crlc_loss`).
* ``memorybank``: one view per image; positive and negatives are rows of a
  :class:`~crlc_engine.losses.memory_bank.MemoryBank`, updated after every step.

Stages (``config.stage``): ``end_to_end`` trains everything with the CRLC loss; ``stage1``
trains the backbone and the RL-head with L_FC only (the C-head is not run); ``stage2``
trains L_cluster with a neighbour (from :meth:`CRLCTrainer.set_neighbors`) as the positive,
the backbone fine-tuned or frozen (``freeze_backbone``: kept in eval mode, so BatchNorm
statistics do not move either). Parts a stage does not train are left out of the optimiser.

Data order: one permutation per epoch from a CPU generator, ``floor(N / batch)`` steps, the
remainder dropped. Augmentation randomness comes from a generator on the training device.
Both generator states and the position inside the epoch are checkpointed, so a resumed run
continues exactly where it stopped (bit-identical on the CPU).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crlc_engine.augment.batch_augment import AugmentConfig, BatchAugmenter, dataset_mean_std
from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CheckpointError, InvalidSettingError
from crlc_engine.core.events import (
    CheckpointSaved,
    NullReporter,
    Reporter,
    TrainingFinished,
    TrainingStarted,
)
from crlc_engine.losses import (
    CRLCLossConfig,
    CRLCLossOutput,
    crlc_loss,
    feature_contrastive_loss,
)
from crlc_engine.losses.group_cross_entropy import group_cross_entropy
from crlc_engine.losses.memory_bank import MemoryBank, bank_feature_loss, memory_bank_crlc_loss
from crlc_engine.models import CRLCModel
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
from crlc_engine.training.labelled import labelled_masks
from crlc_engine.training.neighbor_positives import (
    check_neighbor_table,
    sample_neighbor_positives,
)
from crlc_engine.training.optim import make_optimizer
from crlc_engine.training.pace import TrainingClock
from crlc_engine.training.two_stage import trainable_parts


@dataclass(frozen=True)
class FitResult:
    """How a call to :meth:`CRLCTrainer.fit` ended.

    Attributes:
        state: ``completed`` or ``cancelled``.
        epochs: Completed epochs in total (including before a resume).
        steps: Optimiser steps in total.
        chosen_head: Sub-head with the lowest mean L_cluster over the last epoch (0-based).
        head_losses: That epoch's mean L_cluster per sub-head.
        elapsed_s: Training time in total: wall time of the ``fit`` calls, pauses excluded,
            per-epoch work (history, events, checkpoints) included.
        samples_per_s: Images (one or two views each, see the framework) per second over
            this call's training time (per-epoch work included).
    """

    state: str
    epochs: int
    steps: int
    chosen_head: int
    head_losses: list[float]
    elapsed_s: float
    samples_per_s: float


def loss_config_of(config: TrainConfig) -> CRLCLossConfig:
    """The loss settings of a training config (stage 2 has no L_FC term)."""
    return CRLCLossConfig(
        lambda_fc=0.0 if config.stage == "stage2" else config.lambda_fc,
        lambda_ent=config.lambda_ent,
        tau=config.tau,
        gamma=config.gamma,
        critic=config.critic,  # type: ignore[arg-type]
        guard_weight=config.guard_weight,
        guard_bound=config.guard_bound,
    )


def _feature_only(feature: Tensor, subheads: int) -> CRLCLossOutput:
    """Stage 1's loss parts: L_FC alone, the clustering parts zero ``[H]``."""
    zeros = torch.zeros(subheads, dtype=feature.dtype, device=feature.device)
    return CRLCLossOutput(feature, feature, zeros, zeros, zeros, zeros)


def _place_data(images: np.ndarray | Tensor, device: torch.device) -> Tensor:
    """Put uint8 [N, S, S, 3] on ``device``; fall back to pinned host memory if it won't fit."""
    data = torch.as_tensor(images)
    if data.dtype != torch.uint8 or data.ndim != 4 or data.shape[-1] != 3:
        raise InvalidSettingError(f"images must be uint8 [N, S, S, 3], got {tuple(data.shape)}")
    if device.type == "cpu":
        return data.contiguous()
    try:
        return data.to(device)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return data.pin_memory()


class CRLCTrainer:
    """Trains a :class:`CRLCModel` on a uint8 image tensor.

    Args:
        config: Resolved settings (``config.image_size`` must equal the images' side).
        images: uint8 [N, S, S, 3] (numpy or torch).
        device: Training device.
        checkpoint_path: Where checkpoints go (``None``: never written).
        history_path: Where one JSON line per epoch is appended (``None``: not written).
        run_id: Shown in events.
        labelled: CRLC-semi: (row indices into ``images`` [L], class targets [L] in
            0..C-1); each step adds ``lambda_xent`` x the cross-entropy of every sub-head on
            augmented views (as many per image as the framework uses) of
            ``labelled_batch`` labelled images drawn uniformly. End-to-end runs only.

    Raises:
        InvalidSettingError: bad data or settings (``stage`` ``two_stage`` is two runs: see
            :func:`crlc_engine.pipeline.jobs.train_folder`).
    """

    def __init__(
        self,
        config: TrainConfig,
        images: np.ndarray | Tensor,
        device: torch.device,
        checkpoint_path: Path | None = None,
        history_path: Path | None = None,
        run_id: str = "",
        labelled: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.config = config
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.history_path = history_path
        self.run_id = run_id
        self.data = _place_data(images, device)
        n, height, width, _ = self.data.shape
        if height != config.image_size or width != config.image_size:
            raise InvalidSettingError(
                f"images are {height}x{width} but the config asks for {config.image_size} px"
            )
        if config.clusters > n:
            raise InvalidSettingError(
                f"{config.clusters} clusters requested but there are only {n} images"
            )
        self.num_images = n
        self.parts = trainable_parts(config)
        self.labelled_rows: Tensor | None = None
        self.labelled_targets: Tensor | None = None
        if labelled is not None and len(labelled[0]) > 0 and config.lambda_xent > 0:
            if config.stage != "end_to_end":
                raise InvalidSettingError("labelled images (CRLC-semi) need end-to-end training")
            self.labelled_rows, self.labelled_targets = labelled_masks(
                labelled, n, config.clusters, device
            )
        self.batch_size = min(config.batch_size, n)
        self.steps_per_epoch = n // self.batch_size
        self.use_amp = device.type == "cuda"
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        torch.manual_seed(config.seed)
        self.model = CRLCModel(
            config.backbone,
            config.resolved_stem(),
            config.clusters,
            config.subheads,
            config.feature_dim,
            pretrained=config.pretrained,
        ).to(device)
        if self.use_amp:
            self.model = self.model.to(memory_format=torch.channels_last)
        for name, part in self.model.named_children():
            part.requires_grad_(name in self.parts)
        self.optimizer = make_optimizer(self.model, config)
        self.loss_config = loss_config_of(config)
        # Pretrained weights expect their own input statistics; otherwise the data set's.
        preset_norm = self.model.backbone.input_normalization
        self._set_normalization(*(preset_norm or dataset_mean_std(self.data)))
        self.order_generator = torch.Generator().manual_seed(config.seed)
        self.augment_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
        self.bank: MemoryBank | None = None
        if config.framework == "memorybank":
            self.bank = MemoryBank(
                n, config.subheads, config.clusters, config.feature_dim, device, config.seed + 2
            )
        self.neighbors: Tensor | None = None
        self.uses_z = config.stage == "stage1" or (
            config.stage == "end_to_end" and config.lambda_fc > 0
        )
        self.uses_logits = config.stage != "stage1"

        # Position and bookkeeping (all checkpointed).
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0
        self.total_steps = 0
        self.elapsed_s = 0.0
        self.permutation: Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self._sum_steps = 0
        self._sums = self._zero_sums()
        #: Monotonic seconds for training time and speed (tests substitute a fake clock).
        self.clock: Callable[[], float] = time.monotonic
        #: Whether the checkpoint written when the training is done keeps the optimiser state
        #: and memory bank (needed only to train on; ``False``: :func:`finished_state`, what
        #: a job does for its runs, which are never resumed once completed).
        self.keep_resume_state = True
        self._loaded_finished = False  # restored from a finished run's checkpoint

    def set_neighbors(self, table: np.ndarray | Tensor) -> None:
        """Stage 2: the kNN table [N, K] (row indices) the positives are drawn from.

        Raises:
            InvalidSettingError: not ``[N, K >= 1]`` rows into this trainer's images.
        """
        knn = torch.as_tensor(table, dtype=torch.long)
        check_neighbor_table(knn, self.num_images)
        self.neighbors = knn.to(self.device)

    def _set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use this per-channel mean/std for the views (and for later assignments)."""
        config = self.config
        self.augment_config = AugmentConfig(
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
            blur=config.blur,
            crop_scale=(config.crop_min_scale, 1.0),
        )
        self.augmenter = BatchAugmenter(self.augment_config, config.image_size)

    # ------------------------------------------------------------------ bookkeeping
    def _zero_sums(self) -> dict[str, Tensor]:
        self._sum_steps = 0
        return zero_epoch_sums(self.config.subheads, self.config.clusters, self.device)

    @property
    def chosen_head(self) -> int:
        """Sub-head with the lowest mean L_cluster over the last full epoch.

        A partial epoch (the end of a time budget) counts only when no full epoch exists.
        Returns 0 before any record.
        """
        return chosen_head_of(self.history)

    def _budget_spent(self) -> bool:
        minutes = self.config.minutes
        return minutes is not None and self.elapsed_s >= minutes * 60.0

    def _training_done(self) -> bool:
        return self._done_at(self.epoch, self.elapsed_s)

    def _done_at(self, epoch: int, elapsed_s: float) -> bool:
        """Whether the training is done after ``epoch`` epochs and ``elapsed_s`` seconds."""
        if self.config.epochs is not None and epoch >= self.config.epochs:
            return True
        return self.config.minutes is not None and elapsed_s >= self.config.minutes * 60.0

    def _eta(self, rate_steps_per_s: float) -> float | None:
        """Seconds left: the time budget's rest, or the remaining steps at this rate
        (per-epoch work included in the rate), whichever ends first."""
        budget = (
            None if self.config.minutes is None else self.config.minutes * 60.0 - self.elapsed_s
        )
        by_epochs = None
        if self.config.epochs is not None and rate_steps_per_s > 0:
            remaining = (
                self.config.epochs - self.epoch
            ) * self.steps_per_epoch - self.step_in_epoch
            by_epochs = remaining / rate_steps_per_s
        options = [v for v in (budget, by_epochs) if v is not None]
        return max(0.0, min(options)) if options else None

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.use_amp:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batch(self, indices: Tensor) -> Tensor:
        if self.data.device == self.device:
            return self.data.index_select(0, indices)
        return self.data.index_select(0, indices.cpu()).to(self.device, non_blocking=True)

    def _learning_rate(self) -> float:
        config = self.config
        if config.lr_schedule == "constant":
            return config.lr
        if config.epochs is not None:
            progress = self.total_steps / max(1, config.epochs * self.steps_per_epoch)
        else:
            progress = self.elapsed_s / max(1e-9, (config.minutes or 0.0) * 60.0)
        progress = min(max(progress, 0.0), 1.0)
        return config.lr_min + 0.5 * (config.lr - config.lr_min) * (
            1 + math.cos(math.pi * progress)
        )

    def _labelled_batch(self) -> tuple[Tensor, Tensor] | None:
        if self.labelled_rows is None or self.labelled_targets is None:
            return None
        count = min(self.config.labelled_batch, int(self.labelled_rows.shape[0]))
        pick = torch.randint(  # drawn on the device: no host sync in the step loop
            0,
            int(self.labelled_rows.shape[0]),
            (count,),
            generator=self.augment_generator,
            device=self.device,
        )
        return self.labelled_rows[pick], self.labelled_targets[pick]

    def _forward(self, views: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """z [V, D] (or ``None``) and logits [H, V, C] (or ``None``) of the views."""
        model = self.model
        with self._autocast():
            if self.config.freeze_backbone:
                with torch.no_grad():
                    features = model.backbone(views)
            else:
                features = model.backbone(views)
            z = model.rl_head(features) if self.uses_z else None
            logits = model.c_head(features) if self.uses_logits else None
        return z, logits

    def _objective(
        self, z: Tensor | None, logits: Tensor | None, indices: Tensor, positives: Tensor
    ) -> CRLCLossOutput:
        """The loss of the batch's anchors (first ``b`` views; SimCLR: the next ``b`` too)."""
        b = indices.shape[0]
        config = self.config
        stage1 = config.stage == "stage1"
        if self.bank is None:
            if stage1:
                assert z is not None
                feature = feature_contrastive_loss(z[:b], z[b : 2 * b], tau=config.tau).loss
                return _feature_only(feature, config.subheads)
            assert logits is not None
            return crlc_loss(
                None if z is None else z[:b],
                None if z is None else z[b : 2 * b],
                logits[:, :b],
                logits[:, b : 2 * b],
                self.loss_config,
            )
        sample = self.bank.sample(indices, positives, config.bank_negatives, self.augment_generator)
        if stage1:
            assert z is not None
            feature = bank_feature_loss(
                z[:b],
                sample.feature_positive,
                sample.feature_negative,
                tau=config.tau,
                excluded=sample.excluded,
            )
            return _feature_only(feature, config.subheads)
        assert logits is not None
        return memory_bank_crlc_loss(
            None if z is None else z[:b], logits[:, :b], sample, self.loss_config
        )

    def _positives(self, indices: Tensor) -> Tensor:
        """Rows of the positives: the images themselves, or (stage 2) drawn neighbours."""
        if self.config.stage != "stage2":
            return indices
        if self.neighbors is None:
            raise InvalidSettingError("stage 2 needs the neighbour table (set_neighbors)")
        return sample_neighbor_positives(self.neighbors, indices, self.augment_generator)

    def _step(self, indices: Tensor) -> None:
        images = self._batch(indices)
        b = images.shape[0]
        positives = self._positives(indices)
        parts = [images]
        if self.bank is None:  # SimCLR: a second view, of the image or of its neighbour
            parts.append(images if self.config.stage != "stage2" else self._batch(positives))
        views_per_image = len(parts)
        labelled = self._labelled_batch()
        if labelled is not None:
            parts += [self._batch(labelled[0])] * views_per_image
        views = torch.cat([self.augmenter(p, self.augment_generator) for p in parts])
        if self.use_amp:
            views = views.contiguous(memory_format=torch.channels_last)
        z, logits = self._forward(views)
        loss = self._objective(z, logits, indices, positives)
        objective = loss.total
        if labelled is not None and logits is not None:
            labelled_logits = logits[:, b * views_per_image :].float()  # [H, L * views, C]
            allowed = labelled[1].repeat(views_per_image * labelled_logits.shape[0], 1)
            xent = group_cross_entropy(labelled_logits.flatten(0, 1), allowed)
            objective = objective + self.config.lambda_xent * xent
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate()
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self._sum_steps += 1
        with torch.no_grad():
            if self.bank is not None:  # paper Eq. 10 with this step's outputs
                self.bank.update(
                    indices,
                    self.config.bank_momentum,
                    probabilities=None if logits is None else logits[:, :b].float().softmax(-1),
                    features=None if z is None else z[:b],
                )
        add_step_sums(self._sums, loss, None if logits is None else logits[:, :b])

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
        """Record the epoch. Its speed runs from the previous epoch close (or the start of
        ``fit``) to now, so the previous close's history write, event and checkpoint count;
        the ETA uses the speed over the whole ``fit`` call so far."""
        steps, seconds = pace.lap()
        record = epoch_record(
            self._sums,
            self._sum_steps,
            LOSS_PARTS,
            self.epoch + 1,
            partial,
            steps * self.batch_size / seconds if seconds > 0 else 0.0,
            self.elapsed_s,
            lr_hint="a lower learning rate (--lr)",
        )
        if not partial:
            self.epoch += 1
            self.step_in_epoch = 0
            self.permutation = None
        eta = self._eta(pace.steps_per_s())
        reporter.event(log_epoch(record, self.history, self.history_path, eta))
        self._sums = self._zero_sums()

    def _train_mode(self) -> None:
        """Training mode, except a frozen backbone (its BatchNorm statistics must not move)."""
        self.model.train()
        if self.config.freeze_backbone:
            self.model.backbone.eval()

    def fit(self, reporter: Reporter | None = None, control: JobControl | None = None) -> FitResult:
        """Train until the epoch count or time budget is reached, or until cancelled.

        Checkpoints are written every ``config.checkpoint_every`` epochs, at the end and on
        cancel (when a checkpoint path is set). Calling ``fit`` again after a cancel, or on
        a trainer restored with :meth:`load`, continues where it stopped.

        Raises:
            TrainingDivergedError: the loss became NaN or infinite.
        """
        reporter = reporter or NullReporter()
        control = control or JobControl()
        reporter.event(
            TrainingStarted(
                run_id=self.run_id,
                device=str(self.device),
                images=self.num_images,
                batch_size=self.batch_size,
                steps_per_epoch=self.steps_per_epoch,
                total_epochs=self.config.epochs,
                budget_s=None if self.config.minutes is None else self.config.minutes * 60.0,
                start_epoch=self.epoch,
            )
        )
        self._train_mode()
        pace = TrainingClock(self.elapsed_s, self.clock)
        state = "completed"
        total_planned = (
            self.config.epochs * self.steps_per_epoch if self.config.epochs is not None else None
        )
        while not self._training_done():
            steps = 0
            stop: str | None = None
            for indices in self._iter_epoch_indices():
                if pace.paused(control.checkpoint_wait):
                    stop = "cancelled"
                    break
                self._step(indices)
                pace.step()
                steps += 1
                self.step_in_epoch += 1
                self.total_steps += 1
                self.elapsed_s = pace.elapsed_s
                if total_planned is not None:
                    reporter.progress(self.total_steps, total_planned)
                else:
                    reporter.progress(self.elapsed_s, (self.config.minutes or 0.0) * 60.0)
                if self._budget_spent():
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
            if self.epoch % self.config.checkpoint_every == 0 and not self._training_done():
                self.save(reporter)
                self.elapsed_s = pace.elapsed_s
        self.elapsed_s = pace.elapsed_s
        call_seconds = pace.seconds
        self.save(reporter)
        samples_per_s = pace.steps * self.batch_size / call_seconds if call_seconds > 0 else 0.0
        head_losses = self.history[-1]["head_losses"] if self.history else []
        reporter.event(TrainingFinished(state, self.epoch, self.elapsed_s))
        return FitResult(
            state=state,
            epochs=self.epoch,
            steps=self.total_steps,
            chosen_head=self.chosen_head,
            head_losses=list(head_losses),
            elapsed_s=self.elapsed_s,
            samples_per_s=samples_per_s,
        )

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly (tensors may be on the device)."""
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_kind": self.config.optimizer,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "total_steps": self.total_steps,
            "elapsed_s": self.elapsed_s,
            "permutation": self.permutation,
            "order_generator": self.order_generator.get_state(),
            "augment_generator": self.augment_generator.get_state(),
            "sums": {k: v.detach().cpu() for k, v in self._sums.items()},
            "sum_steps": self._sum_steps,
            "history": self.history,
            "normalization": {"mean": self.augment_config.mean, "std": self.augment_config.std},
            "num_images": self.num_images,
            "chosen_head": self.chosen_head,
            "memory_bank": None if self.bank is None else self.bank.state_dict(),
        }

    def save(self, reporter: Reporter | None = None) -> None:
        """Write a checkpoint atomically (no-op without a checkpoint path).

        Once the training is done, without :attr:`keep_resume_state` (or when this trainer
        was restored from such a checkpoint) the optimiser state and memory bank are left out
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

    def init_from_parent(
        self, path: Path, parts: Sequence[str] = ("backbone", "rl_head", "c_head")
    ) -> None:
        """Start from a parent run's network weights (not its optimiser or position).

        The C-head may have more clusters than the parent's (CRLC-semi with more classes than
        clusters): the parent's output columns are copied and the new ones keep their fresh
        initialisation.

        Args:
            path: The parent's checkpoint.
            parts: Which parts of the network to copy (stage 2 copies ``backbone`` and
                ``rl_head`` from stage 1; the C-head keeps its fresh initialisation).

        Raises:
            CheckpointError: unreadable, or a different backbone / feature width.
        """
        state = load_checkpoint(path, map_location=self.device)
        parent = TrainConfig.from_dict(state["config"])
        names = ["backbone", "stem", "feature_dim"] + (["subheads"] if "c_head" in parts else [])
        for name in names:
            if getattr(parent, name) != getattr(self.config, name):
                raise CheckpointError(f"parent checkpoint {path} has a different {name}")
        norm = state["normalization"]  # the parent's view statistics, not the new data's
        self._set_normalization(tuple(norm["mean"]), tuple(norm["std"]))
        own = self.model.state_dict()
        weights = {
            key: value for key, value in state["model"].items() if key.split(".", 1)[0] in parts
        }
        for key in ("c_head.weight2", "c_head.bias2"):
            if key not in weights:
                continue
            old, new = weights[key], own[key]
            if old.shape != new.shape:
                if old.shape[-1] > new.shape[-1]:
                    raise CheckpointError("the parent has more clusters than this run")
                grown = new.clone()
                grown[..., : old.shape[-1]] = old
                weights[key] = grown
        self.model.load_state_dict({**own, **weights})

    def load(self, path: Path | None = None) -> None:
        """Restore a checkpoint written by this trainer's settings.

        Raises:
            CheckpointError: unreadable, or written for different data or model settings.
        """
        source = path or self.checkpoint_path
        if source is None:
            raise CheckpointError("no checkpoint path given")
        state = load_checkpoint(source, map_location=self.device)
        saved = TrainConfig.from_dict(state["config"])
        structural = (
            "backbone",
            "stem",
            "image_size",
            "clusters",
            "subheads",
            "feature_dim",
            "framework",
            "stage",
            "freeze_backbone",
        )
        for name in structural:
            if getattr(saved, name) != getattr(self.config, name):
                raise CheckpointError(
                    f"checkpoint {source} was trained with {name}={getattr(saved, name)!r}, "
                    f"not {getattr(self.config, name)!r}"
                )
        if int(state["num_images"]) != self.num_images:
            raise CheckpointError(
                f"checkpoint {source} was trained on {state['num_images']} images, "
                f"the data now has {self.num_images}"
            )
        kind = str(state.get("optimizer_kind", saved.optimizer))  # older checkpoints: SGD
        if kind != self.config.optimizer:
            raise CheckpointError(
                f"checkpoint {source} was trained with the {kind} optimiser, these settings "
                f"use {self.config.optimizer}; resume it with its own settings"
            )
        resumable = has_resume_state(state)
        if not resumable and not self._done_at(int(state["epoch"]), float(state["elapsed_s"])):
            raise CheckpointError(f"checkpoint {source} {FINISHED_NOTE}")
        self.model.load_state_dict(state["model"])
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
        restore_generator(self.augment_generator, state["augment_generator"], source, self.device)
        norm = state["normalization"]
        self._set_normalization(tuple(norm["mean"]), tuple(norm["std"]))
        if self.bank is not None and resumable:
            saved_bank = state.get("memory_bank")
            if saved_bank is None:
                raise CheckpointError(f"checkpoint {source} has no memory bank")
            try:
                self.bank.load_state_dict(saved_bank)
            except ValueError as exc:
                raise CheckpointError(f"checkpoint {source}: {exc}") from exc
        self._sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self._sum_steps = int(state["sum_steps"])
        self.history = list(state["history"])
        if self.history_path is not None:  # drop epochs logged after this checkpoint
            lines = "".join(json.dumps(record) + "\n" for record in self.history)
            self.history_path.write_text(lines, encoding="utf-8")
