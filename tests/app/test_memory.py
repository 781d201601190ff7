"""The window's memory: freed memory goes back to the system after a job and after a speed
measurement, and the Group dialog does not load torchvision (about 200 MB) unless a ResNet is
chosen (a broken torchvision is still greyed out then)."""

from __future__ import annotations

import json
import linecache
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox
from pytestqt.qtbot import QtBot

import app.core.torchvision_check as tv_check
from app import pyside_sources
from app.controllers import jobs as jobs_module
from app.core import memory
from app.views import group_dialog as group_dialog_module
from app.views import speed_measurer as speed_measurer_module
from app.views.group_dialog import GroupDialog
from app.views.main_window import MainWindow
from app.views.speed_measurer import SpeedMeasurer
from app.workers import JobWorker
from crlc_engine.core import memory as engine_memory
from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.pipeline import presets
from crlc_engine.pipeline.presets import TORCHVISION_BACKBONES, torchvision_presets
from tests.app.test_dialogs import fake_probe, select

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "torchvision is broken here (test)"


class Calls:
    """Records calls (from any thread) and returns ``value``."""

    def __init__(self, value: Any = True) -> None:
        self.value = value
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        with self.lock:
            self.calls.append(threading.current_thread().name)
        return self.value


# ---------------------------------------------------------------------- app.core.memory
def test_release_collects_then_trims(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    monkeypatch.setattr(engine_memory.gc, "collect", lambda: order.append("collect") or 0)
    monkeypatch.setattr(
        engine_memory, "_malloc_trim", lambda: lambda pad: order.append(f"trim {pad}")
    )
    assert memory.release_freed_memory()
    assert order == ["collect", "trim 0"]
    order.clear()
    assert memory.trim_heap() and order == ["trim 0"]  # no collection: any thread


def test_without_malloc_trim_nothing_is_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_memory, "_malloc_trim", lambda: None)  # musl, macOS, Windows
    assert not memory.trim_heap()
    assert not memory.release_freed_memory()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_the_real_trim_runs() -> None:
    engine_memory._malloc_trim.cache_clear()
    assert memory.trim_heap() == (engine_memory._malloc_trim() is not None)


# ------------------------------------------------------------------------- PySide6's sources
def test_pyside_keeps_no_source_of_the_modules_imported_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import PySide6.QtCore  # noqa: F401  (its import hook looks at every later import)

    assert pyside_sources.read_sources_uncached()
    assert pyside_sources.read_sources_uncached()  # once: not wrapped twice
    feature = sys.modules[pyside_sources.FEATURE_MODULE]
    check = getattr(feature, pyside_sources.CHECK)
    assert check.crlc_uncached
    (tmp_path / "crlc_probe_qt.py").write_text("from PySide6 import QtCore\n", encoding="utf-8")
    (tmp_path / "crlc_probe_plain.py").write_text("VALUE = 2\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("crlc_probe_qt", "crlc_probe_plain"):
        monkeypatch.delitem(sys.modules, name, raising=False)
        __import__(name)  # an import statement (PySide6 hooks __import__, not importlib)
        monkeypatch.delitem(sys.modules, name)
    assert feature.pyside_feature_dict.pop("crlc_probe_qt") == 0  # uses PySide6: switchable
    assert feature.pyside_feature_dict.pop("crlc_probe_plain") == -1  # ignored
    assert not [name for name in linecache.cache if str(tmp_path) in name]  # nothing kept
    assert check(sys) is False  # a built-in module: PySide6's own check answers


def test_without_pyside_s_check_nothing_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, pyside_sources.FEATURE_MODULE, raising=False)
    assert not pyside_sources.read_sources_uncached()


# ------------------------------------------------------------------ after the window's jobs
def test_a_finished_job_gives_its_memory_back(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = Calls()
    monkeypatch.setattr(jobs_module, "release_freed_memory", release)
    window = MainWindow(persist=False)
    qtbot.addWidget(window)
    for job in (lambda r, c: 1, lambda r, c: 1 / 0):  # finished, then failed
        worker = JobWorker(job, "test")
        window.background_jobs.start("A job", worker, report_failure=False)
        qtbot.waitUntil(lambda w=worker: w.is_done, timeout=10_000)
    assert release.calls == ["MainThread", "MainThread"]  # on the GUI thread (gc_guard)
    window.close()


def test_a_closed_dialog_does_not_stay_with_the_window(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, library: tuple[Path, Path]
) -> None:
    folder, ws = library
    window = MainWindow(persist=False, workspace=ws)
    qtbot.addWidget(window)
    window.open_folders([folder], scan=False)
    answers = iter([0, 0, 1])
    seen: list[str] = []

    def exec_(dialog: GroupDialog) -> int:
        seen.append(dialog.preset_name())
        return next(answers)

    monkeypatch.setattr(GroupDialog, "exec", exec_)
    monkeypatch.setattr(jobs_module, "train_job", lambda *a, **k: JobWorker(lambda r, c: None))
    for _ in range(3):  # cancelled twice, then accepted (its settings read after exec)
        window.background_jobs.group()
    assert len(seen) == 3
    qtbot.waitUntil(lambda: not window.findChildren(GroupDialog), timeout=5000)
    qtbot.waitUntil(lambda: not window.runner.running, timeout=10_000)
    window.close()


# ------------------------------------------------------------ after a speed measurement
class FakeSpeeds:
    """A SpeedCache whose measurement returns, fails or waits for a cancel."""

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome

    def measure(self, config: TrainConfig, kind: str, control: JobControl) -> object:
        if self.outcome == "fails":
            raise RuntimeError("no memory left")
        while self.outcome == "waits" and not control.cancelled:
            time.sleep(0.01)
        if control.cancelled:
            raise InterruptedError("cancelled")
        return SimpleNamespace(key="k")


@pytest.mark.parametrize("outcome", ["measured", "fails", "waits"])
def test_a_speed_measurement_trims_the_heap_when_it_ends(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    trim = Calls()
    monkeypatch.setattr(speed_measurer_module, "trim_heap", trim)
    measurer = SpeedMeasurer(FakeSpeeds(outcome))  # type: ignore[arg-type]
    measurer.start("k", TrainConfig(clusters=3), "cpu")
    if outcome == "waits":
        measurer.cancel()
    qtbot.waitUntil(lambda: trim.calls == ["crlc-speed-measure"], timeout=5000)


# ----------------------------------------------------------------- torchvision, lazily
@pytest.fixture
def unchecked(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """torchvision installed but not loaded, never checked in this process; the engine's
    check (what loads it) is recorded and says it is broken."""
    engine_check = Calls(PROBLEM)
    monkeypatch.setattr(tv_check, "_checked", False)
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(tv_check.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(presets, "torchvision_problem", engine_check)  # the facade's value
    return engine_check


def test_installed_but_not_loaded_is_taken_as_usable(unchecked: Calls) -> None:
    assert tv_check.torchvision_problem() is None
    assert unchecked.calls == []  # nothing imported
    assert tv_check.checked_torchvision_problem() == PROBLEM
    assert tv_check.torchvision_problem() == PROBLEM  # checked once: the engine's answer


def test_a_missing_torchvision_is_known_at_once(
    unchecked: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tv_check.importlib.util, "find_spec", lambda name: None)
    assert tv_check.torchvision_problem() == PROBLEM  # its import fails at once: asked
    assert unchecked.calls == ["MainThread"]


def test_a_loaded_torchvision_is_asked_about(
    unchecked: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", SimpleNamespace())
    assert tv_check.torchvision_problem() == PROBLEM and unchecked.calls == ["MainThread"]


def item_enabled(combo: QComboBox, value: str) -> bool:
    model = combo.model()
    return bool(model.flags(model.index(combo.findData(value), 0)) & Qt.ItemFlag.ItemIsEnabled)


def tooltip(combo: QComboBox, value: str) -> Any:
    return combo.itemData(combo.findData(value), Qt.ItemDataRole.ToolTipRole)


def resnet_items(dialog: GroupDialog) -> list[bool]:
    return [item_enabled(dialog.preset_combo, n) for n in torchvision_presets()] + [
        item_enabled(dialog.backbone_combo, n) for n in TORCHVISION_BACKBONES
    ]


def test_the_dialog_checks_torchvision_when_a_resnet_is_chosen(
    qtbot: QtBot, unchecked: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_dialog_module, "torchvision_problem", tv_check.torchvision_problem)
    dialog = GroupDialog(40, device_probe=fake_probe("cpu"), quick_available=True, speeds=None)
    qtbot.addWidget(dialog)
    assert dialog.preset_name() == "quick" and dialog.ok_button.isEnabled()
    assert unchecked.calls == [] and all(resnet_items(dialog))  # not loaded for the quick one
    select(dialog, "preset_combo", "balanced")  # a ResNet: checked now, found broken
    assert unchecked.calls  # (the form's own check of a ResNet setting asks too)
    assert not any(resnet_items(dialog))
    assert tooltip(dialog.preset_combo, "balanced") == PROBLEM
    assert tooltip(dialog.backbone_combo, "resnet18") == PROBLEM
    assert PROBLEM in (dialog.error or "") and not dialog.ok_button.isEnabled()
    select(dialog, "preset_combo", "quick")
    assert dialog.ok_button.isEnabled()
    assert dialog.preset_problem("paper") == PROBLEM


def test_on_a_gpu_a_broken_torchvision_moves_the_default_to_quick(
    qtbot: QtBot, unchecked: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_dialog_module, "torchvision_problem", tv_check.torchvision_problem)
    dialog = GroupDialog(40, device_probe=fake_probe("cuda"), quick_available=True, speeds=None)
    qtbot.addWidget(dialog)
    assert unchecked.calls  # the GPU's default (balanced) trains a ResNet: checked at once
    assert dialog.preset_name() == "quick" and dialog.ok_button.isEnabled()
    assert not any(resnet_items(dialog))


def test_a_working_torchvision_greys_nothing(
    qtbot: QtBot, unchecked: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    unchecked.value = None
    monkeypatch.setattr(group_dialog_module, "torchvision_problem", tv_check.torchvision_problem)
    dialog = GroupDialog(40, device_probe=fake_probe("cuda"), quick_available=True, speeds=None)
    qtbot.addWidget(dialog)
    assert dialog.preset_name() == "balanced" and dialog.ok_button.isEnabled()
    assert unchecked.calls and all(resnet_items(dialog))


DIALOG_SCRIPT = """
import json, sys
from PySide6.QtWidgets import QApplication
from app.gc_guard import freeze_startup_heap
from app.views.group_dialog import GroupDialog
from tests.app.test_dialogs import fake_probe, select
app = QApplication([])
freeze_startup_heap()  # what the main window loads (torch, FAISS)
dialog = GroupDialog(40, device_probe=fake_probe("cpu"), quick_available=True, speeds=None)
seen = {"preset": dialog.preset_name(), "quick": "torchvision" in sys.modules}
select(dialog, "preset_combo", "balanced")
seen["balanced"] = "torchvision" in sys.modules
print(json.dumps(seen))
"""


def test_the_quick_preset_does_not_load_torchvision() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-c", DIALOG_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"preset": "quick", "quick": False, "balanced": True}
