"""The detail panel: the selected image, its path and size, cluster probabilities, neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

__all__ = ["DetailPanel"]

PICTURE_SIDE = 256
NEIGHBOR_SIDE = 64


class DetailPanel(QWidget):
    """The selected image: picture, path, cluster probabilities, neighbours.

    The neighbour list holds the image id of each entry in ``Qt.UserRole``.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.picture = QLabel("Select an image")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(PICTURE_SIDE, PICTURE_SIDE)
        self.path = QLabel("")
        self.path.setWordWrap(True)
        self.path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.probabilities_title = QLabel("<b>Group probabilities</b>")
        self.probabilities = QLabel("")
        self.probabilities.setWordWrap(True)
        self.neighbors_title = QLabel("<b>Most similar images</b>")
        self.neighbors = QListWidget()
        self.neighbors.setViewMode(QListWidget.ViewMode.IconMode)
        self.neighbors.setIconSize(QSize(NEIGHBOR_SIDE, NEIGHBOR_SIDE))
        self.neighbors.setFlow(QListWidget.Flow.LeftToRight)
        self.neighbors.setWrapping(False)
        self.neighbors.setFixedHeight(100)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture)
        layout.addWidget(self.path)
        layout.addWidget(self.probabilities_title)
        layout.addWidget(self.probabilities)
        layout.addWidget(self.neighbors_title)
        layout.addWidget(self.neighbors)
        layout.addStretch(1)

    def clear(self) -> None:
        """Show nothing selected."""
        self.picture.clear()
        self.picture.setText("Select an image")
        self.path.setText("")
        self.probabilities.setText("")
        self.neighbors.clear()

    def show_image(
        self,
        thumbnail: Path,
        path: Path | str,
        width: int | None,
        height: int | None,
        label: str | None = None,
    ) -> None:
        """The picture (from its thumbnail), the file's path, size and label."""
        thumb = QImage(str(thumbnail))
        if thumb.isNull():
            self.picture.clear()
            self.picture.setText("No preview")
        else:
            self.picture.setPixmap(
                QPixmap.fromImage(thumb).scaled(
                    PICTURE_SIDE,
                    PICTURE_SIDE,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        size = f"{width} x {height}" if width and height else ""
        badge = f"  [label: {label}]" if label else ""
        self.path.setText(f"{path}\n{size}{badge}")

    def show_probabilities(self, lines: Sequence[str], grouped: bool = True) -> None:
        """One line per cluster; ``grouped=False`` says the images are not grouped yet."""
        self.probabilities_title.setVisible(grouped)
        self.neighbors_title.setVisible(grouped)
        self.neighbors.setVisible(grouped)
        self.probabilities.setText(
            "<br>".join(lines)
            if grouped
            else "Not grouped yet: Images > Group images… (Ctrl+G) sorts the images into groups."
        )

    def show_neighbors(self, neighbors: Sequence[tuple[int, float, Path]]) -> None:
        """The most similar images: (image id, similarity, thumbnail file) each."""
        self.neighbors.clear()
        for image_id, similarity, thumbnail in neighbors:
            item = QListWidgetItem(f"{similarity:.2f}")
            pix = QPixmap(str(thumbnail))
            if not pix.isNull():
                item.setIcon(
                    pix.scaled(NEIGHBOR_SIDE, NEIGHBOR_SIDE, Qt.AspectRatioMode.KeepAspectRatio)
                )
            item.setData(Qt.ItemDataRole.UserRole, image_id)
            self.neighbors.addItem(item)
