"""The group list of a run as a Qt list model, and the colour of each group.

Rows are :class:`crlc_engine.results.groups.GroupSummary` records: a run's group view, where a merge
(one name on several clusters) is one row and pictures labelled or moved into a group count
in it. Each row can also show a cover (:data:`GroupListModel.CoverRole`): the group's most
probable picture, or a 2x2 mosaic of its four most probable ones, composed from the thumbnails of a
:class:`~app.itemmodels.thumbnail_cache.ThumbnailCache` given with
:meth:`GroupListModel.set_thumbnail_source`. Covers are asked for lazily: only a row that is
painted requests its thumbnails, and when the last of them arrives the cover is composed
once (kept per group key, pictures, side and pixel ratio) and the row is repainted.

The model never writes: a name typed into the view is announced with
``renameRequested(key, name)`` and images dropped on a group with ``moveRequested(image_ids,
key)``, so the application can route both through the undoable
:class:`crlc_engine.results.annotations.Annotations` and then hand the new groups back with
:meth:`GroupListModel.set_groups`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QImage, QPalette, QPixmap

from app.itemmodels.covers import COVER_SIDE, CoverKey, CoverStore, compose_cover, cover_ids
from app.itemmodels.item_flags import list_item_flags
from app.itemmodels.thumbnail_cache import ThumbnailCache
from app.itemmodels.thumbnails import IMAGE_IDS_MIME, decode_image_ids
from app.theme import swatch_pixmap
from crlc_engine.api import GroupSummary

# Qt's API is camelCase (signals).
# ruff: noqa: N815

Index = QModelIndex | QPersistentModelIndex

#: Distinguishable colours for the first groups (the first ten as in the wireframe).
PALETTE: tuple[str, ...] = (
    "#4285f4",  # blue
    "#34a853",  # green
    "#fbbc05",  # amber
    "#ea4335",  # red
    "#ab47bc",  # purple
    "#00acc1",  # cyan
    "#ff7043",  # deep orange
    "#7cb342",  # light green
    "#5c6bc0",  # indigo
    "#8d6e63",  # brown
    "#f06292",  # pink
    "#004d40",  # dark teal
    "#ffe082",  # light amber
    "#1a237e",  # navy
    "#827717",  # olive
    "#ce93d8",  # light purple
    "#80deea",  # light cyan
    "#880e4f",  # maroon
    "#37474f",  # slate
    "#ffab91",  # salmon
)

_GOLDEN_ANGLE = 137.508


def group_color(index: int) -> QColor:
    """The colour of a palette index (a group's ``colour``): :data:`PALETTE`, then
    golden-angle hues (deterministic)."""
    if 0 <= index < len(PALETTE):
        return QColor(PALETTE[index])
    k = index - len(PALETTE)
    hue = (k * _GOLDEN_ANGLE + 15.0) % 360.0
    value = (0.90, 0.70, 0.55)[k % 3]
    return QColor.fromHsvF(hue / 360.0, 0.70, value)


def _clean(name: str) -> str:
    return " ".join(name.split())


_USER = int(Qt.ItemDataRole.UserRole)
_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
_EDIT = int(Qt.ItemDataRole.EditRole)
_DECORATION = int(Qt.ItemDataRole.DecorationRole)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
#: Shown after the size of a flagged group (it changed a lot with the run).
FLAG_MARK = " \u26a0"
#: Separates the size and the mean confidence in :func:`stats_text`.
STATS_SEPARATOR = " \u00b7 "


def stats_text(size: int, mean_confidence: float) -> str:
    """A group's size and mean confidence in words, e.g. ``80 photos · 91 %``."""
    photos = f"{size} photo" if size == 1 else f"{size} photos"
    if not math.isfinite(mean_confidence) or size == 0:
        return photos
    return f"{photos}{STATS_SEPARATOR}{round(100 * mean_confidence)} %"


_ROLE_VALUES: dict[int, Callable[[GroupSummary], Any]] = {
    _USER + 1: lambda g: g.key,
    _USER + 2: lambda g: g.size,
    _USER + 3: lambda g: g.mean_confidence,
    _USER + 4: lambda g: g.name,
    _USER + 5: lambda g: group_color(g.colour),
    _USER + 6: lambda g: g.clusters,
    _USER + 7: lambda g: g.flags,
    _USER + 9: lambda g: cover_ids(g.top_image_ids),
    _USER + 10: lambda g: stats_text(g.size, g.mean_confidence),
}
"""The plain roles of :class:`GroupListModel` (``KeyRole`` ... ``StatsRole``, not the cover)."""


class GroupListModel(QAbstractListModel):
    """One row per group of a run: "name (size)", colour swatch, mean confidence.

    Roles: ``DisplayRole`` "name (size)", with a warning sign when the group is flagged;
    ``EditRole`` the name; ``DecorationRole`` an icon of the group's :func:`group_color`
    swatch (:func:`app.theme.swatch_pixmap`) outlined in the application palette's text
    colour, and in its highlighted-text colour on a selected row; ``ToolTipRole`` size,
    labelled pictures, mean confidence, clusters and flags; :attr:`KeyRole` (str),
    :attr:`ClustersRole` (tuple of ints), :attr:`SizeRole` (int), :attr:`MeanConfidenceRole`
    (float), :attr:`NameRole` (the name, or None for an unnamed cluster), :attr:`ColorRole`
    (the plain :class:`QColor`), :attr:`FlagsRole` (tuple of str), :attr:`CoverRole` (the
    cover ``QPixmap`` of :data:`~app.itemmodels.covers.COVER_SIDE` at the application's pixel
    ratio, or None while its thumbnails load or without a thumbnail source or pictures; see
    :meth:`cover`), :attr:`CoverIdsRole` (the ids the cover shows), :attr:`StatsRole`
    ("80 photos · 91 %").

    Signals:
        renameRequested(str key, str name): the user typed a new name ("" asks to clear
            an unnamed cluster's name). The model itself does not change.
        moveRequested(list image_ids, str key): image ids dropped on a group.
    """

    KeyRole: ClassVar[int] = _USER + 1
    SizeRole: ClassVar[int] = _USER + 2
    MeanConfidenceRole: ClassVar[int] = _USER + 3
    NameRole: ClassVar[int] = _USER + 4
    ColorRole: ClassVar[int] = _USER + 5
    ClustersRole: ClassVar[int] = _USER + 6
    FlagsRole: ClassVar[int] = _USER + 7
    CoverRole: ClassVar[int] = _USER + 8
    CoverIdsRole: ClassVar[int] = _USER + 9
    StatsRole: ClassVar[int] = _USER + 10
    #: Edge of the colour swatch, in logical pixels.
    SWATCH_SIZE: ClassVar[int] = 16

    renameRequested = Signal(str, str)
    moveRequested = Signal(list, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._groups: list[GroupSummary] = []
        self._swatches: dict[tuple[int, int, int], QIcon] = {}  # colour, text, highlighted
        self._rows: dict[str, int] = {}  # group key -> row
        self._source: ThumbnailCache | None = None
        self._covers = CoverStore()
        # covers waiting for thumbnails: cover -> image id -> image (None until it came)
        self._pending: dict[CoverKey, dict[int, QImage | None]] = {}
        self._wanted_by: dict[int, set[CoverKey]] = {}  # image id -> covers waiting for it

    # ------------------------------------------------------------------ contents
    def set_groups(self, groups: Sequence[GroupSummary]) -> None:
        """Show these groups (in the given order).

        The same keys in the same order update the rows in place (one ``dataChanged`` over
        the changed rows; selections survive); otherwise the model is reset.
        """
        new = list(groups)
        if [g.key for g in new] != [g.key for g in self._groups]:
            self.beginResetModel()
            self._groups = new
            self._rows = {g.key: row for row, g in enumerate(new)}
            self._forget_pending()
            self.endResetModel()
            return
        changed = [row for row, (a, b) in enumerate(zip(self._groups, new, strict=True)) if a != b]
        self._groups = new
        if changed:
            self.dataChanged.emit(self.index(changed[0]), self.index(changed[-1]))

    def set_name(self, key: str, name: str | None) -> None:
        """Show a new name for one group (after the application stored it)."""
        row = self.row_of(key)
        if row < 0:
            raise KeyError(key)
        old = self._groups[row]
        self._groups[row] = GroupSummary(
            old.key,
            name,
            old.clusters,
            old.size,
            old.mean_confidence,
            old.top_image_ids,
            old.labelled,
            old.colour,
            old.flags,
        )
        self.dataChanged.emit(self.index(row), self.index(row))

    def groups(self) -> list[GroupSummary]:
        """The rows' groups, in row order."""
        return list(self._groups)

    def summary(self, row: int) -> GroupSummary:
        """The group shown in a row."""
        return self._groups[row]

    def swatch(self, colour: int) -> QIcon:
        """The swatch of a palette index for the application's current palette (cached):
        outlined in the text colour, and in the highlighted-text colour when selected."""
        palette = QGuiApplication.palette()
        active = QPalette.ColorGroup.Active
        text = palette.color(active, QPalette.ColorRole.Text)
        selected = palette.color(active, QPalette.ColorRole.HighlightedText)
        key = (colour, int(text.rgba()), int(selected.rgba()))
        made = self._swatches.get(key)
        if made is None:
            if len(self._swatches) > 512:
                self._swatches.clear()
            color = group_color(colour)
            on_highlight = QPalette(palette)
            on_highlight.setColor(active, QPalette.ColorRole.Text, selected)
            made = QIcon()
            made.addPixmap(swatch_pixmap(color, self.SWATCH_SIZE, palette), QIcon.Mode.Normal)
            made.addPixmap(
                swatch_pixmap(color, self.SWATCH_SIZE, on_highlight), QIcon.Mode.Selected
            )
            self._swatches[key] = made
        return made

    def row_of(self, key: str) -> int:
        """The row of a group's key, or -1."""
        return self._rows.get(key, -1)

    # ------------------------------------------------------------------ covers
    def set_thumbnail_source(self, cache: ThumbnailCache | None) -> None:
        """Take covers from this cache (the grid's; None shows no covers). Covers composed
        from another cache are forgotten and every row repaints."""
        if cache is self._source:
            return
        if self._source is not None:
            with contextlib.suppress(RuntimeError, TypeError):  # the cache is gone already
                self._source.loaded.disconnect(self._on_thumbnail_loaded)
        self._source = cache
        self._covers.clear()
        self._forget_pending()
        if cache is not None:
            cache.loaded.connect(self._on_thumbnail_loaded)
        if self._groups:
            self.dataChanged.emit(
                self.index(0), self.index(len(self._groups) - 1), [self.CoverRole]
            )

    @property
    def thumbnail_source(self) -> ThumbnailCache | None:
        """Where covers come from."""
        return self._source

    @property
    def cover_store(self) -> CoverStore:
        """The composed covers (for tests and benchmarks)."""
        return self._covers

    def cover(self, row: int, side: int = COVER_SIDE, dpr: float | None = None) -> QPixmap | None:
        """A row's cover, ``side`` logical pixels square at pixel ratio ``dpr`` (default: the
        application's), or None while it loads (or without a thumbnail source or pictures).

        Never decodes: thumbnails not in the cache are requested, and when the last one
        arrives the cover is composed and ``dataChanged`` (:attr:`CoverRole`) repaints the
        row. A composed cover is kept, so painting a row again only draws it.
        """
        source = self._source
        if source is None or not 0 <= row < len(self._groups):
            return None
        group = self._groups[row]
        ids = cover_ids(group.top_image_ids)
        if not ids:
            return None
        if dpr is None:
            app = QGuiApplication.instance()
            dpr = float(app.devicePixelRatio()) if isinstance(app, QGuiApplication) else 1.0
        key: CoverKey = (group.key, ids, int(side), float(dpr))
        made = self._covers.get(key)
        if made is not None:
            return made
        parts = self._pending.get(key)
        if parts is None:
            if len(self._pending) > 4 * max(64, len(self._groups)):
                self._forget_pending()  # requests the cache dropped: ask again below
            parts = self._pending[key] = dict.fromkeys(ids)
        for image_id, image in parts.items():
            if image is not None:
                continue
            image = source.get(image_id)
            if image is None:
                self._wanted_by.setdefault(image_id, set()).add(key)
                source.request(image_id)  # again each paint: rows on screen come first
            else:
                parts[image_id] = image
        return self._compose(key, parts)

    def _compose(self, key: CoverKey, parts: dict[int, QImage | None]) -> QPixmap | None:
        """Compose and keep a cover whose thumbnails all came; None while some are missing."""
        images = [image for image in parts.values() if image is not None]
        if len(images) < len(parts):
            return None
        del self._pending[key]
        for image_id in parts:
            waiting = self._wanted_by.get(image_id)
            if waiting is not None:
                waiting.discard(key)
                if not waiting:
                    del self._wanted_by[image_id]
        cover = compose_cover(images, key[2], key[3])
        self._covers.put(key, cover)
        return cover

    def _forget_pending(self) -> None:
        self._pending.clear()
        self._wanted_by.clear()

    @Slot(int)
    def _on_thumbnail_loaded(self, image_id: int) -> None:
        waiting = self._wanted_by.pop(image_id, None)
        if not waiting or self._source is None:
            return
        image = self._source.get(image_id)
        if image is None:
            return
        rows: set[int] = set()
        for key in waiting:
            parts = self._pending.get(key)
            if parts is None or image_id not in parts:
                continue
            parts[image_id] = image
            if self._compose(key, parts) is not None:
                row = self._rows.get(key[0], -1)
                if row >= 0 and cover_ids(self._groups[row].top_image_ids) == key[1]:
                    rows.add(row)
        for row in sorted(rows):
            index = self.index(row)
            self.dataChanged.emit(index, index, [self.CoverRole])

    @staticmethod
    def tooltip(group: GroupSummary) -> str:
        """Size, labelled pictures, mean confidence, clusters and flags in words."""
        lines = [f"{group.title}: {group.size} images, mean confidence {group.mean_confidence:.2f}"]
        if group.labelled:
            lines.append(f"{group.labelled} labelled or moved here by you")
        if len(group.clusters) > 1:
            clusters = ", ".join(map(str, group.clusters))
            lines.append(f"clusters {clusters} of the run, merged under one name")
        elif not group.clusters:
            lines.append("held by your labels only (no cluster of this run)")
        lines += [f"\u26a0 {flag}" for flag in group.flags]
        return "\n".join(lines)

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._groups)

    def data(self, index: Index, role: int = _DISPLAY) -> Any:
        if not index.isValid() or index.parent().isValid():
            return None
        row = index.row()
        if not 0 <= row < len(self._groups) or index.column() != 0:
            return None
        group = self._groups[row]
        role = int(role)
        if role == _DISPLAY:
            return f"{group.title} ({group.size}){FLAG_MARK if group.flags else ''}"
        if role == _EDIT:
            return group.title
        if role == _DECORATION:
            return self.swatch(group.colour)
        if role == _TOOLTIP:
            return self.tooltip(group)
        if role == self.CoverRole:
            return self.cover(row)
        getter = _ROLE_VALUES.get(role)
        return None if getter is None else getter(group)

    def setData(self, index: Index, value: Any, role: int = _EDIT) -> bool:
        """Announce a rename with :attr:`renameRequested`; the model itself is unchanged.

        Returns:
            Whether a rename was requested (False for an unchanged name or a bad index).
        """
        if int(role) != _EDIT or not index.isValid() or not isinstance(value, str):
            return False
        row = index.row()
        if not 0 <= row < len(self._groups):
            return False
        group = self._groups[row]
        name = _clean(value)
        if name == group.title or (not name and group.name is None):
            return False
        if not name and group.clusters and len(group.clusters) > 1:
            return False  # a merge cannot lose its name: it would be several groups again
        self.renameRequested.emit(group.key, name)
        return True

    def flags(self, index: Index) -> Qt.ItemFlag:
        return list_item_flags(index, Qt.ItemFlag.ItemIsEditable | Qt.ItemFlag.ItemIsDropEnabled)

    def roleNames(self) -> dict[int, QByteArray]:
        names = dict(super().roleNames())
        for role, name in (
            (self.KeyRole, b"key"),
            (self.SizeRole, b"size"),
            (self.MeanConfidenceRole, b"meanConfidence"),
            (self.NameRole, b"name"),
            (self.ColorRole, b"color"),
            (self.ClustersRole, b"clusters"),
            (self.FlagsRole, b"flags"),
            (self.CoverRole, b"cover"),
            (self.CoverIdsRole, b"coverIds"),
            (self.StatsRole, b"stats"),
        ):
            names[role] = QByteArray(name)
        return names

    # ------------------------------------------------------------------ drops
    def mimeTypes(self) -> list[str]:
        return [IMAGE_IDS_MIME]

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction | Qt.DropAction.CopyAction

    def canDropMimeData(
        self, data: QMimeData, action: Qt.DropAction, row: int, column: int, parent: Index
    ) -> bool:
        return self._drop_target(data, row, parent) is not None

    def dropMimeData(
        self, data: QMimeData, action: Qt.DropAction, row: int, column: int, parent: Index
    ) -> bool:
        """Images dropped on a group: emit :attr:`moveRequested`; nothing is inserted."""
        if action == Qt.DropAction.IgnoreAction:
            return True
        target = self._drop_target(data, row, parent)
        if target is None:
            return False
        self.moveRequested.emit(target[0], target[1])
        return True

    def _drop_target(
        self, data: QMimeData, row: int, parent: Index
    ) -> tuple[list[int], str] | None:
        """(image ids, group key) of a drop onto a group row (not between rows)."""
        if not parent.isValid() or not 0 <= parent.row() < len(self._groups):
            return None
        ids = decode_image_ids(data)
        if not ids:
            return None
        return ids, self._groups[parent.row()].key
