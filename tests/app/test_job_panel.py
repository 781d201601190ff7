"""The job panel: files/s and time left from progress, training epochs, idle state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytestqt.qtbot import QtBot
from torch import Tensor

from app.views.job_panel import JobPanel, RateMeter, format_duration
from app.workers import JobWorker
from crlc_engine.core.events import EpochEnded
from crlc_engine.training.trainer import CRLCTrainer
from tests.conftest import small_train_config


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (41.6, "42 s"), (60, "1:00"), (185, "3:05"), (3725, "1:02:05")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_rate_meter_uses_a_sliding_window() -> None:
    clock = Clock()
    meter = RateMeter(window_s=5.0, clock=clock)
    meter.add(0)
    assert meter.rate() is None and meter.eta(100) is None  # one sample
    for second in range(1, 11):  # 10 files/s for 10 s...
        clock.now = float(second)
        meter.add(10.0 * second)
    assert meter.rate() == pytest.approx(10.0)
    assert meter.eta(200) == pytest.approx(10.0)
    for second in range(11, 21):  # ...then 50 files/s: the old samples drop out
        clock.now = float(second)
        meter.add(100.0 + 50.0 * (second - 10))
    assert meter.rate() == pytest.approx(50.0)
    meter.reset()
    assert meter.rate() is None


def test_scan_progress_shows_counts_rate_and_time_left(qtbot: QtBot) -> None:
    panel = JobPanel()
    qtbot.addWidget(panel)
    assert not panel.bar.isVisibleTo(panel)  # nothing ran yet
    worker = JobWorker(lambda reporter, control: None, "scan")
    panel.attach("Scanning images", worker, unit="files")
    assert panel.bar.isVisibleTo(panel) and panel.cancel_button.isEnabled()
    clock = Clock()
    panel.meter = RateMeter(clock=clock)
    for second, done in enumerate([0, 40, 80, 120]):
        clock.now = float(second)
        worker.progressChanged.emit(float(done), 400.0)
    assert panel.bar.value() == 300
    assert panel.rate.text() == "120 / 400 files · 40.0 files/s · about 7 s left"
    assert not panel.loss_plot.isVisibleTo(panel)  # no training plots for a scan
    worker.run()  # done: the controls go off
    assert not panel.cancel_button.isEnabled() and panel.worker is None


def test_training_shows_epochs_and_plots(qtbot: QtBot) -> None:
    panel = JobPanel()
    qtbot.addWidget(panel)
    panel.begin("Grouping images")
    panel._on_event(EpochEnded(4, {"total": 2.5}, [2.5], 0, [30, 20], 800.0, 4.0, 65.0, 10))
    assert panel.loss_plot.isVisibleTo(panel) and panel.size_bars.sizes == [30, 20]
    assert panel.rate.text() == "800 images/s · about 1:05 left"
    assert panel.detail.text() == "Epoch 4: loss 2.500; cluster sizes 30, 20"


@pytest.mark.parametrize(
    ("job", "ended"),
    [
        (lambda reporter, control: reporter.status("Computing assignments…"), "done"),
        (lambda reporter, control: 1 / 0, "failed"),
    ],
)
def test_the_panel_returns_to_idle_when_a_job_ends(qtbot: QtBot, job: object, ended: str) -> None:
    panel = JobPanel()
    qtbot.addWidget(panel)
    clock = Clock()
    panel._clock = clock
    worker = JobWorker(job, "assign")  # type: ignore[arg-type]
    panel.attach("Computing assignments", worker, unit="images")
    worker.statusChanged.emit("Computing assignments…")
    worker.progressChanged.emit(9.0, 10.0)
    clock.now = 65.0
    worker.run()
    assert panel.title.text() == f"Computing assignments: {ended} after 1:05"
    assert panel.detail.text() == "No job running."  # not the stale "about 0 s left"
    assert panel.rate.text() == ""
    assert not panel.bar.isVisibleTo(panel) and not panel.cancel_button.isVisibleTo(panel)


def test_a_batch_halved_for_lack_of_memory_is_said_and_kept(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real tiny training whose first step runs out of memory (injected): the panel says
    so and its title keeps the batch the job really uses."""
    real_step = CRLCTrainer._train_step

    def step(self: CRLCTrainer, indices: Tensor) -> None:
        if self.batch_size == 8:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        real_step(self, indices)

    monkeypatch.setattr(CRLCTrainer, "_train_step", step)
    images = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    trainer = CRLCTrainer(small_train_config(batch_size=8, epochs=1), images, torch.device("cpu"))
    statuses: list[str] = []
    panel = JobPanel()
    qtbot.addWidget(panel)
    worker = JobWorker(lambda reporter, control: trainer.fit(reporter, control), "train")
    panel.attach("Grouping images", worker)
    worker.eventEmitted.connect(lambda event: statuses.append(panel.detail.text()))
    worker.run()
    assert worker.outcome == "finished"
    assert (
        "Out of CPU memory at a batch of 8 images: continuing from the same step at a batch of 4"
        in statuses
    )
    assert panel.title.text().startswith("Grouping images (batch 4): done after")


def test_a_summary_the_window_wrote_is_kept(qtbot: QtBot) -> None:
    panel = JobPanel()
    qtbot.addWidget(panel)
    worker = JobWorker(lambda reporter, control: None, "scan")
    panel.attach("Scanning images", worker, unit="files")
    worker.finished.connect(lambda _: panel.title.setText("Scan finished"))
    worker.finished.connect(lambda _: panel.detail.setText("24 usable images"))
    worker.run()
    assert (panel.title.text(), panel.detail.text()) == ("Scan finished", "24 usable images")


def test_a_second_job_and_a_cancel_leave_no_stale_state(qtbot: QtBot) -> None:
    panel = JobPanel()
    qtbot.addWidget(panel)
    first = JobWorker(lambda reporter, control: None, "scan")
    panel.attach("Scanning images", first, unit="files")
    first.run()
    second = JobWorker(lambda reporter, control: None, "train")
    panel.attach("Grouping images", second)
    assert panel.bar.isEnabled() and panel.bar.isVisibleTo(panel)  # not greyed from before
    panel.cancel_button.click()
    assert panel.detail.text() == "Cancelling after the current step…"
    second.run()
    assert panel.detail.text() == "No job running."
