"""Timing a measurement's steps: warm-up excluded, the device synchronised, progress and
cancel checked between steps (:class:`StepLoop`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from crlc_engine.core.control import JobControl
from crlc_engine.core.events import Reporter


@dataclass(frozen=True)
class Timing:
    """How long the timed steps of one measurement took.

    Attributes:
        steps: Timed steps (warm-up excluded).
        batch: Images per step.
        seconds: Wall time of the timed steps, the device synchronised at both ends.
    """

    steps: int
    batch: int
    seconds: float

    @property
    def samples_per_s(self) -> float:
        """Images (two views each) per second."""
        return self.steps * self.batch / self.seconds if self.seconds > 0 else 0.0


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished the work queued so far (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass(frozen=True)
class StepLoop:
    """How every measurement runs its steps.

    Attributes:
        warmup: Untimed steps first (compilation, cudnn autotuning, allocator, workers).
        steps: Timed steps.
        batch: Images per step.
        device: The device synchronised before and after the timed steps.
        reporter: Gets a status line per measurement and a progress call per step.
        control: Checked before every step; a cancel stops the measurement.
    """

    warmup: int
    steps: int
    batch: int
    device: torch.device
    reporter: Reporter
    control: JobControl

    def time(self, label: str, step: Callable[[], None]) -> Timing:
        """Run ``step`` ``warmup + steps`` times and time the last ``steps``.

        Raises:
            InterruptedError: cancelled (checked before each step).
        """
        total = self.warmup + self.steps
        self.reporter.status(
            f"{label}: {self.warmup} warm-up + {self.steps} timed steps of {self.batch} images"
        )
        start = 0.0
        for done in range(total):
            if self.control.cancelled:
                raise InterruptedError(f"cancelled during {label}")
            if done == self.warmup:
                synchronize(self.device)
                start = time.perf_counter()
            step()
            self.reporter.progress(done + 1, total)
        synchronize(self.device)
        timing = Timing(self.steps, self.batch, time.perf_counter() - start)
        self.reporter.status(
            f"{label}: {timing.samples_per_s:,.1f} samples/s "
            f"({timing.seconds:.2f} s for {timing.steps} steps)"
        )
        return timing
