"""Entry point of ``crlc-organizer``: the desktop application.

``crlc-organizer [FOLDER...]`` opens the main window (with the library of FOLDER(s), or the
most recent library when the setting "reopen the last library" is on; a library whose folder
has moved offers to locate it). The user's settings (:mod:`app.core.settings_store`) give the
theme (applied before the window appears), the workspace folder (``--workspace`` wins) and
the window's defaults.
``--screenshot OUT.png [--state start|scanning|training|clusters|export|viewer] [--theme
light|dark]`` renders the window offscreen in that state and exits (see
:mod:`app.screenshots`); it neither reads nor changes the user's settings and uses the light
palette unless told otherwise, so documentation images do not depend on the desktop.
On Linux, before Qt loads its X11 platform plugin, the libraries the plugin needs are
checked (:mod:`app.core.system_check`): a missing one is one plain message naming the packages
to install, not Qt's abort.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from app.core.recent import recent_folders, remember_folders
from app.core.screenshot_states import SCREENSHOT_STATES, SCREENSHOT_THEMES
from app.core.system_check import missing_libraries_message, missing_xcb_libraries, uses_xcb

# Qt is imported inside the functions: the start-up check runs before Qt's libraries load
if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication, QWidget

    from app.core.settings_store import SettingsStore
    from app.views.main_window import MainWindow

__all__ = [
    "SCREENSHOT_STATES",
    "SCREENSHOT_THEMES",
    "install_excepthook",
    "main",
    "open_main_window",
    "recent_folders",
    "remember_folders",
]

#: The desktop id (packaging/linux/<APP_ID>.desktop and .metainfo.xml).
APP_ID = "io.github.crlc_organizer.CRLCOrganizer"


def install_excepthook(parent: QWidget) -> None:
    """Show an exception that escapes a slot as a plain error message (and log it)."""

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        from app.core.error_help import classify_exception
        from app.views.error_dialog import show_error
        from crlc_engine.api import CRLCError

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


def qt_loaded() -> bool:
    """Whether Qt's widgets are already loaded (with an application: tests, a host)."""
    widgets = sys.modules.get("PySide6.QtWidgets")
    return widgets is not None and widgets.QApplication.instance() is not None


def main(argv: Sequence[str] | None = None) -> int:
    """Start the application (or render a screenshot and exit)."""
    parser = argparse.ArgumentParser(prog="crlc-organizer", description="CRLC Organizer")
    parser.add_argument("folders", nargs="*", metavar="FOLDER", help="photo folder(s) to open")
    parser.add_argument(
        "--workspace",
        help="workspace base (default: the one in Settings, else $CRLC_WORKSPACE, else the "
        "user data folder)",
    )
    parser.add_argument("--screenshot", metavar="PNG", help="save the window as PNG and exit")
    parser.add_argument(
        "--state",
        choices=SCREENSHOT_STATES,
        help="window state for --screenshot (default: clusters with FOLDER, else start)",
    )
    parser.add_argument(
        "--theme",
        choices=SCREENSHOT_THEMES,
        default="light",
        help="palette of --screenshot (default: light)",
    )
    args, qt_args = parser.parse_known_args(argv)
    if args.screenshot:  # no display needed
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    elif not qt_loaded() and uses_xcb(os.environ, qt_args):
        missing = missing_xcb_libraries()
        if missing:  # Qt would abort with a core dump: say what to install instead
            print(missing_libraries_message(missing), file=sys.stderr)
            return 1
    from PySide6.QtWidgets import QApplication

    from app.pyside_sources import read_sources_uncached

    read_sources_uncached()  # before torch & co. are imported: PySide6 would keep their sources
    from app.gc_guard import GuiGarbageCollector

    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    assert isinstance(app, QApplication)
    app.setDesktopFileName(APP_ID)  # links the window to packaging/linux's .desktop entry
    collector = GuiGarbageCollector(app)  # cycles holding Qt objects die on the GUI thread

    if args.screenshot:
        from app.screenshots import save_screenshot

        state = args.state or ("clusters" if args.folders else "start")
        try:
            ok = save_screenshot(
                args.screenshot, state, list(args.folders), args.workspace, theme=args.theme
            )
        finally:
            collector.stop()
        return 0 if ok else 1

    from app.views.main_window import log_file

    path = log_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    window = open_main_window(app, list(args.folders), args.workspace)
    install_excepthook(window)
    window.show()
    try:
        return int(app.exec())
    finally:
        collector.stop()


def open_main_window(
    app: QApplication,
    folders: Sequence[str],
    workspace: str | None = None,
    store: SettingsStore | None = None,
) -> MainWindow:
    """Load the settings, apply their theme, and make the main window (not shown yet).

    Args:
        app: The application (gets the theme and the window icon).
        folders: Folders to open; none opens the most recent library when the settings
            say to reopen it.
        workspace: ``--workspace`` (wins over the settings' workspace folder).
        store: The settings file (default: the user's).
    """
    from app.core.settings_store import SettingsStore
    from app.icons import app_icon
    from app.theme import apply_theme
    from app.views.main_window import MainWindow

    store = store if store is not None else SettingsStore()
    settings = store.load()
    apply_theme(app, settings)
    app.setWindowIcon(app_icon())
    window = MainWindow(workspace=workspace, settings=settings, store=store)
    opened = list(folders) or (recent_folders() if settings.reopen_last_library else [])
    if opened:
        window.open_folders(opened)
    return window


if __name__ == "__main__":
    raise SystemExit(main())
