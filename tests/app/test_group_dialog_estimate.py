"""The Group dialog's estimate: rough at first, then this computer's measured speed."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.views.group_dialog import GroupDialog
from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.pipeline.estimate import Calibration, SpeedCache, speed_key
from crlc_engine.pipeline.estimate import speed_cache as speed_cache_module
from tests.app.test_dialogs import fake_probe, select


class FakeMeasure:
    """Stands in for :func:`crlc_engine.pipeline.estimate.measure_speed` (what
    :meth:`SpeedCache.measure` calls, keeping the result): waits for the test, then gives a
    fixed speed or fails with ``error``."""

    def __init__(self, step_s: float = 0.02, error: str | None = None) -> None:
        self.step_s = step_s
        self.error = error
        self.release = threading.Event()
        self.calls: list[tuple[TrainConfig, str, JobControl]] = []

    def __call__(self, config: TrainConfig, device_kind: str, control: JobControl) -> Calibration:
        self.calls.append((config, device_kind, control))
        while not self.release.wait(0.01):
            if control.cancelled:
                raise InterruptedError("cancelled")
        if self.error is not None:
            raise RuntimeError(self.error)
        return Calibration(
            speed_key(config, device_kind),
            device_kind,
            step_s=self.step_s,
            batch=config.batch_size,
            feature_images_per_s=50.0,
            save_bytes_per_s=1e9,
            created=time.time(),  # SpeedCache's clock
        )


@pytest.fixture
def measure(monkeypatch: pytest.MonkeyPatch) -> FakeMeasure:
    fake = FakeMeasure()
    monkeypatch.setattr(speed_cache_module, "measure_speed", fake)
    return fake


def shown(qtbot: QtBot, speeds: SpeedCache, images: int = 400, **kwargs: Any) -> GroupDialog:
    kwargs.setdefault("quick_available", False)  # the cpu preset, installed extra or not
    dialog = GroupDialog(images, device_probe=fake_probe("cpu"), speeds=speeds, **kwargs)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_the_rough_estimate_turns_into_the_measured_one(
    qtbot: QtBot, tmp_path: Path, measure: FakeMeasure
) -> None:
    speeds = SpeedCache(tmp_path / "speeds.json")
    dialog = shown(qtbot, speeds)  # cpu preset: 100 epochs of 400 photos, 6 steps each
    text = dialog.estimate_label.text()
    assert "rough guess" in text and "Measuring this computer's speed" in text
    assert dialog.measuring
    qtbot.waitUntil(lambda: len(measure.calls) == 1, timeout=5000)
    measure.release.set()
    qtbot.waitUntil(lambda: "measured on this computer" in dialog.estimate_label.text())
    assert not dialog.measuring
    estimate = dialog.estimate()
    assert estimate is not None and estimate.basis == "measured"
    assert estimate.parts["steps"] == pytest.approx(100 * 6 * 0.02)
    assert "Measuring" not in dialog.estimate_label.text()
    assert "13 seconds" in dialog.estimate_label.text()
    dialog.reject()

    again = shown(qtbot, speeds)  # the second time: at once, nothing measured
    assert "measured on this computer" in again.estimate_label.text()
    assert not again.measuring and len(measure.calls) == 1


def test_a_change_measures_the_new_settings_and_closing_cancels(
    qtbot: QtBot, tmp_path: Path, measure: FakeMeasure
) -> None:
    speeds = SpeedCache(tmp_path / "speeds.json")
    dialog = shown(qtbot, speeds)
    qtbot.waitUntil(lambda: len(measure.calls) == 1, timeout=5000)
    first_control = measure.calls[0][2]
    dialog.epochs_spin.setValue(50)  # same speed key: the measurement goes on
    assert not first_control.cancelled
    select(dialog, "backbone_combo", "resnet18")  # another network: measured anew
    qtbot.waitUntil(lambda: len(measure.calls) == 2, timeout=5000)
    assert first_control.cancelled and measure.calls[1][0].backbone == "resnet18"
    dialog.reject()
    assert measure.calls[1][2].cancelled


def test_a_failed_measurement_keeps_the_rough_estimate(
    qtbot: QtBot, tmp_path: Path, measure: FakeMeasure
) -> None:
    speeds = SpeedCache(tmp_path / "speeds.json")
    measure.error = "no memory left"
    measure.release.set()
    dialog = shown(qtbot, speeds)
    qtbot.waitUntil(lambda: "could not be measured" in dialog.estimate_label.text())
    assert "no memory left" in dialog.estimate_label.text()
    assert "rough guess" in dialog.estimate_label.text() and not dialog.measuring


def test_the_disk_line_counts_what_a_quick_checkpoint_holds(qtbot: QtBot) -> None:
    dialog = GroupDialog(400, device_probe=fake_probe("cpu"), quick_available=True, speeds=None)
    qtbot.addWidget(dialog)
    assert dialog.preset_name() == "quick"
    text = dialog.estimate_label.text()
    assert "a 15 MB checkpoint (44 MB while training)" in text
    assert "1.0 MB feature cache" in text  # 400 x 1280 float16 features, no pixel cache
    assert "pixel cache" not in text
    estimate = dialog.estimate()
    assert estimate is not None and estimate.parts["decode"] > 0  # 224 px: read again
    assert "Measuring" not in text  # no speed source: the rough guess stays
    cached = GroupDialog(
        400,
        device_probe=fake_probe("cpu"),
        quick_available=True,
        speeds=None,
        cached_sizes=(32, 224),
    )
    qtbot.addWidget(cached)
    estimate = cached.estimate()
    assert estimate is not None and estimate.parts["decode"] == 0.0
