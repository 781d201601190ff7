"""How a thumbnail of the grid is drawn: Qt's default, plus a mark on pictures the user put in
their group (a label or a move), so corrections show at a glance."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, Qt
from PySide6.QtGui import QIcon, QPainter, QPalette, QPen
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

from app.icons import icon
from app.models.thumbnails import ThumbnailGridModel

#: Edge of the mark, as a share of the cell's width (between MIN and MAX pixels).
MARK_SHARE = 0.16
MARK_MIN, MARK_MAX = 12, 22


def mark_rect(cell: QRect) -> QRect:
    """Where the mark of a cell goes: its top-right corner."""
    side = max(MARK_MIN, min(MARK_MAX, round(cell.width() * MARK_SHARE)))
    return QRect(cell.right() - side - 2, cell.top() + 2, side, side)


class ThumbnailDelegate(QStyledItemDelegate):
    """The default thumbnail, and a round mark (the label icon on the palette's highlight
    colour) when the model's ``LabelRole`` names the picture's label."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        super().paint(painter, option, index)
        if index.data(ThumbnailGridModel.LabelRole) is None:
            return
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
