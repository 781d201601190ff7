"""Small live charts drawn with QPainter: the loss curve and the cluster sizes.

QPainter rather than a plotting library: two simple charts do not justify another
dependency (pyqtgraph pulls in its own widget stack), and painting a few hundred points is
far below a millisecond.

Every colour comes from the widget's palette at paint time (frame and axis: ``Mid``; text:
``WindowText``; the curve: a blue made readable on ``Window`` with
:func:`app.theme.readable_color`), so the charts read well on the light and the dark palette
and follow a switch between them. The bars keep each cluster's own colour and get an
outline in the text colour, as the swatches of the cluster list do.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.itemmodels.clusters import group_color
from app.theme import readable_color

#: The loss curve's colour before it is made readable on the palette's window colour.
CURVE_BLUE = QColor(31, 119, 180)


def chart_colors(palette: QPalette) -> dict[str, QColor]:
    """The colours a chart uses on ``palette``: ``frame``, ``text``, ``curve``, ``outline``."""
    window = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Window)
    text = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.WindowText)
    outline = QColor(text)
    outline.setAlphaF(0.55)
    return {
        "frame": palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Mid),
        "text": text,
        "curve": readable_color(CURVE_BLUE, window, 3.0),
        "outline": outline,
    }


class LossPlot(QWidget):
    """A line of the training loss per epoch, scaled to the widget."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: list[float] = []
        self.setMinimumSize(QSize(180, 60))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Training loss per epoch")

    def clear(self) -> None:
        """Forget all points."""
        self.values = []
        self.update()

    def add(self, value: float) -> None:
        """Append one epoch's loss and repaint."""
        self.values.append(float(value))
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        """Draw the frame, the curve and the last value."""
        colors = chart_colors(self.palette())
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect()).adjusted(4, 4, -4, -16)
        painter.setPen(QPen(colors["frame"]))
        painter.drawRect(area)
        if len(self.values) >= 2:
            low, high = min(self.values), max(self.values)
            span = (high - low) or 1.0
            step = area.width() / (len(self.values) - 1)
            path = QPainterPath()
            for i, value in enumerate(self.values):
                point = QPointF(
                    area.left() + i * step, area.bottom() - (value - low) / span * area.height()
                )
                path.lineTo(point) if i else path.moveTo(point)
            painter.setPen(QPen(colors["curve"], 1.5))
            painter.drawPath(path)
        if self.values:
            painter.setPen(colors["text"])
            painter.drawText(
                QRectF(self.rect()).adjusted(4, 0, -4, 0),
                Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft,
                f"loss {self.values[-1]:.3f} (epoch {len(self.values)})",
            )
        painter.end()


class ClusterSizeBars(QWidget):
    """One bar per cluster, in the cluster's colour, proportional to its size."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sizes: list[int] = []
        self.setMinimumSize(QSize(180, 60))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Images per cluster in the last epoch (chosen sub-head)")

    def set_sizes(self, sizes: list[int]) -> None:
        """Show these cluster sizes."""
        self.sizes = [int(s) for s in sizes]
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        """Draw the bars."""
        colors = chart_colors(self.palette())
        painter = QPainter(self)
        area = QRectF(self.rect()).adjusted(4, 4, -4, -4)
        if self.sizes and max(self.sizes) > 0:
            width = area.width() / len(self.sizes)
            top = max(self.sizes)
            outlined = width >= 4  # an outline would hide the colour of thinner bars
            painter.setPen(QPen(colors["outline"], 1) if outlined else Qt.PenStyle.NoPen)
            for i, size in enumerate(self.sizes):
                height = size / top * area.height()
                bar = QRectF(
                    area.left() + i * width + 1, area.bottom() - height, max(width - 2, 1), height
                )
                painter.setBrush(group_color(i))
                painter.drawRect(bar.adjusted(0.5, 0.5, -0.5, 0) if outlined else bar)
        painter.setPen(QPen(colors["frame"]))  # the baseline (axis)
        painter.drawLine(area.bottomLeft(), area.bottomRight())
        painter.end()
