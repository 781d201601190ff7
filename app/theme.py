"""Light and dark palettes, following the desktop's colour scheme unless the user picks one.

:func:`apply_theme` puts the application on the Fusion style (the one style that honours a
palette on every platform) with :func:`light_palette` or :func:`dark_palette`. With the theme
``system`` a :class:`ThemeController` follows ``QStyleHints.colorSchemeChanged`` live; with
``light`` or ``dark`` it ignores the desktop (and, on Qt >= 6.8, asks Qt for that scheme so
native dialogs and title bars match).

Colours are checked by contrast ratio (WCAG 2: (L1 + 0.05) / (L2 + 0.05) of relative
luminances): text on its background >= 7, selected text and links >= 4.5. Cluster colours are
fixed per cluster (:func:`app.itemmodels.clusters.group_color`) and some are too light for a
white background or too dark for a dark one, so :func:`swatch_pixmap` draws a cluster's swatch
with an outline in the palette's text colour and :func:`readable_color` adjusts a colour's
lightness (keeping its hue) where it is used for text or thin lines.
"""

from __future__ import annotations

import contextlib
from typing import Any

from PySide6.QtCore import QObject, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QApplication, QToolTip

from app.core.settings_store import Settings

# Qt's API is camelCase (signals).
# ruff: noqa: N815

LIGHT = "light"
DARK = "dark"
THEMES = ("system", LIGHT, DARK)

Role = QPalette.ColorRole
Group = QPalette.ColorGroup

#: role -> (active colour, disabled colour or None for the same) per scheme.
_COLOURS: dict[str, dict[QPalette.ColorRole, tuple[str, str | None]]] = {
    LIGHT: {
        Role.Window: ("#f3f3f3", None),
        Role.WindowText: ("#1b1b1b", "#8c8c8c"),
        Role.Base: ("#ffffff", "#f3f3f3"),
        Role.AlternateBase: ("#f2f4f7", None),
        Role.Text: ("#1b1b1b", "#8c8c8c"),
        Role.PlaceholderText: ("#6b6b6b", "#9e9e9e"),
        Role.Button: ("#e9e9e9", None),
        Role.ButtonText: ("#1b1b1b", "#8c8c8c"),
        Role.BrightText: ("#ffffff", None),
        Role.Light: ("#ffffff", None),
        Role.Midlight: ("#e2e2e2", None),
        Role.Mid: ("#b8b8b8", None),
        Role.Dark: ("#8f8f8f", None),
        Role.Shadow: ("#5c5c5c", None),
        Role.Highlight: ("#2160c4", "#c9c9c9"),
        Role.HighlightedText: ("#ffffff", "#5c5c5c"),
        Role.Link: ("#1558c0", None),
        Role.LinkVisited: ("#6a3bb0", None),
        Role.ToolTipBase: ("#fffbe6", None),
        Role.ToolTipText: ("#1b1b1b", None),
    },
    DARK: {
        Role.Window: ("#2b2b2b", None),
        Role.WindowText: ("#e6e6e6", "#7d7d7d"),
        Role.Base: ("#1e1e1e", "#262626"),
        Role.AlternateBase: ("#262a30", None),
        Role.Text: ("#e6e6e6", "#7d7d7d"),
        Role.PlaceholderText: ("#a0a0a0", "#6e6e6e"),
        Role.Button: ("#3a3a3a", "#2f2f2f"),
        Role.ButtonText: ("#e6e6e6", "#7d7d7d"),
        Role.BrightText: ("#ffffff", None),
        Role.Light: ("#4f4f4f", None),
        Role.Midlight: ("#444444", None),
        Role.Mid: ("#5a5a5a", None),
        Role.Dark: ("#1a1a1a", None),
        Role.Shadow: ("#000000", None),
        Role.Highlight: ("#2f6fd6", "#454545"),
        Role.HighlightedText: ("#ffffff", "#9a9a9a"),
        Role.Link: ("#8ab4f8", None),
        Role.LinkVisited: ("#c58af9", None),
        Role.ToolTipBase: ("#3c3c3c", None),
        Role.ToolTipText: ("#e6e6e6", None),
    },
}


def make_palette(scheme: str) -> QPalette:
    """The palette of ``scheme`` (``light`` or ``dark``), every colour group set."""
    palette = QPalette()
    for role, (active, disabled) in _COLOURS[scheme].items():
        colour = QColor(active)
        for group in (Group.Active, Group.Inactive):
            palette.setColor(group, role, colour)
        palette.setColor(Group.Disabled, role, QColor(disabled or active))
    return palette


def light_palette() -> QPalette:
    """The light palette."""
    return make_palette(LIGHT)


def dark_palette() -> QPalette:
    """The dark palette."""
    return make_palette(DARK)


# ---------------------------------------------------------------------- contrast
def relative_luminance(color: QColor) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0 black .. 1 white)."""

    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    return (
        0.2126 * channel(color.redF())
        + 0.7152 * channel(color.greenF())
        + 0.0722 * channel(color.blueF())
    )


def contrast_ratio(a: QColor, b: QColor) -> float:
    """WCAG 2 contrast ratio of two colours, 1 (same) .. 21 (black on white)."""
    la, lb = relative_luminance(a), relative_luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def is_dark(palette: QPalette) -> bool:
    """Whether the palette's window is darker than its text (a dark scheme)."""
    window = palette.color(Group.Active, Role.Window)
    text = palette.color(Group.Active, Role.WindowText)
    return relative_luminance(window) < relative_luminance(text)


def readable_color(color: QColor, background: QColor, min_ratio: float = 3.0) -> QColor:
    """``color`` with its HSL lightness moved (hue and saturation kept) just far enough from
    ``background`` to reach ``min_ratio`` (3 = WCAG for graphics); unchanged if it does.

    Moves towards white on a dark background and towards black on a light one; returns the
    extreme (white or black at that hue) when no lightness reaches the ratio.
    """
    if contrast_ratio(color, background) >= min_ratio:
        return QColor(color)
    hsl = color.toHsl()
    hue = max(hsl.hslHueF(), 0.0)  # achromatic colours report -1
    saturation, lightness, alpha = hsl.hslSaturationF(), hsl.lightnessF(), hsl.alphaF()
    upward = relative_luminance(background) < 0.18
    low, high = (lightness, 1.0) if upward else (0.0, lightness)
    target = QColor.fromHslF(hue, saturation, high if upward else low, alpha)
    for _ in range(30):  # bisection on lightness for the least change that is enough
        middle = (low + high) / 2
        candidate = QColor.fromHslF(hue, saturation, middle, alpha)
        enough = contrast_ratio(candidate, background) >= min_ratio
        if enough:
            target = candidate
        if enough == upward:
            high = middle
        else:
            low = middle
    return target


def swatch_pixmap(
    color: QColor, size: int = 16, palette: QPalette | None = None, dpr: float = 1.0
) -> QPixmap:
    """A cluster's colour swatch: a rounded square of ``color`` with an outline.

    The outline is the palette's text colour at partial opacity, so every colour stays
    visible on the palette's base, light or dark (a bare fill of ``#ffe082`` on white or
    ``#1a237e`` on a dark base is close to invisible).
    """
    palette = palette if palette is not None else QGuiApplication.palette()
    pixmap = QPixmap(QSize(round(size * dpr), round(size * dpr)))
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    outline = QColor(palette.color(Group.Active, Role.Text))
    outline.setAlphaF(0.65)
    width = max(1.0, dpr)
    painter.setPen(QPen(outline, width))
    painter.setBrush(color)
    inset = width / 2 + dpr
    side = size * dpr - 2 * inset
    painter.drawRoundedRect(QRectF(inset, inset, side, side), 3 * dpr, 3 * dpr)
    painter.end()
    pixmap.setDevicePixelRatio(dpr)
    return pixmap


# ---------------------------------------------------------------------- applying
def system_scheme(app: QGuiApplication | None = None) -> str:
    """``dark`` when the desktop asks for a dark scheme, else ``light`` (also when unknown)."""
    app = app or QGuiApplication.instance()  # type: ignore[assignment]
    if app is None:
        return LIGHT
    return _scheme_of(app.styleHints().colorScheme())


def _scheme_of(value: Any) -> str:
    return DARK if value == Qt.ColorScheme.Dark else LIGHT


class ThemeController(QObject):
    """Keeps the application's palette in line with the chosen theme and the desktop.

    Signals:
        schemeChanged(str): ``light`` or ``dark`` after a palette was applied.
    """

    schemeChanged = Signal(str)

    def __init__(self, app: QApplication, theme: str = "system") -> None:
        super().__init__(app)
        self.setObjectName("crlc-theme-controller")
        self._app = app
        self._theme = "system"
        self._scheme = ""
        self._system = _scheme_of(app.styleHints().colorScheme())
        app.styleHints().colorSchemeChanged.connect(self._on_system_scheme)
        if app.style().name().lower() != "fusion":
            app.setStyle("Fusion")
        self.set_theme(theme)

    def detach(self) -> None:
        """Stop following the desktop and leave the application (the palette stays)."""
        with contextlib.suppress(RuntimeError, TypeError):  # already disconnected
            self._app.styleHints().colorSchemeChanged.disconnect(self._on_system_scheme)
        self.setParent(None)

    @property
    def theme(self) -> str:
        """The chosen theme: ``system``, ``light`` or ``dark``."""
        return self._theme

    @property
    def scheme(self) -> str:
        """The scheme in effect: ``light`` or ``dark``."""
        return self._scheme

    def set_theme(self, theme: str) -> None:
        """Choose ``system``, ``light`` or ``dark`` (anything else counts as ``system``)."""
        self._theme = theme if theme in THEMES else "system"
        self._request_scheme()
        if self._theme == "system":  # the desktop may have changed while a theme was forced
            self._system = _scheme_of(self._app.styleHints().colorScheme())
        self._apply(self._system if self._theme == "system" else self._theme)

    def _request_scheme(self) -> None:
        """On Qt >= 6.8 tell Qt which scheme the app wants (native dialogs, title bars)."""
        hints = self._app.styleHints()
        setter = getattr(hints, "setColorScheme", None)
        if setter is None:
            return
        wanted = {
            LIGHT: Qt.ColorScheme.Light,
            DARK: Qt.ColorScheme.Dark,
        }.get(self._theme, Qt.ColorScheme.Unknown)
        try:
            setter(wanted)
        except (RuntimeError, TypeError):  # pragma: no cover - platform without support
            return

    def _on_system_scheme(self, value: Any) -> None:
        if self._theme != "system":
            return  # the echo of our own request, or the desktop while the user chose one
        self._system = _scheme_of(value)
        self._apply(self._system)

    def _apply(self, scheme: str) -> None:
        if scheme == self._scheme:
            return
        palette = make_palette(scheme)
        self._app.setPalette(palette)
        QToolTip.setPalette(palette)
        self._scheme = scheme
        self.schemeChanged.emit(scheme)


def apply_theme(app: QApplication, settings: Settings | str = "system") -> ThemeController:
    """Apply the theme of ``settings`` (a :class:`app.core.settings_store.Settings` or a theme
    name) to ``app`` and keep following the desktop when it is ``system``.

    Calling it again (e.g. after the settings dialog) reuses the app's controller.

    Returns:
        The application's theme controller.
    """
    theme = settings if isinstance(settings, str) else settings.theme
    controller = app.findChild(ThemeController, "crlc-theme-controller")
    if isinstance(controller, ThemeController):
        controller.set_theme(theme)
        return controller
    return ThemeController(app, theme)
