"""Cancel / pause token shared between a long job and whoever drives it.

A job (training, scanning...) calls :meth:`JobControl.checkpoint_wait` once per step: it
blocks while the job is paused and returns ``True`` when the job should stop. Any thread may
call :meth:`cancel`, :meth:`pause` and :meth:`resume`. Only threading primitives are used,
so checking costs no device synchronisation.
"""

from __future__ import annotations

import threading


class JobControl:
    """Thread-safe cancel and pause/resume flags for one job."""

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def cancel(self) -> None:
        """Ask the job to stop after the step it is running (also wakes a paused job)."""
        self._cancel.set()
        self._running.set()

    def pause(self) -> None:
        """Ask the job to wait before its next step until :meth:`resume` or :meth:`cancel`."""
        if not self._cancel.is_set():
            self._running.clear()

    def resume(self) -> None:
        """Let a paused job continue."""
        self._running.set()

    @property
    def cancelled(self) -> bool:
        """Whether cancellation was requested."""
        return self._cancel.is_set()

    @property
    def paused(self) -> bool:
        """Whether the job is (or will be, at its next check) paused."""
        return not self._running.is_set()

    def checkpoint_wait(self, poll_s: float = 0.1) -> bool:
        """Block while paused; return ``True`` if the job must stop now.

        Args:
            poll_s: How often a paused wait re-checks the flags, in seconds.

        Returns:
            ``True`` when cancellation was requested.
        """
        while not self._running.wait(poll_s):
            pass
        return self._cancel.is_set()
