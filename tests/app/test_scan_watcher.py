"""ScanWatcher: reads the images a scan has finished, off the GUI thread, only when changed."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.core.scanned_images import ScannedImages
from app.itemmodels.scan_watcher import ScanWatcher
from crlc_engine.library import ImageLibrary


def test_reports_new_images_only_when_their_number_changed(
    qtbot: QtBot, shapes_folder: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(shapes_folder / "disc", folder)  # 12 images
    with ImageLibrary.open([folder], tmp_path / "ws") as library:
        library.scan(16, workers=0)
        workspace = library.workspace
    watcher = ScanWatcher(workspace, interval_ms=10)
    seen: list[tuple[int, bool]] = []
    gui = threading.get_ident()
    watcher.imagesChanged.connect(
        lambda images: seen.append((len(images), threading.get_ident() == gui))
    )
    try:
        with qtbot.waitSignal(watcher.imagesChanged, timeout=5000) as first:
            watcher.start()
        assert isinstance(first.args[0], ScannedImages) and len(first.args[0]) == 12
        reads = watcher.reads
        qtbot.waitUntil(lambda: watcher.reads >= reads + 3, timeout=5000)
        assert seen == [(12, True)]  # polled again, nothing new: nothing announced
        shutil.copytree(shapes_folder / "square", folder / "more")
        with ImageLibrary.open([folder], tmp_path / "ws") as library:
            library.scan(16, workers=0)
        qtbot.waitUntil(lambda: len(seen) == 2, timeout=5000)
        assert seen[1] == (24, True)
        watcher.stop()
        reads = watcher.reads
        qtbot.wait(100)
        assert watcher.reads == reads and not watcher.active
    finally:
        watcher.shutdown()
    assert not watcher._runner.running
    watcher.poll()  # after shutdown: ignored
    assert watcher.reads == reads
