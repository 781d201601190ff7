"""A dialog listing files with a reason each (skipped by a scan, failed in an export).

The table is a small read-only model (fast for thousands of rows), sortable by either
column; long paths are shortened in the middle (the file name stays readable) with the full
path in the tooltip; "Copy list" puts every row on the clipboard as tab-separated text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

import app.itemmodels  # noqa: F401  (pins None/True/False on affected PySide6 builds)

__all__ = ["FileListDialog", "FileListModel", "skipped_files_dialog"]

Index = QModelIndex | QPersistentModelIndex


class FileListModel(QAbstractTableModel):
    """Rows of (path, reason)."""

    def __init__(
        self,
        rows: Sequence[tuple[str, str]],
        headers: tuple[str, str] = ("File", "Reason"),
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.rows = [(str(p), str(r)) for p, r in rows]
        self.headers = headers

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else 2

    def data(self, index: Index, role: int = int(Qt.ItemDataRole.DisplayRole)) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        if role in (int(Qt.ItemDataRole.DisplayRole), int(Qt.ItemDataRole.ToolTipRole)):
            return self.rows[index.row()][index.column()]
        return None

    def headerData(
        self,
        section: int,
        orientation: Qt.Orientation,
        role: int = int(Qt.ItemDataRole.DisplayRole),
    ) -> Any:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == int(Qt.ItemDataRole.DisplayRole)
            and 0 <= section < 2
        ):
            return self.headers[section]
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        self.rows.sort(
            key=lambda row: (row[column].lower(), row[1 - column].lower()),
            reverse=order == Qt.SortOrder.DescendingOrder,
        )
        self.layoutChanged.emit()

    def as_text(self) -> str:
        """Every row as ``path<TAB>reason`` lines, with a header line."""
        lines = ["\t".join(self.headers), *("\t".join(row) for row in self.rows)]
        return "\n".join(lines) + "\n"


class FileListDialog(QDialog):
    """A table of files with a reason each, and "Copy list".

    Args:
        title: Window title.
        intro: One or two sentences above the table.
        rows: (path, reason) pairs.
        parent: Parent widget.
    """

    def __init__(
        self,
        title: str,
        intro: str,
        rows: Sequence[tuple[str, str]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.model = FileListModel(rows, parent=self)
        self.intro = QLabel(intro)
        self.intro.setWordWrap(True)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # a file's name stays seen
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton("&Copy list")
        self.copy_button.setToolTip("Copy every file and reason (tab-separated)")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.copy_button.clicked.connect(self.copy_list)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(760, 420)

    def copy_list(self) -> None:
        """Put the whole list on the clipboard."""
        QGuiApplication.clipboard().setText(self.model.as_text())
        self.copy_button.setText("Copied")


def skipped_files_dialog(
    rows: Sequence[tuple[str, str]], parent: QWidget | None = None
) -> FileListDialog:
    """The list of files a scan could not use."""
    count = len(rows)
    noun = "file or folder was" if count == 1 else "files or folders were"
    return FileListDialog(
        "Skipped files",
        f"{count:,} {noun} not used; the reason is next to each. They stay where they "
        "are: fix or convert them, then scan again (Images > Scan the folders again, F5) "
        "to include them.",
        rows,
        parent,
    )
