"""Typed progress events and the reporter protocol of long jobs.

Jobs report through a :class:`Reporter`: free text (:meth:`Reporter.status`), a progress
fraction (:meth:`Reporter.progress`) and typed events (:meth:`Reporter.event`). The CLI
passes a console reporter, the GUI one that re-emits Qt signals, tests a recording mock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class TrainingStarted:
    """Training is about to run its first (or resumed) step."""

    run_id: str
    device: str
    images: int
    batch_size: int
    steps_per_epoch: int
    total_epochs: int | None
    budget_s: float | None
    start_epoch: int


@dataclass(frozen=True)
class EpochEnded:
    """One epoch (or the partial last one under a time budget) finished.

    Attributes:
        epoch: 1-based number of the epoch that ended.
        losses: Mean of each loss part over the epoch's steps (``total``, ``feature``,
            ``cluster``, ``probability_contrastive``, ``entropy``, ``guard``).
        head_losses: Mean L_cluster of each sub-head over the epoch, length H.
        chosen_head: The sub-head with the lowest L_cluster so far (0-based).
        cluster_sizes: Training-batch argmax counts of the chosen head, length C.
        samples_per_s: Images (two views each) per second during this epoch.
        elapsed_s: Training time so far (pauses excluded).
        eta_s: Estimated seconds left, ``None`` when unknown.
        steps: Steps run in this epoch.
    """

    epoch: int
    losses: dict[str, float]
    head_losses: list[float]
    chosen_head: int
    cluster_sizes: list[int]
    samples_per_s: float
    elapsed_s: float
    eta_s: float | None
    steps: int


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint was written atomically."""

    path: str
    epoch: int
    step: int


@dataclass(frozen=True)
class TrainingFinished:
    """Training stopped; ``state`` is ``completed`` or ``cancelled``."""

    state: str
    epochs: int
    elapsed_s: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchReduced:
    """The device ran out of memory: the step was dropped and the training goes on from the
    same place at half the batch.

    Attributes:
        old: The batch that did not fit.
        new: The batch from now on.
        epoch: 0-based epoch of the step that failed.
        step: Its step in that epoch (counted at the old batch).
        device: The device type (``cuda``).
    """

    old: int
    new: int
    epoch: int
    step: int
    device: str

    @property
    def message(self) -> str:
        """One line for the user."""
        return (
            f"Out of {self.device.upper()} memory at a batch of {self.old} images: "
            f"continuing from the same step at a batch of {self.new}"
        )


Event = TrainingStarted | EpochEnded | CheckpointSaved | TrainingFinished | BatchReduced


class Reporter(Protocol):
    """What a long job tells its caller. Implementations must be cheap and never raise."""

    def status(self, text: str) -> None:
        """A human-readable line about what the job is doing."""

    def progress(self, done: float, total: float | None) -> None:
        """Work done so far out of ``total`` (``None`` when the total is unknown)."""

    def event(self, event: Event) -> None:
        """A typed event (see :data:`Event`)."""


class NullReporter:
    """A reporter that ignores everything."""

    def status(self, text: str) -> None:
        """Ignore ``text``."""

    def progress(self, done: float, total: float | None) -> None:
        """Ignore progress."""

    def event(self, event: Event) -> None:
        """Ignore ``event``."""


class RecordingReporter:
    """A reporter that keeps everything it is told (for tests and replays)."""

    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.progresses: list[tuple[float, float | None]] = []
        self.events: list[Event] = []

    def status(self, text: str) -> None:
        """Record ``text``."""
        self.statuses.append(text)

    def progress(self, done: float, total: float | None) -> None:
        """Record progress."""
        self.progresses.append((done, total))

    def event(self, event: Event) -> None:
        """Record ``event``."""
        self.events.append(event)
