"""Entry point of ``crlc-organizer``: the desktop application.

``crlc-organizer [FOLDER...]`` opens the main window (with the library of FOLDER(s), or the
most recent library). ``--screenshot OUT.png [--state start|clusters|training]`` renders the
window offscreen in that state and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication

SCREENSHOT_STATES = ("start", "clusters", "training")


def _recent_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("crlc-organizer")) / "recent.json"


def recent_folders() -> list[str]:
    """The folders of the most recently opened library (empty if none or unreadable)."""
    try:
        data = json.loads(_recent_file().read_text(encoding="utf-8"))
        folders = [str(f) for f in data.get("folders", [])]
    except (OSError, ValueError):
        return []
    return folders if folders and all(Path(f).is_dir() for f in folders) else []


def remember_folders(folders: Sequence[str | Path]) -> None:
    """Record the library to reopen next time."""
    from crlc_engine.fileio import atomic_write_json

    path = _recent_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"folders": [str(Path(f).resolve()) for f in folders]})


def _replay_training(window: object) -> None:
    """Show the job panel as during training, from the newest run's recorded epochs."""
    from app.views.main_window import MainWindow
    from crlc_engine.events import EpochEnded

    assert isinstance(window, MainWindow)
    panel = window.jobs
    panel.title.setText("Grouping images")
    session = window.session
    records: list[dict[str, Any]] = []
    if session is not None and session.run_id is not None:
        history = session.library.runs.get(session.run_id).history_path
        if history.exists():
            records = [json.loads(line) for line in history.read_text().splitlines() if line]
    for record in records[: len(records) // 2 + 1]:
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
                eta_s=30.0,
                steps=int(record["steps"]),
            )
        )
    if records:
        panel.bar.setValue(500)
    panel.pause_button.setEnabled(True)
    panel.cancel_button.setEnabled(True)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the application (or render a screenshot and exit)."""
    parser = argparse.ArgumentParser(prog="crlc-organizer", description="CRLC Organizer")
    parser.add_argument("folders", nargs="*", metavar="FOLDER", help="photo folder(s) to open")
    parser.add_argument(
        "--workspace", help="workspace base (default: $CRLC_WORKSPACE or the user data folder)"
    )
    parser.add_argument("--screenshot", metavar="PNG", help="save the window as PNG and exit")
    parser.add_argument(
        "--state",
        choices=SCREENSHOT_STATES,
        help="window state for --screenshot (default: clusters when the library "
        "has a completed run, else start)",
    )
    args, qt_args = parser.parse_known_args(argv)
    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    from app.views.main_window import MainWindow, log_file

    if not args.screenshot:
        path = log_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(
            filename=path,
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )

    folders = args.folders or ([] if args.screenshot else recent_folders())
    if args.screenshot and args.state == "start":
        folders = []
    window = MainWindow(workspace=args.workspace)
    if folders:
        window.open_folders(folders, scan=not args.screenshot)
        if not args.screenshot:
            remember_folders(folders)
    if args.screenshot:
        if args.state == "training":
            _replay_training(window)
        window.show()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # let the visible thumbnails arrive
            QApplication.processEvents()
            if window.cache is None or window.cache.is_idle():
                break
            time.sleep(0.02)
        QApplication.processEvents()
        ok = window.grab().save(args.screenshot)
        window.close()
        return 0 if ok else 1
    window.show()
    return int(app.exec())


if __name__ == "__main__":
    raise SystemExit(main())
