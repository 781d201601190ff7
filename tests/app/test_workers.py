"""app.workers and app.engine_jobs: engine jobs on QThreads, reported through GUI-thread signals.

The jobs here are fake engines (plain functions that talk to the reporter and check the
control token), plus one real scan and one real export/undo on a few generated files.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from PIL import Image
from PySide6.QtCore import QObject, QThread, Slot
from pytestqt.qtbot import QtBot

from app.engine_jobs import (
    assign_job,
    delete_run_job,
    export_job,
    refine_job,
    relink_job,
    resume_job,
    scan_job,
    train_job,
    undo_export_job,
)
from app.workers import JobRunner, JobWorker, QtReporter
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CRLCError
from crlc_engine.core.events import Reporter, TrainingFinished, TrainingStarted

TIMEOUT_MS = 5000

#: Every thread a test's runner started: none may still run after the test.
_THREADS: list[QThread] = []


class FolderVanishedError(CRLCError):
    """The test's own user-facing error."""

    kind = "folder_vanished"


@dataclass
class FakeOutcome:
    state: str
    steps: int


# ---------------------------------------------------------------------------- helpers
class Recorder(QObject):
    """Records every signal of a worker with whether it arrived on the GUI thread."""

    def __init__(self, worker: JobWorker) -> None:
        super().__init__()
        self.gui = threading.get_ident()
        self.log: list[tuple[str, Any]] = []
        self.off_gui: list[str] = []
        worker.started.connect(self.on_started)
        worker.statusChanged.connect(self.on_status)
        worker.progressChanged.connect(self.on_progress)
        worker.eventEmitted.connect(self.on_event)
        worker.finished.connect(self.on_finished)
        worker.cancelled.connect(self.on_cancelled)
        worker.failed.connect(self.on_failed)
        worker.done.connect(self.on_done)

    def _add(self, name: str, payload: Any = None) -> None:
        if threading.get_ident() != self.gui:
            self.off_gui.append(name)
        self.log.append((name, payload))

    @Slot()
    def on_started(self) -> None:
        self._add("started")

    @Slot(str)
    def on_status(self, text: str) -> None:
        self._add("status", text)

    @Slot(float, float)
    def on_progress(self, done: float, total: float) -> None:
        self._add("progress", (done, total))

    @Slot(object)
    def on_event(self, event: object) -> None:
        self._add("event", event)

    @Slot(object)
    def on_finished(self, result: object) -> None:
        self._add("finished", result)

    @Slot()
    def on_cancelled(self) -> None:
        self._add("cancelled")

    @Slot(str, str, str)
    def on_failed(self, kind: str, message: str, details: str) -> None:
        self._add("failed", (kind, message, details))

    @Slot()
    def on_done(self) -> None:
        self._add("done")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.log]

    def payloads(self, name: str) -> list[Any]:
        return [payload for n, payload in self.log if n == name]

    def ends(self) -> list[str]:
        """The outcome and done signals, in order."""
        return [n for n in self.names if n in {"finished", "cancelled", "failed", "done"}]


def start(runner: JobRunner, worker: JobWorker) -> QThread:
    runner.start(worker)
    thread = runner.thread_for(worker)
    assert thread is not None
    _THREADS.append(thread)
    return thread


def run_to_done(qtbot: QtBot, runner: JobRunner, worker: JobWorker) -> QThread:
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        thread = start(runner, worker)
    return thread


@pytest.fixture
def runner(qtbot: QtBot) -> Iterator[JobRunner]:
    runner = JobRunner()
    yield runner
    assert runner.shutdown(TIMEOUT_MS)
    assert not runner.running


@pytest.fixture(autouse=True)
def no_thread_left(qtbot: QtBot) -> Iterator[None]:
    _THREADS.clear()
    with qtbot.capture_exceptions() as exceptions:
        yield
    assert not exceptions, exceptions
    running = [t for t in _THREADS if shiboken6.isValid(t) and t.isRunning()]
    _THREADS.clear()
    assert not running


def settle(qtbot: QtBot, seen: list[int]) -> None:
    """Wait until a paused fake job stopped stepping (the step in flight has ended)."""
    for _ in range(100):
        before = len(seen)
        qtbot.wait(50)
        if len(seen) == before:
            return
    raise AssertionError("the paused job kept stepping")


def counting_job(
    steps: int, sleep_s: float = 0.0, seen: list[int] | None = None, poll_s: float = 0.02
) -> Callable[[Reporter, JobControl], FakeOutcome]:
    """A fake engine loop: one control check, one progress call per step."""

    def job(reporter: Reporter, control: JobControl) -> FakeOutcome:
        reporter.status("counting")
        for step in range(steps):
            if control.checkpoint_wait(poll_s):
                raise InterruptedError("cancelled")
            if seen is not None:
                seen.append(step)
            if sleep_s:
                time.sleep(sleep_s)
            reporter.progress(step + 1, steps)
        return FakeOutcome("completed", steps)

    return job


# ------------------------------------------------------------------------- happy path
def test_signals_arrive_on_the_gui_thread_in_order(qtbot: QtBot, runner: JobRunner) -> None:
    started = TrainingStarted("run-1", "cpu", 10, 5, 2, 3, None, 0)
    ended = TrainingFinished("completed", 3, 0.1)
    worker_idents: list[int] = []

    def job(reporter: Reporter, control: JobControl) -> str:
        worker_idents.append(threading.get_ident())
        reporter.status("warming up")
        reporter.event(started)
        for step in range(1, 6):
            time.sleep(0.04)  # slower than the throttle: every value goes through
            reporter.progress(step, 5)
        reporter.progress(1, None)
        reporter.event(ended)
        return "the result"

    worker = JobWorker(job, "fake")
    recorder = Recorder(worker)
    lambda_threads: list[int] = []
    worker.progressChanged.connect(lambda *_: lambda_threads.append(threading.get_ident()))
    seen_at_done: dict[str, Any] = {}
    threads: list[QThread] = []

    def at_done() -> None:
        seen_at_done["running"] = runner.running
        seen_at_done["thread_finished"] = threads[0].isFinished()
        seen_at_done["thread_for"] = runner.thread_for(worker)

    worker.done.connect(at_done)
    running_changes: list[bool] = []
    runner.runningChanged.connect(running_changes.append)
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        threads.append(start(runner, worker))

    assert worker_idents and worker_idents[0] != recorder.gui
    assert recorder.off_gui == []
    assert lambda_threads and set(lambda_threads) == {recorder.gui}  # even plain callables
    assert recorder.names == [
        "started",
        "status",
        "event",
        *["progress"] * 6,
        "event",
        "finished",
        "done",
    ]
    assert recorder.payloads("status") == ["warming up"]
    assert recorder.payloads("event") == [started, ended]
    assert recorder.payloads("progress") == [(float(s), 5.0) for s in range(1, 6)] + [(1.0, -1.0)]
    assert recorder.payloads("finished") == ["the result"]
    assert worker.outcome == "finished"
    assert worker.result == "the result"
    assert seen_at_done == {"running": False, "thread_finished": True, "thread_for": None}
    assert running_changes == [True, False]


def test_progress_is_throttled_and_the_last_value_arrives(qtbot: QtBot, runner: JobRunner) -> None:
    calls = 100_000
    elapsed: list[float] = []

    def job(reporter: Reporter, control: JobControl) -> int:
        began = time.monotonic()
        for done in range(1, calls + 1):
            reporter.progress(done, calls)
        elapsed.append(time.monotonic() - began)
        return calls

    worker = JobWorker(job)
    recorder = Recorder(worker)
    run_to_done(qtbot, runner, worker)

    progress = recorder.payloads("progress")
    assert progress[-1] == (float(calls), float(calls))
    assert len(progress) <= 30 * elapsed[0] + 3, (len(progress), elapsed[0])
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert recorder.ends() == ["finished", "done"]


def test_reporter_throttle_unknown_total_and_flush(qtbot: QtBot) -> None:
    reporter = QtReporter()
    got: list[tuple[float, float]] = []
    statuses: list[str] = []
    reporter.progressChanged.connect(lambda d, t: got.append((d, t)))
    reporter.statusChanged.connect(statuses.append)

    reporter.progress(1, None)
    reporter.progress(2, None)  # within 1/30 s of the first: held back
    assert got == [(1.0, -1.0)]
    reporter.status("phase two")  # flushes the held-back value first
    assert got == [(1.0, -1.0), (2.0, -1.0)]
    assert statuses == ["phase two"]
    reporter.progress(3, 10)
    reporter.progress(10, 10)  # the final value always passes
    reporter.progress(10, 10)  # an identical repeat does not
    assert got[-1] == (10.0, 10.0) and got.count((10.0, 10.0)) == 1
    reporter.flush()
    assert got[-1] == (10.0, 10.0)


def test_reporter_passes_qt_events_to_qobject(qtbot: QtBot) -> None:
    reporter = QtReporter()
    events: list[object] = []
    reporter.eventEmitted.connect(events.append)
    reporter.setProperty("dynamic", 1)  # Qt sends a DynamicPropertyChange event
    reporter.event(TrainingFinished("completed", 1, 0.0))
    assert events == [TrainingFinished("completed", 1, 0.0)]


def test_run_without_a_runner_emits_synchronously(qtbot: QtBot) -> None:
    worker = JobWorker(counting_job(3))
    recorder = Recorder(worker)
    worker.run()
    assert recorder.names[0] == "started" and recorder.ends() == ["finished", "done"]
    assert recorder.payloads("finished") == [FakeOutcome("completed", 3)]
    assert worker.is_done


def test_run_on_a_plain_thread_is_relayed_to_the_gui_thread(qtbot: QtBot) -> None:
    worker = JobWorker(counting_job(3))
    recorder = Recorder(worker)
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        thread = threading.Thread(target=worker.run)
        thread.start()
    thread.join()
    assert recorder.names[0] == "started" and recorder.ends() == ["finished", "done"]
    assert recorder.off_gui == []


def test_several_jobs_run_at_once(qtbot: QtBot, runner: JobRunner) -> None:
    workers = [JobWorker(counting_job(5, sleep_s=0.01)) for _ in range(3)]
    recorders = [Recorder(w) for w in workers]
    changes: list[bool] = []
    runner.runningChanged.connect(changes.append)
    with qtbot.waitSignals([w.done for w in workers], timeout=TIMEOUT_MS):
        for w in workers:
            start(runner, w)
        assert runner.running and len(runner.workers) == 3
    for r in recorders:
        assert r.ends() == ["finished", "done"]
    assert changes == [True, False]
    assert not runner.running


def test_a_worker_runs_once(qtbot: QtBot, runner: JobRunner) -> None:
    worker = JobWorker(counting_job(1))
    run_to_done(qtbot, runner, worker)
    with pytest.raises(RuntimeError, match="already started"):
        runner.start(worker)


# ------------------------------------------------------------------ cancel and pause
def test_cancel_from_the_gui_thread_stops_within_one_step(qtbot: QtBot, runner: JobRunner) -> None:
    seen: list[int] = []
    worker = JobWorker(counting_job(100_000, sleep_s=0.005, seen=seen))
    recorder = Recorder(worker)
    start(runner, worker)
    qtbot.waitUntil(lambda: len(seen) >= 5, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        at_cancel = len(seen)
        worker.cancel()
    assert len(seen) - at_cancel <= 1
    assert recorder.ends() == ["cancelled", "done"]
    assert worker.outcome == "cancelled" and worker.result is None


@pytest.mark.parametrize(
    "partial",
    [FakeOutcome("cancelled", 2), type("Summary", (), {"cancelled": True})()],
    ids=["state", "flag"],
)
def test_a_cancelled_result_emits_cancelled(
    qtbot: QtBot, runner: JobRunner, partial: object
) -> None:
    def job(reporter: Reporter, control: JobControl) -> object:
        reporter.progress(1, 2)
        control.cancel()  # as if the user pressed Cancel during the first step
        return partial if control.cancelled else None

    worker = JobWorker(job)
    recorder = Recorder(worker)
    run_to_done(qtbot, runner, worker)
    assert recorder.ends() == ["cancelled", "done"]
    assert worker.result is partial  # e.g. the partial export, to resume or undo


def test_pause_blocks_until_resume(qtbot: QtBot, runner: JobRunner) -> None:
    seen: list[int] = []
    worker = JobWorker(counting_job(100_000, sleep_s=0.002, seen=seen, poll_s=0.02))
    recorder = Recorder(worker)
    start(runner, worker)
    qtbot.waitUntil(lambda: len(seen) >= 5, timeout=TIMEOUT_MS)

    worker.pause()
    assert worker.control.paused
    settle(qtbot, seen)  # let the step in flight end
    steps = len(seen)
    signals = len(recorder.payloads("progress"))
    qtbot.wait(300)
    assert len(seen) == steps
    assert len(recorder.payloads("progress")) == signals

    worker.resume()
    qtbot.waitUntil(lambda: len(seen) > steps + 5, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        worker.cancel()
    assert recorder.ends() == ["cancelled", "done"]


# --------------------------------------------------------------------------- errors
def test_crlc_error_gives_its_kind_and_user_message(qtbot: QtBot, runner: JobRunner) -> None:
    def job(reporter: Reporter, control: JobControl) -> None:
        reporter.status("looking")
        raise FolderVanishedError("The folder /photos is gone; plug the drive back in.")

    worker = JobWorker(job)
    recorder = Recorder(worker)
    run_to_done(qtbot, runner, worker)
    assert recorder.names == ["started", "status", "failed", "done"]
    kind, message, details = recorder.payloads("failed")[0]
    assert kind == "folder_vanished"
    assert message == "The folder /photos is gone; plug the drive back in."
    assert "FolderVanishedError" in details
    assert worker.outcome == "failed" and worker.result is None


def test_crlc_error_without_text_uses_its_description(qtbot: QtBot) -> None:
    def job(reporter: Reporter, control: JobControl) -> None:
        raise FolderVanishedError()

    worker = JobWorker(job)
    recorder = Recorder(worker)
    worker.run()
    assert recorder.payloads("failed")[0][:2] == (
        "folder_vanished",
        "The test's own user-facing error.",
    )


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (RuntimeError("boom"), "Something went wrong: RuntimeError: boom"),
        (ValueError(), "Something went wrong: ValueError"),
        (KeyboardInterrupt(), "Something went wrong: KeyboardInterrupt"),
    ],
)
def test_other_exceptions_are_internal_with_a_traceback(
    qtbot: QtBot, runner: JobRunner, error: BaseException, message: str
) -> None:
    def exploding_engine_step(reporter: Reporter, control: JobControl) -> None:
        reporter.progress(1, 3)
        raise error

    worker = JobWorker(exploding_engine_step)
    recorder = Recorder(worker)
    run_to_done(qtbot, runner, worker)  # no_thread_left also checks no exception reached Qt
    assert recorder.ends() == ["failed", "done"]
    kind, got_message, details = recorder.payloads("failed")[0]
    assert kind == "internal"
    assert got_message == message
    assert details.startswith("Traceback (most recent call last)")
    assert "exploding_engine_step" in details and type(error).__name__ in details


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (OSError(28, "No space left on device", "/ws/catalog.sqlite"), "disk_full"),
        (MemoryError(), "out_of_memory"),
        (PermissionError(13, "Permission denied", "/sorted"), "permission_denied"),
    ],
)
def test_known_failures_get_a_plain_kind_and_keep_the_traceback(
    qtbot: QtBot, runner: JobRunner, error: BaseException, kind: str
) -> None:
    def failing_engine_step(reporter: Reporter, control: JobControl) -> None:
        raise error

    worker = JobWorker(failing_engine_step)
    recorder = Recorder(worker)
    run_to_done(qtbot, runner, worker)
    got_kind, message, details = recorder.payloads("failed")[0]
    assert got_kind == kind and not message.startswith("Something went wrong")
    assert "failing_engine_step" in details


# ------------------------------------------------------------------------- shutdown
def test_shutdown_cancels_a_paused_job_and_waits(qtbot: QtBot) -> None:
    runner = JobRunner()
    seen: list[int] = []
    worker = JobWorker(counting_job(100_000, sleep_s=0.002, seen=seen))
    recorder = Recorder(worker)
    thread = start(runner, worker)
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=TIMEOUT_MS)
    worker.pause()
    settle(qtbot, seen)

    assert runner.shutdown(timeout_ms=TIMEOUT_MS) is True
    assert thread.isFinished() and not thread.isRunning()
    assert not runner.running
    assert recorder.ends() == ["cancelled", "done"]

    # after shutdown nothing starts: the job is cancelled at once, without a thread
    late = JobWorker(counting_job(3))
    late_recorder = Recorder(late)
    runner.start(late)
    assert late_recorder.names == ["cancelled", "done"]
    assert runner.thread_for(late) is None and not runner.running


def test_shutdown_reports_a_job_that_ignores_cancel(qtbot: QtBot) -> None:
    runner = JobRunner()
    release = threading.Event()

    def stubborn(reporter: Reporter, control: JobControl) -> str:
        release.wait(TIMEOUT_MS / 1000)
        return "ignored the cancel"

    worker = JobWorker(stubborn)
    recorder = Recorder(worker)
    thread = start(runner, worker)
    assert runner.shutdown(timeout_ms=100) is False
    assert runner.running and thread.isRunning()
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        release.set()
    assert recorder.ends() == ["finished", "done"]
    assert not runner.running
    assert runner.shutdown(timeout_ms=TIMEOUT_MS) is True


# ---------------------------------------------------------------------------- torch
def test_the_job_leaves_a_core_for_the_gui(qtbot: QtBot, runner: JobRunner) -> None:
    torch = pytest.importorskip("torch")
    inside: list[int] = []
    before = torch.get_num_threads()

    def job(reporter: Reporter, control: JobControl) -> None:
        inside.append(torch.get_num_threads())

    run_to_done(qtbot, runner, JobWorker(job))
    assert inside == [max(1, (os.cpu_count() or 1) - 1)]
    assert torch.get_num_threads() == before


def test_torch_is_not_imported_for_a_job(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "torch" or n.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    worker = JobWorker(counting_job(2))
    worker.run()
    assert "torch" not in sys.modules
    assert worker.outcome == "finished"


# ------------------------------------------------------------------ real engine jobs
def test_scan_job_on_a_small_folder(qtbot: QtBot, runner: JobRunner, tmp_path: Path) -> None:
    from crlc_engine.library import ScanSummary

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(5):
        Image.new("RGB", (40, 30), (40 * k, 255 - 40 * k, 90)).save(photos / f"p{k}.png")
    worker = scan_job([photos], 32, tmp_path / "ws", workers=0)
    recorder = Recorder(worker)
    run_to_done(qtbot, runner, worker)

    assert recorder.ends() == ["finished", "done"], recorder.payloads("failed")
    summary = recorder.payloads("finished")[0]
    assert isinstance(summary, ScanSummary)
    assert summary.images_ok == 5 and not summary.cancelled
    assert recorder.payloads("progress")[-1] == (5.0, 5.0)
    assert recorder.off_gui == []


def test_export_and_undo_jobs(qtbot: QtBot, runner: JobRunner, tmp_path: Path) -> None:
    from crlc_engine.results.export import ExportItem, ExportResult, UndoResult

    root = tmp_path / "photos"
    root.mkdir()
    items = []
    for k in range(3):
        path = root / f"p{k}.png"
        Image.new("RGB", (8, 8), (k, 0, 0)).save(path)
        items.append(ExportItem(path, "Beach" if k else "City", 0.9, path.name))
    dest = tmp_path / "out"

    dry = export_job(items, dest, "copy", [root], 0.5, False, True)
    dry_recorder = Recorder(dry)
    run_to_done(qtbot, runner, dry)
    planned = dry_recorder.payloads("finished")[0]
    assert isinstance(planned, ExportResult) and planned.dry_run and not dest.exists()

    real = export_job(items, dest, "copy", [root], 0.5, False, False)
    real_recorder = Recorder(real)
    run_to_done(qtbot, runner, real)
    result = real_recorder.payloads("finished")[0]
    assert isinstance(result, ExportResult) and result.files == 3
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["Beach", "City"]

    undo = undo_export_job(result.manifest)
    undo_recorder = Recorder(undo)
    run_to_done(qtbot, runner, undo)
    undone = undo_recorder.payloads("finished")[0]
    assert isinstance(undone, UndoResult) and undone.removed == 3
    assert all(p.exists() for p in root.iterdir())


def test_train_refine_and_assign_factories_pass_their_arguments(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crlc_engine.api as api

    calls: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def fake(name: str) -> Callable[..., str]:
        def record(*args: Any, **kwargs: Any) -> str:
            calls[name] = (args, kwargs)
            return name

        return record

    for name in ("train_folder", "refine_folder", "assign_run"):  # the jobs call the facade
        monkeypatch.setattr(api, name, fake(name))
    config = object()

    workers = [
        train_job(["/a"], config, "/ws", resume="latest", names_from="run-0"),  # type: ignore[arg-type]
        refine_job(["/a"], "run-1", 3, None, "/ws"),
        assign_job(["/a"], "run-1", "/ws"),
    ]
    results: list[object] = []
    for worker in workers:
        worker.finished.connect(results.append)
        worker.run()
    assert results == ["train_folder", "refine_folder", "assign_run"]

    args, kwargs = calls["train_folder"]
    assert args[:3] == (["/a"], config, "/ws")
    assert isinstance(args[3], QtReporter) and isinstance(args[4], JobControl)
    assert kwargs == {"resume": "latest", "workers": None, "names_from": "run-0"}
    args, _ = calls["refine_folder"]
    assert args[:5] == (["/a"], "run-1", 3, None, "/ws") and isinstance(args[6], JobControl)
    args, _ = calls["assign_run"]
    assert args[:3] == (["/a"], "run-1", "/ws") and isinstance(args[3], QtReporter)


def test_relink_delete_and_resume_factories(
    qtbot: QtBot, runner: JobRunner, tmp_path: Path
) -> None:
    from crlc_engine.library import ImageLibrary

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 20), (40 * i, 90, 200)).save(photos / f"{i}.png")
    ws = tmp_path / "ws"
    with ImageLibrary.open([photos], ws) as library:
        library.scan(16, workers=0)
        run = library.runs.create_run()
        run.config_path.write_text('{"train": {"clusters": 2}}')
        run.write_status("cancelled")
    moved = tmp_path / "moved"
    photos.rename(moved)

    relink = relink_job(photos, moved, ws)
    recorder = Recorder(relink)
    run_to_done(qtbot, runner, relink)
    assert recorder.ends() == ["finished", "done"]
    (workspace,) = recorder.payloads("finished")[0]
    with ImageLibrary.open([moved], ws) as library:
        assert library.workspace == workspace and len(library.images()) == 3

    resume = resume_job([moved], run.run_id, ws)  # no image list: a plain engine error
    recorder = Recorder(resume)
    run_to_done(qtbot, runner, resume)
    kind, message, _ = recorder.payloads("failed")[0]
    assert kind == "checkpoint" and "list of images" in message

    delete = delete_run_job([moved], run.run_id, ws)
    recorder = Recorder(delete)
    run_to_done(qtbot, runner, delete)
    assert recorder.ends() == ["finished", "done"]
    assert not (workspace / "runs" / run.run_id).exists()
