"""Opening and closing a library: File > Open folder, File > Open recent, and a library whose
folder has moved (the notice bar offers to locate it and re-links the library).

Opening makes the window's :class:`~app.core.session.LibrarySession`, its thumbnail cache,
the grid's model and the scan watcher; closing shuts them down.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QStandardPaths
from PySide6.QtWidgets import QFileDialog

from app.controllers.browsing import BrowsingController
from app.controllers.host import Controller, WindowHost
from app.controllers.jobs import JobsController
from app.controllers.runs import RunsController
from app.controllers.scans import ScansController
from app.core.recent import forget_recent, recent_libraries, remember_folders, replace_folder
from app.core.session import LibrarySession
from app.engine_jobs import relink_job
from app.itemmodels.scan_watcher import ScanWatcher
from app.itemmodels.thumbnail_cache import ThumbnailCache
from app.itemmodels.thumbnails import ThumbnailGridModel
from crlc_engine.api import CRLCError

__all__ = ["LibraryController", "start_folder"]


def start_folder() -> str:
    """Where the open dialog starts: the pictures folder, else home."""
    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    if pictures and Path(pictures).is_dir():
        return pictures
    return str(Path.home())


class LibraryController(Controller):
    """Opens, closes and re-links the window's library."""

    def __init__(
        self,
        window: WindowHost,
        browsing: BrowsingController,
        jobs: JobsController,
        runs: RunsController,
        scans: ScansController,
    ) -> None:
        super().__init__(window)
        self.browsing = browsing
        self.jobs = jobs
        self.runs = runs
        self.scans = scans

    def choose_folder(self) -> None:
        """File > Open folder: ask for a folder of photos and open it."""
        window = self.window.widget
        folder = QFileDialog.getExistingDirectory(window, "Open a folder of photos", start_folder())
        if folder:
            self.open_folders([folder])

    def fill_recent_menu(self) -> None:
        """File > Open recent: the recent libraries (a missing folder is marked)."""
        menu = self.window.recent_menu
        menu.clear()
        libraries = recent_libraries()
        for folders in libraries:
            missing = [f for f in folders if not Path(f).is_dir()]
            text = ", ".join(folders) + ("  (not found)" if missing else "")
            act = menu.addAction(text)
            act.triggered.connect(lambda _=False, f=folders: self.open_folders(f))
        if not libraries:
            menu.addAction("(none yet)").setEnabled(False)

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
            workspace: Workspace base of this library (default: the window's
                ``workspace``). Jobs on the open library use its own base even if the
                setting changes meanwhile.
        """
        window = self.window
        missing = [Path(f) for f in folders if not Path(f).is_dir()]
        if missing:
            self.offer_relink([Path(f) for f in folders], missing[0])
            return False
        self.close_session()
        try:
            session = LibrarySession(
                folders, workspace if workspace is not None else window.workspace
            )
        except CRLCError as error:
            window.show_error(error.kind, str(error), traceback.format_exc())
            window.update_state()
            return False
        window.session = session
        window.notice.dismiss()
        self._show_session(session)
        self.browsing.refresh()
        self.scans.set_skipped([(s.path, s.reason) for s in session.skipped_files()])
        if window.persist:
            remember_folders(session.folders)
        if scan:
            self.scans.scan()
        else:
            self.runs.offer_resume()
        return True

    def _show_session(self, session: LibrarySession) -> None:
        """Give the grid, the group covers and the scan watcher the new library."""
        window = self.window
        window.cache = ThumbnailCache(
            session.thumbnail_path, max_side=window.settings.thumbnail_size, parent=window.widget
        )
        window.grid_model = ThumbnailGridModel(window.cache, window.widget)
        window.group_model.set_thumbnail_source(window.cache)  # the groups' covers
        window.grid.setModel(window.grid_model)
        window.grid.selectionModel().currentChanged.connect(self.browsing.show_selected_image)
        window.scan_watcher = ScanWatcher(
            session.library.workspace, window.scan_poll_ms, window.widget
        )
        window.scan_watcher.imagesChanged.connect(self.browsing.on_scanned)
        window.widget.setWindowTitle(
            f"CRLC Organizer - {', '.join(str(f) for f in session.folders)}"
        )

    def close_session(self) -> None:
        """Close the open library: the viewer, the scan watcher, the cache and the catalog."""
        window = self.window
        self.browsing.close_viewer()
        window.viewer.clear()
        if window.scan_watcher is not None:
            window.scan_watcher.shutdown()
            window.scan_watcher = None
        window.group_model.set_thumbnail_source(None)
        if window.cache is not None:
            window.cache.shutdown()
        if window.session is not None:
            window.session.close()
        window.session = None
        window.all_images_mode = False
        window.shown_image = None

    # ------------------------------------------------------------------ moved folders
    def offer_relink(self, folders: list[Path], missing: Path) -> None:
        """Say that ``missing`` was not found; offer to locate it, try again or forget it."""
        window = self.window
        self.close_session()
        window.update_state()
        window.notice.show_notice(
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
        window = self.window
        if new is None:
            start = next((p for p in missing.parents if p.is_dir()), Path.home())
            new = QFileDialog.getExistingDirectory(
                window.widget, f"Where is {missing.name} now?", str(start)
            )
            if not new:
                self.offer_relink(list(folders), missing)
                return
        target = Path(new).resolve()
        replaced = [target if Path(f) == missing else Path(f) for f in folders]

        def relinked(_result: object = None) -> None:
            if window.persist:
                replace_folder(missing, target)
            self.open_folders(replaced)

        def failed(kind: str, message: str, details: str) -> None:
            if kind == "library_not_found":  # nothing was stored for it yet: just open
                relinked()
            else:
                window.show_error(kind, message, details)

        worker = relink_job(missing, target, window.workspace)
        worker.finished.connect(relinked)
        worker.failed.connect(failed)
        self.jobs.start("Re-linking the moved folder", worker, report_failure=False)
