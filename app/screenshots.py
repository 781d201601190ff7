"""Window states for ``crlc-organizer --screenshot`` (documentation images, offscreen).

- ``start``: the empty start screen.
- ``clusters``: the library with its groups.
- ``training``: the job panel during training, replayed from the shown run's recorded
  epochs (the first half of them).
- ``scanning``: the first scan of the library, 60 % done: the library is scanned for real
  into a temporary workspace first (so it has no groups, as on a first opening), then the
  grid gets the first 60 % of the images through the same slot the live scan uses, and
  the job panel gets progress at a steady rate through its own slots.
- ``export``: the export dialog with its dry-run preview over the main window (the dialog
  is drawn into the window's image with a title bar, as a window manager would).
- ``viewer``: the newest run's first group's first picture in the viewer (fit to the
  window, decoded in full).

The window uses the default settings (the user's are neither read nor changed) and the
``light`` or ``dark`` palette asked for; the application's palette, style and theme
controller are put back afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

from app.controllers.scans import SCAN_SIZE
from app.core.scanned_images import ScannedImages
from app.core.screenshot_states import SCREENSHOT_STATES
from app.theme import ThemeController, apply_theme
from app.views.export_dialog import ExportDialog
from app.views.job_panel import RateMeter
from app.views.main_window import MainWindow
from crlc_engine.api import EpochEnded, NoImagesFoundError, export_items, scan_folders

__all__ = [
    "SCREENSHOT_STATES",
    "composite_dialog",
    "prepare_scan_workspace",
    "replay_scan",
    "replay_training",
    "show_export",
    "show_viewer",
]

#: Share of the images shown as scanned in the ``scanning`` state.
SCAN_FRACTION = 0.6
#: Files per second of the replayed scan.
SCAN_RATE = 42.0


def replay_training(window: MainWindow) -> None:
    """Show the job panel as during training, from the shown run's recorded epochs."""
    panel = window.jobs
    panel.begin("Grouping images")
    session = window.session
    records: list[dict[str, Any]] = []
    if session is not None and session.run_id is not None:
        history = session.library.runs.get(session.run_id).history_path
        if history.exists():
            records = [json.loads(line) for line in history.read_text().splitlines() if line]
    shown = records[: len(records) // 2 + 1]
    for record in shown:
        heads = [float(v) for v in record["head_losses"]]
        best = int(min(range(len(heads)), key=heads.__getitem__))
        panel._on_event(
            EpochEnded(
                epoch=int(record["epoch"]),
                losses=dict(record["losses"]),
                head_losses=heads,
                chosen_head=best,
                cluster_sizes=list(record["head_counts"][best]),
                samples_per_s=float(record["samples_per_s"]),
                elapsed_s=float(record["elapsed_s"]),
                eta_s=float(record["elapsed_s"]) * (len(records) - len(shown)) / len(shown),
                steps=int(record["steps"]),
            )
        )
    if records:
        panel._on_progress(len(shown), len(records))
    busy = (window.group_action, window.rescan_action, window.refine_action, window.export_action)
    for act in busy:
        act.setEnabled(False)  # as while a job runs


def prepare_scan_workspace(folders: list[str]) -> tempfile.TemporaryDirectory[str]:
    """Scan ``folders`` into a new temporary workspace base (no runs: a first opening)."""
    base = tempfile.TemporaryDirectory(prefix="crlc-screenshot-")
    with contextlib.suppress(NoImagesFoundError):  # the window then shows an empty library
        scan_folders(folders, SCAN_SIZE, base.name, workers=0)
    return base


class _Clock:
    """A clock the replay sets by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay_scan(window: MainWindow, fraction: float = SCAN_FRACTION) -> None:
    """Show the window as while the first scan of its library is ``fraction`` done."""
    session = window.session
    if session is None:
        return
    images = session.all_images()
    total = len(images) + len(window.skipped)
    done = round(total * fraction)
    shown = min(len(images), done)
    window.scanning = True
    window.show_scanned(ScannedImages(images.image_ids[:shown], images.paths[:shown]), reset=True)
    panel = window.jobs
    panel.begin("Scanning images", unit="files")
    clock = _Clock()
    panel.meter = RateMeter(clock=clock)
    for step in range(5, -1, -1):  # the last 5 seconds at SCAN_RATE
        count = max(0.0, done - step * SCAN_RATE)
        clock.now = count / SCAN_RATE
        panel._on_progress(count, total)
    eta = (total - done) / SCAN_RATE
    panel.detail.setText(f"{done}/{total} images, {SCAN_RATE:.1f} files/s, ETA {eta:.0f} s")
    for act in (window.group_action, window.rescan_action):
        act.setEnabled(False)  # as while a job runs
    window.statusBar().clearMessage()


def show_export(window: MainWindow) -> Any:
    """Open the export dialog with a preview to a folder next to the library's first folder.

    Returns the dialog (shown; the caller closes it).
    """
    session = window.session
    if session is None or session.run_id is None:
        return None
    items = export_items(session.library, session.run_id)
    first = session.folders[0]
    dest = first.parent / f"{first.name} sorted"
    dialog = ExportDialog(items, list(session.folders), window, dest=dest)
    dialog.refresh_preview()
    dialog.show()
    dialog.dest_edit.deselect()
    return dialog


def composite_dialog(
    window_image: QPixmap, dialog_image: QPixmap, title: str, palette: QPalette | None = None
) -> QPixmap:
    """Draw a dialog (with a title bar and a shadow) centred over the window's image.

    The title bar takes the palette's button colours (default: the application's), so it
    matches a light or a dark window.
    """
    palette = palette if palette is not None else QApplication.palette()
    out = QPixmap(window_image)
    painter = QPainter(out)
    painter.fillRect(out.rect(), QColor(0, 0, 0, 60))
    bar = 30
    width, height = dialog_image.width(), dialog_image.height() + bar
    left = (out.width() - width) // 2
    top = max(10, (out.height() - height) // 2 - 20)
    for spread in range(12, 0, -2):  # a soft shadow
        painter.fillRect(
            QRect(left - spread + 4, top - spread + 8, width + 2 * spread, height + 2 * spread),
            QColor(0, 0, 0, 10),
        )
    frame = QRect(left, top, width, bar)
    painter.fillRect(frame, palette.color(QPalette.ColorRole.Button))
    font = QFont(painter.font())
    font.setBold(True)
    painter.setFont(font)
    painter.setPen(palette.color(QPalette.ColorRole.ButtonText))
    painter.drawText(frame, int(Qt.AlignmentFlag.AlignCenter), title)
    painter.drawPixmap(QPoint(left, top + bar), dialog_image)
    painter.setPen(palette.color(QPalette.ColorRole.Mid))
    painter.drawRect(QRect(left, top, width - 1, height - 1))
    painter.end()
    return out


def show_viewer(window: MainWindow) -> None:
    """Open the viewer on the newest run's first group's first picture."""
    session = window.session
    if session is None or not session.has_results:
        return
    newest = session.runs()[-1]
    if session.run_id != newest:
        window.show_run(newest)
    window.group_list.setCurrentIndex(window.group_model.index(0))
    if window.grid_model is not None and window.grid_model.rowCount():
        window.grid.setCurrentIndex(window.grid_model.index(0))
    window.open_viewer()


def wait_for_viewer(window: MainWindow, seconds: float = 20.0) -> None:
    """Let the viewer's picture be decoded and scaled (or give up after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while window.viewer.is_loading() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    window.viewer.canvas.settle()
    QApplication.processEvents()


def wait_for_thumbnails(window: MainWindow, seconds: float = 3.0) -> None:
    """Let the visible thumbnails arrive (or give up after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if window.cache is None or window.cache.is_idle():
            break
        time.sleep(0.02)
    QApplication.processEvents()


@contextlib.contextmanager
def themed(theme: str) -> Iterator[None]:
    """Apply the ``light`` or ``dark`` palette for a while, then put back the application's
    palette and style (and take away a theme controller that was not there before)."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        yield
        return
    palette, style = QPalette(app.palette()), app.style().name()
    had = app.findChild(ThemeController, "crlc-theme-controller")
    previous = had.theme if isinstance(had, ThemeController) else None
    controller = apply_theme(app, theme)
    try:
        yield
    finally:
        if previous is not None:
            controller.set_theme(previous)
        else:
            controller.detach()
            controller.deleteLater()
            app.setStyle(style)
            app.setPalette(palette)


def save_screenshot(
    out: str | os.PathLike[str],
    state: str,
    folders: list[str],
    workspace: str | None,
    theme: str = "light",
) -> bool:
    """Render the window in ``state`` with the ``theme`` palette offscreen and save it as
    PNG; returns success."""
    with themed(theme):
        return _render(out, state, folders, workspace)


def _render(
    out: str | os.PathLike[str], state: str, folders: list[str], workspace: str | None
) -> bool:
    scan_base = prepare_scan_workspace(folders) if state == "scanning" and folders else None
    window = MainWindow(workspace=scan_base.name if scan_base else workspace, persist=False)
    dialog = None
    try:
        if folders and state != "start":
            window.open_folders(folders, scan=False)
        window.notice.dismiss()
        if state == "training":
            replay_training(window)
        elif state == "scanning":
            replay_scan(window)
        window.show()
        wait_for_thumbnails(window)
        if state == "viewer":
            show_viewer(window)
            wait_for_viewer(window)
        image = window.grab()
        if state == "export":
            dialog = show_export(window)
            if dialog is not None:
                QApplication.processEvents()
                image = composite_dialog(image, dialog.grab(), dialog.windowTitle())
        return bool(image.save(os.fspath(Path(out))))
    finally:
        if dialog is not None:
            dialog.reject()
        window.close()
        if scan_base is not None:
            scan_base.cleanup()
