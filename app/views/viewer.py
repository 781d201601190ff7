"""The photo viewer: one photo large, in place of the thumbnail grid (a page of a stack).

:class:`PhotoViewer` shows one photo of a sequence (the current group's order) given by the
caller with :meth:`PhotoViewer.set_sequence`. It opens fitted to the window; ``1`` shows it
at 100 % (one photo pixel per screen pixel), ``0`` fits it again, ``Z`` or a double-click
toggles the two, ``+``/``-`` and Ctrl+wheel zoom in steps, dragging (or the wheel) pans a
photo larger than the view. Left/Right, Up/Down, PageUp/PageDown, Space/Backspace step
through the sequence, Home/End jump to its ends, Esc (or the x button) emits ``closed``.
Every other key is left to the window, so the main window's actions (L, M, Delete, undo)
keep working; they act on :meth:`PhotoViewer.current_image_id`, which the viewer announces
with ``currentChanged``.

Decoding runs in a :class:`app.itemmodels.full_image.FullImageLoader` (a thread pool); the
photo shown, the next and the previous one are kept decoded (at most three). While a photo
decodes, its grid thumbnail is shown scaled up (from :meth:`set_placeholder_source` or the
``placeholder`` argument) with "Loading…", else "Loading…" alone; a photo that cannot be
decoded shows "Cannot open this photo: <reason>".

The photo itself is painted, zoomed and panned by :class:`app.views.photo_canvas.PhotoCanvas`.
"""

# Qt names signals in mixedCase.
# ruff: noqa: N815

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtGui import (
    QHideEvent,
    QImage,
    QKeyEvent,
    QResizeEvent,
    QShowEvent,
)
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from app.itemmodels.full_image import (
    DEFAULT_CAPACITY,
    Decoder,
    FullImage,
    FullImageLoader,
)
from app.views.photo_canvas import PhotoCanvas

__all__ = ["PhotoViewer"]


class _ElidedLabel(QLabel):
    """A one-line label that elides its text in the middle to fit its width."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setMinimumWidth(40)
        self.setTextFormat(Qt.TextFormat.PlainText)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self._elide()

    def full_text(self) -> str:
        return self._full

    def _elide(self) -> None:
        metrics = self.fontMetrics()
        super().setText(metrics.elidedText(self._full, Qt.TextElideMode.ElideMiddle, self.width()))

    def minimumSizeHint(self) -> QSize:
        return QSize(40, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        return QSize(
            self.fontMetrics().horizontalAdvance(self._full) + 4, super().sizeHint().height()
        )

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()


#: Keys the viewer handles itself (taken before the window's shortcuts see them).
_STEP_KEYS: dict[int, int] = {
    int(Qt.Key.Key_Left): -1,
    int(Qt.Key.Key_Up): -1,
    int(Qt.Key.Key_PageUp): -1,
    int(Qt.Key.Key_Backspace): -1,
    int(Qt.Key.Key_Right): 1,
    int(Qt.Key.Key_Down): 1,
    int(Qt.Key.Key_PageDown): 1,
    int(Qt.Key.Key_Space): 1,
}
_OWN_KEYS: frozenset[int] = frozenset(
    {
        *_STEP_KEYS,
        int(Qt.Key.Key_Home),
        int(Qt.Key.Key_End),
        int(Qt.Key.Key_Escape),
        int(Qt.Key.Key_1),
        int(Qt.Key.Key_0),
        int(Qt.Key.Key_Z),
        int(Qt.Key.Key_Plus),
        int(Qt.Key.Key_Equal),
        int(Qt.Key.Key_Minus),
    }
)
_ZOOM_KEYS: frozenset[int] = frozenset(
    {
        int(Qt.Key.Key_Plus),
        int(Qt.Key.Key_Equal),
        int(Qt.Key.Key_Minus),
        int(Qt.Key.Key_0),
    }
)


class PhotoViewer(QWidget):
    """One photo of a sequence, large; a page to put in a ``QStackedWidget``.

    Args:
        capacity: Decoded photos kept (the one shown, the next, the previous).
        threads: Decoding threads (default: one or two).
        decode: path -> QImage, run in the decoding threads (default
            :func:`app.itemmodels.full_image.decode_full_image`).
        parent: Qt parent.

    Signals:
        closed(): Esc or the close button: the caller shows the grid again.
        currentChanged(int): the image id shown changed (by a step, or by
            :meth:`set_sequence` putting another photo in the current place).
    """

    closed = Signal()
    currentChanged = Signal(int)

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        threads: int | None = None,
        decode: Decoder | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("photo-viewer")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName("Photo viewer")
        self.loader = FullImageLoader(capacity, threads, decode, self)
        self.loader.loaded.connect(self._on_loaded)
        self._ids: list[int] = []
        self._paths: list[str] = []
        self._index = -1
        self._shown: tuple[int, str] | None = None  # what the canvas shows or waits for
        self._announced: int | None = None  # the id of the last currentChanged
        self._placeholder: QImage | None = None  # for the photo to load when shown
        self._placeholder_source: Callable[[int], QImage | None] | None = None

        self.canvas = PhotoCanvas(self)
        self.canvas.zoomChanged.connect(self._update_zoom_label)
        self.name_label = _ElidedLabel()
        self.name_label.setObjectName("viewer-name")
        self.caption_label = QLabel("")
        self.caption_label.setObjectName("viewer-caption")
        self.caption_label.setTextFormat(Qt.TextFormat.PlainText)
        self.caption_label.setVisible(False)
        self.position_label = QLabel("")
        self.position_label.setObjectName("viewer-position")
        self.zoom_label = QLabel("")
        self.zoom_label.setObjectName("viewer-zoom")
        self.zoom_label.setToolTip(
            "Fit: 0 · 100 %: 1 · toggle: Z or double-click · zoom: + / - or Ctrl+wheel"
        )
        self.close_button = QToolButton()
        self.close_button.setText("×")
        self.close_button.setAutoRaise(True)
        self.close_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.close_button.setToolTip("Back to the grid (Esc)")
        self.close_button.setAccessibleName("Close the viewer")
        self.close_button.clicked.connect(self.closed)

        bar = QWidget()
        bar.setObjectName("viewer-bar")
        bar_layout = QHBoxLayout(bar)
        bar_layout.setContentsMargins(8, 2, 2, 2)
        bar_layout.setSpacing(12)
        bar_layout.addWidget(self.name_label, 1)
        bar_layout.addWidget(self.caption_label)
        bar_layout.addWidget(self.position_label)
        bar_layout.addWidget(self.zoom_label)
        bar_layout.addWidget(self.close_button)
        self.bar = bar
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(bar)
        layout.addWidget(self.canvas, 1)
        self.canvas.set_message("No photo")

    # ------------------------------------------------------------------ sequence
    def set_sequence(
        self,
        image_ids: Sequence[int],
        paths: Sequence[str | Path],
        index: int,
        placeholder: QImage | None = None,
    ) -> None:
        """Step through these photos, showing ``image_ids[index]`` (clamped to the list).

        Call it again after a correction with the group's new order and the same index:
        the photo that took the removed one's place is shown. A photo already shown stays
        as it is (zoom and position included). ``placeholder`` is shown while the current
        photo decodes (default: the placeholder source's, see
        :meth:`set_placeholder_source`). ``currentChanged`` is emitted when the id shown
        changes. A hidden viewer decodes nothing: decoding starts when it is shown (and
        hiding it, e.g. going back to the grid, frees the decoded photos).
        """
        if len(image_ids) != len(paths):
            raise ValueError(f"{len(image_ids)} image ids but {len(paths)} paths")
        self._ids = [int(i) for i in image_ids]
        self._paths = [str(p) for p in paths]
        self._index = min(max(index, 0), len(self._ids) - 1) if self._ids else -1
        self._show_current(placeholder)

    def set_placeholder_source(self, source: Callable[[int], QImage | None] | None) -> None:
        """Where placeholders come from while a photo decodes: image id -> the grid's
        thumbnail (e.g. ``ThumbnailCache.get``), or None."""
        self._placeholder_source = source

    def set_caption(self, text: str) -> None:
        """The photo's group or label, shown in the bar ("" hides it)."""
        self.caption_label.setText(text)
        self.caption_label.setVisible(bool(text))

    def caption(self) -> str:
        return self.caption_label.text()

    def count(self) -> int:
        return len(self._ids)

    def current_index(self) -> int:
        """The position in the sequence (-1 when it is empty)."""
        return self._index

    def current_image_id(self) -> int | None:
        return self._ids[self._index] if self._index >= 0 else None

    def current_path(self) -> str | None:
        return self._paths[self._index] if self._index >= 0 else None

    def step(self, delta: int) -> bool:
        """Show the photo ``delta`` places on (clamped); returns whether it changed."""
        if not self._ids:
            return False
        return self.set_current_index(self._index + delta)

    def set_current_index(self, index: int) -> bool:
        """Show the photo at ``index`` (clamped); returns whether it changed."""
        if not self._ids:
            return False
        index = min(max(index, 0), len(self._ids) - 1)
        if index == self._index:
            return False
        self._index = index
        self._show_current(None)
        return True

    def _show_current(self, placeholder: QImage | None) -> None:
        """Show (or start decoding) the current photo and announce it if it is new."""
        image_id = self.current_image_id()
        if image_id is None:
            self._shown = self._announced = None
            self.loader.clear()
            self.canvas.set_message("No photos here")
        elif self.isVisible():
            self._load_current(placeholder)
        else:  # decoded when shown (a hidden viewer holds no photos)
            self._shown, self._placeholder = None, placeholder
        self._update_bar()
        if image_id is not None and image_id != self._announced:
            self._announced = image_id
            self.currentChanged.emit(image_id)

    def _load_current(self, placeholder: QImage | None) -> None:
        image_id, path = self._ids[self._index], self._paths[self._index]
        self._placeholder = None
        self.loader.retain(self._neighbours())
        if self._shown != (image_id, path):
            self._shown = (image_id, path)
            entry = self.loader.get(image_id, path)
            if entry is not None:
                self._display(entry)
            else:
                if placeholder is None and self._placeholder_source is not None:
                    placeholder = self._placeholder_source(image_id)
                self.canvas.set_loading(placeholder)
        box = self.canvas.fit_box()
        for rank, position in enumerate((self._index, self._index + 1, self._index - 1)):
            if 0 <= position < len(self._ids):
                self.loader.request(self._ids[position], self._paths[position], box, 2 - rank)

    def _neighbours(self) -> list[int]:
        lo, hi = max(0, self._index - 1), min(len(self._ids), self._index + 2)
        return self._ids[lo:hi]

    def _display(self, entry: FullImage) -> None:
        if entry.ok:
            self.canvas.set_photo(entry)
        else:
            self.canvas.set_message(f"Cannot open this photo: {entry.error}")

    def _on_loaded(self, image_id: int) -> None:
        if self._shown is None or self._shown[0] != image_id:
            return  # a neighbour: kept for later
        entry = self.loader.get(image_id, self._shown[1])
        if entry is not None:
            self._display(entry)
            self._update_zoom_label()

    def is_loading(self) -> bool:
        """Whether the current photo is still being decoded."""
        return (
            self._shown is not None
            and self.canvas.image() is None
            and (self.loader.is_loading(self._shown[0]))
        )

    def clear(self) -> None:
        """Forget the decoded photos (the sequence stays; showing again decodes again)."""
        self.loader.clear()
        self._shown = None
        self.canvas.set_message("")
        self.canvas.reset_view()

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Stop decoding and wait for the decoding threads (call when the window closes)."""
        return self.loader.shutdown(timeout_ms)

    # ------------------------------------------------------------------ zoom
    def zoom_fit(self) -> None:
        self.canvas.zoom_fit()

    def zoom_actual(self) -> None:
        self.canvas.zoom_actual()

    def zoom(self) -> float:
        return self.canvas.zoom()

    def is_fit(self) -> bool:
        return self.canvas.is_fit()

    # ------------------------------------------------------------------ bar
    def _update_bar(self) -> None:
        path = self.current_path()
        if path is None:
            self.name_label.set_full_text("")
            self.name_label.setToolTip("")
            self.position_label.setText("")
        else:
            self.name_label.set_full_text(Path(path).name)
            self.name_label.setToolTip(path)
            self.position_label.setText(f"{self._index + 1:,} / {len(self._ids):,}")
        self._update_zoom_label()

    def _update_zoom_label(self) -> None:
        if self.canvas.image() is None:
            self.zoom_label.setText("")
            return
        percent = self.canvas.zoom() * 100
        shown = f"{percent:.0f} %" if percent >= 10 else f"{percent:.1f} %"
        self.zoom_label.setText(f"Fit {shown}" if self.canvas.is_fit() else shown)

    # ------------------------------------------------------------------ keys
    def _own_key(self, event: QKeyEvent) -> bool:
        key = event.key()
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if key not in _OWN_KEYS:
            return False
        if mods == Qt.KeyboardModifier.NoModifier:
            return True
        if key in _ZOOM_KEYS:  # "+" needs Shift on many layouts; Ctrl++ / Ctrl+- / Ctrl+0
            return mods in (Qt.KeyboardModifier.ShiftModifier, Qt.KeyboardModifier.ControlModifier)
        return key == int(Qt.Key.Key_Space) and mods == Qt.KeyboardModifier.ShiftModifier

    def event(self, event: QEvent) -> bool:
        # Keys of the viewer win over window shortcuts while it has the focus; the others
        # (L, M, Delete, Ctrl+Z, ...) go on to the window's actions.
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and self._own_key(event)
        ):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not self._own_key(event):
            super().keyPressEvent(event)
            return
        key = event.key()
        shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if key == Qt.Key.Key_Escape:
            self.closed.emit()
        elif key == Qt.Key.Key_Space and shift:
            self.step(-1)
        elif key in _STEP_KEYS:
            self.step(_STEP_KEYS[key])
        elif key == Qt.Key.Key_Home:
            self.set_current_index(0)
        elif key == Qt.Key.Key_End:
            self.set_current_index(len(self._ids) - 1)
        elif key == Qt.Key.Key_1:
            self.canvas.zoom_actual()
        elif key == Qt.Key.Key_0:
            self.canvas.zoom_fit()
        elif key == Qt.Key.Key_Z:
            self.canvas.toggle_zoom()
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.canvas.zoom_in()
        elif key == Qt.Key.Key_Minus:
            self.canvas.zoom_out()
        event.accept()

    # ------------------------------------------------------------------ show / hide
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._shown is None and self._index >= 0:
            self._load_current(self._placeholder)
            self._update_zoom_label()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        if not event.spontaneous():  # back to the grid (not a minimised window): free memory
            self.clear()
