"""The "Split cluster" dialog: how many parts, a preview of their sizes, optional names.

The dialog asks a ``planner(parts) -> SplitPlan`` (e.g. ``Annotations.plan_split`` bound to
the run and cluster) for the plan whenever the number of parts changes, shows each part's
cluster, size and share, and lets the user name the parts. It changes nothing itself: after
``exec()`` returns ``Accepted`` the caller applies :meth:`SplitDialog.plan` with
:meth:`SplitDialog.names` and :meth:`SplitDialog.label_parts` through
``Annotations.apply_split`` (one undoable step), so what is applied is what was previewed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.itemmodels.clusters import group_color
from app.theme import readable_color, swatch_pixmap
from crlc_engine.api import MAX_PARTS, CRLCError, SplitPlan, default_cluster_name

Planner = Callable[[int], SplitPlan]
#: Milliseconds to wait after the last change of the number of parts before planning.
PLAN_DELAY_MS = 150
ERROR_RED = "#d32f2f"

_COLUMNS = ("Cluster", "Images", "Share", "Name")


class SplitDialog(QDialog):
    """Split one cluster into parts by k-means on its images' features.

    Args:
        cluster: The cluster to split.
        name: Its stored name (None when unnamed).
        size: Its images that are not ignored (bounds the number of parts).
        planner: ``planner(parts)`` returns the plan or raises a ``CRLCError``.
        parent: Parent widget.
        names_in_use: cluster -> name of the run's other clusters (a part given one of these
            names merges into that cluster; the dialog says so).
        parts: Parts shown first.
    """

    def __init__(
        self,
        cluster: int,
        name: str | None,
        size: int,
        planner: Planner,
        parent: QWidget | None = None,
        names_in_use: Mapping[int, str] | None = None,
        parts: int = 2,
    ) -> None:
        super().__init__(parent)
        self.cluster = cluster
        self.cluster_name = name
        self.images = size
        self._planner = planner
        self._names_in_use = {c: n for c, n in (names_in_use or {}).items() if c != cluster}
        self._plan: SplitPlan | None = None
        self._plan_error: str | None = None
        self._name_edits: list[QLineEdit] = []
        self.setWindowTitle(f"Split {name or default_cluster_name(cluster)}")
        self._build(parts)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PLAN_DELAY_MS)
        self._timer.timeout.connect(self.update_preview)
        self.parts_spin.valueChanged.connect(lambda _: self._timer.start())
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.update_preview()

    # ------------------------------------------------------------------ construction
    def _build(self, parts: int) -> None:
        layout = QVBoxLayout(self)
        shown = self.cluster_name or default_cluster_name(self.cluster)
        intro = QLabel(
            f"<b>{_escape(shown)}</b> holds {self.images} images. They are divided by "
            "similarity (k-means on their features); the largest part keeps the cluster "
            "and its name, the others become new clusters. Ignored images stay. "
            "Edit > Undo reverses the split."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.parts_spin = QSpinBox()
        self.parts_spin.setRange(2, max(2, min(MAX_PARTS, self.images)))
        self.parts_spin.setValue(max(2, min(parts, self.parts_spin.maximum())))
        form.addRow("Number of &parts:", self.parts_spin)
        layout.addLayout(form)
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        for column in range(3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 1)
        self.label_check = QCheckBox(
            "&Label the images with their part's name (so that Refine learns the split)"
        )
        self.label_check.setToolTip(
            "Unlabelled images of each part get the part's name as their label; unnamed "
            "parts are named 'Cluster n'. Labelled images always export to their class."
        )
        self.label_check.toggled.connect(self._revalidate)
        layout.addWidget(self.label_check)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("&Split")
        layout.addWidget(self.buttons)
        self.resize(560, 360)

    # ------------------------------------------------------------------ preview
    def update_preview(self) -> None:
        """Plan the split for the chosen number of parts and show the parts."""
        self._timer.stop()
        parts = self.parts_spin.value()
        if self._plan is not None and len(self._plan.clusters) == parts:
            return
        kept = [e.text() for e in self._name_edits]
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            self._plan, self._plan_error = self._planner(parts), None
        except CRLCError as exc:
            self._plan, self._plan_error = None, str(exc)
        finally:
            QApplication.restoreOverrideCursor()
        self._fill_table(kept)
        self._revalidate()

    def _fill_table(self, previous_names: list[str]) -> None:
        plan = self._plan
        for edit in self._name_edits:  # replaced below; deleted later, never shown again
            edit.hide()
        self._name_edits = []
        self.table.setRowCount(0 if plan is None else len(plan.clusters))
        if plan is None:
            return
        total = max(1, sum(plan.sizes))
        for row, (cluster, size) in enumerate(zip(plan.clusters, plan.sizes, strict=True)):
            what = "kept" if row == 0 else "new"
            item = QTableWidgetItem(f"{default_cluster_name(cluster)} ({what})")
            item.setIcon(QIcon(swatch_pixmap(group_color(cluster), 16, self.palette())))
            self.table.setItem(row, 0, item)
            count = QTableWidgetItem(str(size))
            count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, 1, count)
            share = QTableWidgetItem(f"{100 * size / total:.0f}%")
            share.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, 2, share)
            edit = QLineEdit(previous_names[row] if row < len(previous_names) else "")
            default = (self.cluster_name or default_cluster_name(cluster)) if row == 0 else None
            edit.setPlaceholderText(default or default_cluster_name(cluster))
            edit.setFrame(False)
            edit.textChanged.connect(self._revalidate)
            self.table.setCellWidget(row, 3, edit)
            self._name_edits.append(edit)

    # ------------------------------------------------------------------ values
    def plan(self) -> SplitPlan | None:
        """The previewed plan (None while the number of parts cannot be planned)."""
        return self._plan

    def names(self) -> list[str | None]:
        """One name per part, largest first; None keeps the default (see apply_split)."""
        return [" ".join(e.text().split()) or None for e in self._name_edits]

    def label_parts(self) -> bool:
        """Whether the parts' unlabelled images are to be labelled with the part's name."""
        return self.label_check.isChecked()

    def error(self) -> str | None:
        """Why the split cannot be applied as shown (None when it can)."""
        if self._plan_error is not None:
            return self._plan_error
        if self._plan is None:
            return "No split planned yet."
        final = self._final_names()
        chosen = [n for n in final if n is not None]
        if len(set(chosen)) != len(chosen):
            return "Two parts cannot have the same name."
        if any(len(n) > 200 for n in chosen):
            return "A name can have at most 200 characters."
        return None

    def _final_names(self) -> list[str | None]:
        assert self._plan is not None
        given = self.names()
        final = [given[0] or self.cluster_name, *given[1:]]
        if self.label_parts():
            final = [
                n or default_cluster_name(c)
                for n, c in zip(final, self._plan.clusters, strict=True)
            ]
        return final

    def _revalidate(self) -> None:
        problem = self.error()
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(problem is None)
        if problem is not None:
            base = self.palette().color(QPalette.ColorRole.Window)
            red = readable_color(QColor(ERROR_RED), base, 4.5).name()
            self.message.setText(f'<span style="color:{red}">{_escape(problem)}</span>')
            return
        in_use = set(self._names_in_use.values())
        merges = [
            f"{n!r} is the name of another group: that part joins it"
            for n in self._final_names()[1:]
            if n is not None and n in in_use
        ]
        self.message.setText(_escape("; ".join(merges) + ".") if merges else "")

    def accept(self) -> None:
        """Close with Accepted when the shown plan can be applied."""
        self.update_preview()
        if self.error() is None:
            super().accept()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
