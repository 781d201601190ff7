"""The training loop every training method shares: :class:`TrainingLoop`.

A method (CRLC on pixels, :class:`~crlc_engine.training.trainer.CRLCTrainer`; heads on
cached features, :class:`~crlc_engine.training.feature_trainer.FeatureTrainer`) supplies its
network, its optimiser, its data source and one step; the loop owns everything around the
steps:

* the budget: an epoch count or a time budget (``minutes``), whichever ends first;
* the data order: one permutation per epoch from a CPU generator seeded with ``seed``,
  ``floor(N / batch)`` steps, the remainder dropped;
* pace (:class:`~crlc_engine.training.pace.TrainingClock`): training time excludes pauses
  and includes the per-epoch work; the ETA and the learning-rate schedule (``constant`` or
  ``cosine`` to ``lr_min`` over the budget);
* per-epoch sums on the device (one host sync per epoch), the epoch close
  (:class:`~crlc_engine.core.events.EpochEnded`, ``history.jsonl``) and the chosen sub-head;
* cancel and pause (:class:`~crlc_engine.core.control.JobControl`) and the events
  :class:`~crlc_engine.core.events.TrainingStarted` / ``TrainingFinished``;
* checkpoints every ``checkpoint_every`` epochs, at the end and on cancel, and an exact
  resume: the position in the epoch, both generators and the sums are checkpointed;
* out of device memory: a step that raises ``torch.OutOfMemoryError`` (CUDA's
  ``torch.cuda.OutOfMemoryError``) is dropped, the batch halved and the training goes on from
  the same position in the epoch (the rows of the failed batch come next, in two halves); the
  reporter is told, and the batch really used is checkpointed, kept on resume and returned
  (:attr:`FitResult.batch_size`, :attr:`FitResult.batch_reductions`).
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from crlc_engine.core.config import SharedFields, check_cluster_count
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CheckpointError
from crlc_engine.core.events import (
    BatchReduced,
    CheckpointSaved,
    NullReporter,
    Reporter,
    TrainingFinished,
    TrainingStarted,
)
from crlc_engine.training.checkpoint import (
    FINISHED_NOTE,
    finished_state,
    has_resume_state,
    restore_generator,
    save_checkpoint,
)
from crlc_engine.training.epoch_stats import (
    LOSS_PARTS,
    chosen_head_of,
    epoch_record,
    log_epoch,
    zero_epoch_sums,
)
from crlc_engine.training.fit_result import FitResult, StepOptimizer
from crlc_engine.training.labelled import labelled_masks, uses_labelled
from crlc_engine.training.neighbor_positives import check_neighbor_table
from crlc_engine.training.out_of_memory import halved_batch
from crlc_engine.training.pace import TrainingClock

__all__ = ["FitResult", "TrainingLoop"]


class TrainingLoop(ABC):
    """The shared training loop; a training method is one subclass.

    A subclass supplies:

    * in ``__init__``, after checking its data: ``super().__init__(settings, num_images,
      device, checkpoint_path, history_path, run_id)`` (the settings have the fields of
      :class:`~crlc_engine.core.config.SharedFields`), then its network and
      :attr:`optimizer`, and ``self._use_labelled(labelled)`` for CRLC-semi;
    * :attr:`network` / :attr:`network_key`: the module that trains and its checkpoint key;
    * :attr:`step_generator` / :attr:`step_generator_key`: the generator of the step's
      randomness (views, neighbour draws, labelled draws) and its checkpoint key;
    * :meth:`_step`: one optimiser step on a batch of row indices: the method's objective,
      then :meth:`_optimizer_step` (scheduled learning rate, backward, step), then its parts
      added to ``self._sums`` (``add_step_sums``);
    * :meth:`_train_mode`, :meth:`state_dict` (its own entries plus :meth:`_loop_state`),
      :meth:`_read_for_resume` and :meth:`_restore_method_state` (what :meth:`load` checks
      and restores beyond the loop's position, network and optimiser);
    * optionally :meth:`_prepare_fit` (work before the first step, e.g. mining neighbours),
      :attr:`target_epochs` (another epoch count than ``epochs``), :attr:`extra_parts`
      (more scalar loss parts summed per epoch) and :attr:`lr_hint`.

    Attributes:
        epoch: Completed epochs.
        step_in_epoch: Steps taken in the current epoch.
        total_steps: Optimiser steps in total.
        elapsed_s: Training time in total (see :class:`TrainingClock`).
        history: One record per closed epoch (:func:`epoch_record`).
        clock: Monotonic seconds for training time and speed (tests substitute a fake).
        keep_resume_state: Whether the checkpoint written when the training is done keeps
            the optimiser state (and a memory bank); needed only to train on. ``False``:
            :func:`~crlc_engine.training.checkpoint.finished_state`, what a job does for its
            runs, which are never resumed once completed.

    Raises:
        InvalidSettingError: more clusters than images.
    """

    #: Scalar loss parts summed per epoch besides :data:`LOSS_PARTS`.
    extra_parts: ClassVar[tuple[str, ...]] = ()
    #: How the divergence message names the learning-rate setting.
    lr_hint: ClassVar[str] = "a lower learning rate"
    #: Checkpoint key of the network's weights.
    network_key: ClassVar[str]
    #: Checkpoint key of the step generator's state.
    step_generator_key: ClassVar[str]

    optimizer: StepOptimizer

    def __init__(
        self,
        settings: SharedFields,
        num_images: int,
        device: torch.device,
        checkpoint_path: Path | None,
        history_path: Path | None,
        run_id: str,
    ) -> None:
        check_cluster_count(settings.clusters, num_images)
        self.loop_settings = settings
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.history_path = history_path
        self.run_id = run_id
        self.num_images = num_images
        self.batch_size = min(settings.batch_size, num_images)
        self.steps_per_epoch = num_images // self.batch_size
        self.batch_reductions: list[dict[str, int]] = []
        self._lap_samples = self._call_samples = 0
        self.order_generator = torch.Generator().manual_seed(settings.seed)
        self.neighbors: Tensor | None = None
        self.labelled_rows: Tensor | None = None
        self.labelled_targets: Tensor | None = None
        # Position and bookkeeping (all checkpointed).
        self.epoch = 0
        self.step_in_epoch = 0
        self.total_steps = 0
        self.elapsed_s = 0.0
        self.permutation: Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self._sum_steps = 0
        self._sums = self._zero_sums()
        self.clock: Callable[[], float] = time.monotonic
        self.keep_resume_state = True
        self._loaded_finished = False  # restored from a finished run's checkpoint

    # ------------------------------------------------------------------ what a method supplies
    @property
    @abstractmethod
    def network(self) -> nn.Module:
        """The module that trains (its weights are checkpointed under :attr:`network_key`)."""

    @property
    @abstractmethod
    def step_generator(self) -> torch.Generator:
        """The generator of the steps' randomness (on the training device)."""

    @abstractmethod
    def _step(self, indices: Tensor) -> None:
        """One optimiser step on the batch of rows ``indices`` [B] (on the device)."""

    @abstractmethod
    def _train_mode(self) -> None:
        """Put the network in training mode (before the first step of ``fit``)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly: the method's entries plus
        :meth:`_loop_state`."""

    @abstractmethod
    def _read_for_resume(self, source: Path) -> dict[str, Any]:
        """Read ``source`` and check that it continues this trainer's settings and data
        (:meth:`_check_num_images` among others).

        Raises:
            CheckpointError: unreadable, or written for other data or settings.
        """

    @abstractmethod
    def _restore_method_state(self, state: dict[str, Any], source: Path, resumable: bool) -> None:
        """Restore what :meth:`load` does not: input statistics, neighbours, a memory bank."""

    def _prepare_fit(self, reporter: Reporter) -> None:
        """Work before :class:`TrainingStarted` (none by default)."""
        return None

    # ------------------------------------------------------------------ data
    def set_neighbors(self, table: np.ndarray | Tensor) -> None:
        """The kNN table [N, K] (row indices) the positives are drawn from.

        Raises:
            InvalidSettingError: not ``[N, K >= 1]`` rows into this trainer's images.
        """
        knn = torch.as_tensor(table, dtype=torch.long)
        check_neighbor_table(knn, self.num_images)
        self.neighbors = knn.to(self.device)

    def _use_labelled(self, labelled: tuple[np.ndarray, np.ndarray] | None) -> None:
        """CRLC-semi: keep the labelled (rows, targets) on the device as allowed-cluster
        masks, when there are any and ``lambda_xent > 0``."""
        settings = self.loop_settings
        if uses_labelled(labelled, settings.lambda_xent):
            assert labelled is not None
            self.labelled_rows, self.labelled_targets = labelled_masks(
                labelled, self.num_images, settings.clusters, self.device
            )

    def _labelled_batch(self) -> tuple[Tensor, Tensor] | None:
        """``labelled_batch`` labelled (rows, allowed masks) drawn uniformly, or ``None``."""
        if self.labelled_rows is None or self.labelled_targets is None:
            return None
        count = min(self.loop_settings.labelled_batch, int(self.labelled_rows.shape[0]))
        pick = torch.randint(  # drawn on the device: no host sync in the step loop
            0,
            int(self.labelled_rows.shape[0]),
            (count,),
            generator=self.step_generator,
            device=self.device,
        )
        return self.labelled_rows[pick], self.labelled_targets[pick]

    def _iter_epoch_indices(self) -> Iterator[Tensor]:
        if self.permutation is None:
            self.permutation = torch.randperm(self.num_images, generator=self.order_generator)
        on_device = self.permutation.to(self.device)
        while self.step_in_epoch < self.steps_per_epoch:  # the batch may shrink on the way
            b = self.batch_size
            start = self.step_in_epoch * b
            yield on_device[start : start + b]

    # ------------------------------------------------------------------ budget and schedule
    @property
    def target_epochs(self) -> int | None:
        """Epochs to train (``None``: a time budget)."""
        return self.loop_settings.epochs

    @property
    def chosen_head(self) -> int:
        """Sub-head with the lowest mean L_cluster over the last full epoch.

        A partial epoch (the end of a time budget) counts only when no full epoch exists.
        Returns 0 before any record.
        """
        return chosen_head_of(self.history)

    def _budget_spent(self) -> bool:
        minutes = self.loop_settings.minutes
        return minutes is not None and self.elapsed_s >= minutes * 60.0

    def _training_done(self) -> bool:
        return self._done_at(self.epoch, self.elapsed_s)

    def _done_at(self, epoch: int, elapsed_s: float) -> bool:
        """Whether the training is done after ``epoch`` epochs and ``elapsed_s`` seconds."""
        target = self.target_epochs
        if target is not None and epoch >= target:
            return True
        minutes = self.loop_settings.minutes
        return minutes is not None and elapsed_s >= minutes * 60.0

    def _eta(self, steps_per_s: float) -> float | None:
        """Seconds left: the time budget's rest, or the remaining steps at this rate
        (per-epoch work included in the rate), whichever ends first."""
        minutes = self.loop_settings.minutes
        options: list[float] = []
        if minutes is not None:
            options.append(minutes * 60.0 - self.elapsed_s)
        target = self.target_epochs
        if target is not None and steps_per_s > 0:
            remaining = (target - self.epoch) * self.steps_per_epoch - self.step_in_epoch
            options.append(remaining / steps_per_s)
        return max(0.0, min(options)) if options else None

    def _learning_rate(self) -> float:
        """The learning rate of the next step: constant, or cosine from ``lr`` to ``lr_min``
        over the steps of the epoch count (or over the time budget)."""
        settings = self.loop_settings
        if settings.lr_schedule == "constant":
            return settings.lr
        target = self.target_epochs
        if target is not None:  # by position, so a halved batch keeps the schedule's place
            done = self.epoch * self.steps_per_epoch + self.step_in_epoch
            progress = done / max(1, target * self.steps_per_epoch)
        else:
            progress = self.elapsed_s / max(1e-9, (settings.minutes or 0.0) * 60.0)
        progress = min(max(progress, 0.0), 1.0)
        return settings.lr_min + 0.5 * (settings.lr - settings.lr_min) * (
            1 + math.cos(math.pi * progress)
        )

    def _optimizer_step(self, objective: Tensor) -> None:
        """Back-propagate ``objective`` and take one optimiser step at the scheduled learning
        rate; counts the step in the epoch's sums."""
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate()
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self._sum_steps += 1

    # ------------------------------------------------------------------ epochs
    def _zero_sums(self) -> dict[str, Tensor]:
        self._sum_steps = 0
        settings = self.loop_settings
        return zero_epoch_sums(
            settings.subheads, settings.clusters, self.device, extra=self.extra_parts
        )

    def _close_epoch(self, pace: TrainingClock, reporter: Reporter, partial: bool) -> None:
        """Record the epoch. Its speed runs from the previous epoch close (or the start of
        ``fit``) to now, so the previous close's history write, event and checkpoint count;
        the ETA uses the speed over the whole ``fit`` call so far."""
        steps, seconds = pace.lap()
        samples, self._lap_samples = self._lap_samples, 0
        record = epoch_record(
            self._sums,
            self._sum_steps,
            (*LOSS_PARTS, *self.extra_parts),
            self.epoch + 1,
            partial,
            samples / seconds if steps > 0 and seconds > 0 else 0.0,
            self.elapsed_s,
            lr_hint=self.lr_hint,
        )
        if not partial:
            self.epoch += 1
            self.step_in_epoch = 0
            self.permutation = None
        eta = self._eta(pace.steps_per_s())
        reporter.event(log_epoch(record, self.history, self.history_path, eta))
        self._sums = self._zero_sums()

    def _train_epoch(
        self, pace: TrainingClock, reporter: Reporter, control: JobControl
    ) -> str | None:
        """Train to the end of the current epoch and close it; returns why it stopped early
        (``cancelled`` or ``budget``), else ``None``."""
        minutes = self.loop_settings.minutes
        target = self.target_epochs
        steps = 0
        stop: str | None = None
        for indices in self._iter_epoch_indices():
            if self._agreed_stop(pace.paused(control.checkpoint_wait)):
                stop = "cancelled"
                break
            generator_state = self.step_generator.get_state()
            updates = self._sum_steps
            try:
                self._step(indices)
            except torch.OutOfMemoryError as exc:
                if self._sum_steps == updates:  # the weights did not move: the rows again
                    self._halve_batch(exc, generator_state, reporter)
                    continue
                self._count_step(pace, indices)  # it failed after its update: it counts
                steps += 1
                self._halve_batch(exc, None, reporter)
                continue
            self._count_step(pace, indices)
            steps += 1
            if target is not None:  # by position: a halved batch keeps the bar's place
                done = self.epoch * self.steps_per_epoch + self.step_in_epoch
                reporter.progress(done, target * self.steps_per_epoch)
            else:
                reporter.progress(self.elapsed_s, (minutes or 0.0) * 60.0)
            if self._agreed_stop(self._budget_spent()):
                stop = "budget"
                break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.elapsed_s = pace.elapsed_s
        finished_epoch = self.step_in_epoch >= self.steps_per_epoch
        if steps > 0 and (finished_epoch or stop == "budget"):
            self._close_epoch(pace, reporter, partial=not finished_epoch)
        return stop

    def _count_step(self, pace: TrainingClock, indices: Tensor) -> None:
        """Count a step taken on the rows ``indices`` [B]."""
        pace.step()
        self._lap_samples += indices.shape[0]
        self._call_samples += indices.shape[0]
        self.step_in_epoch += 1
        self.total_steps += 1
        self.elapsed_s = pace.elapsed_s

    def _agreed_stop(self, stop: bool) -> bool:
        """Whether to stop here; a method trained over several processes makes every rank
        take rank 0's decision (all ranks must stop at the same step)."""
        return stop

    @property
    def can_halve_batch(self) -> bool:
        """Whether running out of device memory may halve the batch (not for one process
        of several: the global batch is theirs together)."""
        return True

    def _halve_batch(
        self, error: BaseException, generator_state: Tensor | None, reporter: Reporter
    ) -> None:
        """Go on at half the batch after a step ran out of device memory.

        A step that failed before its update (``generator_state``: the step generator before
        it) is dropped: its randomness is drawn again and its rows come next, in two halves
        (BatchNorm statistics may hold the failed forward's batch; with an odd batch up to
        half a batch of rows is taken twice). One that failed after its update was counted
        (``None``): the epoch goes on after it.

        Raises:
            OutOfDeviceMemoryError: the batch cannot be halved (:func:`halved_batch`).
        """
        self.optimizer.zero_grad(set_to_none=True)
        if generator_state is not None:
            self.step_generator.set_state(generator_state)
        old = self.batch_size
        new = halved_batch(old, self.device, error, self.can_halve_batch)
        step = self.step_in_epoch
        self.batch_reductions.append({"epoch": self.epoch, "step": step, "from": old, "to": new})
        self._set_batch_size(new)
        self.step_in_epoch = step * old // new
        reporter.event(BatchReduced(old, new, self.epoch, step, self.device.type))

    def _set_batch_size(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.steps_per_epoch = self.num_images // batch_size

    def fit(self, reporter: Reporter | None = None, control: JobControl | None = None) -> FitResult:
        """Train until the epoch count or time budget is reached, or until cancelled.

        Checkpoints are written every ``checkpoint_every`` epochs, at the end and on cancel
        (when a checkpoint path is set). Calling ``fit`` again after a cancel, or on a
        trainer restored with :meth:`load`, continues where it stopped.

        Raises:
            TrainingDivergedError: the loss became NaN or infinite.
        """
        reporter = reporter or NullReporter()
        control = control or JobControl()
        self._prepare_fit(reporter)
        minutes = self.loop_settings.minutes
        reporter.event(
            TrainingStarted(
                run_id=self.run_id,
                device=str(self.device),
                images=self.num_images,
                batch_size=self.batch_size,
                steps_per_epoch=self.steps_per_epoch,
                total_epochs=self.target_epochs,
                budget_s=None if minutes is None else minutes * 60.0,
                start_epoch=self.epoch,
            )
        )
        self._train_mode()
        pace = TrainingClock(self.elapsed_s, self.clock)
        self._lap_samples = self._call_samples = 0  # images stepped (the batch may shrink)
        state = "completed"
        while not self._agreed_stop(self._training_done()):
            stop = self._train_epoch(pace, reporter, control)
            if stop == "cancelled":
                state = "cancelled"
                break
            if stop == "budget":
                break
            every = self.loop_settings.checkpoint_every
            if self.epoch % every == 0 and not self._training_done():
                self.save(reporter)
                self.elapsed_s = pace.elapsed_s
        return self._finish_fit(state, pace, reporter)

    def _finish_fit(self, state: str, pace: TrainingClock, reporter: Reporter) -> FitResult:
        """The final checkpoint, the finished event and the result of a ``fit`` call."""
        self.elapsed_s = pace.elapsed_s
        call_seconds = pace.seconds
        self.save(reporter)
        samples_per_s = self._call_samples / call_seconds if call_seconds > 0 else 0.0
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
            batch_size=self.batch_size,
            batch_reductions=tuple(self.batch_reductions),
        )

    # ------------------------------------------------------------------ persistence
    def _loop_state(self) -> dict[str, Any]:
        """The loop's checkpoint entries: network, optimiser, position, generators, sums."""
        return {
            self.network_key: self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "total_steps": self.total_steps,
            "elapsed_s": self.elapsed_s,
            "permutation": self.permutation,
            "order_generator": self.order_generator.get_state(),
            self.step_generator_key: self.step_generator.get_state(),
            "sums": {k: v.detach().cpu() for k, v in self._sums.items()},
            "sum_steps": self._sum_steps,
            "history": self.history,
            "num_images": self.num_images,
            "chosen_head": self.chosen_head,
            "batch_size": self.batch_size,
            "batch_reductions": list(self.batch_reductions),
        }

    def save(self, reporter: Reporter | None = None) -> None:
        """Write a checkpoint atomically (no-op without a checkpoint path).

        Once the training is done, without :attr:`keep_resume_state` (or when this trainer
        was restored from such a checkpoint) the optimiser state (and a memory bank) is left
        out (:func:`~crlc_engine.training.checkpoint.finished_state`): that is the run's
        final checkpoint, and no step follows it.
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

    def _check_num_images(self, state: dict[str, Any], source: Path) -> None:
        if int(state["num_images"]) != self.num_images:
            raise CheckpointError(
                f"checkpoint {source} was trained on {state['num_images']} images, "
                f"the data now has {self.num_images}"
            )

    def load(self, path: Path | None = None) -> None:
        """Restore a checkpoint of the same settings and data to continue training.

        Raises:
            CheckpointError: unreadable, or written for other data or settings, or the final
                checkpoint of a finished run whose budget this trainer's settings extend.
        """
        source = path or self.checkpoint_path
        if source is None:
            raise CheckpointError("no checkpoint path given")
        state = self._read_for_resume(source)
        resumable = has_resume_state(state)
        if not resumable and not self._done_at(int(state["epoch"]), float(state["elapsed_s"])):
            raise CheckpointError(f"checkpoint {source} {FINISHED_NOTE}")
        self._restore_method_state(state, source, resumable)
        self.network.load_state_dict(state[self.network_key])
        self._loaded_finished = not resumable
        if resumable:  # a finished run's checkpoint has none: no step follows
            self.optimizer.load_state_dict(state["optimizer"])
        self._restore_position(state, source)

    def _restore_position(self, state: dict[str, Any], source: Path) -> None:
        """Position, generators, sums and history of a checkpoint (``history.jsonl`` is cut
        back to it)."""
        if "batch_size" in state:  # the batch really used (halved after running out of memory)
            self._set_batch_size(int(state["batch_size"]))
            self.batch_reductions = [dict(r) for r in state.get("batch_reductions", [])]
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.total_steps = int(state["total_steps"])
        self.elapsed_s = float(state["elapsed_s"])
        perm = state["permutation"]
        self.permutation = None if perm is None else perm.cpu()
        self.order_generator.set_state(state["order_generator"].cpu())
        restore_generator(self.step_generator, state[self.step_generator_key], source, self.device)
        self._sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self._sum_steps = int(state["sum_steps"])
        self.history = list(state["history"])
        if self.history_path is not None:  # drop epochs logged after this checkpoint
            lines = "".join(json.dumps(record) + "\n" for record in self.history)
            self.history_path.write_text(lines, encoding="utf-8")
