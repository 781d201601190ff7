"""How a thumbnail of the grid is drawn: Qt's default, plus a mark on pictures the user put in
their group (a label or a move), so corrections show at a glance, and (optionally) a small
bar of the picture's confidence along the bottom of the thumbnail."""

from __future__ import annotations

import math

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from app.icons import icon
from app.itemmodels.thumbnails import ThumbnailGridModel
from app.theme import readable_color

#: Edge of the mark, as a share of the cell's width (between MIN and MAX pixels).
MARK_SHARE = 0.16
MARK_MIN, MARK_MAX = 12, 22

#: Confidence below LOW is drawn red, below HIGH amber, from HIGH on green.
CONFIDENCE_LOW, CONFIDENCE_HIGH = 0.5, 0.8
#: The bar's colours before they are made readable on the palette's base colour.
CONFIDENCE_COLORS: tuple[str, str, str] = ("#e53935", "#f9a825", "#43a047")
#: Height of the bar's track and its inset from the thumbnail's edges, in pixels.
BAR_HEIGHT, BAR_INSET = 5, 4


def mark_rect(cell: QRect) -> QRect:
    """Where the mark of a cell goes: its top-right corner."""
    side = max(MARK_MIN, min(MARK_MAX, round(cell.width() * MARK_SHARE)))
    return QRect(cell.right() - side - 2, cell.top() + 2, side, side)


def confidence_bar_rect(thumbnail: QRect) -> QRect:
    """The track of the confidence bar: along the bottom of the thumbnail's rectangle."""
    width = max(0, thumbnail.width() - 2 * BAR_INSET)
    top = thumbnail.bottom() - BAR_INSET - BAR_HEIGHT + 1
    return QRect(thumbnail.left() + BAR_INSET, top, width, BAR_HEIGHT)


def confidence_color(value: float, palette: QPalette) -> QColor:
    """Red below :data:`CONFIDENCE_LOW`, amber below :data:`CONFIDENCE_HIGH`, else green;
    made readable (contrast 3) on the palette's base colour, which the bar's track uses."""
    if value < CONFIDENCE_LOW:
        colour = CONFIDENCE_COLORS[0]
    elif value < CONFIDENCE_HIGH:
        colour = CONFIDENCE_COLORS[1]
    else:
        colour = CONFIDENCE_COLORS[2]
    base = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Base)
    return readable_color(QColor(colour), base, 3.0)


class ThumbnailDelegate(QStyledItemDelegate):
    """The default thumbnail, and a round mark (the label icon on the palette's highlight
    colour) when the model's ``LabelRole`` names the picture's label.

    With :attr:`show_confidence` (the default), a bar along the bottom of the thumbnail
    shows the model's ``ConfidenceRole``: a track in the palette's base colour filled to the
    confidence in red, amber or green (:func:`confidence_color`); pictures without a
    confidence (NaN: not grouped yet) get none.
    """

    def __init__(self, parent: QWidget | None = None, show_confidence: bool = True) -> None:
        super().__init__(parent)
        self._show_confidence = show_confidence
        self._colors: dict[tuple[int, int], QColor] = {}  # (band, base rgba) -> colour

    @property
    def show_confidence(self) -> bool:
        """Whether the confidence bar is drawn."""
        return self._show_confidence

    @show_confidence.setter
    def show_confidence(self, on: bool) -> None:
        self.set_show_confidence(on)

    def set_show_confidence(self, on: bool) -> None:
        """Draw the confidence bar or not (a slot for a checkable action's ``toggled``);
        the view this delegate belongs to (its parent) repaints."""
        on = bool(on)
        if on == self._show_confidence:
            return
        self._show_confidence = on
        view = self.parent()
        if isinstance(view, QAbstractItemView):
            view.viewport().update()

    def _bar_color(self, value: float, palette: QPalette) -> QColor:
        band = 0 if value < CONFIDENCE_LOW else 1 if value < CONFIDENCE_HIGH else 2
        base = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Base)
        key = (band, int(base.rgba()))
        made = self._colors.get(key)
        if made is None:
            if len(self._colors) > 64:
                self._colors.clear()
            made = self._colors[key] = confidence_color(value, palette)
        return made

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        # what QStyledItemDelegate.paint does, keeping the option to find the thumbnail
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        if self._show_confidence:
            value = index.data(ThumbnailGridModel.ConfidenceRole)
            if isinstance(value, float) and math.isfinite(value):
                thumbnail = style.subElementRect(
                    QStyle.SubElement.SE_ItemViewItemDecoration, opt, widget
                )
                self._paint_bar(painter, thumbnail, value, option.palette)
        if index.data(ThumbnailGridModel.LabelRole) is not None:
            self._paint_mark(painter, option)

    def _paint_bar(
        self, painter: QPainter, thumbnail: QRect, value: float, palette: QPalette
    ) -> None:
        track = confidence_bar_rect(thumbnail)
        if track.width() < 4:
            return
        base = QColor(palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Base))
        base.setAlphaF(0.85)
        painter.fillRect(track, base)
        inner = track.adjusted(1, 1, -1, -1)
        filled = round(inner.width() * min(max(value, 0.0), 1.0))
        if filled > 0:
            painter.fillRect(
                QRect(inner.left(), inner.top(), filled, inner.height()),
                self._bar_color(value, palette),
            )

    @staticmethod
    def _paint_mark(painter: QPainter, option: QStyleOptionViewItem) -> None:
        rect = mark_rect(option.rect)
        palette = option.palette
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(palette.color(QPalette.ColorRole.Base), 1.5))
        painter.setBrush(palette.color(QPalette.ColorRole.Highlight))
        painter.drawEllipse(rect)
        # the selected mode tints the icon in the highlighted-text colour
        icon("label").paint(
            painter, rect.adjusted(3, 3, -3, -3), Qt.AlignmentFlag.AlignCenter, QIcon.Mode.Selected
        )
        painter.restore()
