"""Follows a running scan in the catalog, so thumbnails can appear as they are ready.

A scan commits finished images (pixels and thumbnail written first) about once a second.
:class:`ScanWatcher` reads the usable images on a worker thread of its own every
``interval_ms`` (one read at a time, nothing read when the count has not changed) and
announces them on the GUI thread with ``imagesChanged(ScannedImages)``. The GUI thread
never runs a catalog query for it.
"""

# Qt names signals in mixedCase.
# ruff: noqa: N815

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.core.scanned_images import ScannedImages, scanned_images
from app.workers import JobRunner, JobWorker
from crlc_engine.api import JobControl, Reporter

__all__ = ["ScanWatcher"]


class ScanWatcher(QObject):
    """Reads a library's usable images in the background while :meth:`start` ed.

    Args:
        workspace: The library's workspace folder.
        interval_ms: Pause between the end of one read and the start of the next.
        parent: Qt parent.

    Signals:
        imagesChanged(ScannedImages): the usable images, each time their number changed.
    """

    imagesChanged = Signal(object)

    def __init__(
        self, workspace: Path, interval_ms: int = 700, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self._runner = JobRunner(self)
        self._known = -1
        self._reading = False
        self._active = False
        self._closed = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)
        self.reads = 0  # reads started (for tests)

    @property
    def active(self) -> bool:
        """Whether it is polling."""
        return self._active

    def start(self) -> None:
        """Poll now and then every ``interval_ms`` until :meth:`stop`."""
        if self._closed:
            return
        self._active = True
        self.poll()

    def stop(self) -> None:
        """Stop polling (a read in flight still delivers its result)."""
        self._active = False
        self._timer.stop()

    def poll(self) -> None:
        """Start one read now unless one is in flight (then the next comes after it)."""
        if self._reading or self._closed:
            return
        self._reading = True
        self.reads += 1
        workspace, known = self.workspace, self._known

        def job(reporter: Reporter, control: JobControl) -> ScannedImages | None:
            return scanned_images(workspace, known)

        worker = JobWorker(job, "scan watch")
        worker.finished.connect(self._on_read)
        worker.done.connect(self._on_done)
        self._runner.start(worker)

    def _on_read(self, result: Any) -> None:
        if isinstance(result, ScannedImages) and not self._closed:
            self._known = len(result)
            self.imagesChanged.emit(result)

    def _on_done(self) -> None:
        self._reading = False
        if self._active and not self._closed:
            self._timer.start()

    def shutdown(self) -> None:
        """Stop for good and wait for a read in flight (its result is dropped)."""
        self._closed = True
        self.stop()
        self._runner.shutdown()
