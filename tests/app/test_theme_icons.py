"""Light/dark palettes that follow the system, cluster colour readability, the SVG icons."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QImage, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication, QToolTip
from pytestqt.qtbot import QtBot

import app.icons as icons
from app.core.settings_store import Settings
from app.itemmodels.clusters import group_color
from app.theme import (
    DARK,
    LIGHT,
    ThemeController,
    apply_theme,
    contrast_ratio,
    is_dark,
    make_palette,
    readable_color,
    relative_luminance,
    swatch_pixmap,
)

Role = QPalette.ColorRole
Group = QPalette.ColorGroup
ICON_DIR = Path(__file__).resolve().parents[2] / "resources" / "icons"


@pytest.fixture
def qapp_theme(qtbot: QtBot) -> Iterator[QApplication]:
    """The application; its palette is restored and the theme controller removed after."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    original = QPalette(app.palette())
    yield app
    controller = app.findChild(ThemeController, "crlc-theme-controller")
    if controller is not None:
        controller.detach()
        controller.deleteLater()
    app.setPalette(original)
    QToolTip.setPalette(original)


# ---------------------------------------------------------------------- contrast maths
def test_luminance_and_contrast_match_the_wcag_reference_values() -> None:
    assert relative_luminance(QColor("#000000")) == 0.0
    assert relative_luminance(QColor("#ffffff")) == pytest.approx(1.0)
    assert contrast_ratio(QColor("black"), QColor("white")) == pytest.approx(21.0)
    assert contrast_ratio(QColor("#777777"), QColor("#777777")) == pytest.approx(1.0)
    # WCAG's own example: #767676 on white is the lightest grey with 4.5:1.
    assert contrast_ratio(QColor("#767676"), QColor("#ffffff")) == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize("scheme", [LIGHT, DARK])
def test_palette_contrast(scheme: str) -> None:
    palette = make_palette(scheme)

    def ratio(
        fore: QPalette.ColorRole, back: QPalette.ColorRole, group: Group = Group.Active
    ) -> float:
        return contrast_ratio(palette.color(group, fore), palette.color(group, back))

    assert ratio(Role.Text, Role.Base) >= 7
    assert ratio(Role.WindowText, Role.Window) >= 7
    assert ratio(Role.ButtonText, Role.Button) >= 7
    assert ratio(Role.ToolTipText, Role.ToolTipBase) >= 7
    assert ratio(Role.HighlightedText, Role.Highlight) >= 4.5
    assert ratio(Role.Link, Role.Base) >= 4.5
    assert ratio(Role.PlaceholderText, Role.Base) >= 4.5
    # Disabled text is dimmer than enabled text, yet still legible (>= 3).
    disabled = ratio(Role.WindowText, Role.Window, Group.Disabled)
    assert 3 <= disabled < ratio(Role.WindowText, Role.Window)
    assert is_dark(palette) == (scheme == DARK)


@pytest.mark.parametrize("scheme", [LIGHT, DARK])
def test_readable_color_reaches_the_ratio_and_keeps_the_hue(scheme: str) -> None:
    base = make_palette(scheme).color(Group.Active, Role.Base)
    for cluster in range(60):
        colour = group_color(cluster)
        fixed = readable_color(colour, base, 3.0)
        assert contrast_ratio(fixed, base) >= 3.0 - 1e-6, (cluster, colour.name(), fixed.name())
        if contrast_ratio(colour, base) >= 3.0:
            assert fixed.name() == colour.name()
        elif colour.hslSaturationF() > 0.05:
            assert abs(fixed.hslHueF() - colour.hslHueF()) < 0.02


@pytest.mark.parametrize("scheme", [LIGHT, DARK])
def test_every_cluster_swatch_has_a_visible_outline(qtbot: QtBot, scheme: str) -> None:
    """Whatever the fill, the swatch's edge contrasts with the base by >= 3:1."""
    palette = make_palette(scheme)
    base = palette.color(Group.Active, Role.Base)
    for cluster in range(40):
        image = swatch_pixmap(group_color(cluster), 16, palette).toImage()
        edge = image.pixelColor(8, 1)  # top edge, middle: the outline
        assert edge.alpha() > 0
        composed = QColor(
            *[
                round(e * edge.alphaF() + b * (1 - edge.alphaF()))
                for e, b in zip(
                    (edge.red(), edge.green(), edge.blue()),
                    (base.red(), base.green(), base.blue()),
                    strict=True,
                )
            ]
        )
        assert contrast_ratio(composed, base) >= 3.0, (cluster, edge.name())
        assert image.pixelColor(8, 8).name() == group_color(cluster).name()  # the fill


# ---------------------------------------------------------------------- theme controller
def test_forced_themes_set_the_palette(qapp_theme: QApplication) -> None:
    controller = apply_theme(qapp_theme, "dark")
    assert controller.scheme == DARK and is_dark(qapp_theme.palette())
    assert qapp_theme.style().name().lower() == "fusion"
    same = apply_theme(qapp_theme, Settings(theme="light"))
    assert same is controller  # one controller per application
    assert controller.scheme == LIGHT and not is_dark(qapp_theme.palette())
    window = qapp_theme.palette().color(Role.Window)
    assert window == make_palette(LIGHT).color(Group.Active, Role.Window)


def test_system_theme_follows_the_desktop_live(qapp_theme: QApplication, qtbot: QtBot) -> None:
    controller = apply_theme(qapp_theme, "system")
    hints = QGuiApplication.styleHints()
    with qtbot.waitSignal(controller.schemeChanged, timeout=1000) as signal:
        hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert signal.args == [DARK] and is_dark(qapp_theme.palette())
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert controller.scheme == LIGHT and not is_dark(qapp_theme.palette())


def test_a_chosen_theme_overrides_the_desktop(qapp_theme: QApplication) -> None:
    controller = apply_theme(qapp_theme, "light")
    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert controller.scheme == LIGHT and not is_dark(qapp_theme.palette())
    controller.set_theme("dark")
    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert controller.scheme == DARK
    controller.set_theme("bogus")  # anything unknown follows the system
    assert controller.theme == "system"


def test_controller_is_found_again(qapp_theme: QApplication) -> None:
    first = apply_theme(qapp_theme, "dark")
    assert qapp_theme.findChild(ThemeController, "crlc-theme-controller") is first


# ---------------------------------------------------------------------- icons
def test_every_icon_file_exists_and_is_a_24px_svg() -> None:
    files = sorted(p.stem for p in ICON_DIR.glob("*.svg"))
    assert files == sorted(icons.ICON_NAMES)
    for name in icons.ICON_NAMES:
        text = (ICON_DIR / f"{name}.svg").read_text(encoding="utf-8")
        assert 'viewBox="0 0 24 24"' in text, name
        renderer = QSvgRenderer(str(ICON_DIR / f"{name}.svg"))
        assert renderer.isValid(), name
        if name in icons.COLOURED:
            assert "currentColor" not in text
        else:  # one stroke colour only, the tint
            colours = set(re.findall(r'(?:stroke|fill)="(#[0-9a-fA-F]+|[a-z]+)"', text))
            assert colours <= {"currentColor", "none"}, (name, colours)


def ink(image: QImage) -> tuple[int, set[str]]:
    """(pixels drawn, their opaque colours) of an image."""
    drawn, colours = 0, set()
    for y in range(image.height()):
        for x in range(image.width()):
            pixel = image.pixelColor(x, y)
            if pixel.alpha() > 0:
                drawn += 1
                if pixel.alpha() == 255:
                    colours.add(pixel.name())
    return drawn, colours


def test_qt_svg_plugin_renders_a_file_icon(qtbot: QtBot) -> None:
    """PySide6-Essentials ships the SVG icon engine: QIcon(path.svg) draws offscreen."""
    plain = QIcon(str(ICON_DIR / "open.svg"))
    assert not plain.isNull()
    drawn, _ = ink(plain.pixmap(QSize(32, 32)).toImage())
    assert drawn > 40


@pytest.mark.parametrize("scheme", [LIGHT, DARK])
def test_icons_are_tinted_with_the_palette_and_follow_a_switch(
    qapp_theme: QApplication, scheme: str
) -> None:
    apply_theme(qapp_theme, scheme)
    palette = qapp_theme.palette()
    text = palette.color(Group.Active, Role.WindowText).name()
    disabled = palette.color(Group.Disabled, Role.WindowText).name()
    for name in icons.ICON_NAMES:
        made = icons.icon(name)
        assert not made.isNull()
        drawn, colours = ink(made.pixmap(QSize(24, 24)).toImage())
        assert drawn > 30, name
        if name not in icons.COLOURED:
            assert colours == {text}, (name, colours)
            _, grey = ink(made.pixmap(QSize(24, 24), QIcon.Mode.Disabled).toImage())
            assert grey == {disabled}, name
    # The same QIcon re-tints itself after a switch (no rebuild).
    undo = icons.icon("undo")
    other = DARK if scheme == LIGHT else LIGHT
    apply_theme(qapp_theme, other)
    _, after = ink(undo.pixmap(QSize(24, 24)).toImage())
    assert after == {qapp_theme.palette().color(Role.WindowText).name()}


def test_icons_scale_for_high_dpi(qtbot: QtBot) -> None:
    pixmap = icons.icon("settings").pixmap(QSize(24, 24), 2.0)
    assert pixmap.devicePixelRatio() == 2.0 and pixmap.width() == 48


def test_app_icon_keeps_its_colours(qtbot: QtBot) -> None:
    _, colours = ink(icons.app_icon().pixmap(QSize(48, 48)).toImage())
    assert "#263238" in colours and len(colours) > 5


def test_a_missing_icon_falls_back_without_failing(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(icons, "icon_dirs", lambda: [tmp_path])
    icons._svg_text.cache_clear()
    monkeypatch.setattr(QIcon, "hasThemeIcon", staticmethod(lambda name: False))
    try:
        with caplog.at_level(logging.WARNING, logger="crlc_organizer.icons"):
            made = icons.icon("split")
        drawn, _ = ink(made.pixmap(QSize(24, 24)).toImage())
        assert drawn > 20  # a drawn letter, not an empty icon
        assert "split" in caplog.text
        (tmp_path / "merge.svg").write_text("<svg this is not", encoding="utf-8")
        drawn, _ = ink(icons.icon("merge").pixmap(QSize(24, 24)).toImage())
        assert drawn > 20
        assert "not a valid SVG" in caplog.text
    finally:
        icons._svg_text.cache_clear()


def test_icons_survive_garbage_collection(qtbot: QtBot) -> None:
    import gc

    made = [icons.icon(name) for name in ("pause", "resume")]
    gc.collect()
    copies = [QIcon(i) for i in made]
    del made
    gc.collect()
    for copy in copies:
        assert not copy.pixmap(QSize(16, 16)).isNull()
        assert isinstance(copy.pixmap(QSize(16, 16)), QPixmap)


def test_a_detached_controller_stops_following(qapp_theme: QApplication) -> None:
    controller = apply_theme(qapp_theme, "system")
    controller.detach()
    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert controller.scheme == LIGHT and not is_dark(qapp_theme.palette())
    assert qapp_theme.findChild(ThemeController, "crlc-theme-controller") is None
