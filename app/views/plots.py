"""Small live charts drawn with QPainter: the loss curve and the cluster sizes.

QPainter rather than a plotting library: two simple charts do not justify another
dependency (pyqtgraph pulls in its own widget stack), and painting a few hundred points is
far below a millisecond.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.models.clusters import cluster_color


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
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect()).adjusted(4, 4, -4, -16)
        painter.setPen(QPen(self.palette().mid().color()))
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
            painter.setPen(QPen(QColor(31, 119, 180), 1.5))
            painter.drawPath(path)
        if self.values:
            painter.setPen(self.palette().text().color())
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
        painter = QPainter(self)
        area = QRectF(self.rect()).adjusted(4, 4, -4, -4)
        if self.sizes and max(self.sizes) > 0:
            width = area.width() / len(self.sizes)
            top = max(self.sizes)
            for i, size in enumerate(self.sizes):
                height = size / top * area.height()
                painter.fillRect(
                    QRectF(
                        area.left() + i * width + 1,
                        area.bottom() - height,
                        max(width - 2, 1),
                        height,
                    ),
                    cluster_color(i),
                )
        painter.end()
