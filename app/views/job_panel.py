"""The job panel: the running job's title, progress, rate, ETA, status and controls.

Scans and exports count files: the panel measures their rate itself (over the last few
seconds of progress) and shows ``done / total files · N files/s · about M left``. Training
reports epochs (:class:`~crlc_engine.core.events.EpochEnded`): the panel shows the loss, the rate
in images/s, the ETA and the cluster sizes, and draws the loss curve and the size bars. A batch
halved for lack of device memory (:class:`~crlc_engine.core.events.BatchReduced`) is said in
the status line and kept in the title (``Grouping images (batch 256)``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.icons import icon
from app.views.plots import ClusterSizeBars, LossPlot
from app.workers import JobWorker
from crlc_engine.api import BatchReduced, EpochEnded, TrainingStarted

__all__ = ["JobPanel", "RateMeter", "format_duration"]


def format_duration(seconds: float) -> str:
    """``42 s``, ``3:05`` or ``1:02:05`` (rounded to whole seconds)."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    if minutes:
        return f"{minutes}:{secs:02d}"
    return f"{secs} s"


class RateMeter:
    """Items per second over a sliding window of progress samples, and the time left.

    Args:
        window_s: How far back the rate looks.
        clock: Seconds (monotonic); injectable for tests.
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] | None = None) -> None:
        self.window_s = window_s
        self._clock = clock or time.monotonic
        self._samples: deque[tuple[float, float]] = deque()

    def reset(self) -> None:
        """Forget every sample."""
        self._samples.clear()

    def add(self, done: float) -> None:
        """Record that ``done`` items are finished now."""
        now = self._clock()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Items per second, or ``None`` before two samples a moment apart."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 0.2:
            return None
        return max(0.0, (d1 - d0) / (t1 - t0))

    def eta(self, total: float) -> float | None:
        """Seconds left to reach ``total`` at the current rate, or ``None``."""
        rate = self.rate()
        if not rate or not self._samples:
            return None
        return max(0.0, total - self._samples[-1][1]) / rate


class JobPanel(QWidget):
    """Progress, rate, ETA, status, Pause/Resume and Cancel of the running job."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("No job running")
        self.rate = QLabel("")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.pause_button = QPushButton(icon("pause"), "Pause")
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        for button in (self.pause_button, self.cancel_button):
            button.setEnabled(False)
        self.loss_plot = LossPlot()
        self.size_bars = ClusterSizeBars()
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.rate)
        top.addWidget(self.pause_button)
        top.addWidget(self.cancel_button)
        text = QVBoxLayout()
        text.addLayout(top)
        text.addWidget(self.bar)
        text.addWidget(self.detail)
        layout = QHBoxLayout(self)
        layout.addLayout(text, 3)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.size_bars, 1)
        self.worker: JobWorker | None = None
        self.unit: str | None = None
        self.meter = RateMeter()
        self._clock: Callable[[], float] = time.monotonic
        self._job_title = ""
        self._started_at = 0.0
        self._progress_text = ""  # the detail line the job itself wrote last
        self.pause_button.clicked.connect(self._toggle_pause)
        self.cancel_button.clicked.connect(self._cancel)
        self.show_plots(False)
        for widget in (self.bar, self.pause_button, self.cancel_button):
            widget.setVisible(False)  # until the first job

    def attach(self, title: str, worker: JobWorker, unit: str | None = None) -> None:
        """Show the progress of ``worker``.

        Args:
            title: What the job does ("Scanning images").
            worker: The job.
            unit: What its progress counts ("files"): then the panel shows the counts, the
                rate and the time left; ``None`` for training (epochs say it).
        """
        self.worker = worker
        self.begin(title, unit)
        worker.progressChanged.connect(self._on_progress)
        worker.statusChanged.connect(self._on_status)
        worker.eventEmitted.connect(self._on_event)
        worker.done.connect(self._on_done)

    def begin(self, title: str, unit: str | None = None) -> None:
        """Reset the panel for a new job (see :meth:`attach`, which calls it)."""
        self.unit = unit
        self.meter.reset()
        self._job_title = title
        self._started_at = self._clock()
        self._progress_text = "Starting…"
        self.title.setText(title)
        self.rate.setText("")
        for widget in (self.bar, self.pause_button, self.cancel_button):
            widget.setVisible(True)
        self.bar.setValue(0)
        self.bar.setEnabled(True)
        self.detail.setText(self._progress_text)
        self.show_plots(False)
        self._show_paused(False)
        self.pause_button.setEnabled(True)
        self.cancel_button.setEnabled(True)

    def show_plots(self, shown: bool) -> None:
        """Show or hide the loss curve and the cluster-size bars (training only)."""
        self.loss_plot.setVisible(shown)
        self.size_bars.setVisible(shown)

    def _on_progress(self, done: float, total: float) -> None:
        if total <= 0:
            return
        self.bar.setValue(int(1000 * min(done / total, 1.0)))
        if self.unit is None:
            return
        self.meter.add(done)
        parts = [f"{int(done):,} / {int(total):,} {self.unit}"]
        rate = self.meter.rate()
        if rate is not None:
            parts.append(f"{rate:,.1f} {self.unit}/s")
            eta = self.meter.eta(total)
            if eta is not None and done < total:
                parts.append(f"about {format_duration(eta)} left")
        self.rate.setText(" · ".join(parts))

    def _on_status(self, text: str) -> None:
        self._progress_text = text
        self.detail.setText(text)

    def _on_event(self, event: object) -> None:
        if isinstance(event, TrainingStarted):
            self._on_status(f"Training on {event.images} images, device {event.device}")
            self.loss_plot.clear()
            self.size_bars.set_sizes([])
            self.show_plots(True)
            self.rate.setText("")
        elif isinstance(event, EpochEnded):
            self.show_plots(True)
            eta = "" if event.eta_s is None else f" · about {format_duration(event.eta_s)} left"
            sizes = ", ".join(str(s) for s in event.cluster_sizes)
            self.loss_plot.add(event.losses["total"])
            self.size_bars.set_sizes(event.cluster_sizes)
            self.rate.setText(f"{event.samples_per_s:,.0f} images/s{eta}")
            self._on_status(
                f"Epoch {event.epoch}: loss {event.losses['total']:.3f}; cluster sizes {sizes}"
            )
        elif isinstance(event, BatchReduced):  # kept in the title until the next job
            self._job_title = f"{self._job_title.split(' (batch ')[0]} (batch {event.new})"
            self.title.setText(self._job_title)
            self._on_status(event.message)

    def _toggle_pause(self) -> None:
        if self.worker is None:
            return
        if self.pause_button.text() == "Pause":
            self.worker.pause()
            self._show_paused(True)
        else:
            self.worker.resume()
            self._show_paused(False)

    def _show_paused(self, paused: bool) -> None:
        """The pause button offers "Resume" while the job is paused, else "Pause"."""
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.setIcon(icon("resume" if paused else "pause"))

    def _cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self._on_status("Cancelling after the current step…")

    def _on_done(self) -> None:
        """Back to idle: no progress bar, rate, time left or buttons; one line on how the job
        ended, unless the window already wrote its own summary (e.g. "Scan finished")."""
        worker, self.worker = self.worker, None
        outcome = worker.outcome if worker is not None else None
        took = format_duration(self._clock() - self._started_at)
        self.rate.setText("")
        for widget in (self.bar, self.pause_button, self.cancel_button):
            widget.setEnabled(False)
            widget.setVisible(False)
        if self.title.text() == self._job_title:  # nobody summed the job up
            ended = {"cancelled": "stopped", "failed": "failed"}.get(outcome or "", "done")
            self.title.setText(f"{self._job_title}: {ended} after {took}")
        if self.detail.text() == self._progress_text:  # a progress line, now stale
            self.detail.setText("No job running.")
