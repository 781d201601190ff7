"""Entry point of ``crlc-organizer``: the desktop application.

``crlc-organizer [FOLDER...]`` opens the main window (with the library of FOLDER(s), or the
most recent library; a library whose folder has moved offers to locate it).
``--screenshot OUT.png [--state start|scanning|training|clusters|export]`` renders the
window offscreen in that state and exits (see :mod:`app.screenshots`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from types import TracebackType

from PySide6.QtWidgets import QApplication, QWidget

from app.recent import recent_folders, remember_folders

__all__ = ["SCREENSHOT_STATES", "install_excepthook", "main", "recent_folders", "remember_folders"]

SCREENSHOT_STATES = ("start", "scanning", "training", "clusters", "export")


def install_excepthook(parent: QWidget) -> None:
    """Show an exception that escapes a slot as a plain error message (and log it)."""

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        from app.error_help import classify_exception
        from app.views.error_dialog import show_error
        from crlc_engine.errors import CRLCError

        details = "".join(traceback.format_exception(exc_type, exc, tb))
        logging.getLogger("crlc_organizer").error("uncaught: %s", details)
        if isinstance(exc, CRLCError):
            kind, message = exc.kind, str(exc)
        else:
            text = str(exc).strip()
            fallback = f"Something went wrong: {exc_type.__name__}" + (f": {text}" if text else "")
            kind, message = classify_exception(exc) or ("internal", fallback)
        show_error(parent, kind, message, details)

    sys.excepthook = hook


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
        help="window state for --screenshot (default: clusters with FOLDER, else start)",
    )
    args, qt_args = parser.parse_known_args(argv)
    if args.screenshot:  # no display needed
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])

    if args.screenshot:
        from app.screenshots import save_screenshot

        state = args.state or ("clusters" if args.folders else "start")
        ok = save_screenshot(args.screenshot, state, list(args.folders), args.workspace)
        return 0 if ok else 1

    from app.views.main_window import MainWindow, log_file

    path = log_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    window = MainWindow(workspace=args.workspace)
    install_excepthook(window)
    folders = args.folders or recent_folders()
    if folders:
        window.open_folders(folders)
    window.show()
    return int(app.exec())


if __name__ == "__main__":
    raise SystemExit(main())
