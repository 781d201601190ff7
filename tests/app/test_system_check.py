"""The start-up check of the X11 libraries: when it runs, what it says."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app import main as app_main
from app.core.system_check import (
    XCB_LIBRARIES,
    missing_libraries_message,
    missing_xcb_libraries,
    uses_xcb,
)


@pytest.mark.parametrize(
    ("environ", "qt_args", "platform", "expected"),
    [
        ({"DISPLAY": ":0"}, [], "linux", True),
        ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, [], "linux", False),
        ({"WAYLAND_DISPLAY": "w", "QT_QPA_PLATFORM": "xcb"}, [], "linux", True),
        ({"QT_QPA_PLATFORM": "offscreen"}, [], "linux", False),
        ({"QT_QPA_PLATFORM": "wayland;xcb"}, [], "linux", False),
        ({}, ["-platform", "xcb"], "linux", True),
        ({"QT_QPA_PLATFORM": "xcb"}, ["-platform", "offscreen"], "linux", False),
        ({}, [], "darwin", False),
        ({}, [], "win32", False),
    ],
)
def test_when_the_xcb_plugin_is_used(
    environ: dict[str, str], qt_args: list[str], platform: str, expected: bool
) -> None:
    assert uses_xcb(environ, qt_args, platform) is expected


def test_the_message_names_what_is_missing_and_the_packages() -> None:
    absent = {"libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"}
    missing = missing_xcb_libraries(lambda soname: soname not in absent)
    assert [m.soname for m in missing] == [
        "libxcb-cursor.so.0",
        "libxcb-icccm.so.4",
        "libxcb-keysyms.so.1",
    ]
    text = missing_libraries_message(missing)
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1\n" in text
    assert "sudo dnf install xcb-util-cursor xcb-util-wm xcb-util-keysyms\n" in text
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4, libxcb-keysyms.so.1" in text
    assert missing_xcb_libraries(lambda soname: True) == []
    shared = missing_libraries_message([XCB_LIBRARIES[7], XCB_LIBRARIES[8]])
    assert "sudo dnf install libxcb\n" in shared  # one package named once


def test_main_says_it_before_qt_aborts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(app_main, "qt_loaded", lambda: False)
    monkeypatch.setattr(app_main, "uses_xcb", lambda environ, qt_args: True)
    monkeypatch.setattr(app_main, "missing_xcb_libraries", lambda: [XCB_LIBRARIES[1]])
    assert app_main.main([]) == 1
    err = capsys.readouterr().err
    assert "cannot open its window" in err and "libxcb-cursor0" in err


def test_the_check_runs_before_qt_is_loaded() -> None:
    # Qt's GUI library itself needs some of the checked libraries: importing the entry point
    # must not load it (else a missing one is an ImportError traceback, not the message)
    code = "import sys, app.main; print(any(m.startswith('PySide6.Qt') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
