"""File > Export (the photos into one folder per group) and File > Undo an export.

The export runs as a job; when it ends, the status bar and the notice bar say what it did
(with "Open folder"), and the photos that failed or are missing are listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog

from app.controllers.host import Controller, WindowHost, run_modal
from app.controllers.jobs import JobsController
from app.core.text import escape, plural
from app.engine_jobs import export_job, undo_export_job
from app.views.export_dialog import ExportDialog
from app.views.skipped_dialog import FileListDialog
from crlc_engine.api import export_items

__all__ = ["ExportController", "open_folder"]


def open_folder(folder: Path) -> bool:
    """Show ``folder`` in the system's file manager."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


class ExportController(Controller):
    """Exports the shown run's groups, and undoes an export."""

    def __init__(self, window: WindowHost, jobs: JobsController) -> None:
        super().__init__(window)
        self.jobs = jobs

    def export(self) -> None:
        """File > Export: the Export dialog (with its preview), then the export job."""
        window, session = self.window, self.window.session
        if session is None or session.run_id is None:
            return
        items = export_items(session.library, session.run_id)
        dialog = ExportDialog(
            items,
            list(session.folders),
            window.widget,
            mode=window.settings.export_mode,
            min_confidence=window.settings.export_min_confidence,
        )
        if run_modal(dialog):
            opts = dialog.options()
            worker = export_job(
                items,
                opts.dest,
                opts.mode,
                list(session.folders),
                opts.min_confidence,
                opts.keep_subfolders,
                False,
                library=session.library,  # holds its export.lock while exporting
            )
            worker.finished.connect(self.on_exported)
            worker.cancelled.connect(
                lambda: self.status(
                    "Export stopped. Export again to the same folder to finish it, or "
                    "File > Undo an export to take it back.",
                    15000,
                )
            )
            self.jobs.start(f"Exporting to {opts.dest}", worker, unit="photos")

    def on_exported(self, result: Any) -> None:
        """Say what the export did, counts included, with "Open folder"; list the failed and
        missing photos."""
        folders = len(result.folders)
        self.status(
            f"Exported {plural(result.done, 'photo')} into {plural(folders, 'folder')}; "
            f"{result.counts_text()}. The list is in {result.manifest}",
            30000 if result.failed or result.missing else 15000,
        )
        destination = Path(result.manifest).parent
        self.window.notice.show_notice(
            f"Exported {plural(result.done, 'photo')} into {plural(folders, 'folder')} "
            f"in <b>{escape(str(destination))}</b>.",
            [("Open folder", lambda: self.show_folder(destination)), ("Close", lambda: None)],
            key="export-done",
        )
        if result.failed or result.missing:
            self._list_problems(result)

    def _list_problems(self, result: Any) -> None:
        """List the photos an export could not export, and those that are missing."""
        rows = [(path, f"failed: {reason}") for path, reason in result.failed]
        rows += [(path, f"missing: {reason}") for path, reason in result.missing]
        parts = []
        if result.failed:
            parts.append(f"{plural(len(result.failed), 'photo')} could not be exported")
        if result.missing:
            verb = "is" if len(result.missing) == 1 else "are"
            parts.append(
                f"{plural(len(result.missing), 'photo')} {verb} missing (deleted or moved "
                "since the grouping)"
            )
        dialog = FileListDialog(
            "Photos that failed or are missing",
            f"{' and '.join(parts)}. Fix the cause and export again to the same folder: the "
            "photos already there are not exported twice. Scan the folders again to forget "
            "photos you deleted.",
            rows,
            self.window.widget,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def show_folder(self, folder: Path) -> None:
        """Show ``folder`` in the file manager, or say where it is when none can be started."""
        if not open_folder(folder):
            self.status(
                f"No file manager could be started to show {folder}; open it from your file "
                "manager.",
                15000,
            )

    def undo_export(self) -> None:
        """File > Undo an export: choose its manifest, then undo it as a job."""
        window = self.window.widget
        manifest, _ = QFileDialog.getOpenFileName(
            window, "Choose the manifest of the export to undo", "", "Export manifest (*.csv)"
        )
        if not manifest:
            return

        def report(result: Any) -> None:
            self.status(
                f"Export undone: {result.restored:,} photos put back, {result.removed:,} "
                f"copies or links removed, {plural(len(result.kept), 'file')} kept",
                15000,
            )
            if result.kept:
                dialog = FileListDialog(
                    "Files the undo kept",
                    f"{plural(len(result.kept), 'file')} of the export stayed where they "
                    "are, to keep your photos safe; the reason is next to each.",
                    result.kept,
                    window,
                )
                dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                dialog.open()

        worker = undo_export_job(Path(manifest), self.library_workspace())
        worker.finished.connect(report)
        self.jobs.start("Undoing the export", worker, unit="files")
