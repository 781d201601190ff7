"""What the controllers need of the main window, and their common base.

:class:`WindowHost` is a Protocol: the controllers name the window's widgets and state they
use without importing :mod:`app.views.main_window` (which imports them), and mypy checks
that :class:`~app.views.main_window.MainWindow` has them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QLabel,
    QListView,
    QMainWindow,
    QMenu,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QWidget,
)

from app.core.session import LibrarySession
from app.core.settings_store import Settings, SettingsStore
from app.itemmodels.clusters import GroupListModel
from app.itemmodels.scan_watcher import ScanWatcher
from app.itemmodels.thumbnail_cache import ThumbnailCache
from app.itemmodels.thumbnails import ThumbnailGridModel
from app.views.detail_panel import DetailPanel
from app.views.job_panel import JobPanel
from app.views.notice_bar import NoticeBar
from app.views.runs_menu import RunsMenu
from app.views.thumbnail_delegate import ThumbnailDelegate
from app.views.viewer import PhotoViewer
from app.workers import JobRunner

__all__ = ["Controller", "WindowHost", "run_modal"]


class WindowHost(Protocol):
    """The main window as the controllers see it: its state, widgets and a few methods."""

    # -- preferences, and where libraries live
    persist: bool
    store: SettingsStore | None
    settings: Settings
    workspace: str | Path | None
    workspace_override: str | Path | None
    scan_workers: int | None
    scan_poll_ms: int
    # -- the open library
    session: LibrarySession | None
    runner: JobRunner
    cache: ThumbnailCache | None
    grid_model: ThumbnailGridModel | None
    scan_watcher: ScanWatcher | None
    scanning: bool
    all_images_mode: bool
    shown_image: int | None
    skipped: list[tuple[str, str]]
    # -- widgets
    group_model: GroupListModel
    group_list: QListView
    left: QStackedWidget
    no_groups: QLabel
    grid: QListView
    grid_delegate: ThumbnailDelegate
    grid_title: QLabel
    low_first: QCheckBox
    middle: QWidget
    center: QStackedWidget
    viewer: PhotoViewer
    detail: DetailPanel
    jobs: JobPanel
    notice: NoticeBar
    splitter: QSplitter
    skipped_button: QPushButton
    device_label: QLabel
    recent_menu: QMenu
    runs_menu: RunsMenu
    skipped_action: QAction
    show_confidence_action: QAction

    @property
    def widget(self) -> QMainWindow:
        """The window itself, as the parent of dialogs and the owner of the status bar."""
        ...

    def update_state(self) -> None:
        """Enable the actions that apply now (after a job started or ended, a change...)."""
        ...

    def show_error(self, kind: str, message: str, details: str = "") -> None:
        """Show an error as a plain message with what to do and copyable details."""
        ...

    def open_folders(
        self,
        folders: Sequence[str | Path],
        scan: bool = True,
        workspace: str | Path | None = None,
    ) -> bool:
        """Open the library of ``folders`` (see :meth:`LibraryController.open_folders`)."""
        ...

    def close_session(self) -> None:
        """Close the open library (the window then shows none)."""
        ...


def run_modal(dialog: QDialog) -> bool:
    """Show ``dialog`` modally (``exec()``); whether it was accepted.

    The dialog is deleted afterwards, once control is back in the event loop (its answers
    stay readable until then): made with the window as its parent, it would otherwise live
    as long as the window, one more for every opening (the Export dialog holds an export
    item per photo, the Group dialog about 0.5 MB of widgets and speeds).
    """
    accepted = bool(dialog.exec())
    dialog.deleteLater()
    return accepted


class Controller:
    """A part of the main window's behaviour, acting on the window's widgets and session."""

    def __init__(self, window: WindowHost) -> None:
        self.window = window

    def status(self, text: str, timeout_ms: int = 0) -> None:
        """Show ``text`` in the status bar (for ``timeout_ms``; 0: until replaced)."""
        self.window.widget.statusBar().showMessage(text, timeout_ms)

    def library_workspace(self) -> str | Path | None:
        """The workspace base of the open library (else the one a library opens with)."""
        window = self.window
        return window.session.workspace_base if window.session is not None else window.workspace
