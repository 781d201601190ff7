"""Scanning the open library's folders (Images > Scan the folders again, and on opening) and
the files a scan could not use ("N files skipped" in the status bar, Images > Skipped files).

While nothing is grouped, the images appear in the grid as the scan finishes them (read by
the window's :class:`~app.itemmodels.scan_watcher.ScanWatcher`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt

from app.controllers.browsing import BrowsingController
from app.controllers.host import Controller, WindowHost
from app.controllers.jobs import JobsController
from app.controllers.runs import RunsController
from app.core.text import plural
from app.engine_jobs import scan_job
from app.views.skipped_dialog import FileListDialog, skipped_files_dialog

__all__ = ["SCAN_SIZE", "ScansController"]

#: The side of the pixels a scan stores (the size the engine trains at).
SCAN_SIZE = 32


class ScansController(Controller):
    """Scans the library and lists the files it skipped."""

    def __init__(
        self,
        window: WindowHost,
        browsing: BrowsingController,
        jobs: JobsController,
        runs: RunsController,
    ) -> None:
        super().__init__(window)
        self.browsing = browsing
        self.jobs = jobs
        self.runs = runs

    def scan(self) -> None:
        """Scan the library's folders in the background (new and changed files only).

        While nothing is grouped, the images appear in the grid as the scan finishes them.
        """
        window, session = self.window, self.window.session
        if session is None or window.runner.running:
            return
        worker = scan_job(
            list(session.folders),
            SCAN_SIZE,
            self.library_workspace(),
            workers=window.scan_workers,
        )
        worker.finished.connect(self._on_scan_finished)
        worker.failed.connect(self._on_scan_failed)
        worker.done.connect(self._on_scan_done)
        window.scanning = True
        self.jobs.start("Scanning images", worker, unit="files")
        if window.all_images_mode and window.scan_watcher is not None:
            window.scan_watcher.start()

    def _on_scan_finished(self, summary: Any) -> None:
        self.set_skipped([(s.path, s.reason) for s in summary.skipped])
        changes = [
            f"{summary.new:,} new" if summary.new else "",
            f"{summary.changed:,} changed" if summary.changed else "",
            f"{summary.missing:,} gone" if summary.missing else "",
            f"{summary.images_skipped:,} skipped" if summary.images_skipped else "",
        ]
        rate = f" at {summary.files_per_s:,.1f} files/s" if summary.decoded else ""
        detail = "; ".join(c for c in changes if c) or "nothing new"
        panel = self.window.jobs
        panel.title.setText("Scan finished")
        panel.detail.setText(
            f"{plural(summary.images_ok, 'usable image')} ({detail}), "
            f"{summary.seconds:.1f} s{rate}."
        )

    def _on_scan_failed(self, kind: str, message: str, details: str) -> None:
        session = self.window.session
        if session is not None:  # the catalog still lists what could not be read
            session.reload()
            self.set_skipped([(s.path, s.reason) for s in session.skipped_files()])

    def _on_scan_done(self) -> None:
        window = self.window
        window.scanning = False
        if window.scan_watcher is not None:
            window.scan_watcher.stop()
        self.browsing.refresh()
        self.runs.offer_resume()

    def set_skipped(self, rows: Sequence[tuple[str, str]]) -> None:
        """The files the scans could not use, with the reason (shown in the status bar)."""
        window = self.window
        window.skipped = list(rows)
        count = len(window.skipped)
        window.skipped_button.setText(f"{plural(count, 'file')} skipped")
        window.skipped_button.setVisible(count > 0)
        window.skipped_action.setEnabled(count > 0)

    def show_skipped(self) -> FileListDialog | None:
        """Open the list of skipped files (non-modal); returns the dialog."""
        window = self.window
        if not window.skipped:
            return None
        dialog = skipped_files_dialog(window.skipped, window.widget)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog
