"""The placeholder window starts offscreen and says what the program is."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.main import MainWindow, main


def test_window_says_what_it_is(qtbot: QtBot) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    assert "CRLC Organizer" in window.windowTitle()
    assert "crlc train" in window.device_label.text()
    assert "Training device" in window.device_label.text()


def test_screenshot_option_writes_png(qtbot: QtBot, tmp_path: Path) -> None:
    out = tmp_path / "window.png"
    assert main(["--screenshot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
