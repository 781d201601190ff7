"""How a row of the group list is drawn: a cover, the colour swatch, the name and the size.

::

    +--------+
    | cover  |  [#] Beach ⚠
    | 2 x 2  |  80 photos · 91 %
    +--------+

The cover comes from :meth:`app.itemmodels.clusters.GroupListModel.cover` (composed once, a
placeholder is drawn while its thumbnails load); the row only draws ready pixmaps and two
lines of text, so a list of hundreds of groups paints quickly. Renaming in place puts a line
edit over the name line; the typed name goes to the model's ``setData`` (which announces it
with ``renameRequested``).
"""

from __future__ import annotations

from typing import NamedTuple

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QRectF,
    QSize,
    Qt,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QLineEdit,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from app.itemmodels.clusters import FLAG_MARK, GroupListModel, group_color, stats_text
from app.itemmodels.covers import COVER_RADIUS, COVER_SIDE

Index = QModelIndex | QPersistentModelIndex

#: Space around the cover and between the cover and the text, in logical pixels.
MARGIN = 6
TEXT_GAP = 10
#: Space between the swatch and the name, and between the two lines of text.
SWATCH_GAP = 6
LINE_GAP = 3
SWATCH_SIZE = GroupListModel.SWATCH_SIZE


class RowRects(NamedTuple):
    """Where the parts of a group row go (view coordinates)."""

    cover: QRect
    swatch: QRect
    name: QRect
    stats: QRect


def row_rects(cell: QRect, name_height: int, stats_height: int, cover_side: int) -> RowRects:
    """The cover on the left, vertically centred; the name line (after the swatch) above
    the stats line, the two centred as a block beside the cover."""
    cover = QRect(
        cell.left() + MARGIN, cell.top() + (cell.height() - cover_side) // 2, cover_side, cover_side
    )
    left = cover.right() + 1 + TEXT_GAP
    right = cell.right() - MARGIN
    block = name_height + LINE_GAP + stats_height
    top = cell.top() + (cell.height() - block) // 2
    line = max(name_height, SWATCH_SIZE)
    swatch = QRect(left, top + (name_height - SWATCH_SIZE) // 2, SWATCH_SIZE, SWATCH_SIZE)
    name_left = swatch.right() + 1 + SWATCH_GAP
    name = QRect(name_left, top, max(0, right - name_left + 1), line)
    stats = QRect(left, top + name_height + LINE_GAP, max(0, right - left + 1), stats_height)
    return RowRects(cover, swatch, name, stats)


def elided_name(name: str, flagged: bool, metrics: QFontMetrics, width: int) -> str:
    """The name elided to ``width``; a flagged group's warning sign is kept after it."""
    if not flagged:
        return metrics.elidedText(name, Qt.TextElideMode.ElideRight, width)
    mark = metrics.horizontalAdvance(FLAG_MARK)
    return metrics.elidedText(name, Qt.TextElideMode.ElideRight, max(0, width - mark)) + FLAG_MARK


class GroupDelegate(QStyledItemDelegate):
    """Paints a :class:`~app.itemmodels.clusters.GroupListModel` row with its cover (see the
    module docstring) and edits the name in place.

    Args:
        cover_side: Edge of the cover in logical pixels; rows are ``cover_side + 2 *``
            :data:`MARGIN` high (at least two lines of text).
        parent: Qt parent (the view).
    """

    def __init__(self, parent: QWidget | None = None, cover_side: int = COVER_SIDE) -> None:
        super().__init__(parent)
        self.cover_side = cover_side
        self._placeholders: dict[tuple[int, float, int], QPixmap] = {}
        self._colours: dict[int, QColor] = {}  # palette index -> group colour

    # ------------------------------------------------------------------ geometry
    @staticmethod
    def _fonts(option: QStyleOptionViewItem) -> tuple[QFont, QFontMetrics, QFontMetrics]:
        bold = QFont(option.font)
        bold.setBold(True)
        return bold, QFontMetrics(bold), option.fontMetrics

    def rects(self, option: QStyleOptionViewItem) -> RowRects:
        """The parts of the row ``option.rect``."""
        _, bold_metrics, metrics = self._fonts(option)
        return row_rects(option.rect, bold_metrics.height(), metrics.height(), self.cover_side)

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        """Rows of ``cover_side + 2 * MARGIN`` (or two lines of text if taller); the width
        is what the cover and a short name need (a list view stretches rows to its width)."""
        _, bold_metrics, metrics = self._fonts(option)
        text = bold_metrics.height() + LINE_GAP + metrics.height()
        height = max(self.cover_side, text) + 2 * MARGIN
        width = MARGIN + self.cover_side + TEXT_GAP + SWATCH_SIZE + SWATCH_GAP + 80 + MARGIN
        return QSize(width, height)

    # ------------------------------------------------------------------ painting
    def _placeholder(self, palette: QPalette, dpr: float) -> QPixmap:
        """A rounded square in the palette's mid colour: a cover still loading."""
        fill = QColor(palette.color(QPalette.ColorRole.Mid))
        fill.setAlphaF(0.35)
        key = (self.cover_side, dpr, int(fill.rgba()))
        made = self._placeholders.get(key)
        if made is None:
            if len(self._placeholders) > 16:
                self._placeholders.clear()
            side = round(self.cover_side * dpr)
            made = QPixmap(side, side)
            made.fill(Qt.GlobalColor.transparent)
            painter = QPainter(made)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(fill)
            radius = COVER_RADIUS * dpr
            painter.drawRoundedRect(QRectF(0, 0, side, side), radius, radius)
            painter.end()
            made.setDevicePixelRatio(dpr)
            self._placeholders[key] = made
        return made

    def _row(
        self, model: QAbstractItemModel, index: Index, dpr: float
    ) -> tuple[str, bool, str, QColor | None, QPixmap | None]:
        """(name, flagged, stats line, group colour, cover or None) of a row."""
        if isinstance(model, GroupListModel):  # the direct way: no QVariant round trips
            group = model.summary(index.row())
            stats = stats_text(group.size, group.mean_confidence)
            return (
                group.title,
                bool(group.flags),
                stats,
                self._colour(group.colour),
                model.cover(index.row(), self.cover_side, dpr),
            )
        name = str(index.data(Qt.ItemDataRole.EditRole) or "")
        stats = str(index.data(GroupListModel.StatsRole) or "")
        cover = index.data(GroupListModel.CoverRole)
        colour = index.data(GroupListModel.ColorRole)
        return (
            name,
            bool(index.data(GroupListModel.FlagsRole)),
            stats,
            colour if isinstance(colour, QColor) else None,
            cover if isinstance(cover, QPixmap) else None,
        )

    def _colour(self, index: int) -> QColor:
        made = self._colours.get(index)
        if made is None:
            if len(self._colours) > 4096:
                self._colours.clear()
            made = self._colours[index] = group_color(index)
        return made

    @staticmethod
    def _paint_swatch(painter: QPainter, rect: QRect, colour: QColor, text: QColor) -> None:
        """The group's colour as :func:`app.theme.swatch_pixmap` draws it (a rounded square
        outlined in the text colour), drawn directly: no pixmap to make per colour."""
        outline = QColor(text)
        outline.setAlphaF(0.65)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(outline, 1.0))
        painter.setBrush(colour)
        painter.drawRoundedRect(QRectF(rect).adjusted(1.5, 1.5, -1.5, -1.5), 3.0, 3.0)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        model = index.model()
        if model is None:
            return
        widget = option.widget
        dpr = (
            float(widget.devicePixelRatioF())
            if widget is not None
            else painter.device().devicePixelRatioF()
        )
        style = widget.style() if widget is not None else None
        if style is not None:
            style.drawPrimitive(
                QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter, widget
            )
        name, flagged, stats, swatch, cover = self._row(model, index, dpr)
        bold, bold_metrics, metrics = self._fonts(option)
        rects = row_rects(option.rect, bold_metrics.height(), metrics.height(), self.cover_side)
        state = option.state
        selected = bool(state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        if not state & QStyle.StateFlag.State_Enabled:
            group = QPalette.ColorGroup.Disabled
        elif state & QStyle.StateFlag.State_Active:
            group = QPalette.ColorGroup.Active
        else:
            group = QPalette.ColorGroup.Inactive
        text = palette.color(
            group, QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        )
        painter.save()
        painter.drawPixmap(
            rects.cover, cover if cover is not None else self._placeholder(palette, dpr)
        )
        if swatch is not None:
            self._paint_swatch(painter, rects.swatch, swatch, text)
        painter.setPen(text)
        painter.setFont(bold)
        painter.drawText(
            rects.name,
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            elided_name(name, flagged, bold_metrics, rects.name.width()),
        )
        dim = QColor(text)
        dim.setAlphaF(0.72)
        painter.setPen(dim)
        painter.setFont(option.font)
        painter.drawText(
            rects.stats,
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            metrics.elidedText(stats, Qt.TextElideMode.ElideRight, rects.stats.width()),
        )
        painter.restore()

    # ------------------------------------------------------------------ editing the name
    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: Index) -> QWidget:
        editor = QLineEdit(parent)
        editor.setObjectName("group-name-editor")
        editor.setFrame(True)
        return editor

    def setEditorData(self, editor: QWidget, index: Index) -> None:
        """The name, all selected. Not again once the user typed: the view calls this on
        every ``dataChanged`` of the row (a cover arriving), which must not undo typing."""
        if isinstance(editor, QLineEdit):
            text = str(index.data(Qt.ItemDataRole.EditRole) or "")
            if not editor.isModified() and editor.text() != text:
                editor.setText(text)
                editor.selectAll()
        else:
            super().setEditorData(editor, index)

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: Index) -> None:
        if isinstance(editor, QLineEdit):
            model.setData(index, editor.text(), Qt.ItemDataRole.EditRole)
        else:
            super().setModelData(editor, model, index)

    def updateEditorGeometry(
        self, editor: QWidget, option: QStyleOptionViewItem, index: Index
    ) -> None:
        """Over the name line: from the swatch to the row's right margin."""
        name = self.rects(option).name
        height = max(name.height(), editor.sizeHint().height())
        editor.setGeometry(
            QRect(name.left() - 3, name.center().y() - height // 2, name.width() + 3, height)
        )
