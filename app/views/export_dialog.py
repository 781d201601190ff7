"""The "Export groups" dialog: where to, how, and a dry-run preview of what will be written.

:class:`ExportDialog` asks for the export folder, the mode (copy, hard link, symlink, move or
CSV only), the confidence threshold below which photos go to ``_uncertain``, and whether to
keep each photo's sub-folders. A preview (per-folder counts and the first files) comes from
:func:`crlc_engine.results.export.plan_export`, which writes nothing: it is recomputed shortly after
each change (debounced), on the GUI thread for up to
:attr:`ExportDialog.BACKGROUND_PREVIEW_ITEMS` photos and on a worker thread above that. The
engine's own checks decide whether the folder is usable (never inside a photo folder); the
dialog shows their message and keeps OK disabled. A folder that cannot be read or written
(an ``OSError`` such as "permission denied") is explained in plain words with what to do
(:func:`~app.views.export_preview.preview_problem`, using :mod:`app.core.error_help`), never
as a raw "[Errno 13] ...". What the preview says comes from :mod:`app.views.export_preview`.
Moving photos needs an explicit "yes". The mode and threshold start from the user's
defaults (the settings' ``export_mode`` and ``export_min_confidence``) when given.

The dialog performs nothing: after ``Accepted`` the caller runs the export with
:meth:`ExportDialog.options` (e.g. through :func:`app.workers.export_job`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

import app.itemmodels  # noqa: F401  (pins None/True/False on affected PySide6 builds)
from app.theme import readable_color
from app.views.export_preview import (
    MODE_HELP,
    MODE_NAMES,
    ExportOptions,
    ExportPreview,
    plural,
    preview_export,
    preview_problem,
    problem_text,
    summary_text,
)
from app.workers import JobRunner, JobWorker
from crlc_engine.api import EXPORT_MODES, CRLCError, ExportItem, JobControl, Reporter

__all__ = ["ExportDialog", "ExportOptions"]

#: Colour of the problem text (made readable on the palette's window colour).
ERROR_RED = "#b00020"


class ExportDialog(QDialog):
    """Export settings with a dry-run preview.

    Args:
        items: The photos with their groups and confidences.
        roots: The library's photo folders (the export folder must lie outside them).
        parent: Parent widget.
        confirm_move: ``confirm(photos) -> bool`` asked before accepting a move (default: a
            question box).
        dest: Export folder to start with.
        mode: Export mode to start with (default ``copy``; e.g. the settings'
            ``export_mode``). An unknown mode is ignored.
        min_confidence: Threshold to start with (default 0; clamped to 0..1).
    """

    #: From this many photos on, the preview is computed on a worker thread.
    BACKGROUND_PREVIEW_ITEMS = 10_000
    #: Pause after the last change before the preview is recomputed.
    PREVIEW_DELAY_MS = 250

    def __init__(
        self,
        items: list[ExportItem],
        roots: Sequence[Path],
        parent: QWidget | None = None,
        confirm_move: Callable[[int], bool] | None = None,
        *,
        dest: str | Path | None = None,
        mode: str | None = None,
        min_confidence: float | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export groups")
        self._items = list(items)
        self._roots = [Path(r) for r in roots]
        self._confirm_move = confirm_move if confirm_move is not None else self._ask_move
        self._background = len(self._items) >= self.BACKGROUND_PREVIEW_ITEMS
        self._preview: ExportPreview | None = None
        self._error: str | None = None
        self._generation = 0
        self._runner: JobRunner | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self._on_timer)
        self._build()
        if dest is not None:
            self.dest_edit.setText(os.fspath(dest))
        if mode is not None and (row := self.mode_combo.findData(mode)) >= 0:
            self.mode_combo.setCurrentIndex(row)
        if min_confidence is not None:
            self.confidence_spin.setValue(min(1.0, max(0.0, float(min_confidence))))
        self._connect()
        self._on_changed()

    # -- construction ------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        layout.addLayout(form)
        self._build_destination(form)
        self._build_mode(form)
        self._build_options(form)
        self._build_preview(layout)

        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)

        self.button_box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button.setText("E&xport")
        layout.addWidget(self.button_box)
        self.setMinimumWidth(580)
        self.resize(640, 520)

        self.setTabOrder(self.dest_edit, self.browse_button)
        self.setTabOrder(self.browse_button, self.mode_combo)
        self.setTabOrder(self.mode_combo, self.confidence_spin)
        self.setTabOrder(self.confidence_spin, self.keep_check)
        self.setTabOrder(self.keep_check, self.preview_tree)
        self.setTabOrder(self.preview_tree, self.ok_button)
        self.dest_edit.setFocus()

    def _build_destination(self, form: QFormLayout) -> None:
        """The export folder: typed, or picked with Browse."""
        roots = "\n".join(os.fspath(r) for r in self._roots) or "(none)"
        self.dest_edit = QLineEdit()
        self.dest_edit.setPlaceholderText("A folder outside your photo folders")
        self.dest_edit.setClearButtonEnabled(True)
        self.dest_edit.setToolTip(
            "The folder that receives one sub-folder per group. It must not be inside your "
            f"photo folders:\n{roots}"
        )
        self.browse_button = QPushButton("&Browse…")
        self.browse_button.setToolTip("Pick the export folder.")
        dest_row = QWidget()
        dest_layout = QHBoxLayout(dest_row)
        dest_layout.setContentsMargins(0, 0, 0, 0)
        dest_layout.addWidget(self.dest_edit, 1)
        dest_layout.addWidget(self.browse_button)
        dest_row.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        label = QLabel("&Export to:")
        label.setBuddy(self.dest_edit)
        form.addRow(label, dest_row)

    def _build_mode(self, form: QFormLayout) -> None:
        """The export mode, with a line saying what it does."""
        self.mode_combo = QComboBox()
        for mode in EXPORT_MODES:
            self.mode_combo.addItem(MODE_NAMES.get(mode, mode), mode)
            self.mode_combo.setItemData(
                self.mode_combo.count() - 1, MODE_HELP.get(mode, ""), Qt.ItemDataRole.ToolTipRole
            )
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData("copy")))
        self.mode_help = QLabel()
        self.mode_help.setWordWrap(True)
        self.mode_help.setStyleSheet("color: palette(placeholder-text);")
        mode_box = QWidget()
        mode_layout = QVBoxLayout(mode_box)
        mode_layout.setContentsMargins(0, 0, 0, 0)
        mode_layout.setSpacing(2)
        mode_layout.addWidget(self.mode_combo)
        mode_layout.addWidget(self.mode_help)
        mode_box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        label = QLabel("&How:")
        label.setBuddy(self.mode_combo)
        form.addRow(label, mode_box)

    def _build_options(self, form: QFormLayout) -> None:
        """The confidence threshold and the sub-folders box."""
        self.confidence_spin = QDoubleSpinBox()
        self.confidence_spin.setRange(0.0, 1.0)
        self.confidence_spin.setDecimals(2)
        self.confidence_spin.setSingleStep(0.05)
        self.confidence_spin.setToolTip(
            "Photos the program is less sure about than this go to a separate _uncertain "
            "folder instead of their group. 0 puts every photo in its group."
        )
        label = QLabel("&Uncertain below:")
        label.setBuddy(self.confidence_spin)
        form.addRow(label, self.confidence_spin)

        self.keep_check = QCheckBox("&Keep sub-folders inside each group")
        self.keep_check.setToolTip(
            "Recreate each photo's folders (below your photo folder) inside its group folder, "
            "instead of putting all of a group's photos side by side."
        )
        form.addRow("", self.keep_check)

    def _build_preview(self, layout: QVBoxLayout) -> None:
        """The preview's summary and its tree of folders and first files."""
        preview_label = QLabel("&Preview (nothing is written yet):")
        layout.addWidget(preview_label)
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        layout.addWidget(self.summary_label)
        self.preview_tree = QTreeWidget()
        self.preview_tree.setColumnCount(2)
        self.preview_tree.setHeaderLabels(["Folder / first files", "Photos"])
        self.preview_tree.setRootIsDecorated(True)
        self.preview_tree.setUniformRowHeights(True)
        self.preview_tree.setMinimumHeight(180)
        header = self.preview_tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.preview_tree.setToolTip("The folders the export creates and the first files in each.")
        preview_label.setBuddy(self.preview_tree)
        layout.addWidget(self.preview_tree, 1)

    def _connect(self) -> None:
        self.dest_edit.textChanged.connect(self._on_changed)
        self.browse_button.clicked.connect(self._browse)
        self.mode_combo.currentIndexChanged.connect(self._on_changed)
        self.confidence_spin.valueChanged.connect(self._on_changed)
        self.keep_check.toggled.connect(self._on_changed)
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)

    # -- state ---------------------------------------------------------------------------------
    @property
    def ok_button(self) -> QPushButton:
        """The button that starts the export."""
        return self.button_box.button(QDialogButtonBox.StandardButton.Ok)

    @property
    def preview(self) -> ExportPreview | None:
        """The latest preview (``None`` while none is valid)."""
        return self._preview

    @property
    def error(self) -> str | None:
        """Why the export cannot start, or ``None``."""
        return self._error

    @property
    def preview_pending(self) -> bool:
        """Whether the preview is out of date (a change not yet recomputed)."""
        return self._preview is None and self._error is None

    def mode(self) -> str:
        """The chosen export mode."""
        return str(self.mode_combo.currentData())

    def options(self) -> ExportOptions:
        """The chosen settings (``dest`` made absolute; empty when no folder was typed)."""
        text = self.dest_edit.text().strip()
        dest = Path(os.path.abspath(os.path.expanduser(text))) if text else Path()
        return ExportOptions(
            dest=dest,
            mode=self.mode(),
            min_confidence=round(self.confidence_spin.value(), self.confidence_spin.decimals()),
            keep_subfolders=self.keep_check.isChecked(),
        )

    def _cheap_problem(self) -> str | None:
        """A problem seen without touching the disk."""
        text = os.path.expanduser(self.dest_edit.text().strip())
        if not text:
            return "Choose the folder to export to."
        if not os.path.isabs(text):
            return "Type the full path of the export folder (or use Browse…)."
        return None

    # -- preview -------------------------------------------------------------------------------
    def _on_changed(self, *_args: Any) -> None:
        self.mode_help.setText(MODE_HELP.get(self.mode(), ""))
        self._generation += 1
        self._preview = None
        problem = self._cheap_problem()
        if problem is not None:
            self._timer.stop()
            self._show(None, problem, hint=True)
            return
        # OK keeps its state until the preview comes (no flicker while typing); accept()
        # recomputes a stale preview anyway
        self._error = None
        self.summary_label.setText("Updating the preview…")
        self._timer.start()

    def _on_timer(self) -> None:
        if self._background:
            self._start_background_preview()
        else:
            self.refresh_preview()

    def refresh_preview(self) -> ExportPreview | None:
        """Recompute the preview now, on this thread; returns it (``None`` on a problem)."""
        self._timer.stop()
        self._generation += 1
        problem = self._cheap_problem()
        if problem is not None:
            self._show(None, problem, hint=True)
            return None
        options = self.options()
        try:
            preview = preview_export(self._items, self._roots, options)
        except (CRLCError, OSError) as error:
            self._show(None, problem_text(*preview_problem(error)))
            return None
        self._show(preview, None)
        return preview

    def _start_background_preview(self) -> None:
        if self._runner is None:
            self._runner = JobRunner(self)
        generation = self._generation
        options = self.options()
        items, roots = self._items, self._roots

        def job(reporter: Reporter, control: JobControl) -> ExportPreview | str:
            try:
                return preview_export(items, roots, options)
            except OSError as error:  # explained here: the worker would call it internal
                return problem_text(*preview_problem(error))

        worker = JobWorker(job, "export preview")
        worker.finished.connect(lambda result: self._on_background_done(generation, result))
        worker.failed.connect(
            lambda kind, message, _details: self._on_background_failed(
                generation, problem_text(kind, message)
            )
        )
        self._runner.start(worker)

    def _on_background_done(self, generation: int, result: object) -> None:
        if generation != self._generation:
            return
        if isinstance(result, ExportPreview):
            self._show(result, None)
        elif isinstance(result, str):
            self._show(None, result)

    def _on_background_failed(self, generation: int, message: str) -> None:
        if generation == self._generation:
            self._show(None, message)

    def _show(self, preview: ExportPreview | None, error: str | None, hint: bool = False) -> None:
        """Show a preview or a problem; ``hint`` problems are not shown in red."""
        self._preview = preview
        self._error = error
        self.preview_tree.clear()
        window = self.palette().color(QPalette.ColorRole.Window)
        red = readable_color(QColor(ERROR_RED), window, 4.5)
        self.error_label.setStyleSheet(f"color: {red.name()};")
        self.error_label.setVisible(error is not None and not hint)
        self.error_label.setText("" if error is None or hint else error)
        if error is not None and not hint:
            error = error[:1].upper() + error[1:]
            self._error = error
            self.error_label.setText(error)
        if preview is None:
            self.summary_label.setText(
                error if hint and error else "No preview until the problem below is fixed."
            )
            self.ok_button.setEnabled(False)
            return
        self.summary_label.setText(summary_text(preview))
        self._fill_tree(preview)
        if preview.files == 0:
            self._error = "No photo to export: every photo is ignored or missing."
            self.error_label.setText(self._error)
            self.error_label.setVisible(True)
        self.ok_button.setEnabled(self._error is None)

    def _fill_tree(self, preview: ExportPreview) -> None:
        """One row per folder with its count, its first files below, then how many more."""
        for folder, count in preview.folders.items():
            top = QTreeWidgetItem([folder + "/", f"{count:,}"])
            top.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            names = preview.first_files.get(folder, [])
            for name in names:
                below = name[len(folder) + 1 :] if name.startswith(folder + "/") else name
                top.addChild(QTreeWidgetItem([below, ""]))
            if count > len(names):
                more = QTreeWidgetItem([f"… and {count - len(names):,} more", ""])
                more.setDisabled(True)
                top.addChild(more)
            self.preview_tree.addTopLevelItem(top)
        self.preview_tree.expandAll()

    # -- actions -------------------------------------------------------------------------------
    def _browse(self) -> None:
        start = self.dest_edit.text().strip() or os.path.expanduser("~")
        folder = QFileDialog.getExistingDirectory(self, "Choose the export folder", start)
        if folder:
            self.dest_edit.setText(folder)

    def _ask_move(self, count: int) -> bool:
        answer = QMessageBox.question(
            self,
            "Move photos?",
            f"Move {plural(count, 'photo')} out of your photo folders into "
            f"{self.options().dest}?\n\nThe photos will no longer be in their current "
            "folders. You can undo the export later.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def accept(self) -> None:
        """Close with ``Accepted`` once the export folder is usable (and a move confirmed)."""
        preview = self._preview
        if preview is None or preview.options != self.options():
            preview = self.refresh_preview()
        if preview is None or self._error is not None:
            return
        if preview.options.mode == "move" and not self._confirm_move(preview.to_write):
            return
        super().accept()

    def done(self, result: int) -> None:
        """Close; waits for a running background preview to end first."""
        self._timer.stop()
        if self._runner is not None:
            self._runner.shutdown()
        super().done(result)
