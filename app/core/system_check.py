"""Start-up check of the system libraries Qt's X11 (``xcb``) platform plugin needs (Linux).

Without them Qt aborts with "xcb-cursor0 or libxcb-cursor0 is needed to load the Qt xcb
platform plugin" (and a core dump). The check runs before Qt loads a platform plugin and
turns that into one plain message naming the packages to install on Debian/Ubuntu and on
Fedora. No Qt import here: this module must work when Qt cannot.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "XCB_LIBRARIES",
    "MissingLibrary",
    "missing_libraries_message",
    "missing_xcb_libraries",
    "uses_xcb",
]


@dataclass(frozen=True)
class MissingLibrary:
    """A shared library the xcb plugin loads, and the packages that install it."""

    soname: str
    debian: str
    fedora: str


#: What the xcb plugin of Qt 6 (``libqxcb.so`` and ``libQt6XcbQpa.so``) and Qt's GUI
#: library link against outside Qt itself, with the Debian/Ubuntu and Fedora packages.
XCB_LIBRARIES: tuple[MissingLibrary, ...] = (
    MissingLibrary("libxcb.so.1", "libxcb1", "libxcb"),
    MissingLibrary("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor"),
    MissingLibrary("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm"),
    MissingLibrary("libxcb-image.so.0", "libxcb-image0", "xcb-util-image"),
    MissingLibrary("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms"),
    MissingLibrary("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil"),
    MissingLibrary("libxcb-util.so.1", "libxcb-util1", "xcb-util"),
    MissingLibrary("libxcb-randr.so.0", "libxcb-randr0", "libxcb"),
    MissingLibrary("libxcb-render.so.0", "libxcb-render0", "libxcb"),
    MissingLibrary("libxcb-shape.so.0", "libxcb-shape0", "libxcb"),
    MissingLibrary("libxcb-shm.so.0", "libxcb-shm0", "libxcb"),
    MissingLibrary("libxcb-sync.so.1", "libxcb-sync1", "libxcb"),
    MissingLibrary("libxcb-xfixes.so.0", "libxcb-xfixes0", "libxcb"),
    MissingLibrary("libxcb-xkb.so.1", "libxcb-xkb1", "libxcb"),
    MissingLibrary("libxkbcommon.so.0", "libxkbcommon0", "libxkbcommon"),
    MissingLibrary("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11"),
    MissingLibrary("libX11.so.6", "libx11-6", "libX11"),
    MissingLibrary("libX11-xcb.so.1", "libx11-xcb1", "libX11-xcb"),
    MissingLibrary("libfontconfig.so.1", "libfontconfig1", "fontconfig"),
    MissingLibrary("libEGL.so.1", "libegl1", "libglvnd-egl"),
    MissingLibrary("libGL.so.1", "libgl1", "libglvnd-glx"),
)


def uses_xcb(
    environ: Mapping[str, str], qt_args: Sequence[str] = (), platform: str = sys.platform
) -> bool:
    """Whether Qt will load its xcb plugin: on Linux, asked for with ``QT_QPA_PLATFORM`` or
    ``-platform``, or by default outside a Wayland session."""
    if not platform.startswith("linux"):
        return False
    asked = environ.get("QT_QPA_PLATFORM", "")
    args = list(qt_args)
    if "-platform" in args[:-1]:
        asked = args[args.index("-platform") + 1]
    if asked:
        return asked.split(":")[0].split(";")[0].strip() == "xcb"
    return not environ.get("WAYLAND_DISPLAY")


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_xcb_libraries(loads: Callable[[str], bool] = _loads) -> list[MissingLibrary]:
    """The libraries of :data:`XCB_LIBRARIES` that cannot be loaded."""
    return [library for library in XCB_LIBRARIES if not loads(library.soname)]


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def missing_libraries_message(missing: Sequence[MissingLibrary]) -> str:
    """One plain message: what is missing and the command that installs it."""
    sonames = ", ".join(library.soname for library in missing)
    debian = " ".join(_unique([library.debian for library in missing]))
    fedora = " ".join(_unique([library.fedora for library in missing]))
    return (
        "CRLC Organizer cannot open its window: this system lacks libraries that Qt needs "
        f"to draw windows under X11 ({sonames}).\n"
        "Install them, then start the program again:\n"
        f"  Debian, Ubuntu:  sudo apt install {debian}\n"
        f"  Fedora:          sudo dnf install {fedora}\n"
        "On a Wayland desktop, QT_QPA_PLATFORM=wayland also works. The command line "
        "(crlc) needs none of these."
    )
