"""Training time and speed of one ``fit`` call, shared by the pixel and the feature trainer.

Training time is wall time since ``fit`` started, pauses excluded, so it includes the
per-epoch work around the step loop (the epoch's host sync, the history record and its
event, checkpoints). The speed of an epoch is measured from one epoch close to the next
(:meth:`TrainingClock.lap`), so that work counts too: with a few steps per epoch it can
take longer than the steps themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class TrainingClock:
    """Training time (pauses excluded), steps and per-lap rate of one ``fit`` call.

    Args:
        elapsed_s: Training time before this call (a resumed run's).
        clock: Monotonic seconds (``time.monotonic``; tests pass a fake clock).
    """

    def __init__(self, elapsed_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._before = elapsed_s
        self._started = clock()
        self._paused = 0.0
        self._steps = 0
        self._lap_at = self._started
        self._lap_paused = 0.0
        self._lap_steps = 0

    def paused(self, wait: Callable[[], T]) -> T:
        """Call ``wait`` (a pause point) and leave its duration out of the training time."""
        started = self._clock()
        try:
            return wait()
        finally:
            self._paused += self._clock() - started

    def step(self) -> None:
        """Count one optimiser step."""
        self._steps += 1

    @property
    def seconds(self) -> float:
        """Training time of this call so far (pauses excluded)."""
        return self._clock() - self._started - self._paused

    @property
    def elapsed_s(self) -> float:
        """Training time in total: before this call plus :attr:`seconds`."""
        return self._before + self.seconds

    @property
    def steps(self) -> int:
        """Steps counted in this call."""
        return self._steps

    def steps_per_s(self) -> float:
        """Steps per second over this call so far, per-epoch work included (0 before any)."""
        seconds = self.seconds
        return self._steps / seconds if seconds > 0 and self._steps > 0 else 0.0

    def lap(self) -> tuple[int, float]:
        """Steps and seconds (pauses excluded) since the previous lap, or since the start;
        starts the next lap."""
        now = self._clock()
        seconds = now - self._lap_at - (self._paused - self._lap_paused)
        steps = self._steps - self._lap_steps
        self._lap_at, self._lap_paused, self._lap_steps = now, self._paused, self._steps
        return steps, seconds


__all__ = ["TrainingClock"]
