"""The app's icons: small SVG line drawings tinted with the current palette's text colour.

The files are ``resources/icons/<name>.svg`` (24 x 24 view box, one ``currentColor`` stroke).
:func:`icon` returns a :class:`QIcon` whose engine renders the SVG at paint time with
``currentColor`` replaced by the application palette's colour for the icon's mode (window
text; highlighted text when selected; the disabled text colour when disabled), so every icon
follows a light/dark palette switch without being rebuilt. ``app`` (the application icon)
keeps its own colours.

A missing or broken file never fails: the icon falls back to the desktop theme's icon of the
same meaning, else to a drawn letter in a rounded square, and the problem is logged once.
"""

from __future__ import annotations

import logging
import site
import sys
from functools import cache
from importlib import resources
from pathlib import Path

from PySide6.QtCore import QByteArray, QPoint, QRect, QRectF, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QGuiApplication,
    QIcon,
    QIconEngine,
    QPainter,
    QPalette,
    QPen,
    QPixmap,
)
from PySide6.QtSvg import QSvgRenderer

log = logging.getLogger("crlc_organizer.icons")

#: Every icon the app uses (file ``<name>.svg``).
ICON_NAMES: tuple[str, ...] = (
    "open",
    "group",
    "refine",
    "export",
    "undo",
    "redo",
    "pause",
    "resume",
    "cancel",
    "label",
    "ignore",
    "move",
    "split",
    "merge",
    "settings",
    "about",
    "runs",
    "scan",
    "delete",
    "quit",
    "view",
    "confidence",
    "app",
)
#: Icons drawn in their own colours (never tinted).
COLOURED: frozenset[str] = frozenset({"app"})
#: freedesktop icon-theme names used when a file is missing.
THEME_FALLBACK: dict[str, str] = {
    "open": "document-open",
    "export": "document-save-as",
    "undo": "edit-undo",
    "redo": "edit-redo",
    "pause": "media-playback-pause",
    "resume": "media-playback-start",
    "cancel": "process-stop",
    "settings": "preferences-system",
    "about": "help-about",
    "scan": "view-refresh",
    "delete": "edit-delete",
    "quit": "application-exit",
    "view": "image-x-generic",
}


def icon_dirs() -> list[Path]:
    """Where icon files are looked for, in order.

    1. ``app/resources/icons`` inside the installed ``app`` package (wheels: see the
       packaging note in the report / pyproject ``package-data``);
    2. ``<repository>/resources/icons`` (a source checkout or an editable install);
    3. ``<sys.prefix>/share/crlc-organizer/icons`` (data files of an installed wheel);
    4. ``<user base>/share/crlc-organizer/icons`` (``pip install --user``).
    """
    found: list[Path] = []
    try:
        packaged = Path(str(resources.files("app").joinpath("resources", "icons")))
        found.append(packaged)
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - app is always importable
        pass
    found.append(Path(__file__).resolve().parent.parent / "resources" / "icons")
    found.append(Path(sys.prefix) / "share" / "crlc-organizer" / "icons")
    found.append(Path(site.getuserbase()) / "share" / "crlc-organizer" / "icons")  # --user
    return found


def icon_path(name: str) -> Path | None:
    """The SVG file of an icon, or None when no icon folder has it."""
    for folder in icon_dirs():
        path = folder / f"{name}.svg"
        if path.is_file():
            return path
    return None


@cache
def _svg_text(name: str) -> str | None:
    """The SVG source of an icon (None: missing or unreadable; logged once)."""
    path = icon_path(name)
    if path is None:
        log.warning("icon %r not found in %s", name, ", ".join(map(str, icon_dirs())))
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read icon %s: %s", path, exc)
        return None
    if not QSvgRenderer(QByteArray(text.encode("utf-8"))).isValid():
        log.warning("icon %s is not a valid SVG", path)
        return None
    return text


def tint_color(mode: QIcon.Mode, palette: QPalette | None = None) -> QColor:
    """The stroke colour of a tinted icon in ``mode`` under ``palette`` (default: the app's)."""
    palette = palette if palette is not None else QGuiApplication.palette()
    if mode == QIcon.Mode.Disabled:
        return palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText)
    if mode == QIcon.Mode.Selected:
        return palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.HighlightedText)
    return palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.WindowText)


def render_svg(text: str, size: QSize, color: QColor | None, dpr: float = 1.0) -> QPixmap:
    """A transparent pixmap of ``size`` (logical pixels) with the SVG drawn in it.

    Args:
        text: SVG source.
        size: Logical size; the drawing keeps its aspect ratio, centred.
        color: Replaces ``currentColor`` (None: the SVG's own colours).
        dpr: Device pixel ratio of the pixmap.
    """
    source = text if color is None else text.replace("currentColor", color.name())
    renderer = QSvgRenderer(QByteArray(source.encode("utf-8")))
    pixmap = QPixmap(QSize(max(1, round(size.width() * dpr)), max(1, round(size.height() * dpr))))
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    target = QRectF(0, 0, pixmap.width(), pixmap.height())
    view = renderer.viewBoxF()
    if view.width() > 0 and view.height() > 0:
        scale = min(target.width() / view.width(), target.height() / view.height())
        w, h = view.width() * scale, view.height() * scale
        target = QRectF((target.width() - w) / 2, (target.height() - h) / 2, w, h)
    renderer.render(painter, target)
    painter.end()
    pixmap.setDevicePixelRatio(dpr)
    return pixmap


def _letter_pixmap(name: str, size: QSize, color: QColor, dpr: float = 1.0) -> QPixmap:
    """The last-resort icon: the name's first letter in a rounded square."""
    pixmap = QPixmap(QSize(max(1, round(size.width() * dpr)), max(1, round(size.height() * dpr))))
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    side = min(pixmap.width(), pixmap.height())
    pen = QPen(color, max(1.0, side / 12))
    painter.setPen(pen)
    box = QRectF(side / 12, side / 12, side - side / 6, side - side / 6)
    painter.drawRoundedRect(box, side / 6, side / 6)
    font = painter.font()
    font.setPixelSize(max(1, int(side * 0.55)))
    font.setBold(True)
    painter.setFont(font)
    painter.drawText(box, Qt.AlignmentFlag.AlignCenter, (name[:1] or "?").upper())
    painter.end()
    pixmap.setDevicePixelRatio(dpr)
    return pixmap


class SvgIconEngine(QIconEngine):
    """Renders one named icon on demand, tinted with the palette current at paint time."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._cache: dict[tuple[int, int, int, int], QPixmap] = {}

    def _draw(self, size: QSize, mode: QIcon.Mode, dpr: float) -> QPixmap:
        text = _svg_text(self.name)
        color = tint_color(mode)
        key = (size.width(), size.height(), round(dpr * 100), int(color.rgba()))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if text is None:
            pixmap = _letter_pixmap(self.name, size, color, dpr)
        else:
            tint = None if self.name in COLOURED else color
            pixmap = render_svg(text, size, tint, dpr)
            if tint is None and mode == QIcon.Mode.Disabled:  # grey out a coloured icon
                pixmap = _greyed(pixmap)
        if len(self._cache) > 32:
            self._cache.clear()
        self._cache[key] = pixmap
        return pixmap

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        return self._draw(size, mode, 1.0)

    def scaledPixmap(
        self, size: QSize, mode: QIcon.Mode, state: QIcon.State, scale: float
    ) -> QPixmap:
        # Recent Qt passes the logical size here, older Qt the device size: drawing ``size``
        # at ``scale`` is sharp in both cases (oversampled in the second, and QIcon derives
        # the pixmap's device pixel ratio from its actual size).
        return self._draw(size, mode, max(scale, 1.0))

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        dpr = painter.device().devicePixelRatioF() if painter.device() is not None else 1.0
        pixmap = self._draw(rect.size(), mode, dpr)
        painter.drawPixmap(QPoint(rect.x(), rect.y()), pixmap)

    def actualSize(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QSize:
        side = min(size.width(), size.height())
        return QSize(side, side)

    def clone(self) -> QIconEngine:
        return SvgIconEngine(self.name)

    def key(self) -> str:
        return "crlc-svg"

    def iconName(self) -> str:
        return self.name

    def isNull(self) -> bool:
        return False


def _greyed(pixmap: QPixmap) -> QPixmap:
    image = pixmap.toImage()
    out = QPixmap(pixmap.size())
    out.fill(Qt.GlobalColor.transparent)
    painter = QPainter(out)
    painter.setOpacity(0.4)
    painter.drawImage(0, 0, image)
    painter.end()
    out.setDevicePixelRatio(pixmap.devicePixelRatio())
    return out


def icon(name: str) -> QIcon:
    """The app's icon ``name`` (one of :data:`ICON_NAMES`); never raises.

    Returns a palette-tinted SVG icon; when the file is missing or broken, the desktop
    theme's icon of the same meaning, else a drawn letter.
    """
    if _svg_text(name) is None:
        themed = THEME_FALLBACK.get(name)
        if themed and QIcon.hasThemeIcon(themed):
            return QIcon.fromTheme(themed)
    return QIcon(SvgIconEngine(name))


def app_icon() -> QIcon:
    """The application's window icon (coloured, several sizes)."""
    return icon("app")
