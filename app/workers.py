"""Run long engine jobs off the GUI thread and report back through Qt signals.

This module (with the job factories of :mod:`app.engine_jobs`) is the only way the GUI runs
engine work (scan, train, refine, assign, export, undo). The pieces:

- :class:`QtReporter`: the engine's ``Reporter`` protocol as Qt signals, with progress
  throttled so that a fast engine cannot flood the event loop.
- :class:`JobWorker`: one job, ``fn(reporter, control) -> result``. It lives on the GUI
  thread; only its :meth:`JobWorker.run` executes on a worker thread. Everything the job
  says is relayed through queued connections and re-emitted **on the GUI thread**, so any
  receiver (widget slot, bound method, lambda) runs on the GUI thread, in this order::

      started, (statusChanged | progressChanged | eventEmitted)*,
      finished(result) | cancelled() | failed(kind, message, details),
      done()

  A job counts as cancelled when it raised :class:`InterruptedError` or returned a result
  whose ``state`` is ``"cancelled"`` or whose ``cancelled`` attribute is ``True`` (the
  partial result stays readable as :attr:`JobWorker.result`). Exceptions never reach Qt:
  :class:`~crlc_engine.core.errors.CRLCError` gives ``failed(error.kind, str(error), traceback)``;
  out of memory, a full disk and a missing permission give the kinds and plain messages of
  :func:`app.core.error_help.classify_exception`; anything else gives
  ``failed("internal", "Something went wrong: Type: msg", traceback)``.
- :class:`JobRunner`: owns the :class:`~PySide6.QtCore.QThread` of every running job.
  ``done()`` is emitted only after the job's thread has stopped; ``shutdown()`` cancels all
  jobs and waits for their threads (call it when the application closes).

The factories that wrap each engine job in a :class:`JobWorker` (:func:`scan_job`,
:func:`train_job`, ...) are in :mod:`app.engine_jobs`.
"""

# Qt names signals in mixedCase.
# ruff: noqa: N815

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QDeadlineTimer, QEvent, QObject, QThread, Signal, Slot

from app.core.error_help import classify_exception
from crlc_engine.api import CRLCError, JobControl

if TYPE_CHECKING:
    from crlc_engine.api import Reporter

__all__ = ["INTERNAL_ERROR_KIND", "JobFunction", "JobRunner", "JobWorker", "QtReporter"]

#: ``failed`` kind of an exception that is not a :class:`~crlc_engine.core.errors.CRLCError`.
INTERNAL_ERROR_KIND = "internal"

#: What a :class:`JobWorker` runs: ``fn(reporter, control) -> result``.
JobFunction = Callable[["Reporter", JobControl], Any]

_FINISHED, _CANCELLED, _FAILED = "finished", "cancelled", "failed"


# ------------------------------------------------------------------------------ reporter
class QtReporter(QObject):
    """The engine ``Reporter`` protocol as Qt signals (callable from any thread).

    ``progressChanged`` is throttled to at most ``max_rate`` emissions per second; the final
    call (``done >= total``) always passes and a held-back value is emitted by the next
    :meth:`status`, :meth:`event` or :meth:`flush`, so receivers never stay on stale
    progress. An unknown total is sent as ``-1.0``.
    """

    statusChanged = Signal(str)
    progressChanged = Signal(float, float)
    eventEmitted = Signal(object)

    def __init__(self, parent: QObject | None = None, max_rate: float = 30.0) -> None:
        super().__init__(parent)
        self._interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self._lock = threading.Lock()
        self._last_emit = float("-inf")
        self._last_sent: tuple[float, float] | None = None
        self._pending: tuple[float, float] | None = None

    def status(self, text: str) -> None:
        """Emit ``statusChanged(text)`` (after any held-back progress)."""
        self.flush()
        self.statusChanged.emit(str(text))

    def progress(self, done: float, total: float | None) -> None:
        """Emit ``progressChanged(done, total)``, at most ``max_rate`` times per second."""
        value = (float(done), -1.0 if total is None else float(total))
        final = value[1] >= 0.0 and value[0] >= value[1]
        now = time.monotonic()
        with self._lock:
            if value == self._last_sent:
                self._pending = None
                return
            if not final and now - self._last_emit < self._interval:
                self._pending = value
                return
            self._pending = None
            self._last_sent = value
            self._last_emit = now
        self.progressChanged.emit(*value)

    def event(self, event: Any) -> Any:
        """Emit ``eventEmitted(event)`` (after any held-back progress).

        This name is also :meth:`QObject.event`, Qt's event handler: Qt's own events
        (:class:`~PySide6.QtCore.QEvent`) go to the base class. (Typed ``Any`` so that the
        class both overrides ``QObject.event`` and satisfies ``Reporter.event``.)
        """
        if isinstance(event, QEvent):
            return bool(super().event(event))
        self.flush()
        self.eventEmitted.emit(event)
        return True

    def flush(self) -> None:
        """Emit the progress value held back by the throttle, if any."""
        with self._lock:
            value, self._pending = self._pending, None
            if value is None:
                return
            self._last_sent = value
            self._last_emit = time.monotonic()
        self.progressChanged.emit(*value)


# -------------------------------------------------------------------------- torch threads
_torch_lock = threading.Lock()
_torch_users = 0
_torch_saved: int | None = None


@contextmanager
def _leave_a_core_for_the_gui() -> Iterator[None]:
    """Use all cores but one for torch while a job runs, if torch is already imported."""
    global _torch_users, _torch_saved
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    with _torch_lock:
        if _torch_users == 0:
            try:
                _torch_saved = int(torch.get_num_threads())
                torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
            except Exception:  # a half-imported or stubbed torch: leave it alone
                _torch_saved = None
        _torch_users += 1
    try:
        yield
    finally:
        with _torch_lock:
            _torch_users -= 1
            if _torch_users == 0 and _torch_saved is not None:
                with suppress(Exception):
                    torch.set_num_threads(_torch_saved)
                _torch_saved = None


# ------------------------------------------------------------------------------- worker
def _is_cancelled_result(result: Any) -> bool:
    state = getattr(result, "state", None)
    return state == "cancelled" or getattr(result, "cancelled", None) is True


def _user_message(error: CRLCError) -> str:
    text = str(error).strip()
    if text:
        return text
    doc = (type(error).__doc__ or "").strip().splitlines()
    return doc[0] if doc else error.kind


def _internal_message(error: BaseException) -> str:
    text = str(error).strip()
    name = type(error).__name__
    return f"Something went wrong: {name}: {text}" if text else f"Something went wrong: {name}"


class JobWorker(QObject):
    """One long job, ``fn(reporter, control) -> result``, reported through GUI-thread signals.

    The worker object stays on the thread that created it (the GUI thread); a
    :class:`JobRunner` executes :meth:`run` on a worker thread. :meth:`cancel`,
    :meth:`pause` and :meth:`resume` only touch the job's :class:`JobControl` and may be
    called from any thread. A worker runs once.
    """

    started = Signal()
    finished = Signal(object)
    failed = Signal(str, str, str)
    cancelled = Signal()
    done = Signal()
    statusChanged = Signal(str)
    progressChanged = Signal(float, float)
    eventEmitted = Signal(object)

    # relays from the worker thread (queued to this object's slots on its own thread)
    _relayStarted = Signal()
    _relayOutcome = Signal()
    _relayDone = Signal()

    def __init__(self, fn: JobFunction, name: str = "", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._fn = fn
        self._control = JobControl()
        self._reporter = QtReporter(self)
        self._reporter.statusChanged.connect(self._on_status)
        self._reporter.progressChanged.connect(self._on_progress)
        self._reporter.eventEmitted.connect(self._on_event)
        self._relayStarted.connect(self._on_started)
        self._relayOutcome.connect(self._on_outcome)
        self._relayDone.connect(self._emit_done)
        self._lock = threading.Lock()
        self._ran = False
        self._managed = False
        # set on the worker thread before the relay, read on this object's thread after it
        self._outcome: tuple[str, Any] | None = None
        # what has been emitted publicly: 0 nothing, 1 started, 2 outcome, 3 done
        self._stage = 0

    # -- control (any thread) -------------------------------------------------------------
    @property
    def control(self) -> JobControl:
        """The job's cancel / pause token."""
        return self._control

    @property
    def reporter(self) -> QtReporter:
        """The reporter handed to the job (its signals are emitted on the worker thread)."""
        return self._reporter

    def cancel(self) -> None:
        """Ask the job to stop at its next check (also ends a pause)."""
        self._control.cancel()

    def pause(self) -> None:
        """Ask the job to wait at its next check until :meth:`resume` or :meth:`cancel`."""
        self._control.pause()

    def resume(self) -> None:
        """Let a paused job continue."""
        self._control.resume()

    # -- state -----------------------------------------------------------------------------
    @property
    def outcome(self) -> str | None:
        """``"finished"``, ``"cancelled"`` or ``"failed"`` once the outcome was emitted."""
        return self._outcome[0] if self._outcome is not None and self._stage >= 2 else None

    @property
    def result(self) -> Any:
        """The job's return value (also a cancelled job's partial result), else ``None``."""
        if self._outcome is None or self._stage < 2 or self._outcome[0] == _FAILED:
            return None
        return self._outcome[1]

    @property
    def is_done(self) -> bool:
        """Whether ``done()`` was emitted."""
        return self._stage >= 3

    # -- execution (worker thread) ---------------------------------------------------------
    def run(self) -> None:
        """Run the job in the calling thread, blocking; never raises.

        A :class:`JobRunner` calls this on its worker thread. Called directly on this
        object's thread (a script, a test), the signals are emitted synchronously and
        ``done()`` comes at the end; called on another thread, everything is relayed.
        """
        with self._lock:
            if self._ran:
                return
            self._ran = True
        self._relayStarted.emit()
        outcome: tuple[str, Any]
        try:
            with _leave_a_core_for_the_gui():
                result = self._fn(self._reporter, self._control)
        except InterruptedError:
            outcome = (_CANCELLED, None)
        except CRLCError as error:
            details = "".join(traceback.format_exception(error))
            outcome = (_FAILED, (error.kind, _user_message(error), details))
        except BaseException as error:  # never raise into Qt
            details = "".join(traceback.format_exception(error))
            known = classify_exception(error)  # out of memory, disk full, no permission
            kind, message = known or (INTERNAL_ERROR_KIND, _internal_message(error))
            outcome = (_FAILED, (kind, message, details))
        else:
            outcome = (_CANCELLED if _is_cancelled_result(result) else _FINISHED, result)
        with suppress(Exception):
            self._reporter.flush()
        self._outcome = outcome
        self._relayOutcome.emit()
        if not self._managed:
            self._relayDone.emit()

    # -- relays (this object's thread) -----------------------------------------------------
    @Slot()
    def _on_started(self) -> None:
        if self._stage < 1:
            self._stage = 1
            self.started.emit()

    @Slot(str)
    def _on_status(self, text: str) -> None:
        if 1 <= self._stage < 2:
            self.statusChanged.emit(text)

    @Slot(float, float)
    def _on_progress(self, done: float, total: float) -> None:
        if 1 <= self._stage < 2:
            self.progressChanged.emit(done, total)

    @Slot(object)
    def _on_event(self, event: object) -> None:
        if 1 <= self._stage < 2:
            self.eventEmitted.emit(event)

    @Slot()
    def _on_outcome(self) -> None:
        if self._stage >= 2 or self._outcome is None:
            return
        self._on_started()
        self._stage = 2
        kind, payload = self._outcome
        if kind == _FINISHED:
            self.finished.emit(payload)
        elif kind == _CANCELLED:
            self.cancelled.emit()
        else:
            self.failed.emit(*payload)

    @Slot()
    def _emit_done(self) -> None:
        """Emit ``done()`` (after the outcome, should its queued relay still be pending)."""
        if self._stage >= 3:
            return
        if self._outcome is None:  # never ran: a start refused after shutdown
            self._control.cancel()
            self._outcome = (_CANCELLED, None)
            self._stage = max(self._stage, 1)
        self._on_outcome()
        self._stage = 3
        self.done.emit()


# ------------------------------------------------------------------------------- runner
class _JobThread(QThread):
    """A thread that runs one worker's job and says so when it is over."""

    jobEnded = Signal(int)

    def __init__(self, worker: JobWorker, job_id: int) -> None:
        super().__init__()
        self._worker = worker
        self._job_id = job_id
        self.setObjectName(f"crlc-job-{job_id}" + (f"-{worker.name}" if worker.name else ""))

    def run(self) -> None:
        try:
            self._worker.run()
        finally:
            self.jobEnded.emit(self._job_id)


class JobRunner(QObject):
    """Owns the threads of running jobs (several may run at once).

    Create it on the GUI thread and call :meth:`shutdown` before the application quits.
    ``done()`` of a job is emitted after its thread has stopped; then the thread and the
    worker are deleted (``deleteLater``). ``runningChanged(bool)`` says when the first job
    starts and the last one is done.
    """

    runningChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: dict[int, tuple[JobWorker, _JobThread]] = {}
        # done jobs whose deleteLater is pending: keeps Python from deleting them first
        self._retired: list[tuple[JobWorker, _JobThread]] = []
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def running(self) -> bool:
        """Whether a job of this runner has not emitted ``done()`` yet."""
        return bool(self._jobs)

    @property
    def workers(self) -> list[JobWorker]:
        """The jobs not done yet, oldest first."""
        return [worker for worker, _ in self._jobs.values()]

    def thread_for(self, worker: JobWorker) -> QThread | None:
        """The thread running ``worker`` until its ``done()``, else ``None``."""
        for candidate, thread in self._jobs.values():
            if candidate is worker:
                return thread
        return None

    def start(self, worker: JobWorker) -> None:
        """Run ``worker`` on a new thread.

        After :meth:`shutdown` the job is not run: the worker emits ``cancelled()`` and
        ``done()`` at once.

        Raises:
            RuntimeError: ``worker`` was started before.
        """
        if worker._ran or worker._managed or worker._stage > 0:
            raise RuntimeError(f"job {worker.name or worker!r} was already started")
        worker._managed = True
        if self._closed:
            worker._emit_done()
            return
        job_id = next(self._ids)
        thread = _JobThread(worker, job_id)
        thread.jobEnded.connect(self._on_job_ended)
        first = not self._jobs
        self._jobs[job_id] = (worker, thread)
        thread.start()
        if first:
            self.runningChanged.emit(True)

    def cancel_all(self) -> None:
        """Ask every running job to stop."""
        for worker, _ in list(self._jobs.values()):
            worker.cancel()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel every job and wait for the threads (blocking); later starts are refused.

        Jobs whose threads stopped emit their outcome and ``done()`` before this returns.

        Returns:
            ``True`` when no thread of this runner is still running.
        """
        self._closed = True
        self.cancel_all()
        deadline = QDeadlineTimer(max(0, int(timeout_ms)))
        for _, thread in list(self._jobs.values()):
            thread.wait(deadline)
        for job_id, (_, thread) in list(self._jobs.items()):
            if thread.isFinished():
                self._finish(job_id)
        return all(not thread.isRunning() for _, thread in self._jobs.values())

    @Slot(int)
    def _on_job_ended(self, job_id: int) -> None:
        self._finish(job_id)

    def _finish(self, job_id: int) -> None:
        entry = self._jobs.pop(job_id, None)
        if entry is None:
            return
        worker, thread = entry
        thread.wait()  # the job is over: at most the end of QThread::run is left
        worker._emit_done()
        self._retired = [
            (w, t) for w, t in self._retired if shiboken6.isValid(w) or shiboken6.isValid(t)
        ]
        self._retired.append(entry)
        thread.deleteLater()
        worker.deleteLater()
        if not self._jobs:
            self.runningChanged.emit(False)
