"""The main window: groups on the left, the selected group's thumbnails in the middle, the
selected image with its probabilities and neighbours on the right, the job panel below.

The left list is the run's group view (:mod:`crlc_engine.results.groups`): a merge (one name on
several clusters) is one row, and a picture labelled or moved into a group shows there at
once (labelled thumbnails carry a mark).

Before a library is grouped (and while its first scan runs) the middle shows "All images":
the images the scan has finished so far, read by a :class:`ScanWatcher` off the GUI thread.
A notice bar above the content offers what should not block the window: resuming an
unfinished run, locating a moved folder. All long work (scan, train, resume, refine,
export, re-link) runs in :mod:`app.workers`; this module only wires views to the Qt-free
:class:`~app.session.LibrarySession` and the item models. Corrections (rename, move, label,
ignore, split, undo, redo) go through the session, which keeps itself current.

Where each kind of state lives:

- the user's preferences (theme, thumbnail size, defaults of the dialogs, scan processes,
  workspace folder, "least confident first", ...): ``settings.json`` through
  :class:`~app.settings_store.SettingsStore`, edited in Edit > Settings and applied at once
  (:meth:`MainWindow.apply_settings`);
- the window layout (geometry, toolbar, splitter): Qt's ``settings.ini``
  (:func:`settings`), both files in the platformdirs config folder;
- the recent libraries: ``recent.json`` there too (:mod:`app.recent`);
- per library, the run and group shown last: ``<workspace>/app-view.json``
  (:class:`~app.session.LibrarySession`);
- labels, names, ignores, splits and their undo history: the library's catalog (engine).

A window made with ``persist=False`` (screenshots) reads and writes none of the user's
files: it uses the default settings.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import (
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPoint,
    QSettings,
    QSize,
    QStandardPaths,
    Qt,
    QUrl,
)
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QIcon,
    QKeyEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListView,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.icons import app_icon, icon
from app.itemmodels.clusters import GroupListModel
from app.itemmodels.scan_watcher import ScanWatcher
from app.itemmodels.thumbnail_cache import ThumbnailCache
from app.itemmodels.thumbnails import ThumbnailGridModel
from app.recent import forget_recent, recent_libraries, remember_folders, replace_folder
from app.session import LibrarySession, ScannedImages, UnfinishedRun
from app.settings_store import Settings, SettingsStore
from app.theme import apply_theme
from app.views.detail_panel import DetailPanel
from app.views.error_dialog import show_error
from app.views.group_delegate import GroupDelegate
from app.views.job_panel import JobPanel
from app.views.notice_bar import NoticeBar
from app.views.runs_menu import RunsMenu
from app.views.skipped_dialog import FileListDialog, skipped_files_dialog
from app.views.thumbnail_delegate import ThumbnailDelegate
from app.views.viewer import PhotoViewer
from app.workers import (
    JobRunner,
    JobWorker,
    delete_run_job,
    export_job,
    refine_job,
    relink_job,
    resume_job,
    scan_job,
    train_job,
    undo_export_job,
)
from crlc_engine.api import CRLCError

if TYPE_CHECKING:
    from app.views.about_dialog import AboutDialog
    from app.views.refine_dialog import RefineDialog
    from app.views.settings_dialog import SettingsDialog

__all__ = ["SCAN_SIZE", "DetailPanel", "JobPanel", "MainWindow", "log_file", "settings"]

SCAN_SIZE = 32

_warmed_up = False
_log = logging.getLogger("crlc_organizer")


def warm_up_engine() -> None:
    """Import the training stack and FAISS once on the GUI thread, then freeze the heap.

    Importing torch/torchvision the first time inside a worker thread creates ~150k objects
    and triggers full garbage collections that hold the GIL for 110-190 ms, stalling the GUI
    (measured in benchmarks/gui_responsiveness.py). Imported up front and moved out of the
    collector's reach with ``gc.freeze()``, later collections stay short.
    """
    global _warmed_up
    if _warmed_up:
        return
    import gc

    gc.collect()
    gc.freeze()
    _warmed_up = True


def settings() -> QSettings:
    """The app's persisted settings (an INI file in the platformdirs config folder)."""
    import platformdirs

    path = Path(platformdirs.user_config_dir("crlc-organizer")) / "settings.ini"
    return QSettings(str(path), QSettings.Format.IniFormat)


def log_file() -> Path:
    """Where the app writes its log (the platformdirs log folder)."""
    import platformdirs

    return Path(platformdirs.user_log_dir("crlc-organizer")) / "crlc-organizer.log"


def open_folder(folder: Path) -> bool:
    """Show ``folder`` in the system's file manager."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


def start_folder() -> str:
    """Where the open dialog starts: the pictures folder, else home."""
    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    if pictures and Path(pictures).is_dir():
        return pictures
    return str(Path.home())


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def popup(menu: QMenu, where: QPoint) -> QAction | None:
    """Show a menu at ``where`` until the user picks an entry (tests replace this: a
    binding's own ``QMenu.exec`` cannot be patched)."""
    return menu.exec(where)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
        warm_up_engine()
        self.setWindowTitle("CRLC Organizer")
        self.setWindowIcon(app_icon())
        self.persist = persist
        self.store = store if store is not None else (SettingsStore() if persist else None)
        if settings is None:
            settings = self.store.load() if self.store is not None else Settings()
        self.settings = settings
        self._saved_settings = settings  # what the store holds (saved again when changed)
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
        self._shown_group: str | None = None  # the group whose images the grid shows
        self.skipped: list[tuple[str, str]] = []
        # decoding processes of scans (0 decodes in the job's thread: tests)
        self.scan_workers: int | None = settings.effective_scan_workers()
        self.scan_poll_ms = 700  # how often the grid looks for newly scanned images
        self._build_body()
        self._make_actions()
        self._build_status_bar()
        self.group_list.selectionModel().currentChanged.connect(self._show_selected_group)
        self.set_thumbnail_size(settings.thumbnail_size)
        self.low_first.setChecked(settings.low_confidence_first)
        self.low_first.toggled.connect(self._remember_low_first)
        self.show_confidence_action.setChecked(settings.show_confidence)
        self.grid_delegate.set_show_confidence(settings.show_confidence)
        self.resize(1280, 800)
        if persist:
            self._restore_layout()
        self._update_state()
        if folders:
            self.open_folders(folders, scan=False)

    # ------------------------------------------------------------------ set-up
    def _build_body(self) -> None:
        self.group_model = GroupListModel(self)
        self.group_model.renameRequested.connect(self._rename)
        self.group_model.moveRequested.connect(self._move_dropped)
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
        self.left = QStackedWidget()
        self.left.addWidget(self.group_list)
        self.left.addWidget(self.no_groups)

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
        self.low_first.toggled.connect(self._show_selected_group)
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
        self.viewer.currentChanged.connect(self._viewer_moved)
        self.viewer.closed.connect(self.close_viewer)
        self.center = QStackedWidget()
        self.center.addWidget(middle)
        self.center.addWidget(self.viewer)
        self.grid.doubleClicked.connect(lambda _index: self.open_viewer())
        self.grid.installEventFilter(self)  # Space opens the viewer

        self.detail = DetailPanel()
        self.detail.neighbors.itemClicked.connect(self._neighbor_clicked)
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

    def _make_actions(self) -> None:
        menu = self.menuBar()
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        menus: dict[str, QMenu] = {}

        def action(
            text: str,
            slot: Any,
            shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
            menu_name: str = "&File",
            icon_name: str | None = None,
        ) -> QAction:
            act = QAction(icon(icon_name) if icon_name else QIcon(), text, self)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            if menu_name not in menus:
                menus[menu_name] = menu.addMenu(menu_name)
            menus[menu_name].addAction(act)
            return act

        # File
        self.open_action = action(
            "Open folder...", self._choose_folder, QKeySequence.StandardKey.Open, icon_name="open"
        )
        self.recent_menu = QMenu("Open recent", self)
        self.recent_menu.setIcon(icon("open"))
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        menus["&File"].addMenu(self.recent_menu)
        self.export_action = action("Export...", self._export, "Ctrl+E", icon_name="export")
        self.undo_export_action = action("Undo an export...", self._undo_export, icon_name="undo")
        menus["&File"].addSeparator()
        self.quit_action = action("Quit", self.close, "Ctrl+Q", icon_name="quit")  # Cmd+Q on a Mac
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        # Images
        self.group_action = action("Group images...", self._group, "Ctrl+G", "&Images", "group")
        self.refine_action = action(
            "Refine with labels", self._refine, "Ctrl+R", "&Images", "refine"
        )
        self.rescan_action = action("Scan the folders again", self.scan, "F5", "&Images", "scan")
        self.skipped_action = action(
            "Skipped files...", self.show_skipped, None, "&Images", "ignore"
        )
        # Edit
        self.undo_action = action(
            "Undo", self._undo, QKeySequence.StandardKey.Undo, "&Edit", "undo"
        )
        self.redo_action = action(
            "Redo", self._redo, QKeySequence.StandardKey.Redo, "&Edit", "redo"
        )
        menus["&Edit"].addSeparator()
        self.move_action = action("Move to group...", self._move, "M", "&Edit", "move")
        self.label_action = action("Label as...", self._label, "L", "&Edit", "label")
        self.ignore_action = action("Ignore", self._ignore, "Delete", "&Edit", "ignore")
        menus["&Edit"].addSeparator()
        self.rename_action = action(
            "Rename group...", self._edit_group_name, None, "&Edit", "label"
        )
        self.split_action = action("Split group...", self._split, None, "&Edit", "split")
        menus["&Edit"].addSeparator()
        self.settings_action = action(
            "Settings...",
            self.open_settings,
            QKeySequence.StandardKey.Preferences,
            "&Edit",
            "settings",
        )
        self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        # Runs (completed runs and unfinished runs are listed when the menu opens)
        self.runs_menu = RunsMenu("&Runs", self)
        menu.addMenu(self.runs_menu)
        menus["&Runs"] = self.runs_menu
        self.delete_run_action = QAction(icon("delete"), "Delete the current run...", self)
        self.delete_run_action.triggered.connect(self._delete_run)
        self.runs_menu.add_fixed(self.delete_run_action)
        self.runs_menu.aboutToShow.connect(self._fill_runs_menu)
        self.runs_menu.showRun.connect(self.show_run)
        self.runs_menu.resumeRun.connect(self.resume_run)
        self.runs_menu.discardRun.connect(self.discard_run)
        # View
        self.view_action = action(
            "View photo (Space, double-click)", self.open_viewer, None, "&View", "view"
        )
        self.show_confidence_action = action(
            "Show confidence on thumbnails", self._show_confidence, None, "&View", "confidence"
        )
        self.show_confidence_action.setCheckable(True)
        # Help
        self.about_action = action("About CRLC Organizer", self.show_about, None, "&Help", "about")
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)

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
        self.grid.addActions([self.move_action, self.label_action, self.ignore_action])
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.group_list.addActions([self.rename_action, self.split_action])

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
        self._show_device()

    def _show_device(self) -> None:
        """The device "Group images" starts with (the settings' default device)."""
        from app.views.about_dialog import device_rows

        rows = dict(device_rows(self.settings.default_device))
        self.device_label.setText(f"Device: {rows['Device in use']}")
        self.device_label.setToolTip(rows.get("Device setting", ""))

    # ------------------------------------------------------------------ errors
    def show_error(self, kind: str, message: str, details: str = "") -> None:
        """Show an error as a plain message with what to do and copyable details."""
        _log.error("%s: %s\n%s", kind, message, details)
        show_error(self, kind, message, details)

    def _job_failed(self, kind: str, message: str, details: str) -> None:
        self.show_error(kind, message, details)

    # ------------------------------------------------------------------ library
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of photos", start_folder())
        if folder:
            self.open_folders([folder])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        libraries = recent_libraries()
        for folders in libraries:
            missing = [f for f in folders if not Path(f).is_dir()]
            text = ", ".join(folders) + ("  (not found)" if missing else "")
            act = self.recent_menu.addAction(text)
            act.triggered.connect(lambda _=False, f=folders: self.open_folders(f))
        if not libraries:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def open_folders(
        self,
        folders: Sequence[str | Path],
        scan: bool = True,
        workspace: str | Path | None = None,
    ) -> bool:
        """Open the library of ``folders`` and (by default) scan it in the background.

        A folder that no longer exists is not opened: the notice bar offers to locate it
        (re-link the library) instead. Returns whether the library was opened.

        Args:
            folders: The library's photo folders.
            scan: Scan them in the background once open.
            workspace: Workspace base of this library (default: :attr:`workspace`). Jobs on
                the open library use its own base even if the setting changes meanwhile.
        """
        missing = [Path(f) for f in folders if not Path(f).is_dir()]
        if missing:
            self._offer_relink([Path(f) for f in folders], missing[0])
            return False
        self._close_session()
        try:
            session = LibrarySession(
                folders, workspace if workspace is not None else self.workspace
            )
        except CRLCError as error:
            self.show_error(error.kind, str(error), traceback.format_exc())
            self._update_state()
            return False
        self.session = session
        self.notice.dismiss()
        self.cache = ThumbnailCache(
            session.thumbnail_path, max_side=self.settings.thumbnail_size, parent=self
        )
        self.grid_model = ThumbnailGridModel(self.cache, self)
        self.group_model.set_thumbnail_source(self.cache)  # the groups' covers
        self.grid.setModel(self.grid_model)
        self.grid.selectionModel().currentChanged.connect(self._show_selected_image)
        self.scan_watcher = ScanWatcher(session.library.workspace, self.scan_poll_ms, self)
        self.scan_watcher.imagesChanged.connect(self._on_scanned)
        self.setWindowTitle(f"CRLC Organizer - {', '.join(str(f) for f in session.folders)}")
        self.refresh()
        self._set_skipped([(s.path, s.reason) for s in session.skipped_files()])
        if self.persist:
            remember_folders(session.folders)
        if scan:
            self.scan()
        else:
            self.offer_resume()
        return True

    def _close_session(self) -> None:
        self.close_viewer()
        self.viewer.clear()
        if self.scan_watcher is not None:
            self.scan_watcher.shutdown()
            self.scan_watcher = None
        self.group_model.set_thumbnail_source(None)
        if self.cache is not None:
            self.cache.shutdown()
        if self.session is not None:
            self.session.close()
        self.session = None
        self.all_images_mode = False
        self.shown_image = None

    def _library_workspace(self) -> str | Path | None:
        """The workspace base of the open library (else the one a library opens with)."""
        return self.session.workspace_base if self.session is not None else self.workspace

    def refresh(self, run_id: str | None = None, reload: bool = True) -> None:
        """Re-read the session and redraw the groups (keeping the selected group).

        Args:
            run_id: Show this completed run; ``None`` keeps the current one (on the first
                load: the run shown last in this library, else the newest).
            reload: Re-read the catalog and the run first (not needed after a correction:
                the session keeps itself current).
        """
        if self.session is None:
            return
        current = self._current_group() if run_id is None else None
        viewed = self.viewer.current_image_id() if self.viewer_shown() else None
        was_all_images = self.all_images_mode
        if reload or run_id is not None:
            self.session.reload(run_id)
        if current is None or self.session.group(current) is None:
            current = self.session.remembered_group()
        self.all_images_mode = not self.session.has_results
        if self.all_images_mode:
            self.left.setCurrentWidget(self.no_groups)
            self.group_model.set_groups([])
            self._show_all_images(keep=was_all_images)
        else:
            self.left.setCurrentWidget(self.group_list)
            self.group_model.set_groups(self.session.groups())
            row = self.group_model.row_of(current) if current is not None else 0
            self.group_list.selectionModel().setCurrentIndex(
                self.group_model.index(max(row, 0)),
                QItemSelectionModel.SelectionFlag.ClearAndSelect,
            )
            self._show_selected_group()
        self._select_first_image()
        if self.viewer_shown():  # the viewer and the grid stay on the same photo
            if viewed is not None and self.grid_model is not None:
                row = self.grid_model.row_of(viewed)
                if row >= 0:
                    self.grid.selectionModel().setCurrentIndex(
                        self.grid_model.index(row),
                        QItemSelectionModel.SelectionFlag.ClearAndSelect,
                    )
            self._fill_viewer()
        self._update_state()

    def _select_first_image(self) -> None:
        if self.grid_model is None or self.grid_model.rowCount() == 0:
            self.detail.clear()
            self.shown_image = None
            return
        if not self.grid.currentIndex().isValid():
            self.grid.setCurrentIndex(self.grid_model.index(0))
            self.grid.scrollToTop()

    def _update_state(self) -> None:
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
        self._update_grid_title()
        if has_session and not has_results and not busy:
            self.statusBar().showMessage("No groups yet: Images > Group images... (Ctrl+G)")

    def _update_grid_title(self) -> None:
        if self.session is None or self.grid_model is None:
            self.grid_title.setText("")
            return
        count = self.grid_model.rowCount()
        if self.all_images_mode:
            more = " so far (scanning…)" if self.scanning else ""
            self.grid_title.setText(f"<b>All images</b> · {count:,}{more}")
            return
        key = self._current_group()
        group = self.session.group(key) if key is not None else None
        if group is None:
            self.grid_title.setText("")
            return
        text = f"<b>{_escape(group.title)}</b> · {_plural(count, 'image')}"
        if group.flags:
            text += f" · <span style='color: palette(link)'>\u26a0 {_escape(group.flags[0])}</span>"
        self.grid_title.setText(text)

    # ------------------------------------------------------------------ scanning
    def scan(self) -> None:
        """Scan the library's folders in the background (new and changed files only).

        While nothing is grouped, the images appear in the grid as the scan finishes them.
        """
        if self.session is None or self.runner.running:
            return
        worker = scan_job(
            list(self.session.folders),
            SCAN_SIZE,
            self._library_workspace(),
            workers=self.scan_workers,
        )
        worker.finished.connect(self._on_scan_finished)
        worker.failed.connect(self._on_scan_failed)
        worker.done.connect(self._on_scan_done)
        self.scanning = True
        self._start("Scanning images", worker, unit="files")
        if self.all_images_mode and self.scan_watcher is not None:
            self.scan_watcher.start()

    def _show_all_images(self, keep: bool = False) -> None:
        """Every usable image; ``keep`` adds to the rows shown when none of them went away."""
        if self.session is None or self.grid_model is None:
            return
        images = self.session.all_images()
        shown = self.grid_model.image_ids()
        reset = not keep or not bool(np.isin(shown, images.image_ids).all())
        self.show_scanned(images, reset=reset)

    def show_scanned(self, images: ScannedImages, reset: bool = False) -> None:
        """Show these images in the "All images" grid (added to those shown unless ``reset``)."""
        if self.grid_model is None:
            return
        confidences = np.full(len(images), np.nan, dtype=np.float32)
        if reset:
            self.grid_model.set_images(images.image_ids, confidences, images.paths)
        else:
            self.grid_model.extend_images(images.image_ids, confidences, images.paths)
        self._select_first_image()
        self._update_grid_title()

    def _on_scanned(self, images: object) -> None:
        if self.all_images_mode and isinstance(images, ScannedImages):
            self.show_scanned(images)

    def _on_scan_finished(self, summary: Any) -> None:
        self._set_skipped([(s.path, s.reason) for s in summary.skipped])
        changes = [
            f"{summary.new:,} new" if summary.new else "",
            f"{summary.changed:,} changed" if summary.changed else "",
            f"{summary.missing:,} gone" if summary.missing else "",
            f"{summary.images_skipped:,} skipped" if summary.images_skipped else "",
        ]
        rate = f" at {summary.files_per_s:,.1f} files/s" if summary.decoded else ""
        detail = "; ".join(c for c in changes if c) or "nothing new"
        self.jobs.title.setText("Scan finished")
        self.jobs.detail.setText(
            f"{_plural(summary.images_ok, 'usable image')} ({detail}), "
            f"{summary.seconds:.1f} s{rate}."
        )

    def _on_scan_failed(self, kind: str, message: str, details: str) -> None:
        if self.session is not None:  # the catalog still lists what could not be read
            self.session.reload()
            self._set_skipped([(s.path, s.reason) for s in self.session.skipped_files()])

    def _on_scan_done(self) -> None:
        self.scanning = False
        if self.scan_watcher is not None:
            self.scan_watcher.stop()
        self.refresh()
        self.offer_resume()

    def _set_skipped(self, rows: Sequence[tuple[str, str]]) -> None:
        self.skipped = list(rows)
        count = len(self.skipped)
        self.skipped_button.setText(f"{_plural(count, 'file')} skipped")
        self.skipped_button.setVisible(count > 0)
        self.skipped_action.setEnabled(count > 0)

    def show_skipped(self) -> FileListDialog | None:
        """Open the list of skipped files (non-modal); returns the dialog."""
        if not self.skipped:
            return None
        dialog = skipped_files_dialog(self.skipped, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    # ------------------------------------------------------------------ moved folders
    def _offer_relink(self, folders: list[Path], missing: Path) -> None:
        self._close_session()
        self._update_state()
        self.notice.show_notice(
            f"The folder <b>{missing}</b> was not found. It may have been moved or renamed, "
            "or be on a drive that is not connected.",
            [
                ("Locate folder…", lambda: self.locate_folder(folders, missing)),
                ("Try again", lambda: self.open_folders(folders)),
                ("Remove from recent", lambda: forget_recent(folders)),
            ],
            key="relink",
        )

    def locate_folder(
        self, folders: Sequence[Path], missing: Path, new: str | Path | None = None
    ) -> None:
        """Re-link the library after ``missing`` moved to ``new`` (asked for if None), then
        open it."""
        if new is None:
            start = next((p for p in missing.parents if p.is_dir()), Path.home())
            new = QFileDialog.getExistingDirectory(
                self, f"Where is {missing.name} now?", str(start)
            )
            if not new:
                self._offer_relink(list(folders), missing)
                return
        target = Path(new).resolve()
        replaced = [target if Path(f) == missing else Path(f) for f in folders]

        def relinked(_result: object = None) -> None:
            if self.persist:
                replace_folder(missing, target)
            self.open_folders(replaced)

        def failed(kind: str, message: str, details: str) -> None:
            if kind == "library_not_found":  # nothing was stored for it yet: just open
                relinked()
            else:
                self.show_error(kind, message, details)

        worker = relink_job(missing, target, self.workspace)
        worker.finished.connect(relinked)
        worker.failed.connect(failed)
        self._start("Re-linking the moved folder", worker, report_failure=False)

    # ------------------------------------------------------------------ unfinished runs
    def offer_resume(self) -> UnfinishedRun | None:
        """Offer, in the notice bar, to resume the newest unfinished run (if any)."""
        if self.session is None or self.runner.running:
            return None
        runs = [
            r for r in self.session.unfinished_runs() if r.busy_pid is None and r.state != "failed"
        ]
        if not runs:
            return None
        run = runs[-1]
        if run.has_checkpoint:
            text, action = f"An unfinished {run.describe()} can be resumed.", "Resume"
        else:
            text = (
                f"An unfinished {run.describe()} stopped before its first checkpoint; it can "
                "start again from the beginning with the same settings."
            )
            action = "Start again"
        self.notice.show_notice(
            text,
            [
                (action, lambda: self.resume_run(run.run_id)),
                ("Discard…", lambda: self.discard_run(run.run_id)),
                ("Later", lambda: None),
            ],
            key=f"resume:{run.run_id}",
        )
        return run

    def resume_run(self, run_id: str) -> None:
        """Continue an unfinished run from its checkpoint (progress in the job panel)."""
        if self.session is None or self.runner.running:
            return
        worker = resume_job(
            list(self.session.folders), run_id, self._library_workspace(), self.scan_workers
        )
        worker.finished.connect(self._on_trained)
        worker.cancelled.connect(self._on_training_stopped)
        self._start("Resuming the grouping", worker)

    def discard_run(self, run_id: str, confirm: bool = True) -> None:
        """Delete an unfinished run (after a confirmation)."""
        if self.session is None or self.runner.running:
            return
        if confirm:
            answer = QMessageBox.question(
                self,
                "Discard the unfinished run?",
                f"Delete run {run_id} and its checkpoint? It cannot be resumed afterwards. "
                "Your photos, labels and other runs stay.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        worker = delete_run_job(list(self.session.folders), run_id, self._library_workspace())
        worker.finished.connect(lambda _: self.statusBar().showMessage(f"Run {run_id} deleted"))
        self._start("Deleting the unfinished run", worker)

    # ------------------------------------------------------------------ browsing
    def _current_group(self) -> str | None:
        """The key of the group selected in the list."""
        index = self.group_list.currentIndex()
        if not index.isValid() or self.all_images_mode:
            return None
        return str(self.group_model.data(index, GroupListModel.KeyRole))

    def _show_selected_group(self, *args: object) -> None:
        key = self._current_group()
        if self.session is None or self.grid_model is None or key is None:
            return
        images = self.session.images_of(key)
        self.grid_model.set_images(
            images.image_ids,
            images.confidences,
            [str(p) for p in images.paths],
            labels=self.session.annotations.labels(),
        )
        self.grid_model.set_low_confidence_first(self.low_first.isChecked())
        self._update_grid_title()
        if key != self._shown_group:  # the image shown belongs to the group shown before
            self._shown_group = key
            self.detail.clear()
            self.shown_image = None
            if self.viewer_shown():  # the viewer shows the new group from its start
                self._fill_viewer()

    def _selected_ids(self) -> list[int]:
        """The pictures L, M and Delete act on: the viewer's photo while it is shown, else
        the grid's selection."""
        if self.viewer_shown():
            shown = self.viewer.current_image_id()
            return [] if shown is None else [shown]
        if self.grid_model is None:
            return []
        rows = sorted(i.row() for i in self.grid.selectionModel().selectedIndexes())
        return [self.grid_model.image_id(r) for r in rows]

    def _show_selected_image(self, index: QModelIndex, previous: QModelIndex) -> None:
        if self.session is None or self.grid_model is None or not index.isValid():
            return
        self.show_image(self.grid_model.image_id(index.row()))

    def show_image(self, image_id: int) -> None:
        """Show one image in the detail panel (with probabilities and neighbours if grouped)."""
        if self.session is None:
            return
        self.shown_image = image_id
        thumbnail = self.session.thumbnail_path(image_id)
        if self.all_images_mode or not self.session.has_results:
            record = self.session.record(image_id)  # None for images scanned since reload
            if record is not None:
                self.detail.show_image(thumbnail, record.path, record.width, record.height)
            else:
                self.detail.show_image(thumbnail, self._grid_path(image_id), None, None)
            self.detail.show_probabilities([], grouped=False)
            return
        detail = self.session.detail(image_id)
        self.detail.show_image(thumbnail, detail.path, detail.width, detail.height, detail.label)
        self.detail.show_probabilities(
            [
                f"{_escape(line.name)}: {line.probability * 100:.1f}%"
                if line.probability is not None
                else f"<b>{_escape(line.name)}</b>: made by a split (the model gives no "
                "probability for it; below, the groups it chose from)"
                for line in self.session.top_groups(detail, top=5)
            ]
        )
        self.detail.show_neighbors(
            [
                (neighbor, similarity, self.session.thumbnail_path(neighbor))
                for neighbor, similarity in self.session.neighbors(
                    image_id, k=self.settings.neighbors
                )
            ]
        )

    def _grid_path(self, image_id: int) -> str:
        if self.grid_model is None or (row := self.grid_model.row_of(image_id)) < 0:
            return ""
        return str(self.grid_model.data(self.grid_model.index(row), ThumbnailGridModel.PathRole))

    def _neighbor_clicked(self, item: QListWidgetItem) -> None:
        self.select_image(int(item.data(Qt.ItemDataRole.UserRole)))

    def select_image(self, image_id: int) -> bool:
        """Make ``image_id`` the grid's current image, switching to its group if needed (so
        M, L and Delete act on the picture shown). False (and a status message) when no
        group shows it: the picture is ignored."""
        if self.session is None or self.grid_model is None:
            return False
        if not self.all_images_mode and self.grid_model.row_of(image_id) < 0:
            key = self.session.detail(image_id).group
            if key is None or self.group_model.row_of(key) < 0:
                self.show_image(image_id)
                self.statusBar().showMessage(
                    "This picture is ignored, so no group shows it (Edit > Undo brings it "
                    "back if you just ignored it).",
                    8000,
                )
                return False
            self._select_group(key)
        row = self.grid_model.row_of(image_id)
        if row < 0:
            return False
        index = self.grid_model.index(row)
        self.grid.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        self.grid.scrollTo(index)
        if self.viewer_shown():
            self._fill_viewer()
        return True

    # ------------------------------------------------------------------ viewer
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

    def viewer_shown(self) -> bool:
        """Whether the viewer has the grid's place."""
        return self.center.currentWidget() is self.viewer

    def open_viewer(self) -> bool:
        """Show the grid's current picture large; the arrow keys step through the group's
        order and L, M, Delete and undo act on the picture shown. False: nothing to show."""
        if self.grid_model is None or self.grid_model.rowCount() == 0:
            return False
        current = self.grid.currentIndex()
        if not current.isValid():
            current = self.grid_model.index(0)
        self.grid.selectionModel().setCurrentIndex(  # the grid selects the photo shown
            current, QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        self._fill_viewer()  # before it shows: it never starts on an old sequence
        self.center.setCurrentWidget(self.viewer)
        self.viewer.setFocus()
        return True

    def close_viewer(self) -> None:
        """Back to the grid, on the picture the viewer showed last."""
        if not self.viewer_shown():
            return
        self.center.setCurrentWidget(self.middle)
        self.grid.scrollTo(self.grid.currentIndex())
        self.grid.setFocus()

    def _fill_viewer(self) -> None:
        """Give the viewer the grid's order, on the grid's current picture (closed when the
        group is empty)."""
        model = self.grid_model
        if model is None or model.rowCount() == 0:
            self.close_viewer()
            return
        paths = [
            str(model.data(model.index(row), ThumbnailGridModel.PathRole))
            for row in range(model.rowCount())
        ]
        ids = [int(i) for i in model.image_ids()]
        self.viewer.set_sequence(ids, paths, max(0, self.grid.currentIndex().row()))
        self._caption_viewer()

    def _caption_viewer(self) -> None:
        image_id = self.viewer.current_image_id()
        if image_id is None or self.session is None:
            return
        if self.all_images_mode or not self.session.has_results:
            self.viewer.set_caption("All images")
            return
        detail = self.session.detail(image_id)
        label = f" · labelled {detail.label}" if detail.label else ""
        self.viewer.set_caption(f"{detail.group_name} · {detail.confidence * 100:.0f} %{label}")

    def _viewer_moved(self, image_id: int) -> None:
        """The viewer stepped: the grid's selection (and the detail panel) follow."""
        if self.grid_model is not None and (row := self.grid_model.row_of(image_id)) >= 0:
            index = self.grid_model.index(row)
            self.grid.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect
            )
        self._caption_viewer()

    # ------------------------------------------------------------------ corrections
    def _after_change(self, message: str | None) -> None:
        """Redraw after a correction. The grid keeps its scroll position and the selection
        stays on the same row: after a move, label or ignore that took the image out of the
        group, the image that takes its place is selected."""
        row = self.grid.currentIndex().row()
        scroll = self.grid.verticalScrollBar().value()
        if message:
            self.statusBar().showMessage(message, 5000)
        self.refresh(reload=False)  # the session re-read what the change touched
        count = self.grid_model.rowCount() if self.grid_model is not None else 0
        if self.grid_model is not None and count and row >= 0:
            self.grid.setCurrentIndex(self.grid_model.index(min(row, count - 1)))
            self.grid.verticalScrollBar().setValue(scroll)
        if self.viewer_shown():  # the viewer follows: the picture that took the place
            self._fill_viewer()

    def _rename(self, key: str, name: str) -> None:
        if self.session is None or self.session.run_id is None or not name.strip():
            return
        old, name = self.session.group_name(key), " ".join(name.split())
        target = f"group:{name}"
        merges = self.session.group(target) is not None and target != key
        self.group_list.setFocus()
        new_key = self.session.rename(key, name)
        self._select_group(new_key)
        if merges:  # one name on several clusters merges them (one group, one folder)
            self._after_change(
                f"{old!r} merged with {name!r}: they are one group and export into one "
                "folder (Edit > Undo separates them)"
            )
        else:
            self._after_change(f"{old!r} is now {name!r}")

    def _select_group(self, key: str) -> None:
        """Make ``key`` the current group (after the list is refreshed)."""
        if self.session is not None:
            self.session.remember_view(key)
        row = self.group_model.row_of(key)
        if row >= 0:
            self.group_list.setCurrentIndex(self.group_model.index(row))

    def _edit_group_name(self) -> None:
        """Start editing the selected group's name in the list."""
        index = self.group_list.currentIndex()
        if index.isValid() and not self.all_images_mode:
            self.group_list.edit(index)

    def _split(self) -> None:
        """Split the selected group (a preview dialog, then one undoable step); a merged
        group is first separated into its clusters (after a question)."""
        from app.views.split_dialog import SplitDialog

        session, key = self.session, self._current_group()
        group = session.group(key) if session is not None and key is not None else None
        if session is None or key is None or group is None:
            return
        if len(group.clusters) > 1:
            self._separate(key)
            return
        if not group.clusters:
            self.statusBar().showMessage("This group is held by labels only: nothing to split")
            return
        names = session.annotations.names(session.run_id or "")
        dialog = SplitDialog(
            group.clusters[0],
            group.name,
            group.size,
            lambda parts: session.plan_split(key, parts),
            self,
            names_in_use=names,
        )
        if not dialog.exec():
            return
        plan = dialog.plan()
        if plan is None:
            return
        try:
            session.split(plan, dialog.names(), dialog.label_parts())
        except CRLCError as error:  # e.g. the cluster changed since the preview
            self.show_error(error.kind, str(error), traceback.format_exc())
            self.refresh()
            return
        sizes = ", ".join(str(n) for n in plan.sizes)
        self._after_change(
            f"Split {group.title!r} into {len(plan.sizes)} groups of {sizes} images "
            "(Edit > Undo joins them again)"
        )

    def _separate(self, key: str, confirm: bool = True) -> None:
        """Give each cluster of a merged group its own group (after a question)."""
        if self.session is None or (group := self.session.group(key)) is None:
            return
        if confirm:
            answer = QMessageBox.question(
                self,
                "Separate the merged clusters?",
                f"{group.title!r} is {len(group.clusters)} clusters under one name. Give each "
                "its own group (the first keeps the name), so that one can be split or "
                "renamed alone? Edit > Undo joins them again.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        names = self.session.separate(key)
        self._after_change(f"{group.title!r} separated into {', '.join(map(repr, names))}")

    def _move(self) -> None:
        """Move the selected images to a group chosen from a menu (one entry per group,
        with its colour)."""
        ids = self._selected_ids()
        if self.session is None or not ids:
            return
        menu = self.move_menu()
        if self.viewer_shown():
            where = self.viewer.canvas.mapToGlobal(self.viewer.canvas.rect().center())
        else:
            rect = self.grid.visualRect(self.grid.currentIndex())
            where = self.grid.viewport().mapToGlobal(rect.center())
        chosen = popup(menu, where)
        if chosen is not None:
            self.move_to(ids, str(chosen.data()))

    def move_menu(self) -> QMenu:
        """The "Move to group" menu: every group of the run, with its colour swatch."""
        menu = QMenu("Move to group", self)
        for row, group in enumerate(self.group_model.groups()):
            if group.key == self._current_group():
                continue
            act = menu.addAction(
                self.group_model.data(self.group_model.index(row), Qt.ItemDataRole.DecorationRole),
                group.title,
            )
            act.setData(group.key)
        return menu

    def move_to(self, image_ids: list[int], key: str) -> None:
        """Move images into a group (undoable); the next image takes the selection."""
        if self.session is not None and image_ids:
            name = self.session.move(image_ids, key)
            self._after_change(f"Moved {_plural(len(image_ids), 'image')} to {name!r}")

    def _move_dropped(self, image_ids: list[int], key: str) -> None:
        self.move_to([int(i) for i in image_ids], key)

    def _label(self) -> None:
        ids = self._selected_ids()
        if self.session is None or not ids:
            return
        name, ok = QInputDialog.getText(self, "Label as", "Class name:")
        if ok and name.strip():
            self.session.label(ids, name)
            self._after_change(f"Labelled {len(ids)} image(s) as {name!r}")

    def _ignore(self) -> None:
        ids = self._selected_ids()
        if self.session is not None and ids:
            self.session.ignore(ids)
            self._after_change(f"Ignoring {len(ids)} image(s)")

    def _undo(self) -> None:
        if self.session is not None:
            done = self.session.undo()
            self._after_change(f"Undid: {done}" if done else "Nothing to undo")

    def _redo(self) -> None:
        if self.session is not None:
            done = self.session.redo()
            self._after_change(f"Redid: {done}" if done else "Nothing to redo")

    # ------------------------------------------------------------------ jobs
    def _start(
        self,
        title: str,
        worker: JobWorker,
        unit: str | None = None,
        report_failure: bool = True,
    ) -> None:
        """Run ``worker`` in the background with its progress in the job panel.

        Args:
            title: What the panel says the job does.
            worker: The job.
            unit: What its progress counts ("files"), for the rate and time left.
            report_failure: Show a failure in the error dialog (else the caller handles it).
        """
        if (self.notice.key or "").startswith("resume:"):  # a job now would conflict with it
            self.notice.dismiss()
        self.jobs.attach(title, worker, unit)
        if report_failure:
            worker.failed.connect(self._job_failed)
        worker.done.connect(self._update_state)
        self.runner.start(worker)
        self._update_state()

    def _on_trained(self, outcome: Any) -> None:
        """A training or refinement ended: show its groups (completed) or say it stopped."""
        if getattr(outcome, "state", None) == "completed":
            self.refresh(outcome.run.run_id)
            self.statusBar().showMessage(f"Grouping finished: run {outcome.run.run_id}", 8000)

    def _on_training_stopped(self) -> None:
        self.statusBar().showMessage(
            "Grouping stopped. It can be resumed later from the Runs menu.", 10000
        )

    def _group(self) -> None:
        from app.views.group_dialog import GroupDialog

        if self.session is None:
            return
        dialog = GroupDialog(
            len(self.session.library.images()),
            self,
            default_clusters=self.settings.default_clusters,
            default_preset=self.settings.default_preset or None,
            default_device=self.settings.default_device,
        )
        if dialog.exec():
            worker = train_job(
                list(self.session.folders),
                dialog.config(),
                self._library_workspace(),
                workers=self.scan_workers,
                names_from=self.session.run_id,  # names follow the groups shown now
            )
            worker.finished.connect(self._on_trained)
            worker.cancelled.connect(self._on_training_stopped)
            self._start("Grouping images", worker)

    def refine_dialog(self) -> RefineDialog | None:
        """The Refine dialog for the shown run (what it will do, length, device, estimate)."""
        from app.views.refine_dialog import RefineDialog
        from crlc_engine.api import SpeedCache, estimate_training, is_quick

        if self.session is None or self.session.run_id is None:
            return None
        setup = self.session.refine_setup()
        speeds = SpeedCache()
        # a quick run's features are cached: its refinement trains the heads only
        cached = setup.images if is_quick(setup.base) else 0

        def estimate(epochs: int | None, minutes: float | None, kind: str) -> Any:
            config = setup.config(epochs, minutes)
            return estimate_training(
                config,
                setup.images,
                kind,
                speeds.get(config, kind) or speeds.get(setup.base, kind),
                cached_features=cached,
            )

        return RefineDialog(
            setup.labels,
            setup.groups,
            setup.default_epochs,
            estimate,
            self,
            default_device=self.settings.default_device,
        )

    def _refine(self) -> None:
        dialog = self.refine_dialog()
        if dialog is None or self.session is None or not dialog.exec():
            return
        choice = dialog.choice()
        worker = refine_job(
            list(self.session.folders),
            self.session.run_id,
            choice.epochs,
            choice.minutes,
            self._library_workspace(),
            device=choice.device,
        )
        worker.finished.connect(self._on_trained)
        worker.cancelled.connect(self._on_training_stopped)
        self._start("Refining with your labels", worker)

    def _export(self) -> None:
        from app.views.export_dialog import ExportDialog
        from crlc_engine.api import export_items

        if self.session is None or self.session.run_id is None:
            return
        items = export_items(self.session.library, self.session.run_id)
        dialog = ExportDialog(
            items,
            list(self.session.folders),
            self,
            mode=self.settings.export_mode,
            min_confidence=self.settings.export_min_confidence,
        )
        if dialog.exec():
            opts = dialog.options()
            worker = export_job(
                items,
                opts.dest,
                opts.mode,
                list(self.session.folders),
                opts.min_confidence,
                opts.keep_subfolders,
                False,
                library=self.session.library,  # holds its export.lock while exporting
            )
            worker.finished.connect(self._on_exported)
            worker.cancelled.connect(
                lambda: self.statusBar().showMessage(
                    "Export stopped. Export again to the same folder to finish it, or "
                    "File > Undo an export to take it back.",
                    15000,
                )
            )
            self._start(f"Exporting to {opts.dest}", worker, unit="photos")

    def _on_exported(self, result: Any) -> None:
        """Say what the export did, counts included, with "Open folder"; list the failed and
        missing photos."""
        folders = len(result.folders)
        self.statusBar().showMessage(
            f"Exported {_plural(result.done, 'photo')} into {_plural(folders, 'folder')}; "
            f"{result.counts_text()}. The list is in {result.manifest}",
            30000 if result.failed or result.missing else 15000,
        )
        destination = Path(result.manifest).parent
        self.notice.show_notice(
            f"Exported {_plural(result.done, 'photo')} into {_plural(folders, 'folder')} "
            f"in <b>{_escape(str(destination))}</b>.",
            [("Open folder", lambda: self._open_folder(destination)), ("Close", lambda: None)],
            key="export-done",
        )
        if not result.failed and not result.missing:
            return
        rows = [(path, f"failed: {reason}") for path, reason in result.failed]
        rows += [(path, f"missing: {reason}") for path, reason in result.missing]
        parts = []
        if result.failed:
            parts.append(f"{_plural(len(result.failed), 'photo')} could not be exported")
        if result.missing:
            verb = "is" if len(result.missing) == 1 else "are"
            parts.append(
                f"{_plural(len(result.missing), 'photo')} {verb} missing (deleted or moved "
                "since the grouping)"
            )
        dialog = FileListDialog(
            "Photos that failed or are missing",
            f"{' and '.join(parts)}. Fix the cause and export again to the same folder: the "
            "photos already there are not exported twice. Scan the folders again to forget "
            "photos you deleted.",
            rows,
            self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def _open_folder(self, folder: Path) -> None:
        """Show ``folder`` in the file manager, or say where it is when none can be started."""
        if not open_folder(folder):
            self.statusBar().showMessage(
                f"No file manager could be started to show {folder}; open it from your file "
                "manager.",
                15000,
            )

    def _undo_export(self) -> None:
        manifest, _ = QFileDialog.getOpenFileName(
            self, "Choose the manifest of the export to undo", "", "Export manifest (*.csv)"
        )
        if not manifest:
            return

        def report(result: Any) -> None:
            self.statusBar().showMessage(
                f"Export undone: {result.restored:,} photos put back, {result.removed:,} "
                f"copies or links removed, {_plural(len(result.kept), 'file')} kept",
                15000,
            )
            if result.kept:
                dialog = FileListDialog(
                    "Files the undo kept",
                    f"{_plural(len(result.kept), 'file')} of the export stayed where they "
                    "are, to keep your photos safe; the reason is next to each.",
                    result.kept,
                    self,
                )
                dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                dialog.open()

        worker = undo_export_job(Path(manifest), self._library_workspace())
        worker.finished.connect(report)
        self._start("Undoing the export", worker, unit="files")

    # ------------------------------------------------------------------ runs, about
    def _fill_runs_menu(self) -> None:
        """List the completed runs (newest last) and the unfinished ones."""
        self.runs_menu.fill(self.session, self.runner.running)

    def show_run(self, run_id: str) -> None:
        """Show the groups of another completed run."""
        if self.session is not None:
            self.refresh(run_id)

    def _delete_run(self) -> None:
        from crlc_engine.api import delete_run

        if self.session is None or self.session.run_id is None or self.runner.running:
            return
        run_id = self.session.run_id
        answer = QMessageBox.question(
            self, "Delete run", f"Delete run {run_id} and its groups? Labels stay."
        )
        if answer == QMessageBox.StandardButton.Yes:
            folders = list(self.session.folders)
            workspace = self._library_workspace()
            self._close_session()
            try:
                delete_run(folders, run_id, workspace)
            except CRLCError as error:
                self.show_error(error.kind, str(error), traceback.format_exc())
            self.open_folders(folders, scan=False, workspace=workspace)

    def show_about(self) -> AboutDialog:
        """Open the About dialog (versions, device, log folder; non-blocking); returns it."""
        from app.views.about_dialog import AboutDialog

        dialog = AboutDialog(
            self.settings.default_device,
            log_file().parent,
            self.store.path if self.store is not None else None,
            self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    # ------------------------------------------------------------------ settings
    def settings_dialog(self) -> SettingsDialog:
        """The settings dialog for the current settings (saving into :attr:`store`)."""
        from app.views.settings_dialog import SettingsDialog, log_folder

        dialog = SettingsDialog(self.settings, self, store=self.store, logs=log_folder())
        if self.workspace_override is not None:
            dialog.workspace_edit.setToolTip(
                f"This window uses {self.workspace_override} (given with --workspace) instead."
            )
        return dialog

    def open_settings(self) -> None:
        """Edit > Settings: edit, save and apply the settings at once."""
        dialog = self.settings_dialog()
        if dialog.exec():
            self._saved_settings = dialog.settings()
            self.apply_settings(dialog.settings())

    def apply_settings(self, new: Settings) -> None:
        """Use ``new`` settings from now on: theme, grid, detail panel, defaults, jobs.

        The theme, the thumbnail size, the number of similar images and the sort order
        change the window at once; the defaults of "Group images" and "Export" apply to the
        next dialog, the scan processes to the next scan. A new workspace folder is used
        for libraries opened afterwards (the open one stays where it is) unless the
        command line named one.
        """
        old, self.settings = self.settings, new
        app = QApplication.instance()
        if new.theme != old.theme and isinstance(app, QApplication):
            apply_theme(app, new)
        self.scan_workers = new.effective_scan_workers()
        if self.workspace_override is None:
            self.workspace = new.workspace_base()
        if new.thumbnail_size != old.thumbnail_size:
            self.set_thumbnail_size(new.thumbnail_size)
        if new.low_confidence_first != self.low_first.isChecked():
            self.low_first.setChecked(new.low_confidence_first)
        if new.show_confidence != self.show_confidence_action.isChecked():
            self.show_confidence_action.setChecked(new.show_confidence)
            self.grid_delegate.set_show_confidence(new.show_confidence)
        if new.neighbors != old.neighbors and self.shown_image is not None:
            self.show_image(self.shown_image)
        if new.default_device != old.default_device:
            self._show_device()

    def set_thumbnail_size(self, side: int) -> None:
        """Show the grid's thumbnails fitting a ``side`` pixel square."""
        self.grid.setIconSize(QSize(side, side))
        self.grid.setGridSize(QSize(side + 10, side + 30))
        if self.grid_model is not None:
            self.grid_model.set_thumbnail_side(side)

    def _show_confidence(self, checked: bool) -> None:
        """Show or hide the thumbnails' confidence bars (a setting, saved at once)."""
        self.grid_delegate.set_show_confidence(checked)
        if checked != self.settings.show_confidence:
            self.settings = self.settings.replace(show_confidence=checked)
            if self.persist:
                self._save_settings()

    def _remember_low_first(self, checked: bool) -> None:
        """The grid's sort order is a setting too, saved at once (a crash keeps it)."""
        if checked != self.settings.low_confidence_first:
            self.settings = self.settings.replace(low_confidence_first=checked)
            if self.persist:
                self._save_settings()

    def _save_settings(self) -> None:
        """Save the settings if the window changed them since they were loaded or saved."""
        if self.store is None or self.settings == self._saved_settings:
            return
        try:
            self.store.save(self.settings)
        except OSError as error:  # closing must not fail over a preference
            _log.warning("cannot save the settings: %s", error)
            return
        self._saved_settings = self.settings

    # ------------------------------------------------------------------ layout, closing
    def _restore_layout(self) -> None:
        stored = settings()
        geometry = stored.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = stored.value("window/state")
        if state is not None:
            self.restoreState(state)
        splitter = stored.value("window/splitter")
        if splitter is not None:
            self.splitter.restoreState(splitter)

    def save_layout(self) -> None:
        """Remember window geometry, toolbar/splitter layout (``settings.ini``), a changed
        sort order (``settings.json``) and the run and group shown (per library)."""
        stored = settings()
        stored.setValue("window/geometry", self.saveGeometry())
        stored.setValue("window/state", self.saveState())
        stored.setValue("window/splitter", self.splitter.saveState())
        stored.remove("view/low_first")  # now the setting low_confidence_first
        stored.sync()
        self._save_settings()
        if self.session is not None and self.session.run_id is not None:
            self.session.remember_view(self._current_group())

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
            self.save_layout()
        self.runner.shutdown()
        self._close_session()
        self.viewer.shutdown()
        event.accept()
