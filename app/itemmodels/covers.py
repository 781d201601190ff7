"""Cover pictures of groups: one thumbnail, or a 2x2 mosaic of the most probable ones.

:func:`cover_ids` picks the pictures a cover shows (the four most probable as a mosaic, the
most probable alone when a group has fewer than four); :func:`compose_cover` draws them,
each cropped to a square around its centre, into one rounded ``QPixmap`` of the cover's
size. Composing scales and crops, so it is done once per cover and kept in a
:class:`CoverStore` (an LRU keyed by group key, picture ids, side and device pixel ratio);
painting a row then only draws a ready pixmap.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from PySide6.QtCore import QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPixmap

#: Edge of a cover in the group list, in logical pixels.
COVER_SIDE = 56
#: Pictures of a mosaic (2 x 2).
MOSAIC = 4
#: Gap between the tiles of a mosaic, in logical pixels.
MOSAIC_GAP = 1
#: Corner radius of a cover, in logical pixels.
COVER_RADIUS = 4
#: Fill of a tile whose thumbnail could not be read.
MISSING_FILL = "#9e9e9e"

CoverKey = tuple[str, tuple[int, ...], int, float]


def cover_ids(top_image_ids: Sequence[int]) -> tuple[int, ...]:
    """The pictures a group's cover shows: the first four (a mosaic) when it has four or
    more, else the first (most probable) one, else none."""
    if len(top_image_ids) >= MOSAIC:
        return tuple(int(i) for i in top_image_ids[:MOSAIC])
    return (int(top_image_ids[0]),) if top_image_ids else ()


def square_crop(image: QImage) -> QRect:
    """The largest centred square of an image."""
    side = min(image.width(), image.height())
    return QRect((image.width() - side) // 2, (image.height() - side) // 2, side, side)


def compose_cover(images: Sequence[QImage], side: int, dpr: float = 1.0) -> QPixmap:
    """One cover of ``side`` logical pixels (``side * dpr`` device pixels): a 2x2 mosaic of
    the first four images when there are four, else the first image; each image cropped to
    its centred square; a null image shows as a grey tile. Rounded corners.

    Must run on the GUI thread (it makes a ``QPixmap``).
    """
    device = max(1, round(side * dpr))
    canvas = QImage(device, device, QImage.Format.Format_ARGB32_Premultiplied)
    canvas.fill(Qt.GlobalColor.transparent)
    painter = QPainter(canvas)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    radius = COVER_RADIUS * dpr
    clip = QPainterPath()
    clip.addRoundedRect(QRectF(0, 0, device, device), radius, radius)
    painter.setClipPath(clip)
    if len(images) >= MOSAIC:
        gap = max(1, round(MOSAIC_GAP * dpr))
        first = (device - gap) // 2
        second = device - gap - first
        spans = ((0, first), (first + gap, second))
        cells = [QRect(x, y, w, h) for (y, h) in spans for (x, w) in spans]  # row by row: 0 1 / 2 3
        tiles = list(images[:MOSAIC])
    else:
        cells = [QRect(0, 0, device, device)]
        tiles = list(images[:1])
    for cell, image in zip(cells, tiles, strict=False):
        if image.isNull():
            painter.fillRect(cell, QColor(MISSING_FILL))
            continue
        painter.drawImage(cell, image, square_crop(image))
    painter.end()
    pixmap = QPixmap.fromImage(canvas)
    pixmap.setDevicePixelRatio(dpr)
    return pixmap


class CoverStore:
    """Composed covers, least recently used dropped first past ``capacity``."""

    def __init__(self, capacity: int = 512) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._covers: OrderedDict[CoverKey, QPixmap] = OrderedDict()
        self.composed = 0  # covers composed since made (for tests and benchmarks)

    def __len__(self) -> int:
        return len(self._covers)

    def get(self, key: CoverKey) -> QPixmap | None:
        """A composed cover (marked most recently used), or None."""
        cover = self._covers.get(key)
        if cover is not None:
            self._covers.move_to_end(key)
        return cover

    def put(self, key: CoverKey, cover: QPixmap) -> None:
        """Keep a composed cover."""
        self._covers[key] = cover
        self._covers.move_to_end(key)
        self.composed += 1
        while len(self._covers) > self.capacity:
            self._covers.popitem(last=False)

    def clear(self) -> None:
        """Forget every cover."""
        self._covers.clear()
