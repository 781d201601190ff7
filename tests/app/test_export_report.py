"""The window says what an export and its undo did: counts, failed, missing and kept files.

A scanned library with a written (fake) run; the export dialog is accepted by a stand-in.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from app.core.settings_store import SettingsStore
from app.views import export_dialog
from app.views.error_dialog import ErrorDialog
from app.views.main_window import MainWindow
from app.views.skipped_dialog import FileListDialog
from crlc_engine.library.lock import WorkspaceLock
from crlc_engine.results.export import CHANGED_REASON, export_images, file_ops


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path, own_library: tuple[Path, Path]) -> Iterator[MainWindow]:
    """A window showing the library's run (its own photos: a test deletes one), on the
    test's own settings file."""
    folder, ws = own_library
    win = MainWindow(store=SettingsStore(tmp_path / "config" / "settings.json"), workspace=ws)
    qtbot.addWidget(win)
    win.open_folders([folder], scan=False)
    assert win.session is not None and win.session.has_results
    yield win
    win.close()
    assert not win.runner.running


def accept_export(dest: Path) -> Callable[[export_dialog.ExportDialog], int]:
    """A stand-in for ExportDialog.exec: copy into ``dest``, press Export."""

    def run(dialog: export_dialog.ExportDialog) -> int:
        dialog.dest_edit.setText(os.fspath(dest))
        return 1

    return run


def shown_lists(window: MainWindow) -> list[FileListDialog]:
    return [d for d in window.findChildren(FileListDialog) if d.isVisible()]


def test_failed_and_missing_photos_are_counted_and_listed(
    window: MainWindow, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = window.session
    assert session is not None
    photos = sorted(r.path for r in session.library.images())
    gone, unreadable = photos[0], photos[1]
    gone.unlink()  # deleted after the grouping, no rescan
    real_copy = file_ops.copy_contents

    def copy_contents(source: Path, partial: Path, *args: Any) -> str | None:
        if Path(source) == unreadable:
            raise PermissionError(errno.EACCES, "Permission denied", str(source))
        return real_copy(source, partial, *args)

    monkeypatch.setattr(file_ops, "copy_contents", copy_contents)
    monkeypatch.setattr(export_dialog.ExportDialog, "exec", accept_export(tmp_path / "out"))
    window.export_action.trigger()
    qtbot.waitUntil(lambda: bool(shown_lists(window)), timeout=30_000)

    message = window.statusBar().currentMessage()
    assert f"Exported {len(photos) - 2} photos" in message
    assert "1 failed, 0 skipped, 1 missing" in message
    (dialog,) = shown_lists(window)
    assert dialog.windowTitle() == "Photos that failed or are missing"
    text = dialog.intro.text()
    assert "1 photo could not be exported" in text and "1 photo is missing" in text
    assert sorted(dialog.model.rows) == sorted(
        [(str(gone), "missing: source missing"), (str(unreadable), "failed: Permission denied")]
    )
    dialog.close()


def test_a_clean_export_opens_no_list(
    window: MainWindow, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_dialog.ExportDialog, "exec", accept_export(tmp_path / "out"))
    window.export_action.trigger()
    qtbot.waitUntil(lambda: "Exported" in window.statusBar().currentMessage(), timeout=30_000)
    assert "0 failed, 0 skipped, 0 missing" in window.statusBar().currentMessage()
    assert shown_lists(window) == []


def test_a_second_export_of_the_library_is_refused(
    window: MainWindow, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = window.session
    assert session is not None
    monkeypatch.setattr(export_dialog.ExportDialog, "exec", accept_export(tmp_path / "out"))
    with WorkspaceLock(session.library.workspace, "exporting elsewhere", "export.lock"):
        window.export_action.trigger()
        qtbot.waitUntil(lambda: not window.runner.running, timeout=30_000)
    (dialog,) = [d for d in window.findChildren(ErrorDialog) if d.isVisible()]
    assert dialog.kind == "workspace_locked"
    assert "exporting elsewhere" in dialog.help.message
    assert not (tmp_path / "out").exists()
    dialog.close()


def test_undo_lists_the_files_it_kept(
    window: MainWindow, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crlc_engine.results.export_sources import export_items

    session = window.session
    assert session is not None and session.run_id is not None
    items = export_items(session.library, session.run_id)
    result = export_images(items, tmp_path / "out", "copy", session.library.roots)
    edited = next(e.destination for e in result.entries if e.destination is not None)
    edited.write_bytes(b"edited after the export")
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(result.manifest), "")
    )
    window.undo_export_action.trigger()
    qtbot.waitUntil(lambda: bool(shown_lists(window)), timeout=30_000)

    message = window.statusBar().currentMessage()
    assert f"{result.files - 1:,} copies or links removed, 1 file kept" in message
    (dialog,) = shown_lists(window)
    assert dialog.windowTitle() == "Files the undo kept"
    assert dialog.model.rows == [(str(edited), CHANGED_REASON)]
    assert edited.exists()
    dialog.close()
