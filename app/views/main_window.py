"""The main window: groups on the left, the selected group's thumbnails in the middle, the
selected image with its probabilities and neighbours on the right, the job panel below.

The left list is the run's group view (:mod:`crlc_engine.results.groups`): a merge (one name on
several clusters) is one row, and a picture labelled or moved into a group shows there at
once (labelled thumbnails carry a mark).

Before a library is grouped (and while its first scan runs) the middle shows "All images":
the images the scan has finished so far, read by a :class:`ScanWatcher` off the GUI thread.
A notice bar above the content offers what should not block the window: resuming an
unfinished run, locating a moved folder. All long work (scan, train, resume, refine,
export, re-link) runs in :mod:`app.workers`. This module builds the window and wires its
widgets to the controllers of :mod:`app.controllers` (browsing, library, scans, jobs, runs,
corrections, export, preferences), which act on the Qt-free
:class:`~app.core.session.LibrarySession` and the item models. Corrections (rename, move,
label, ignore, split, undo, redo) go through the session, which keeps itself current.

Where each kind of state lives:

- the user's preferences (theme, thumbnail size, defaults of the dialogs, scan processes,
  workspace folder, "least confident first", ...): ``settings.json`` through
  :class:`~app.core.settings_store.SettingsStore`, edited in Edit > Settings and applied at once
  (:meth:`MainWindow.apply_settings`);
- the window layout (geometry, toolbar, splitter): Qt's ``settings.ini``
  (:func:`~app.controllers.preferences.settings`), both files in the platformdirs config folder;
- the recent libraries: ``recent.json`` there too (:mod:`app.core.recent`);
- per library, the run and group shown last: ``<workspace>/app-view.json``
  (:class:`~app.core.session.LibrarySession`);
- labels, names, ignores, splits and their undo history: the library's catalog (engine).

A window made with ``persist=False`` (screenshots) reads and writes none of the user's
files: it uses the default settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.controllers.browsing import BrowsingController
from app.controllers.corrections import CorrectionsController
from app.controllers.export import ExportController
from app.controllers.jobs import JobsController
from app.controllers.library import LibraryController
from app.controllers.preferences import PreferencesController, settings
from app.controllers.runs import RunsController
from app.controllers.scans import SCAN_SIZE, ScansController
from app.core.scanned_images import ScannedImages
from app.core.settings_store import Settings, SettingsStore
from app.gc_guard import freeze_startup_heap
from app.icons import app_icon, icon
from app.itemmodels.clusters import GroupListModel
from app.itemmodels.scan_watcher import ScanWatcher
from app.itemmodels.thumbnail_cache import ThumbnailCache
from app.itemmodels.thumbnails import ThumbnailGridModel
from app.views.about_dialog import AboutDialog
from app.views.detail_panel import DetailPanel
from app.views.error_dialog import show_error
from app.views.group_delegate import GroupDelegate
from app.views.job_panel import JobPanel
from app.views.notice_bar import NoticeBar
from app.views.runs_menu import RunsMenu
from app.views.skipped_dialog import FileListDialog
from app.views.thumbnail_delegate import ThumbnailDelegate
from app.views.viewer import PhotoViewer
from app.workers import JobRunner, JobWorker

if TYPE_CHECKING:
    from app.core.session import LibrarySession
    from app.views.refine_dialog import RefineDialog
    from app.views.settings_dialog import SettingsDialog

__all__ = ["SCAN_SIZE", "DetailPanel", "JobPanel", "MainWindow", "log_file", "settings"]

_log = logging.getLogger("crlc_organizer")
#: What an action does when triggered.
Slot = Callable[..., object]
Shortcut = QKeySequence | QKeySequence.StandardKey | str | None


def log_file() -> Path:
    """Where the app writes its log (the platformdirs log folder)."""
    return Path(platformdirs.user_log_dir("crlc-organizer")) / "crlc-organizer.log"


class MainWindow(QMainWindow):
    """CRLC Organizer's main window.

    Args:
        folders: A library to open at once (not scanned).
        workspace: Workspace base; wins over the settings' workspace folder (default: the
            setting, else ``$CRLC_WORKSPACE``, else the user data folder).
        persist: Record opened libraries in the recent list, restore and save the window
            layout, load and save the settings (off for screenshots: they neither read nor
            change the user's files).
        settings: The settings to start with (default: loaded from ``store``, or the
            defaults without one).
        store: Where the settings dialog saves (default: the user's settings file when
            ``persist``, else nothing is saved).
    """

    def __init__(
        self,
        folders: Sequence[str | Path] = (),
        workspace: str | Path | None = None,
        persist: bool = True,
        settings: Settings | None = None,
        store: SettingsStore | None = None,
    ) -> None:
        super().__init__()
        freeze_startup_heap()
        self.setWindowTitle("CRLC Organizer")
        self.setWindowIcon(app_icon())
        self.persist = persist
        self.store = store if store is not None else (SettingsStore() if persist else None)
        if settings is None:
            settings = self.store.load() if self.store is not None else Settings()
        self.settings = settings
        self.workspace_override = workspace  # the command line's --workspace wins
        self.workspace: str | Path | None = (
            workspace if workspace is not None else settings.workspace_base()
        )
        self.session: LibrarySession | None = None
        self.runner = JobRunner(self)
        self.cache: ThumbnailCache | None = None
        self.grid_model: ThumbnailGridModel | None = None
        self.scan_watcher: ScanWatcher | None = None
        self.scanning = False  # a scan job of this window runs
        self.all_images_mode = False  # the grid shows every image (nothing grouped yet)
        self.shown_image: int | None = None  # the image in the detail panel
        self.skipped: list[tuple[str, str]] = []
        # decoding processes of scans (0 decodes in the job's thread: tests)
        self.scan_workers: int | None = settings.effective_scan_workers()
        self.scan_poll_ms = 700  # how often the grid looks for newly scanned images
        self._make_controllers()
        self._build_body()
        self._make_actions()
        self._build_status_bar()
        self._apply_start_settings(settings)
        self.resize(1280, 800)
        if persist:
            self.preferences.restore_layout()
        self.update_state()
        if folders:
            self.open_folders(folders, scan=False)

    # ------------------------------------------------------------------ set-up
    def _make_controllers(self) -> None:
        self.browsing = BrowsingController(self)
        self.background_jobs = JobsController(self, self.browsing)
        self.runs = RunsController(self, self.browsing, self.background_jobs)
        self.scans = ScansController(self, self.browsing, self.background_jobs, self.runs)
        self.libraries = LibraryController(
            self, self.browsing, self.background_jobs, self.runs, self.scans
        )
        self.corrections = CorrectionsController(self, self.browsing)
        self.exports = ExportController(self, self.background_jobs)
        self.preferences: PreferencesController = PreferencesController(self, self.browsing)

    def _apply_start_settings(self, settings: Settings) -> None:
        self.group_list.selectionModel().currentChanged.connect(self.browsing.show_selected_group)
        self.set_thumbnail_size(settings.thumbnail_size)
        self.low_first.setChecked(settings.low_confidence_first)
        self.low_first.toggled.connect(self.preferences.remember_low_first)
        self.show_confidence_action.setChecked(settings.show_confidence)
        self.grid_delegate.set_show_confidence(settings.show_confidence)

    def _build_body(self) -> None:
        self._build_group_list()
        self._build_center()
        self.detail = DetailPanel()
        self.detail.neighbors.itemClicked.connect(self.browsing.neighbor_clicked)
        self.jobs = JobPanel()
        self.notice = NoticeBar()
        self.empty = QLabel("Open a folder of photos to start (File > Open folder, Ctrl+O).")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)

        splitter = QSplitter()
        splitter.addWidget(self.left)
        splitter.addWidget(self.center)
        splitter.addWidget(self.detail)
        splitter.setSizes([220, 700, 320])
        splitter.setStretchFactor(1, 1)
        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.addWidget(self.notice)
        body_layout.addWidget(self.empty, 1)
        body_layout.addWidget(splitter, 1)
        body_layout.addWidget(self.jobs)
        self.splitter = splitter
        self.setCentralWidget(body)

    def _build_group_list(self) -> None:
        """The left side: the run's groups, or "No groups yet"."""
        self.group_model = GroupListModel(self)
        self.group_model.renameRequested.connect(self.corrections.rename)
        self.group_model.moveRequested.connect(self.corrections.move_dropped)
        self.group_list = QListView()
        self.group_list.setModel(self.group_model)
        self.group_list.setItemDelegate(GroupDelegate(self.group_list))  # covers, size, conf.
        self.group_list.setUniformItemSizes(True)
        self.group_list.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.group_list.setAcceptDrops(True)
        self.group_list.setDropIndicatorShown(True)
        self.group_list.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.group_list.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.no_groups = QLabel(
            "<b>No groups yet</b><br><br>When the scan is done, Images &gt; Group images… "
            "(Ctrl+G) sorts the images into groups."
        )
        self.no_groups.setWordWrap(True)
        self.no_groups.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.no_groups.setMargin(12)
        self.left: QStackedWidget = QStackedWidget()
        self.left.addWidget(self.group_list)
        self.left.addWidget(self.no_groups)

    def _build_center(self) -> None:
        """The middle: the thumbnail grid with its title, or the viewer in its place."""
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setUniformItemSizes(True)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setDragEnabled(True)  # drag images onto a group to move them
        self.grid.setMovement(QListView.Movement.Static)
        # a mark on labelled pictures, a confidence bar (View > Show confidence)
        self.grid_delegate = ThumbnailDelegate(self.grid)
        self.grid.setItemDelegate(self.grid_delegate)
        self.grid_title = QLabel("")
        self.low_first = QCheckBox("Least confident first")
        self.low_first.toggled.connect(self.browsing.show_selected_group)
        header = QHBoxLayout()
        header.addWidget(self.grid_title, 1)
        header.addWidget(self.low_first)
        middle = QWidget()
        middle_layout = QVBoxLayout(middle)
        middle_layout.setContentsMargins(0, 0, 0, 0)
        middle_layout.addLayout(header)
        middle_layout.addWidget(self.grid)
        self.middle = middle
        # the viewer takes the grid's place (Double-click or Space; Esc returns)
        self.viewer = PhotoViewer()
        self.viewer.set_placeholder_source(
            lambda image_id: self.cache.get(image_id) if self.cache is not None else None
        )
        self.viewer.currentChanged.connect(self.browsing.viewer_moved)
        self.viewer.closed.connect(self.browsing.close_viewer)
        self.center: QStackedWidget = QStackedWidget()
        self.center.addWidget(middle)
        self.center.addWidget(self.viewer)
        self.grid.doubleClicked.connect(lambda _index: self.open_viewer())
        self.grid.installEventFilter(self)  # Space opens the viewer

    def _action(
        self,
        text: str,
        slot: Slot,
        shortcut: Shortcut = None,
        menu_name: str = "&File",
        icon_name: str | None = None,
    ) -> QAction:
        """An action in the menu ``menu_name`` (made on first use)."""
        act = QAction(icon(icon_name) if icon_name else QIcon(), text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        if menu_name not in self._menus:
            self._menus[menu_name] = self.menuBar().addMenu(menu_name)
        self._menus[menu_name].addAction(act)
        return act

    def _make_actions(self) -> None:
        self._menus: dict[str, QMenu] = {}
        self._make_file_menu()
        self._make_images_menu()
        self._make_edit_menu()
        self._make_runs_menu()
        action = self._action
        self.view_action = action(
            "View photo (Space, double-click)", self.open_viewer, None, "&View", "view"
        )
        self.show_confidence_action = action(
            "Show confidence on thumbnails",
            self.preferences.show_confidence,
            None,
            "&View",
            "confidence",
        )
        self.show_confidence_action.setCheckable(True)
        self.about_action = action("About CRLC Organizer", self.show_about, None, "&Help", "about")
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self._make_toolbar()
        self.grid.addActions([self.move_action, self.label_action, self.ignore_action])
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.group_list.addActions([self.rename_action, self.split_action])

    def _make_file_menu(self) -> None:
        action, exports = self._action, self.exports
        self.open_action = action(
            "Open folder...",
            self.libraries.choose_folder,
            QKeySequence.StandardKey.Open,
            icon_name="open",
        )
        self.recent_menu = QMenu("Open recent", self)
        self.recent_menu.setIcon(icon("open"))
        self.recent_menu.aboutToShow.connect(self.libraries.fill_recent_menu)
        self._menus["&File"].addMenu(self.recent_menu)
        self.export_action = action("Export...", exports.export, "Ctrl+E", icon_name="export")
        self.undo_export_action = action("Undo an export...", exports.undo_export, icon_name="undo")
        self._menus["&File"].addSeparator()
        self.quit_action = action("Quit", self.close, "Ctrl+Q", icon_name="quit")  # Cmd+Q on a Mac
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)

    def _make_images_menu(self) -> None:
        action, jobs = self._action, self.background_jobs
        self.group_action = action("Group images...", jobs.group, "Ctrl+G", "&Images", "group")
        self.refine_action = action(
            "Refine with labels", jobs.refine, "Ctrl+R", "&Images", "refine"
        )
        self.rescan_action = action("Scan the folders again", self.scan, "F5", "&Images", "scan")
        self.skipped_action = action(
            "Skipped files...", self.show_skipped, None, "&Images", "ignore"
        )

    def _make_edit_menu(self) -> None:
        action, fix = self._action, self.corrections
        self.undo_action = action("Undo", fix.undo, QKeySequence.StandardKey.Undo, "&Edit", "undo")
        self.redo_action = action("Redo", fix.redo, QKeySequence.StandardKey.Redo, "&Edit", "redo")
        self._menus["&Edit"].addSeparator()
        self.move_action: QAction = action("Move to group...", fix.move, "M", "&Edit", "move")
        self.label_action: QAction = action("Label as...", fix.label, "L", "&Edit", "label")
        self.ignore_action: QAction = action("Ignore", fix.ignore, "Delete", "&Edit", "ignore")
        self._menus["&Edit"].addSeparator()
        self.rename_action: QAction = action(
            "Rename group...", fix.edit_group_name, None, "&Edit", "label"
        )
        self.split_action: QAction = action("Split group...", fix.split, None, "&Edit", "split")
        self._menus["&Edit"].addSeparator()
        self.settings_action = action(
            "Settings...",
            self.preferences.open_settings,
            QKeySequence.StandardKey.Preferences,
            "&Edit",
            "settings",
        )
        self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)

    def _make_runs_menu(self) -> None:
        """Runs: completed runs and unfinished runs are listed when the menu opens."""
        self.runs_menu = RunsMenu("&Runs", self)
        self.menuBar().addMenu(self.runs_menu)
        self._menus["&Runs"] = self.runs_menu
        self.delete_run_action = QAction(icon("delete"), "Delete the current run...", self)
        self.delete_run_action.triggered.connect(self.runs.delete_run)
        self.runs_menu.add_fixed(self.delete_run_action)
        self.runs_menu.aboutToShow.connect(self.runs.fill_runs_menu)
        self.runs_menu.showRun.connect(self.show_run)
        self.runs_menu.resumeRun.connect(self.runs.resume_run)
        self.runs_menu.discardRun.connect(self.discard_run)

    def _make_toolbar(self) -> None:
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for act in (
            self.open_action,
            self.group_action,
            self.refine_action,
            self.export_action,
            None,
            self.undo_action,
            self.redo_action,
        ):
            if act is None:
                toolbar.addSeparator()
            else:
                toolbar.addAction(act)

    def _build_status_bar(self) -> None:
        self.skipped_button = QPushButton("")
        self.skipped_button.setFlat(True)
        self.skipped_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.skipped_button.setStyleSheet("QPushButton { color: palette(link); border: none; }")
        self.skipped_button.setToolTip("Show the files that could not be used, with the reason")
        self.skipped_button.clicked.connect(self.show_skipped)
        self.skipped_button.setVisible(False)
        self.device_label = QLabel("")
        self.statusBar().addPermanentWidget(self.skipped_button)
        self.statusBar().addPermanentWidget(self.device_label)
        self.preferences.show_device()

    # ------------------------------------------------------------------ state
    @property
    def widget(self) -> QMainWindow:
        """The window itself (the controllers' parent of dialogs and status bar)."""
        return self

    def show_error(self, kind: str, message: str, details: str = "") -> None:
        """Show an error as a plain message with what to do and copyable details."""
        _log.error("%s: %s\n%s", kind, message, details)
        show_error(self, kind, message, details)

    def update_state(self) -> None:
        """Enable the actions that apply now: a library is open, it has groups, a job runs,
        there is something to undo or redo."""
        has_session = self.session is not None
        has_results = bool(self.session and self.session.has_results)
        busy = self.runner.running
        self.empty.setVisible(not has_session)
        self.splitter.setVisible(has_session)
        self.group_action.setEnabled(has_session and not busy)
        self.rescan_action.setEnabled(has_session and not busy)
        self.refine_action.setEnabled(has_results and not busy)
        self.export_action.setEnabled(has_results and not busy)
        self.skipped_action.setEnabled(bool(self.skipped))
        self.low_first.setVisible(has_results)
        for act in (
            self.move_action,
            self.label_action,
            self.ignore_action,
            self.rename_action,
            self.split_action,
        ):
            act.setEnabled(has_results)
        notes = self.session.annotations if self.session is not None else None
        for act, word, step in (
            (self.undo_action, "Undo", notes.next_undo if notes else None),
            (self.redo_action, "Redo", notes.next_redo if notes else None),
        ):
            what = step() if step is not None else None
            act.setEnabled(has_results and what is not None)  # nothing to undo: greyed
            act.setToolTip(f"{word}: {what}" if what else word)
        self.browsing.update_grid_title()
        if has_session and not has_results and not busy:
            self.statusBar().showMessage("No groups yet: Images > Group images... (Ctrl+G)")

    def show_about(self) -> AboutDialog:
        """Open the About dialog (versions, device, log folder; non-blocking); returns it."""
        dialog = AboutDialog(
            self.settings.default_device,
            log_file().parent,
            self.store.path if self.store is not None else None,
            self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Space in the grid opens the viewer (instead of toggling the selection)."""
        if (
            watched is self.grid
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Space
            and event.modifiers() == Qt.KeyboardModifier.NoModifier
        ):
            return self.open_viewer()
        return super().eventFilter(watched, event)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Ask before closing while a job runs (unless the settings say not to); stop jobs
        and threads cleanly."""
        if self.runner.running and self.settings.confirm_close_with_job:
            answer = QMessageBox.question(
                self,
                "CRLC Organizer",
                "A job is still running. Stop it and close? (Training keeps its last "
                "checkpoint and can be resumed.)",
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        if self.persist:
            self.preferences.save_layout()
        self.runner.shutdown()
        self.close_session()
        self.viewer.shutdown()
        event.accept()

    # ------------------------------------------------------------------ the controllers' API
    def open_folders(
        self,
        folders: Sequence[str | Path],
        scan: bool = True,
        workspace: str | Path | None = None,
    ) -> bool:
        """See :meth:`LibraryController.open_folders`."""
        return self.libraries.open_folders(folders, scan, workspace)

    def close_session(self) -> None:
        """See :meth:`LibraryController.close_session`."""
        self.libraries.close_session()

    _close_session = close_session  # the name benchmarks/gui_responsiveness.py uses

    def refresh(self, run_id: str | None = None, reload: bool = True) -> None:
        """See :meth:`BrowsingController.refresh`."""
        self.browsing.refresh(run_id, reload)

    def show_scanned(self, images: ScannedImages, reset: bool = False) -> None:
        """See :meth:`BrowsingController.show_scanned`."""
        self.browsing.show_scanned(images, reset)

    def show_image(self, image_id: int) -> None:
        """See :meth:`BrowsingController.show_image`."""
        self.browsing.show_image(image_id)

    def select_image(self, image_id: int) -> bool:
        """See :meth:`BrowsingController.select_image`."""
        return self.browsing.select_image(image_id)

    def viewer_shown(self) -> bool:
        """See :meth:`BrowsingController.viewer_shown`."""
        return self.browsing.viewer_shown()

    def open_viewer(self) -> bool:
        """See :meth:`BrowsingController.open_viewer`."""
        return self.browsing.open_viewer()

    def scan(self) -> None:
        """See :meth:`ScansController.scan`."""
        self.scans.scan()

    def show_skipped(self) -> FileListDialog | None:
        """See :meth:`ScansController.show_skipped`."""
        return self.scans.show_skipped()

    def _start(
        self, title: str, worker: JobWorker, unit: str | None = None, report_failure: bool = True
    ) -> None:
        """See :meth:`JobsController.start` (benchmarks/gui_responsiveness.py uses it)."""
        self.background_jobs.start(title, worker, unit, report_failure)

    def refine_dialog(self) -> RefineDialog | None:
        """See :meth:`JobsController.refine_dialog`."""
        return self.background_jobs.refine_dialog()

    def show_run(self, run_id: str) -> None:
        """See :meth:`RunsController.show_run`."""
        self.runs.show_run(run_id)

    def discard_run(self, run_id: str, confirm: bool = True) -> None:
        """See :meth:`RunsController.discard_run`."""
        self.runs.discard_run(run_id, confirm)

    def move_to(self, image_ids: list[int], key: str) -> None:
        """See :meth:`CorrectionsController.move_to`."""
        self.corrections.move_to(image_ids, key)

    def settings_dialog(self) -> SettingsDialog:
        """See :meth:`PreferencesController.settings_dialog`."""
        return self.preferences.settings_dialog()

    def apply_settings(self, new: Settings) -> None:
        """See :meth:`PreferencesController.apply_settings`."""
        self.preferences.apply_settings(new)

    def set_thumbnail_size(self, side: int) -> None:
        """See :meth:`PreferencesController.set_thumbnail_size`."""
        self.preferences.set_thumbnail_size(side)
