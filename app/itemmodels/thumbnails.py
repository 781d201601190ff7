"""One cluster's images as a virtualised Qt list model of thumbnails.

:class:`ThumbnailGridModel` holds plain arrays (image ids, confidences, paths, label codes,
ignored flags), so 100k+ rows cost a few megabytes and no Qt objects. Thumbnails come from a
shared :class:`~app.itemmodels.thumbnail_cache.ThumbnailCache`: ``data()`` never decodes; for a
thumbnail not in the cache it returns a placeholder and asks the cache, and when the cache
announces the image the model emits ``dataChanged`` for that one row.

Rows are sorted by confidence, most confident first; ``set_low_confidence_first(True)``
(or ``sort(0, Qt.AscendingOrder)``) shows the doubtful images first. Ties go by image id.
Images not grouped yet (a library being scanned) have no confidence: pass NaN, and they sort
by image id and show none. :meth:`ThumbnailGridModel.extend_images` adds rows without a
reset while a scan brings new images, so the view keeps its scroll position and selection.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Slot,
)
from PySide6.QtGui import QColor, QImage, QPainter, QPen

from app.itemmodels.item_flags import list_item_flags
from app.itemmodels.thumbnail_cache import ThumbnailCache
from crlc_engine.api import RunAssignments

Index = QModelIndex | QPersistentModelIndex

#: MIME type of dragged images: a JSON list of image ids.
IMAGE_IDS_MIME = "application/x-crlc-image-ids"


def encode_image_ids(image_ids: Iterable[int]) -> QMimeData:
    """Drag data for images (see :data:`IMAGE_IDS_MIME`)."""
    mime = QMimeData()
    mime.setData(IMAGE_IDS_MIME, QByteArray(json.dumps([int(i) for i in image_ids]).encode()))
    return mime


def decode_image_ids(mime: QMimeData) -> list[int] | None:
    """The image ids of drag data, or None if it holds none (or is malformed)."""
    if not mime.hasFormat(IMAGE_IDS_MIME):
        return None
    try:
        ids = json.loads(bytes(mime.data(IMAGE_IDS_MIME).data()).decode())
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        return None
    return ids


def cluster_members(assignments: RunAssignments, cluster: int) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, confidences) of one cluster of a run, ready for ``set_images``."""
    mask = assignments.clusters == cluster
    return assignments.image_ids[mask], assignments.confidences[mask]


def _checked_arrays(
    image_ids: np.ndarray | Sequence[int],
    confidences: np.ndarray | Sequence[float],
    paths: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Ids as int64 [N] and confidences as float32 [N]; raises ValueError on bad input."""
    ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
    conf = np.asarray(confidences, dtype=np.float32).reshape(-1)
    if not len(ids) == len(conf) == len(paths):
        raise ValueError(
            f"image_ids, confidences and paths differ in length "
            f"({len(ids)}, {len(conf)}, {len(paths)})"
        )
    if np.unique(ids).size != ids.size:
        raise ValueError("image ids must be unique")
    return ids, conf


def _row_order(
    ids: np.ndarray, conf: np.ndarray, order: Qt.SortOrder
) -> tuple[np.ndarray, np.ndarray]:
    """(row -> base index, base index -> row): by confidence (NaN as 0), ties by id."""
    filled = np.nan_to_num(conf, nan=0.0)
    key = filled if order == Qt.SortOrder.AscendingOrder else -filled
    perm = np.lexsort((ids, key))
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    return perm, inverse


def _placeholder(side: int, fill: str, cross: bool) -> QImage:
    image = QImage(side, side, QImage.Format.Format_RGB32)
    image.fill(QColor(fill))
    if cross:
        painter = QPainter(image)
        painter.setPen(QPen(QColor("#6e6e6e"), max(1, side // 64)))
        inset = side // 3
        painter.drawLine(inset, inset, side - inset, side - inset)
        painter.drawLine(side - inset, inset, inset, side - inset)
        painter.end()
    return image


_USER = int(Qt.ItemDataRole.UserRole)
_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
_DECORATION = int(Qt.ItemDataRole.DecorationRole)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)


class ThumbnailGridModel(QAbstractListModel):
    """The images of one cluster, sorted by confidence, with lazily loaded thumbnails.

    Roles: ``DisplayRole`` file name; ``DecorationRole`` the thumbnail ``QImage`` (a
    placeholder until loaded, :attr:`missing_image` if unreadable); ``ToolTipRole`` path,
    confidence, label; :attr:`ImageIdRole` (int), :attr:`ConfidenceRole` (float),
    :attr:`LabelRole` (class name or None), :attr:`IgnoredRole` (bool), :attr:`PathRole`.

    Args:
        cache: Where thumbnails come from (may be shared by several models).
        parent: Qt parent.
    """

    ImageIdRole: ClassVar[int] = _USER + 1
    ConfidenceRole: ClassVar[int] = _USER + 2
    LabelRole: ClassVar[int] = _USER + 3
    IgnoredRole: ClassVar[int] = _USER + 4
    PathRole: ClassVar[int] = _USER + 5

    def __init__(self, cache: ThumbnailCache, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cache = cache
        self._make_placeholders(cache.max_side or 256)
        self._order_flag = Qt.SortOrder.DescendingOrder
        self._set_arrays(np.zeros(0, np.int64), np.zeros(0, np.float32), [])
        cache.loaded.connect(self._on_loaded)

    # ------------------------------------------------------------------ contents
    def set_images(
        self,
        image_ids: np.ndarray | Sequence[int],
        confidences: np.ndarray | Sequence[float],
        paths: Sequence[str],
        labels: Mapping[int, str] | None = None,
        ignored: Collection[int] | None = None,
    ) -> None:
        """Show these images (resets the model), in the current sort order.

        Args:
            image_ids: Unique image ids [N].
            confidences: Confidence of each image's cluster [N].
            paths: File path (absolute or relative to its root) of each image [N].
            labels: image id -> class name (any ids; those not shown are ignored).
            ignored: Ids of ignored images.
        """
        ids, conf = _checked_arrays(image_ids, confidences, paths)
        self.beginResetModel()
        self._set_arrays(ids, conf, paths)
        self._labels_from(labels or {})
        self._ignored_from(ignored or ())
        self.endResetModel()

    def _set_arrays(self, ids: np.ndarray, conf: np.ndarray, paths: Sequence[str]) -> None:
        self._ids = ids.copy()
        self._conf = conf.copy()
        self._paths = paths if isinstance(paths, list) else list(paths)
        self._id_perm = np.argsort(self._ids, kind="stable")  # for id -> base lookups
        self._ids_sorted = self._ids[self._id_perm]
        self._label_codes = np.full(len(ids), -1, dtype=np.int32)
        self._label_names: list[str] = []
        self._ignored = np.zeros(len(ids), dtype=bool)
        self._order, self._row_of_base = self._ordering(self._order_flag)

    def extend_images(
        self,
        image_ids: np.ndarray | Sequence[int],
        confidences: np.ndarray | Sequence[float],
        paths: Sequence[str],
    ) -> int:
        """Add the images not shown yet (ids already shown are skipped).

        When every new image sorts after the rows shown, they are appended with
        ``rowsInserted`` (selection, current row and scroll position stay); otherwise the
        model is reset. Labels and ignores of the new rows start empty.

        Returns:
            How many images were added.
        """
        ids, conf = _checked_arrays(image_ids, confidences, paths)
        fresh = np.flatnonzero(self._bases_of(ids) < 0)
        if fresh.size == 0:
            return 0
        old_rows = len(self._ids)
        new_rows = np.zeros(fresh.size, dtype=bool)
        codes = np.concatenate([self._label_codes, np.full(fresh.size, -1, dtype=np.int32)])
        names, ignored = self._label_names, np.concatenate([self._ignored, new_rows])
        all_ids = np.concatenate([self._ids, ids[fresh]])
        all_conf = np.concatenate([self._conf, conf[fresh]])
        all_paths = [*self._paths, *(paths[int(i)] for i in fresh)]
        _, row_of_base = _row_order(all_ids, all_conf, self._order_flag)
        appended = bool(np.all(row_of_base[:old_rows] == self._row_of_base))
        if appended:
            self.beginInsertRows(QModelIndex(), old_rows, len(all_ids) - 1)
        else:
            self.beginResetModel()
        self._set_arrays(all_ids, all_conf, all_paths)
        self._label_codes = codes
        self._label_names = names
        self._ignored = ignored
        if appended:
            self.endInsertRows()
        else:
            self.endResetModel()
        return int(fresh.size)

    def _ordering(self, order: Qt.SortOrder) -> tuple[np.ndarray, np.ndarray]:
        """(row -> base index, base index -> row) for a sort order."""
        return _row_order(self._ids, self._conf, order)

    def _bases_of(self, image_ids: np.ndarray) -> np.ndarray:
        """Base index of each id, -1 where not shown."""
        if len(self._ids_sorted) == 0:
            return np.full(len(image_ids), -1, dtype=np.int64)
        pos = np.searchsorted(self._ids_sorted, image_ids)
        pos = np.minimum(pos, len(self._ids_sorted) - 1)
        found = self._ids_sorted[pos] == image_ids
        return np.where(found, self._id_perm[pos], -1)

    def _labels_from(self, labels: Mapping[int, str]) -> None:
        self._label_codes[:] = -1
        self._label_names = []
        if not labels:
            return
        keys = np.fromiter(labels.keys(), dtype=np.int64, count=len(labels))
        bases = self._bases_of(keys)
        codes: dict[str, int] = {}
        for key, base in zip(keys[bases >= 0].tolist(), bases[bases >= 0].tolist(), strict=True):
            name = labels[key]
            code = codes.get(name)
            if code is None:
                code = codes[name] = len(self._label_names)
                self._label_names.append(name)
            self._label_codes[base] = code

    def _ignored_from(self, ignored: Collection[int]) -> None:
        wanted = np.fromiter((int(i) for i in ignored), dtype=np.int64)
        self._ignored = np.isin(self._ids, wanted)

    def set_labels(self, labels: Mapping[int, str]) -> None:
        """Replace the labels (image id -> class name) and repaint the label badges."""
        self._labels_from(labels)
        self._all_changed([self.LabelRole, _TOOLTIP])

    def set_ignored(self, ignored: Collection[int]) -> None:
        """Replace the set of ignored image ids."""
        self._ignored_from(ignored)
        self._all_changed([self.IgnoredRole, _TOOLTIP])

    def _make_placeholders(self, side: int) -> None:
        self._loading = _placeholder(side, "#e4e4e4", cross=False)
        self._missing = _placeholder(side, "#bdbdbd", cross=True)

    def set_thumbnail_side(self, side: int) -> None:
        """Show thumbnails fitting a ``side`` square: the cache decodes at that size from now
        on (what it holds is decoded again, as the rows are painted) and the placeholders
        are redrawn."""
        self._cache.set_max_side(side)
        self._make_placeholders(side)
        self._all_changed([_DECORATION])

    def _all_changed(self, roles: list[int]) -> None:
        if len(self._ids):
            self.dataChanged.emit(self.index(0), self.index(len(self._ids) - 1), roles)

    # ------------------------------------------------------------------ sorting
    @property
    def low_confidence_first(self) -> bool:
        """Whether the least confident images come first."""
        return self._order_flag == Qt.SortOrder.AscendingOrder

    def set_low_confidence_first(self, on: bool) -> None:
        """Least confident first (True) or most confident first (False, the default)."""
        self.sort(0, Qt.SortOrder.AscendingOrder if on else Qt.SortOrder.DescendingOrder)

    def sortOrder(self) -> Qt.SortOrder:
        """The current order of confidences."""
        return self._order_flag

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by confidence (the only column); persistent indexes follow their images."""
        if column != 0 or order == self._order_flag:
            return
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        bases = [int(self._order[i.row()]) for i in old]
        self._order_flag = order
        self._order, self._row_of_base = self._ordering(order)
        self.changePersistentIndexList(old, [self.index(int(self._row_of_base[b])) for b in bases])
        self.layoutChanged.emit()

    # ------------------------------------------------------------------ lookups
    @property
    def cache(self) -> ThumbnailCache:
        """The thumbnail cache this model reads from."""
        return self._cache

    @property
    def placeholder(self) -> QImage:
        """What ``DecorationRole`` gives while a thumbnail loads."""
        return self._loading

    @property
    def missing_image(self) -> QImage:
        """What ``DecorationRole`` gives for a thumbnail that could not be read."""
        return self._missing

    def image_id(self, row: int) -> int:
        """The image shown in a row."""
        return int(self._ids[self._order[row]])

    def image_ids(self) -> np.ndarray:
        """All image ids in row order (a copy)."""
        ids: np.ndarray = self._ids[self._order]
        return ids

    def row_of(self, image_id: int) -> int:
        """The row showing an image, or -1."""
        base = int(self._bases_of(np.array([image_id], dtype=np.int64))[0])
        return -1 if base < 0 else int(self._row_of_base[base])

    def label_of(self, row: int) -> str | None:
        """The class name an image was labelled with, or None."""
        code = int(self._label_codes[self._order[row]])
        return None if code < 0 else self._label_names[code]

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._ids)

    def data(self, index: Index, role: int = _DISPLAY) -> Any:
        row = index.row()
        if not 0 <= row < len(self._ids) or index.column() != 0 or not index.isValid():
            return None
        role = int(role)
        base = int(self._order[row])
        if role == _DECORATION:
            image_id = int(self._ids[base])
            image = self._cache.get(image_id)
            if image is None:
                self._cache.request(image_id)
                return self._loading
            return self._missing if image.isNull() else image
        if role == _DISPLAY:
            return os.path.basename(self._paths[base])
        if role == self.ImageIdRole:
            return int(self._ids[base])
        if role == self.ConfidenceRole:
            return float(self._conf[base])
        if role == self.LabelRole:
            code = int(self._label_codes[base])
            return None if code < 0 else self._label_names[code]
        if role == self.IgnoredRole:
            return bool(self._ignored[base])
        if role == self.PathRole:
            return self._paths[base]
        if role == _TOOLTIP:
            confidence = float(self._conf[base])
            lines = [self._paths[base]]
            if not np.isnan(confidence):
                lines.append(f"confidence {confidence:.3f}")
            code = int(self._label_codes[base])
            if code >= 0:
                lines.append(f"labelled {self._label_names[code]}")
            if self._ignored[base]:
                lines.append("ignored")
            return "\n".join(lines)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        return list_item_flags(index, Qt.ItemFlag.ItemIsDragEnabled)

    def roleNames(self) -> dict[int, QByteArray]:
        names = dict(super().roleNames())
        for role, name in (
            (self.ImageIdRole, b"imageId"),
            (self.ConfidenceRole, b"confidence"),
            (self.LabelRole, b"label"),
            (self.IgnoredRole, b"ignored"),
            (self.PathRole, b"path"),
        ):
            names[role] = QByteArray(name)
        return names

    def mimeTypes(self) -> list[str]:
        return [IMAGE_IDS_MIME]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        """The dragged images' ids, in row order, each once."""
        rows = sorted({i.row() for i in indexes if i.isValid()})
        return encode_image_ids(self.image_id(r) for r in rows)

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction | Qt.DropAction.CopyAction

    # ------------------------------------------------------------------ loading
    @Slot(int)
    def _on_loaded(self, image_id: int) -> None:
        row = self.row_of(image_id)
        if row >= 0:
            index = self.index(row)
            self.dataChanged.emit(index, index, [_DECORATION])
