"""Item flags shared by the list models: valid rows are enabled, selectable and flat."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt


def list_item_flags(index: QModelIndex | QPersistentModelIndex, extra: Qt.ItemFlag) -> Qt.ItemFlag:
    """The flags of a row of a flat list: ``extra`` (drag, drop, edit...) on top."""
    if not index.isValid():
        return Qt.ItemFlag.NoItemFlags
    return (
        Qt.ItemFlag.ItemIsEnabled
        | Qt.ItemFlag.ItemIsSelectable
        | Qt.ItemFlag.ItemNeverHasChildren
        | extra
    )
