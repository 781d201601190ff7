"""Does the GUI thread stay responsive while the real engine scans and trains?

A :class:`app.views.main_window.MainWindow` (offscreen unless ``QT_QPA_PLATFORM`` is set) is
shown and a 10 ms ``QTimer`` (precise) on the GUI thread records the wall time between
consecutive ticks. A tick can only come when the event loop is free, so an interval of
10 ms + X means the GUI thread was blocked (or starved of the GIL) for about X.

Phases (each measured until the window's ``JobRunner`` is idle):

0. idle: the window shown, nothing running (the noise floor of this machine).
1. scan: ``window.open_folders([images])``: the real background scan (decoding process pool),
   followed by the window's own ``refresh()`` when the scan finishes.
2. train: ``window._start("Grouping images", train_job([images], config, workspace))``,
   the path the Group dialog takes, with ``config = resolve_train_config(4, "cpu", ...)``;
   the job panel receives progress and epoch events.
3. refresh: ``window.refresh()`` loads the new run's results; the call runs on the GUI
   thread and is timed on its own, then ticks go on for ``--settle`` seconds while the
   thumbnails arrive.

Images: 4 generated shapes x ``--per-class`` PNGs of ``--size`` px, written before any
measurement into ``--workdir`` (reused when it already holds them) or a temporary folder.
The workspace is always new, so the scan really decodes every file.

``--preimport-freeze`` is a what-if, not the app's behaviour: before the phases it imports
``crlc_engine.pipeline.jobs`` and ``crlc_engine.core.neighbors`` on the GUI thread and calls
``gc.freeze()``, to show what the stalls are made of.

Where the GUI thread goes (``--no-trace`` switches this off):

- slot timings: the window's GUI-thread handlers (job panel progress / event handlers,
  ``refresh``, ``LibrarySession.reload``, model updates, ...) are wrapped with a timer;
- a sampling thread takes the GUI thread's Python stack (and the innermost frames of every
  other thread) whenever no tick came for ``--sample-after`` ms;
- the sampling thread also records how late its own 10 ms wake-ups are: when it is as late
  as the GUI thread, some thread held the GIL (or every CPU was taken);
- ``gc.callbacks`` record every garbage collection (thread, generation, duration): a
  generation-2 collection holds the GIL for as long as it walks every tracked object;
- ``faulthandler.dump_traceback_later`` is re-armed on every tick, so a stall of more than
  100 ms dumps every thread's stack from C, even when some thread holds the GIL.

Prints one JSON object on stdout.

    python benchmarks/gui_responsiveness.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import faulthandler
import functools
import gc
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import PySide6
from PySide6.QtCore import QEventLoop, Qt, QTimer, qVersion
from PySide6.QtWidgets import QApplication

BENCHMARK = "gui_responsiveness"
TICK_MS = 10
STALL_MS = 100.0
SHAPES = ("disc", "square", "triangle", "cross")


# ---------------------------------------------------------------------------- measurement
class TickRecorder:
    """A 10 ms timer on the GUI thread that records tick times, plus stall diagnostics."""

    def __init__(self, trace: bool, sample_after_ms: float, dump_file: Path | None) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []
        self.trace = trace
        self.sample_after = sample_after_ms / 1000.0
        self.gui_ident = threading.get_ident()
        self.last_tick = time.perf_counter()
        self.phase = ""
        self.recording = False
        # stall samples: last tick time -> [(lag_ms, gui stack, other threads)]
        self.samples: dict[float, list[tuple[float, list[str], dict[str, list[str]]]]] = {}
        # the sampler's own wake-ups: (time, delay past its 10 ms sleep): how long any
        # Python thread other than the busy one had to wait for the GIL / a CPU
        self.wakes: list[tuple[float, float]] = []
        # garbage collections: (start, end, generation, thread name)
        self.collections: list[tuple[float, float, int, str]] = []
        self._gc_start: dict[int, float] = {}
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self.dump_file = dump_file
        self._dump_handle: Any = None
        if trace:
            self._sampler = threading.Thread(target=self._sample_loop, name="stall-sampler")
            self._sampler.daemon = True
            self._sampler.start()
            gc.callbacks.append(self._on_gc)
            if dump_file is not None:
                self._dump_handle = open(dump_file, "w")  # noqa: SIM115 (kept open for C)

    # -- GUI thread
    def _tick(self) -> None:
        now = time.perf_counter()
        self.ticks.append(now)
        self.last_tick = now
        if self._dump_handle is not None:
            faulthandler.dump_traceback_later(
                STALL_MS / 1000.0, repeat=False, file=self._dump_handle
            )

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        ident = threading.get_ident()
        if phase == "start":
            self._gc_start[ident] = time.perf_counter()
        elif self.recording and ident in self._gc_start:
            start = self._gc_start.pop(ident)
            name = "GUI" if ident == self.gui_ident else threading.current_thread().name
            self.collections.append((start, time.perf_counter(), info["generation"], name))

    def begin(self, phase: str) -> None:
        self.phase = phase
        self.ticks = []
        self.samples = {}
        self.wakes = []
        self.collections = []
        self.last_tick = time.perf_counter()
        self.recording = True
        if self._dump_handle is not None:
            self._dump_handle.flush()
            self._dump_offset = self._dump_handle.tell()
        self.timer.start()

    def end(self) -> dict[str, Any]:
        self.timer.stop()
        self.recording = False
        dumps: list[str] = []
        if self._dump_handle is not None:
            faulthandler.cancel_dump_traceback_later()
            self._dump_handle.flush()
            with open(self.dump_file, encoding="utf-8", errors="replace") as handle:  # type: ignore[arg-type]
                handle.seek(self._dump_offset)
                dumps = [d for d in handle.read().split("Timeout (") if d.strip()]
            self._dump_handle.seek(0, os.SEEK_END)
        return {
            "ticks": list(self.ticks),
            "samples": dict(self.samples),
            "dumps": dumps,
            "wakes": list(self.wakes),
            "collections": list(self.collections),
        }

    def close(self) -> None:
        self._stop.set()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._dump_handle is not None:
            faulthandler.cancel_dump_traceback_later()
            self._dump_handle.close()
            self._dump_handle = None

    # -- sampler thread
    def _sample_loop(self) -> None:
        while True:
            asleep = time.perf_counter()
            if self._stop.wait(0.01):
                return
            if not self.recording:
                continue
            awake = time.perf_counter()
            self.wakes.append((awake, (awake - asleep) * 1000.0 - 10.0))
            last = self.last_tick
            lag = time.perf_counter() - last
            if lag < self.sample_after:
                continue
            frames = sys._current_frames()
            gui = frames.get(self.gui_ident)
            gui_stack = _stack(gui, 12) if gui is not None else ["<no Python frame>"]
            others: dict[str, list[str]] = {}
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in frames.items():
                if ident in (self.gui_ident, threading.get_ident()):
                    continue
                others[names.get(ident, hex(ident))] = _stack(frame, 4) + _origin(frame)
            self.samples.setdefault(last, []).append((lag * 1000.0, gui_stack, others))


def _stack(frame: Any, depth: int) -> list[str]:
    """The innermost ``depth`` frames as ``file:line function``, outermost first."""
    entries = traceback.extract_stack(frame)[-depth:]
    return [f"{_short(e.filename)}:{e.lineno} {e.name}" for e in entries]


def _origin(frame: Any) -> list[str]:
    """The innermost frame in the project's own code (app/, crlc_engine/), if any."""
    for entry in reversed(traceback.extract_stack(frame)):
        name = entry.filename.replace("\\", "/")
        if "/app/" in name or "/crlc_engine/" in name:
            return [f"origin: {_short(entry.filename)}:{entry.lineno} {entry.name}"]
    return []


def _short(filename: str) -> str:
    path = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


class SlotTimer:
    """Wraps GUI-thread methods with a timer; every call is recorded with its phase."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float, float]] = []  # (phase, name, start, ms)
        self.phase = ""
        self._originals: list[tuple[type, str, Any]] = []

    def wrap(self, owner: type, name: str) -> None:
        original = owner.__dict__[name]
        label = f"{owner.__module__}.{owner.__qualname__}.{name}"

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.calls.append(
                    (self.phase, label, start, (time.perf_counter() - start) * 1000.0)
                )

        self._originals.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()

    def summary(self, phase: str) -> dict[str, dict[str, float | int]]:
        by_name: dict[str, list[float]] = defaultdict(list)
        for call_phase, name, _, ms in self.calls:
            if call_phase == phase:
                by_name[name].append(ms)
        result = {
            name.removeprefix("app."): {
                "calls": len(values),
                "total_ms": round(sum(values), 2),
                "max_ms": round(max(values), 2),
            }
            for name, values in by_name.items()
        }
        return dict(sorted(result.items(), key=lambda item: -item[1]["max_ms"]))

    def covering(self, phase: str, start: float, end: float) -> list[dict[str, Any]]:
        """Timed calls of ``phase`` that overlap [start, end] for more than 20 ms."""
        found = []
        for call_phase, name, call_start, ms in self.calls:
            call_end = call_start + ms / 1000.0
            overlap = min(end, call_end) - max(start, call_start)
            if call_phase == phase and overlap > 0.02:
                found.append({"slot": name.removeprefix("app."), "ms": round(ms, 1)})
        return found


def interval_stats(ticks: list[float]) -> dict[str, Any]:
    if len(ticks) < 2:
        return {"ticks": len(ticks)}
    intervals = np.diff(np.asarray(ticks)) * 1000.0
    return {
        "ticks": len(ticks),
        "mean_interval_ms": round(float(intervals.mean()), 2),
        "p50_interval_ms": round(float(np.percentile(intervals, 50)), 2),
        "p99_interval_ms": round(float(np.percentile(intervals, 99)), 2),
        "max_interval_ms": round(float(intervals.max()), 2),
        "max_stall_ms": round(float(intervals.max()) - TICK_MS, 2),
        "intervals_over_50ms": int((intervals > 50.0).sum()),
        "intervals_over_100ms": int((intervals > STALL_MS).sum()),
    }


def _parse_dump(dump: str, gui_ident: int) -> dict[str, list[str]]:
    """faulthandler's text -> {thread: innermost frames, outermost first}."""
    threads: dict[str, list[str]] = {}
    current: str | None = None
    for line in dump.splitlines():
        head = re.match(r"(Current thread|Thread) (0x[0-9a-f]+)", line.strip())
        if head:
            ident = int(head.group(2), 16)
            current = "GUI" if ident == gui_ident else head.group(2)
            threads[current] = []
            continue
        frame = re.match(r'\s*File "(.+)", line (\d+) in (.+)', line)
        if frame and current is not None:
            threads[current].append(f"{_short(frame.group(1))}:{frame.group(2)} {frame.group(3)}")
    result = {}
    for name, frames in threads.items():
        inner_first = frames
        own = [f for f in inner_first if f.startswith(("app/", "crlc_engine/"))]
        shown = list(reversed(inner_first[:6]))
        if own:
            shown.append(f"origin: {own[0]}")
        elif len(inner_first) >= 99:
            shown.append("origin: beyond faulthandler's 100 frames")
        result[name] = shown
    return result


def stall_report(
    record: dict[str, Any], slots: SlotTimer, phase: str, gui_ident: int, limit: int = 8
) -> list[dict[str, Any]]:
    """The slowest intervals over 50 ms with what the GUI thread (and others) were doing."""
    ticks = record["ticks"]
    if len(ticks) < 2:
        return []
    intervals = np.diff(np.asarray(ticks)) * 1000.0
    order = [int(i) for i in np.argsort(intervals)[::-1] if intervals[i] > 50.0][:limit]
    dumps = [_parse_dump(d, gui_ident) for d in record["dumps"]]
    dump_at = 0
    report = []
    for i in sorted(order):
        start, end = ticks[i], ticks[i + 1]
        entry: dict[str, Any] = {
            "at_s": round(start - ticks[0], 3),
            "interval_ms": round(float(intervals[i]), 1),
            "slots": slots.covering(phase, start, end),
        }
        collections = [
            {"generation": g, "ms": round((e - s) * 1000.0, 1), "thread": n}
            for s, e, g, n in record["collections"]
            if s < end and e > start and (e - s) > 0.005
        ]
        if collections:
            entry["gc_collections"] = collections
        wakes = [delay for t, delay in record["wakes"] if start < t <= end + 0.015]
        if wakes:
            entry["sampler_max_wake_delay_ms"] = round(max(wakes), 1)
        samples = record["samples"].get(start, [])
        if samples:
            lag, gui_stack, others = max(samples, key=lambda s: s[0])
            entry["gui_stack_at_ms"] = round(lag, 1)
            entry["gui_stack"] = gui_stack
            entry["other_threads"] = others
        report.append(entry)
    # dumps come one per stall over 100 ms, in order
    over = [e for e in report if e["interval_ms"] > STALL_MS]
    for entry in over:
        if dump_at < len(dumps):
            entry["faulthandler_at_100ms"] = dumps[dump_at]
            dump_at += 1
    return report


# --------------------------------------------------------------------------------- setup
def make_images(folder: Path, per_class: int, size: int, seed: int) -> tuple[int, float]:
    """Generate the PNGs unless ``folder`` already holds them: (count, seconds)."""
    from crlc_engine.library.synthetic import write_shapes_folder

    expected = per_class * len(SHAPES)
    existing = list(folder.rglob("*.png")) if folder.exists() else []
    if len(existing) == expected:
        return expected, 0.0
    if folder.exists():
        shutil.rmtree(folder)
    started = time.perf_counter()
    write_shapes_folder(folder, per_class, size, seed=seed, shapes=SHAPES, colour_cells=True)
    return len(list(folder.rglob("*.png"))), time.perf_counter() - started


def instrument(slots: SlotTimer) -> None:
    from app.core.session import LibrarySession
    from app.itemmodels.clusters import GroupListModel
    from app.itemmodels.thumbnails import ThumbnailGridModel
    from app.views.main_window import JobPanel, MainWindow
    from app.workers import JobRunner

    for owner, names in (
        (JobPanel, ("attach", "_on_progress", "_on_event", "_on_done")),
        (
            MainWindow,
            (
                "open_folders",
                "refresh",
                "_update_state",
                "_show_selected_cluster",
                "_show_selected_image",
                "_start",
                "_close_session",
            ),
        ),
        (LibrarySession, ("__init__", "reload", "groups", "images_of", "detail", "neighbors")),
        (GroupListModel, ("set_groups",)),
        (ThumbnailGridModel, ("set_images", "set_low_confidence_first")),
        (JobRunner, ("start", "_finish")),
    ):
        for name in names:
            if name in owner.__dict__:
                slots.wrap(owner, name)


def run_phase(
    app: QApplication,
    recorder: TickRecorder,
    slots: SlotTimer,
    name: str,
    action: Callable[[], None] | None,
    runner: Any,
    wait_for_runner: bool,
    seconds: float,
    timeout_s: float,
) -> tuple[dict[str, Any], float]:
    """Tick while ``action`` runs (from the event loop) and until the runner is idle."""
    loop = QEventLoop()
    state = {"action_ms": 0.0, "started": False, "end": 0.0}

    def on_running(running: bool) -> None:
        if running:
            state["started"] = True
        elif wait_for_runner:
            QTimer.singleShot(0, loop.quit)

    def start() -> None:
        t0 = time.perf_counter()
        if action is not None:
            action()
        state["action_ms"] = (time.perf_counter() - t0) * 1000.0
        if wait_for_runner and not runner.running:
            QTimer.singleShot(0, loop.quit)

    runner.runningChanged.connect(on_running)
    slots.phase = name
    recorder.begin(name)
    # a few idle ticks first, then the action
    QTimer.singleShot(50, start)
    if not wait_for_runner:
        QTimer.singleShot(int(50 + seconds * 1000), loop.quit)
    guard = QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(loop.quit)
    guard.start(int(timeout_s * 1000))
    started = time.perf_counter()
    loop.exec()
    duration = time.perf_counter() - started
    guard.stop()
    record = recorder.end()
    runner.runningChanged.disconnect(on_running)
    record["duration_s"] = duration
    record["timed_out"] = duration >= timeout_s - 0.5
    return record, state["action_ms"]


def phase_result(
    record: dict[str, Any], slots: SlotTimer, name: str, gui_ident: int, trace: bool
) -> dict[str, Any]:
    result: dict[str, Any] = {"duration_s": round(record["duration_s"], 2)}
    result.update(interval_stats(record["ticks"]))
    if record.get("timed_out"):
        result["timed_out"] = True
    if trace:
        full = [(e - s) * 1000.0 for s, e, g, _ in record["collections"] if g == 2]
        result["gc_gen2"] = {
            "count": len(full),
            "max_ms": round(max(full), 1) if full else 0.0,
            "threads": sorted({n for _, _, g, n in record["collections"] if g == 2}),
        }
        result["slots"] = slots.summary(name)
        result["stalls"] = stall_report(record, slots, name, gui_ident)
        result["faulthandler_dumps"] = len(record["dumps"])
    return result


# --------------------------------------------------------------------------------- main
def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    load_before = os.getloadavg()
    images_dir = workdir / "images"
    count, generate_s = make_images(images_dir, args.per_class, args.size, args.seed)
    workspace = Path(tempfile.mkdtemp(prefix="ws-", dir=workdir))

    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    slots = SlotTimer()
    if args.trace:
        instrument(slots)

    import torch

    from app.engine_jobs import train_job
    from app.views.main_window import MainWindow
    from crlc_engine.core.events import EpochEnded, TrainingFinished, TrainingStarted
    from crlc_engine.pipeline.presets import resolve_train_config

    t0 = time.perf_counter()
    window = MainWindow(workspace=workspace)
    window.show()
    app.processEvents()
    window_s = time.perf_counter() - t0
    preimport_s = None
    if args.preimport_freeze:
        # what-if, not what the app does: import the training stack on the GUI thread
        # before any job, then move every object to gc's permanent generation
        t0 = time.perf_counter()

        gc.collect()
        gc.freeze()
        preimport_s = time.perf_counter() - t0

    dump_file = workdir / "faulthandler.txt" if args.trace else None
    recorder = TickRecorder(args.trace, args.sample_after, dump_file)
    gui_ident = threading.get_ident()
    runner = window.runner
    phases: dict[str, Any] = {}

    try:
        # 0 ---------------------------------------------------------------- idle
        record, _ = run_phase(
            app, recorder, slots, "idle", None, runner, False, args.idle, args.idle + 30
        )
        phases["idle"] = phase_result(record, slots, "idle", gui_ident, args.trace)

        # 1 ---------------------------------------------------------------- scan
        record, action_ms = run_phase(
            app,
            recorder,
            slots,
            "scan",
            lambda: window.open_folders([images_dir]),
            runner,
            True,
            0,
            args.timeout,
        )
        scan = phase_result(record, slots, "scan", gui_ident, args.trace)
        scan["open_folders_call_ms"] = round(action_ms, 1)
        scan["library_images"] = (
            len(window.session.library.images()) if window.session is not None else 0
        )
        phases["A_scan"] = scan

        # 2 ---------------------------------------------------------------- train
        overrides: dict[str, Any] = {"device": "cpu"}
        if args.epochs:
            overrides["epochs"] = args.epochs
        else:
            overrides["minutes"] = args.minutes
        config = resolve_train_config(4, "cpu", overrides)
        events: list[tuple[float, Any]] = []
        progress_count = [0]
        holder: dict[str, Any] = {}

        def start_training() -> None:
            worker = train_job([images_dir], config, workspace)
            worker.eventEmitted.connect(lambda e: events.append((time.perf_counter(), e)))
            worker.progressChanged.connect(
                lambda *_: progress_count.__setitem__(0, progress_count[0] + 1)
            )
            worker.finished.connect(lambda result: holder.__setitem__("result", result))
            worker.failed.connect(lambda *a: holder.__setitem__("failed", list(a)))
            window._start("Grouping images", worker)

        record, action_ms = run_phase(
            app, recorder, slots, "train", start_training, runner, True, 0, args.timeout
        )
        train = phase_result(record, slots, "train", gui_ident, args.trace)
        train["start_call_ms"] = round(action_ms, 1)
        epochs_ended = [e for _, e in events if isinstance(e, EpochEnded)]
        started_at = [t for t, e in events if isinstance(e, TrainingStarted)]
        finished_at = [t for t, e in events if isinstance(e, TrainingFinished)]
        train["progress_signals"] = progress_count[0]
        train["epoch_events"] = len(epochs_ended)
        train["events"] = len(events)
        if started_at and finished_at:
            train["training_s"] = round(finished_at[0] - started_at[0], 2)
        result = holder.get("result")
        if result is not None:
            train["state"] = result.state
            train["images"] = result.images
            train["epochs"] = result.fit.epochs
            train["samples_per_s"] = round(float(result.fit.samples_per_s), 1)
            train["fit_elapsed_s"] = round(float(result.fit.elapsed_s), 2)
        if "failed" in holder:
            train["failed"] = holder["failed"][:2]
        if epochs_ended:
            train["epoch_samples_per_s"] = [round(e.samples_per_s) for e in epochs_ended][:60]
        train["config"] = {
            "backbone": config.backbone,
            "image_size": config.image_size,
            "batch_size": config.batch_size,
            "epochs": config.epochs,
            "minutes": config.minutes,
        }
        phases["B_train"] = train

        # 3 ---------------------------------------------------------------- refresh
        refresh_ms: list[float] = []

        def do_refresh() -> None:
            t = time.perf_counter()
            window.refresh()
            refresh_ms.append((time.perf_counter() - t) * 1000.0)

        record, _ = run_phase(
            app, recorder, slots, "refresh", do_refresh, runner, False, args.settle, 60
        )
        refreshed = phase_result(record, slots, "refresh", gui_ident, args.trace)
        refreshed["refresh_call_ms"] = round(refresh_ms[0], 1) if refresh_ms else None
        refreshed["clusters_shown"] = window.group_model.rowCount()
        refreshed["grid_rows"] = window.grid_model.rowCount() if window.grid_model else 0
        # a second detail-panel update (a click on another image), now that the first
        # call has paid any one-off cost: how much of refresh() is per click
        if window.grid_model is not None and window.grid_model.rowCount() > 1:
            other = window.grid_model.image_id(1)
            t = time.perf_counter()
            window.show_image(other)
            refreshed["show_image_again_ms"] = round((time.perf_counter() - t) * 1000.0, 1)
            neighbor_calls = [ms for _, n, _, ms in slots.calls if n.endswith(".neighbors")]
            if neighbor_calls:
                refreshed["neighbors_ms_first_then_again"] = [
                    round(neighbor_calls[0], 1),
                    round(neighbor_calls[-1], 1),
                ]
        phases["C_refresh"] = refreshed
    finally:
        recorder.close()
        window.runner.shutdown()
        window._close_session()
        window.close()
        app.processEvents()
        slots.restore()
        if not args.keep_workspace:
            shutil.rmtree(workspace, ignore_errors=True)

    worst = max(
        (p.get("max_interval_ms", 0.0) for k, p in phases.items() if k != "idle"), default=0.0
    )
    over = sum(p.get("intervals_over_100ms", 0) for k, p in phases.items() if k != "idle")
    return {
        "benchmark": BENCHMARK,
        "date": dt.date.today().isoformat(),
        "machine": {
            "node": platform.node(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "pyside6": PySide6.__version__,
            "qt": qVersion(),
            "qpa": os.environ.get("QT_QPA_PLATFORM"),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        },
        "settings": {
            "images": count,
            "shapes": list(SHAPES),
            "per_class": args.per_class,
            "size_px": args.size,
            "tick_ms": TICK_MS,
            "trace": args.trace,
            "sample_after_ms": args.sample_after,
            "preimport_freeze": args.preimport_freeze,
            "gc_threshold": list(gc.get_threshold()),
        },
        "generate_images_s": round(generate_s, 2),
        "window_create_s": round(window_s, 2),
        "preimport_freeze_s": None if preimport_s is None else round(preimport_s, 2),
        "phases": phases,
        "goal": f"10 ms timer never stalls more than {STALL_MS:.0f} ms during scan/train/refresh",
        "worst_interval_ms": worst,
        "intervals_over_100ms": over,
        "goal_met": bool(over == 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="reuse generated images here")
    parser.add_argument("--per-class", type=int, default=260)
    parser.add_argument("--size", type=int, default=64, help="image side in px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=0.4, help="training budget")
    parser.add_argument("--epochs", type=int, default=0, help="train N epochs instead")
    parser.add_argument("--idle", type=float, default=3.0, help="idle phase seconds")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after refresh()")
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase")
    parser.add_argument("--sample-after", type=float, default=40.0, help="ms without a tick")
    parser.add_argument("--no-trace", dest="trace", action="store_false")
    parser.add_argument("--keep-workspace", action="store_true")
    parser.add_argument(
        "--preimport-freeze",
        action="store_true",
        help="what-if: import the jobs and neighbours on the GUI thread, then gc.freeze()",
    )
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="gui-resp-") as workdir:
            result = run(args, Path(workdir))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
