"""The whole workflow in the window with the real engine on generated images (tiny config):
open (scan), group (train), select, neighbours, label, undo, refine, export, reopen."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.views import export_dialog, group_dialog
from app.views.main_window import MainWindow
from crlc_engine.core.config import TrainConfig
from crlc_engine.library.synthetic import write_shapes_folder

TINY = TrainConfig(
    clusters=3,
    backbone="small",
    stem="imagenet",
    image_size=32,
    batch_size=32,
    epochs=3,
    subheads=2,
    device="cpu",
    preset="cpu",
)


def wait_idle(window: MainWindow, qtbot: QtBot) -> None:
    qtbot.waitUntil(lambda: not window.runner.running, timeout=120_000)


def test_open_group_correct_refine_export_reopen(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = write_shapes_folder(tmp_path / "photos", per_class=10, size=32, classes=3)
    ws = tmp_path / "ws"
    window = MainWindow(workspace=ws)
    qtbot.addWidget(window)

    window.open_folders([photos])  # background scan
    wait_idle(window, qtbot)
    assert window.session is not None and len(window.session.library.images()) == 30
    assert not window.session.has_results and window.group_action.isEnabled()

    monkeypatch.setattr(group_dialog.GroupDialog, "exec", lambda self: 1)
    monkeypatch.setattr(group_dialog.GroupDialog, "config", lambda self: TINY)
    window.background_jobs.group()
    assert window.runner.running
    wait_idle(window, qtbot)
    assert window.session.has_results and window.group_model.rowCount() >= 1
    assert "Epoch 3" in window.jobs.detail.text() or window.jobs.bar.value() > 0

    assert window.grid_model is not None and window.grid_model.rowCount() > 0
    window.grid.setCurrentIndex(window.grid_model.index(0))
    assert window.detail.neighbors.count() == 10
    first = window.grid_model.image_id(0)
    window.session.label([first], "Special")
    window.refresh()
    assert window.session.detail(first).label == "Special"
    window.corrections.undo()
    assert window.session.detail(first).label is None
    window.corrections.redo()

    from app.views import refine_dialog

    dialog = window.refine_dialog()
    assert dialog is not None
    assert dialog.what.text().startswith("1 labelled picture in 1 group: Special (1)")
    assert dialog.epochs_spin.value() == 1 and "About" in dialog.estimate_label.text()
    monkeypatch.setattr(refine_dialog.RefineDialog, "exec", lambda self: 1)
    window.background_jobs.refine()
    wait_idle(window, qtbot)
    assert window.jobs.title.text().startswith("Refining with your labels: done after")
    assert not window.jobs.bar.isVisible() and window.jobs.rate.text() == ""
    refined = window.session.run_id
    runs = window.session.library.runs.all()
    assert len(runs) == 2 and runs[-1].read_config()["parent"] == runs[0].run_id
    assert refined == runs[-1].run_id
    window.runs.fill_runs_menu()  # Runs menu: one checkable entry per completed run
    entries = [a for a in window.runs_menu.actions() if a.isCheckable()]
    assert len(entries) == 2 and entries[-1].isChecked()
    window.show_run(runs[0].run_id)
    assert window.session.run_id == runs[0].run_id
    window.show_run(refined)

    dest = tmp_path / "sorted"
    monkeypatch.setattr(export_dialog.ExportDialog, "exec", lambda self: 1)
    monkeypatch.setattr(
        export_dialog.ExportDialog,
        "options",
        lambda self: export_dialog.ExportOptions(
            dest=dest, mode="copy", min_confidence=0.0, keep_subfolders=False
        ),
    )
    window.exports.export()
    wait_idle(window, qtbot)
    exported = sorted(p.name for p in dest.rglob("*.png"))
    assert len(exported) == 30
    assert (dest / "Special").is_dir()  # the label's class is a folder
    window.close()
    assert not window.runner.running

    reopened = MainWindow([photos], workspace=ws)
    qtbot.addWidget(reopened)
    assert reopened.session is not None and reopened.session.run_id == refined
    assert reopened.session.annotations.labels() == {first: "Special"}
    reopened.close()
