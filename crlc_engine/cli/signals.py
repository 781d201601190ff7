"""Stop signals: Ctrl+C, SIGTERM and SIGHUP cancel a ``crlc`` job after its current step."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

from crlc_engine.api import JobControl

#: Signals that stop a job the way Ctrl+C does: closing the terminal, ``timeout``, shutdown.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


#: A second signal this soon after the first is the same request, delivered twice: a
#: launcher such as ``torchrun`` forwards the Ctrl+C its worker got from the terminal too.
REPEAT_GRACE_S = 1.0


def _detach_output() -> None:
    """Point stdout and stderr at the null device (after a hang-up nobody reads them)."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
        os.close(null)


def handle_stop_signals(control: JobControl) -> dict[int, Any]:
    """Make SIGINT, SIGTERM and SIGHUP cancel the job after its current step.

    A second signal aborts at once (unless it comes within :data:`REPEAT_GRACE_S` of the
    first). Returns the previous handlers, to restore.
    """
    first: list[float] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        name = "Ctrl+C" if signum == signal.SIGINT else signal.Signals(signum).name
        if name == "SIGHUP":  # the terminal is gone: later output would fail the job
            _detach_output()
        if first and time.monotonic() - first[0] < REPEAT_GRACE_S:
            return
        if control.cancelled:
            raise KeyboardInterrupt
        first.append(time.monotonic())
        control.cancel()
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(
                f"\n{name}: cancelling after the current step (once more to abort)...\n"
            )

    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        try:
            old = signal.signal(signum, on_signal)
        except ValueError:  # not the main thread (an embedding program): leave them alone
            break
        previous[signum] = signal.SIG_DFL if old is None else old
    return previous


def restore_signals(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`handle_stop_signals` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)
