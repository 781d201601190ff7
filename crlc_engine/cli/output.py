"""What ``crlc`` writes: progress and messages on stderr, listings on stdout.

Output contract (see :mod:`crlc_engine.cli.main`): with ``--json`` the last line of stdout is
the result, so everything meant for a person goes to stderr, except listings that are the
command's output (``crlc clusters``), which go to stdout.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TextIO

from crlc_engine.api import BatchReduced, EpochEnded, Event, TrainingFinished, TrainingStarted


class ConsoleReporter:
    """Prints a throttled progress line and one line per epoch to a text stream."""

    def __init__(self, stream: TextIO | None = None, min_interval_s: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = time.monotonic()

    def _print(self, text: str) -> None:
        self._write(("\r\033[K" if self._tty else "") + text + "\n")

    def _write(self, text: str) -> None:
        """Write and flush; a closed terminal or pipe never stops the job (EPIPE, EIO)."""
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()

    def status(self, text: str) -> None:
        """Print a status line."""
        self._print(text)

    def progress(self, done: float, total: float | None) -> None:
        """Redraw a progress bar (terminal only, at most every ``min_interval_s``)."""
        now = time.monotonic()
        if not self._tty or now - self._last < self.min_interval_s:
            return
        self._last = now
        if total:
            fraction = min(max(done / total, 0.0), 1.0)
            bar = "#" * int(fraction * 30)
            elapsed = now - self._started
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
            text = f"[{bar:<30}] {fraction * 100:5.1f}%  ETA {_duration(eta)}"
        else:
            text = f"{done:g} done"
        self._write("\r\033[K" + text)

    def event(self, event: Event) -> None:
        """Print epochs and start/finish lines."""
        if isinstance(event, TrainingStarted):
            self._started = time.monotonic()
            plan = (
                f"{event.total_epochs} epochs"
                if event.total_epochs is not None
                else f"{(event.budget_s or 0) / 60:g} minutes"
            )
            self._print(
                f"Training on {event.images} images, device {event.device}, batch "
                f"{event.batch_size} ({event.steps_per_epoch} steps/epoch), {plan}"
            )
        elif isinstance(event, EpochEnded):
            eta = "" if event.eta_s is None else f"  ETA {_duration(event.eta_s)}"
            clustering = (  # stage 1 of two-stage training runs no clustering head
                f"L_cluster {event.losses['cluster']:.4f}  head {event.chosen_head}"
                if sum(event.cluster_sizes)
                else "(features only)"
            )
            self._print(
                f"epoch {event.epoch:4d}  loss {event.losses['total']:.4f}  "
                f"L_FC {event.losses['feature']:.4f}  {clustering}  "
                f"{event.samples_per_s:,.0f} img/s{eta}"
            )
        elif isinstance(event, BatchReduced):
            self._print(event.message)
        elif isinstance(event, TrainingFinished):
            self._print(
                f"Training {event.state} after {event.epochs} epochs ({_duration(event.elapsed_s)})"
            )


def _duration(seconds: float) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def say(text: str) -> None:
    """Write one line for a person (stderr)."""
    sys.stderr.write(text + "\n")


def print_lines(lines: list[str]) -> None:
    """Write ``lines`` to stdout; a reader that stops early (``| head``) is no error."""
    if not lines:
        return
    try:
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the unflushed rest at exit: send it to the null device
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
