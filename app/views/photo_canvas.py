"""The canvas of the photo viewer: one photo, fitted or zoomed, panned by dragging.

:class:`PhotoCanvas` paints one decoded photo (:class:`app.itemmodels.full_image.FullImage`)
of :class:`app.views.viewer.PhotoViewer`, fitted to its size or at a zoom level of
:data:`ZOOM_STEPS`, and the "Loading…" placeholder or a message while there is none.

Painting never scales the full photo: below 100 % it draws a smooth copy made once per
photo and zoom (the worker makes the fit copy for the size asked; after a resize or a zoom
step a new copy is made on a short timer, the old one drawn stretched meanwhile); at 100 %
and above it draws only the part of the photo that is visible.
"""

# Qt names signals in mixedCase.
# ruff: noqa: N815

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from app.itemmodels.full_image import FullImage, fit_zoom, scaled_copy

__all__ = ["ZOOM_STEPS", "PhotoCanvas"]

#: The zoom levels of ``+``/``-`` and Ctrl+wheel (1.0 = one photo pixel per device pixel).
ZOOM_STEPS: tuple[float, ...] = (
    0.05,
    0.1,
    0.125,
    0.167,
    0.25,
    0.333,
    0.5,
    0.667,
    1.0,
    1.5,
    2.0,
    3.0,
    4.0,
    6.0,
    8.0,
    16.0,
)
#: How long after a resize or zoom step the smooth copy is made again (ms).
RESCALE_DELAY_MS = 80
BACKGROUND = QColor(32, 32, 32)
TEXT = QColor(220, 220, 220)
_EPS = 1e-6


class PhotoCanvas(QWidget):
    """Draws one photo at a zoom, pans it, or shows a placeholder or a message.

    Zoom is in device pixels per photo pixel. In "fit" mode the zoom follows the widget's
    size (:func:`app.itemmodels.full_image.fit_zoom`: never above 1).

    Signals:
        zoomChanged(): the zoom or the fit mode changed (also after a resize in fit mode).
    """

    zoomChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setMinimumSize(64, 48)
        self._image: QImage | None = None
        self._placeholder: QImage | None = None
        self._message = ""
        self._fit = True
        self._zoom = 1.0  # used when not fit
        self._center = QPointF()  # the photo point (photo pixels) at the view's centre
        self._relative = (0.5, 0.5)  # the same as fractions, kept from photo to photo
        self._scaled: QPixmap | None = None  # the smooth copy drawn below 100 %
        self._scaled_zoom = 0.0
        self._drag_from: QPointF | None = None
        self._rescale_timer = QTimer(self)
        self._rescale_timer.setSingleShot(True)
        self._rescale_timer.setInterval(RESCALE_DELAY_MS)
        self._rescale_timer.timeout.connect(self._rescale)
        self.rescale_count = 0  # smooth copies made on the GUI thread (tests, benchmarks)

    # ------------------------------------------------------------------ content
    def image(self) -> QImage | None:
        """The full-resolution photo shown (None while loading or for a message)."""
        return self._image

    def message(self) -> str:
        """The text shown instead of (or over the placeholder of) a photo; "" when a photo
        is shown."""
        return "" if self._image is not None else self._message

    def has_placeholder(self) -> bool:
        return self._image is None and self._placeholder is not None

    def set_photo(self, entry: FullImage, keep_view: bool = True) -> None:
        """Show a decoded photo. ``keep_view``: keep the zoom and the relative position of
        the photo shown before (else fit). Uses the worker's smooth copy when it matches
        the zoom; else makes one now. A zoom under 100 % other than "fit" is not kept: its
        smooth copy of a big photo would be made on the GUI thread at every step."""
        self._remember_position()
        if not keep_view or (not self._fit and self.zoom() < 1.0 - _EPS):
            self.reset_view()
        self._image = entry.image
        self._placeholder = None
        self._message = ""
        self._scaled = None
        self._scaled_zoom = 0.0
        self._drag_from = None
        self._center = QPointF(
            self._image.width() * self._relative[0], self._image.height() * self._relative[1]
        )
        self._clamp()
        zoom = self.zoom()
        if entry.scaled is not None and abs(entry.scaled_zoom - zoom) < _EPS:
            self._adopt(entry.scaled, zoom)
        elif zoom < 1.0 - _EPS:
            self._rescale()
        self._update_cursor()
        self.update()
        self.zoomChanged.emit()

    def reset_view(self) -> None:
        """The next photo opens fitted (the zoom of the one before is forgotten)."""
        self._fit = True
        self._relative = (0.5, 0.5)

    def _remember_position(self) -> None:
        image = self._image
        if image is not None and not image.isNull():
            self._relative = (
                self._center.x() / image.width(),
                self._center.y() / image.height(),
            )

    def set_loading(self, placeholder: QImage | None, text: str = "Loading…") -> None:
        """Show ``placeholder`` (the thumbnail, scaled up) with ``text``, or ``text`` alone."""
        self._clear_photo()
        self._placeholder = (
            placeholder if placeholder is not None and not placeholder.isNull() else None
        )
        self._message = text
        self.update()

    def set_message(self, text: str) -> None:
        """Show a plain message instead of a photo."""
        self._clear_photo()
        self._placeholder = None
        self._message = text
        self.update()

    def _clear_photo(self) -> None:
        had = self._image is not None
        self._remember_position()
        self._image = None
        self._scaled = None
        self._scaled_zoom = 0.0
        self._drag_from = None
        self._rescale_timer.stop()
        self._update_cursor()
        if had:
            self.zoomChanged.emit()

    # ------------------------------------------------------------------ zoom
    def is_fit(self) -> bool:
        return self._fit

    def fit_box(self) -> QSize:
        """The widget's size in device pixels (what "fit" fits into)."""
        dpr = self.devicePixelRatioF()
        return QSize(max(1, round(self.width() * dpr)), max(1, round(self.height() * dpr)))

    def fit_zoom(self) -> float:
        if self._image is None:
            return 1.0
        return fit_zoom(self._image.size(), self.fit_box())

    def zoom(self) -> float:
        """Device pixels per photo pixel now."""
        return self.fit_zoom() if self._fit else self._zoom

    def is_settled(self) -> bool:
        """Nothing left to redo: a photo below 100 % has its smooth copy at this zoom."""
        if self._image is None:
            return True
        zoom = self.zoom()
        return zoom >= 1.0 - _EPS or (
            self._scaled is not None and abs(self._scaled_zoom - zoom) < _EPS
        )

    def zoom_fit(self) -> None:
        self._set_zoom(1.0, None, fit=True)

    def zoom_actual(self, anchor: QPointF | None = None) -> None:
        """100 %: one photo pixel per device pixel; ``anchor`` (widget point) stays put."""
        self._set_zoom(1.0, anchor, fit=False)

    def toggle_zoom(self, anchor: QPointF | None = None) -> None:
        """Fit <-> 100 % (at ``anchor``)."""
        if self._fit and abs(self.fit_zoom() - 1.0) > _EPS:
            self.zoom_actual(anchor)
        else:
            self.zoom_fit()

    def zoom_in(self, anchor: QPointF | None = None) -> None:
        current = self.zoom()
        bigger = [z for z in ZOOM_STEPS if z > current * (1 + 1e-3)]
        if bigger:
            self._set_zoom(bigger[0], anchor, fit=False)

    def zoom_out(self, anchor: QPointF | None = None) -> None:
        """One step smaller; at or below the fit size the photo is fitted again."""
        current, fit = self.zoom(), self.fit_zoom()
        smaller = [z for z in ZOOM_STEPS if z < current * (1 - 1e-3)]
        if not smaller or smaller[-1] <= fit + _EPS:
            if not self._fit:
                self.zoom_fit()
            return
        self._set_zoom(smaller[-1], anchor, fit=False)

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """An exact zoom (device pixels per photo pixel), clamped to the steps' range."""
        self._set_zoom(min(max(zoom, ZOOM_STEPS[0]), ZOOM_STEPS[-1]), anchor, fit=False)

    def _set_zoom(self, zoom: float, anchor: QPointF | None, fit: bool) -> None:
        if self._image is None:
            self._fit, self._zoom = fit, zoom
            self.zoomChanged.emit()
            return
        dpr = self.devicePixelRatioF()
        old = self.zoom()
        centre = QPointF(self.width() / 2, self.height() / 2)
        anchor = centre if anchor is None else anchor
        under = (anchor - self._origin(old)) * (dpr / old)  # the photo point under the anchor
        self._fit, self._zoom = fit, zoom
        new = self.zoom()
        self._center = under - (anchor - centre) * (dpr / new)
        self._clamp()
        self._want_rescale()
        self._update_cursor()
        self.update()
        self.zoomChanged.emit()

    def _clamp(self) -> None:
        """Keep the photo covering the view when it is larger, centred when smaller."""
        if self._image is None:
            return
        zoom, dpr = self.zoom(), self.devicePixelRatioF()
        x, y = self._center.x(), self._center.y()
        for axis, size, view in (
            (0, self._image.width(), self.width()),
            (1, self._image.height(), self.height()),
        ):
            half = view * dpr / zoom / 2  # half the view, in photo pixels
            value = x if axis == 0 else y
            value = size / 2 if size <= 2 * half else min(max(value, half), size - half)
            if axis == 0:
                x = value
            else:
                y = value
        self._center = QPointF(x, y)

    def can_pan(self) -> bool:
        if self._image is None:
            return False
        zoom, dpr = self.zoom(), self.devicePixelRatioF()
        return (
            self._image.width() * zoom > self.width() * dpr + 0.5
            or self._image.height() * zoom > self.height() * dpr + 0.5
        )

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the photo by (dx, dy) widget pixels (as a drag does)."""
        if not self.can_pan():
            return
        scale = self.devicePixelRatioF() / self.zoom()
        self._center -= QPointF(dx * scale, dy * scale)
        self._clamp()
        self.update()

    def _update_cursor(self) -> None:
        if self._drag_from is not None:
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif self.can_pan():
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        else:
            self.unsetCursor()

    # ------------------------------------------------------------------ smooth copies
    def _adopt(self, image: QImage, zoom: float) -> None:
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(self.devicePixelRatioF())
        self._scaled, self._scaled_zoom = pixmap, zoom

    def _want_rescale(self) -> None:
        if not self.is_settled():
            self._rescale_timer.start()

    def _rescale(self) -> None:
        """Make the smooth copy for the zoom now (once per photo, size and zoom)."""
        self._rescale_timer.stop()
        if self._image is None:
            return
        zoom = self.zoom()
        if zoom >= 1.0 - _EPS:
            self._scaled, self._scaled_zoom = None, 0.0
            return
        if self._scaled is not None and abs(self._scaled_zoom - zoom) < _EPS:
            return
        self._adopt(scaled_copy(self._image, zoom), zoom)
        self.rescale_count += 1
        self.update()

    def settle(self) -> None:
        """Make a pending smooth copy now (tests, benchmarks, screenshots)."""
        if not self.is_settled():
            self._rescale()

    # ------------------------------------------------------------------ painting
    def _origin(self, zoom: float) -> QPointF:
        """The photo's top-left corner in widget coordinates, on the device pixel grid."""
        assert self._image is not None
        dpr = self.devicePixelRatioF()
        width = self._image.width() * zoom / dpr
        height = self._image.height() * zoom / dpr
        scale = zoom / dpr
        if width <= self.width() + _EPS:
            x = (self.width() - width) / 2
        else:
            x = self.width() / 2 - self._center.x() * scale
        if height <= self.height() + _EPS:
            y = (self.height() - height) / 2
        else:
            y = self.height() / 2 - self._center.y() * scale
        return QPointF(round(x * dpr) / dpr, round(y * dpr) / dpr)

    def photo_rect(self) -> QRectF:
        """Where the whole photo lies in widget coordinates (empty without a photo)."""
        if self._image is None:
            return QRectF()
        zoom, dpr = self.zoom(), self.devicePixelRatioF()
        origin = self._origin(zoom)
        return QRectF(
            origin.x(),
            origin.y(),
            self._image.width() * zoom / dpr,
            self._image.height() * zoom / dpr,
        )

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        area = event.rect()
        painter.fillRect(area, BACKGROUND)
        if self._image is not None:
            self._paint_photo(painter, area)
        else:
            self._paint_waiting(painter)
        painter.end()

    def _paint_photo(self, painter: QPainter, area: QRect) -> None:
        assert self._image is not None
        zoom, dpr = self.zoom(), self.devicePixelRatioF()
        target = self.photo_rect()
        visible = target.intersected(QRectF(area))
        if visible.isEmpty():
            return
        origin = target.topLeft()
        # the visible part in device pixels of the photo drawn at ``zoom``
        device = QRectF((visible.topLeft() - origin) * dpr, visible.size() * dpr)
        if self._scaled is not None and abs(self._scaled_zoom - zoom) < _EPS:
            painter.drawPixmap(visible, self._scaled, device)  # a plain copy of what shows
        elif abs(zoom - 1.0) < _EPS:
            painter.drawImage(visible, self._image, device)  # 100 %: the visible pixels only
        elif zoom > 1.0:  # enlarged: nearest pixels, from the visible source part only
            source = QRectF(device.topLeft() / zoom, device.size() / zoom)
            painter.drawImage(visible, self._image, source)
        else:  # the smooth copy for this zoom is on its way: stretch the old one meanwhile
            self._want_rescale()
            painter.save()
            painter.setClipRect(visible)
            if self._scaled is not None:
                painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
                painter.drawPixmap(target, self._scaled, QRectF(self._scaled.rect()))
            else:
                source = QRectF(device.topLeft() / zoom, device.size() / zoom)
                painter.drawImage(visible, self._image, source)
            painter.restore()

    def _paint_waiting(self, painter: QPainter) -> None:
        painter.setPen(TEXT)
        rect = QRectF(self.rect())
        if self._placeholder is not None:
            size = QSize(self._placeholder.size())
            size.scale(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            box = QRectF(
                (self.width() - size.width()) / 2,
                (self.height() - size.height()) / 2,
                size.width(),
                size.height(),
            )
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(box, self._placeholder)
            if self._message:
                metrics = painter.fontMetrics()
                width = metrics.horizontalAdvance(self._message) + 24
                height = metrics.height() + 12
                label = QRectF(
                    (self.width() - width) / 2, self.height() - height - 16, width, height
                )
                painter.setRenderHint(QPainter.RenderHint.Antialiasing)
                painter.setBrush(QColor(0, 0, 0, 160))
                painter.setPen(Qt.PenStyle.NoPen)
                painter.drawRoundedRect(label, 6, 6)
                painter.setPen(TEXT)
                painter.drawText(label, Qt.AlignmentFlag.AlignCenter, self._message)
            return
        if self._message:
            painter.drawText(
                rect.adjusted(24, 24, -24, -24),
                int(Qt.AlignmentFlag.AlignCenter) | int(Qt.TextFlag.TextWordWrap),
                self._message,
            )

    # ------------------------------------------------------------------ events
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._image is None:
            return
        self._clamp()
        self._want_rescale()
        self._update_cursor()
        if self._fit:
            self.zoomChanged.emit()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.can_pan():
            self._drag_from = event.position()
            self._update_cursor()
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is not None:
            delta = event.position() - self._drag_from
            self._drag_from = event.position()
            self.pan_by(delta.x(), delta.y())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is not None and event.button() == Qt.MouseButton.LeftButton:
            self._drag_from = None
            self._update_cursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._image is not None:
            self.toggle_zoom(event.position())
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self._image is None:
            event.ignore()
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            steps = event.angleDelta().y() / 120
            if steps > 0:
                self.zoom_in(event.position())
            elif steps < 0:
                self.zoom_out(event.position())
            event.accept()
            return
        if self.can_pan():
            delta = event.pixelDelta()
            if delta.isNull():
                angle = event.angleDelta()
                dx, dy = angle.x() / 2, angle.y() / 2
            else:
                dx, dy = delta.x(), delta.y()
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier and dx == 0:
                dx, dy = dy, 0
            self.pan_by(dx, dy)
            event.accept()
            return
        event.ignore()
