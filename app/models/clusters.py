"""The cluster list of a run as a Qt list model, and the colour of each cluster.

Rows are :class:`crlc_engine.results.ClusterSummary` records. The model never writes: a
name typed into the view is announced with ``renameRequested(cluster, name)`` and images
dropped on a cluster with ``moveRequested(image_ids, cluster)``, so the application can
route both through the undoable :class:`crlc_engine.annotations.Annotations` and then hand
the new summaries back with :meth:`ClusterListModel.set_clusters`.
"""

from __future__ import annotations

from collections.abc import Sequence
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
)
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette

from app.models.thumbnails import IMAGE_IDS_MIME, decode_image_ids
from app.theme import swatch_pixmap
from crlc_engine.annotations import default_cluster_name
from crlc_engine.results import ClusterSummary

# Qt's API is camelCase (signals).
# ruff: noqa: N815

Index = QModelIndex | QPersistentModelIndex

#: Distinguishable colours for the first clusters (the first ten as in the wireframe).
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


def cluster_color(cluster: int) -> QColor:
    """The colour of a cluster index: :data:`PALETTE`, then golden-angle hues (deterministic)."""
    if 0 <= cluster < len(PALETTE):
        return QColor(PALETTE[cluster])
    k = cluster - len(PALETTE)
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


class ClusterListModel(QAbstractListModel):
    """One row per cluster of a run: "name (size)", colour swatch, mean confidence.

    Roles: ``DisplayRole`` "name (size)"; ``EditRole`` the name; ``DecorationRole`` an icon
    of the cluster's :func:`cluster_color` swatch (:func:`app.theme.swatch_pixmap`) outlined
    in the application palette's text colour, so that light colours stay visible on a light
    palette and dark ones on a dark palette, and in its highlighted-text colour on a selected
    row (where the colour is drawn as it is, not tinted with the highlight); made for the
    palette current at paint time;
    ``ToolTipRole`` size and mean confidence; :attr:`ClusterRole` (int index),
    :attr:`SizeRole` (int), :attr:`MeanConfidenceRole` (float), :attr:`NameRole` (the stored
    name, or None when unnamed), :attr:`ColorRole` (the plain :class:`QColor`).

    Signals:
        renameRequested(int cluster, str name): the user typed a new name ("" asks to
            clear a name). The model itself does not change.
        moveRequested(list image_ids, int cluster): image ids dropped on a cluster.
    """

    ClusterRole: ClassVar[int] = _USER + 1
    SizeRole: ClassVar[int] = _USER + 2
    MeanConfidenceRole: ClassVar[int] = _USER + 3
    NameRole: ClassVar[int] = _USER + 4
    ColorRole: ClassVar[int] = _USER + 5
    #: Edge of the colour swatch, in logical pixels.
    SWATCH_SIZE: ClassVar[int] = 16

    renameRequested = Signal(int, str)
    moveRequested = Signal(list, int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._clusters: list[ClusterSummary] = []
        self._swatches: dict[tuple[int, int, int], QIcon] = {}  # cluster, text, highlighted

    # ------------------------------------------------------------------ contents
    def set_clusters(self, clusters: Sequence[ClusterSummary]) -> None:
        """Show these clusters (in the given order).

        The same cluster indices in the same order update the rows in place (one
        ``dataChanged`` over the changed rows; selections survive); otherwise the model
        is reset.
        """
        new = list(clusters)
        if [c.cluster for c in new] != [c.cluster for c in self._clusters]:
            self.beginResetModel()
            self._clusters = new
            self.endResetModel()
            return
        changed = [
            row for row, (a, b) in enumerate(zip(self._clusters, new, strict=True)) if a != b
        ]
        self._clusters = new
        if changed:
            self.dataChanged.emit(self.index(changed[0]), self.index(changed[-1]))

    def set_name(self, cluster: int, name: str | None) -> None:
        """Show a new name for one cluster (after the application stored it)."""
        row = self.row_of(cluster)
        if row < 0:
            raise KeyError(cluster)
        old = self._clusters[row]
        self._clusters[row] = ClusterSummary(
            old.cluster, name, old.size, old.mean_confidence, old.top_image_ids
        )
        self.dataChanged.emit(self.index(row), self.index(row))

    def clusters(self) -> list[ClusterSummary]:
        """The rows' summaries, in row order."""
        return list(self._clusters)

    def summary(self, row: int) -> ClusterSummary:
        """The summary shown in a row."""
        return self._clusters[row]

    def swatch(self, cluster: int) -> QIcon:
        """The colour swatch of a cluster for the application's current palette (cached):
        outlined in the text colour, and in the highlighted-text colour when selected."""
        palette = QGuiApplication.palette()
        active = QPalette.ColorGroup.Active
        text = palette.color(active, QPalette.ColorRole.Text)
        selected = palette.color(active, QPalette.ColorRole.HighlightedText)
        key = (cluster, int(text.rgba()), int(selected.rgba()))
        made = self._swatches.get(key)
        if made is None:
            if len(self._swatches) > 512:
                self._swatches.clear()
            color = cluster_color(cluster)
            on_highlight = QPalette(palette)
            on_highlight.setColor(active, QPalette.ColorRole.Text, selected)
            made = QIcon()
            made.addPixmap(swatch_pixmap(color, self.SWATCH_SIZE, palette), QIcon.Mode.Normal)
            made.addPixmap(
                swatch_pixmap(color, self.SWATCH_SIZE, on_highlight), QIcon.Mode.Selected
            )
            self._swatches[key] = made
        return made

    def row_of(self, cluster: int) -> int:
        """The row of a cluster index, or -1."""
        for row, summary in enumerate(self._clusters):
            if summary.cluster == cluster:
                return row
        return -1

    @staticmethod
    def display_name(summary: ClusterSummary) -> str:
        """The stored name, else ``Cluster <n>`` (0-based, as in the CLI)."""
        return summary.name if summary.name is not None else default_cluster_name(summary.cluster)

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._clusters)

    def data(self, index: Index, role: int = _DISPLAY) -> Any:
        if not index.isValid() or index.parent().isValid():
            return None
        row = index.row()
        if not 0 <= row < len(self._clusters) or index.column() != 0:
            return None
        summary = self._clusters[row]
        role = int(role)
        if role == _DISPLAY:
            return f"{self.display_name(summary)} ({summary.size})"
        if role == _EDIT:
            return self.display_name(summary)
        if role == _DECORATION:
            return self.swatch(summary.cluster)
        if role == self.ColorRole:
            return cluster_color(summary.cluster)
        if role == _TOOLTIP:
            return (
                f"{self.display_name(summary)}: {summary.size} images, "
                f"mean confidence {summary.mean_confidence:.2f}"
            )
        if role == self.ClusterRole:
            return summary.cluster
        if role == self.SizeRole:
            return summary.size
        if role == self.MeanConfidenceRole:
            return summary.mean_confidence
        if role == self.NameRole:
            return summary.name
        return None

    def setData(self, index: Index, value: Any, role: int = _EDIT) -> bool:
        """Announce a rename with :attr:`renameRequested`; the model itself is unchanged.

        Returns:
            Whether a rename was requested (False for an unchanged name or a bad index).
        """
        if int(role) != _EDIT or not index.isValid() or not isinstance(value, str):
            return False
        row = index.row()
        if not 0 <= row < len(self._clusters):
            return False
        summary = self._clusters[row]
        name = _clean(value)
        if name == (summary.name or "") or (
            summary.name is None and name == self.display_name(summary)
        ):
            return False
        self.renameRequested.emit(summary.cluster, name)
        return True

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemIsEditable
            | Qt.ItemFlag.ItemIsDropEnabled
            | Qt.ItemFlag.ItemNeverHasChildren
        )

    def roleNames(self) -> dict[int, QByteArray]:
        names = dict(super().roleNames())
        for role, name in (
            (self.ClusterRole, b"cluster"),
            (self.SizeRole, b"size"),
            (self.MeanConfidenceRole, b"meanConfidence"),
            (self.NameRole, b"name"),
            (self.ColorRole, b"color"),
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
        """Images dropped on a cluster: emit :attr:`moveRequested`; nothing is inserted."""
        if action == Qt.DropAction.IgnoreAction:
            return True
        target = self._drop_target(data, row, parent)
        if target is None:
            return False
        self.moveRequested.emit(target[0], target[1])
        return True

    def _drop_target(
        self, data: QMimeData, row: int, parent: Index
    ) -> tuple[list[int], int] | None:
        """(image ids, cluster) of a drop onto a cluster row (not between rows)."""
        if not parent.isValid() or not 0 <= parent.row() < len(self._clusters):
            return None
        ids = decode_image_ids(data)
        if not ids:
            return None
        return ids, self._clusters[parent.row()].cluster
