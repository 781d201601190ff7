"""Entry point of ``crlc-organizer``.

Until the full desktop application lands, this opens a window that says what the program
is, which device it would train on, and how to group a folder with the ``crlc`` command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QVBoxLayout, QWidget

from crlc_engine import __version__
from crlc_engine.device import resolve_device


class MainWindow(QMainWindow):
    """The main window: for now, what the program is and how to use the engine."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(f"CRLC Organizer {__version__}")
        device = resolve_device("auto")
        body = QWidget()
        layout = QVBoxLayout(body)
        title = QLabel("<h2>CRLC Organizer</h2>")
        text = QLabel(
            "Sorts the photos of a folder into groups with CRLC deep clustering "
            "(Do, Tran and Venkatesh, ICCV 2021).<br><br>"
            f"Training device: <b>{device.device}</b> ({device.reason}).<br><br>"
            "The browsing and correcting window is not built yet. Group a folder from a "
            "terminal meanwhile:<br>"
            "<tt>crlc train PHOTO_FOLDER --clusters 10</tt><br>"
            "The result is <tt>assignments.csv</tt> in the run folder it prints."
        )
        text.setWordWrap(True)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.device_label = text
        layout.addWidget(title)
        layout.addWidget(text)
        layout.addStretch(1)
        self.setCentralWidget(body)
        self.resize(640, 320)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the application; ``--screenshot PNG`` renders the window offscreen and exits."""
    parser = argparse.ArgumentParser(prog="crlc-organizer", description="CRLC Organizer")
    parser.add_argument("--screenshot", metavar="PNG", help="save the window as PNG and exit")
    args, qt_args = parser.parse_known_args(argv)
    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    window = MainWindow()
    if args.screenshot:
        window.show()
        QApplication.processEvents()
        ok = window.grab().save(args.screenshot)
        return 0 if ok else 1
    window.show()
    return int(app.exec())


if __name__ == "__main__":
    raise SystemExit(main())
