"""The settings dialog: edits a :class:`~app.core.settings_store.Settings` (OK / Cancel /
Restore defaults), checks the workspace folder, and shows where the settings file, the log,
the cache and the workspaces live.

The dialog never applies anything itself: after ``exec()`` returns ``Accepted``,
:meth:`SettingsDialog.settings` is the new value (already saved when a store was given) and
the caller applies it (theme, grid, ...).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.settings_store import (
    AUTO_PRESET,
    THUMBNAIL_SIZES,
    Settings,
    SettingsStore,
    cpu_cores,
    default_scan_workers,
    settings_path,
    validate,
)
from app.theme import readable_color
from app.views.export_preview import MODE_HELP, MODE_NAMES
from crlc_engine.api import DEFAULT_PRESET_RULE, DEVICE_CHOICES, EXPORT_MODES, PRESETS

#: Colour of error messages (made readable on the palette's window colour).
ERROR_RED = "#d32f2f"
THEME_NAMES = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
DEVICE_NAMES = {
    "auto": "Automatic (a GPU when there is one)",
    "cpu": "CPU",
    "cuda": "NVIDIA GPU (CUDA)",
    "mps": "Apple GPU (MPS)",
}


def log_folder() -> Path:
    """The platformdirs log folder of the app."""
    import platformdirs

    return Path(platformdirs.user_log_dir("crlc-organizer"))


def cache_folder() -> Path:
    """The platformdirs cache folder of the app (downloaded model weights)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("crlc-organizer"))


def default_workspace() -> Path:
    """Where workspaces go without a setting: ``$CRLC_WORKSPACE``, else the user data folder."""
    from crlc_engine.api import workspace_base

    return workspace_base(None)


def workspace_problem(text: str) -> tuple[str | None, str]:
    """(error or None, note) for a workspace folder typed by the user ("" = the default)."""
    if not text:
        return None, ""
    problem = validate("workspace", text)
    if problem:
        return f"The workspace folder {problem}.", ""
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            return f"{path} is a file, not a folder.", ""
        if not os.access(path, os.W_OK | os.X_OK):
            return f"You cannot write in {path}.", ""
        return None, ""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"{path} does not exist and cannot be created in {parent}.", ""
    return None, f"{path} will be created."


def _link(path: Path) -> str:
    url = QUrl.fromLocalFile(str(path)).toString()
    text = str(path).replace("&", "&amp;").replace("<", "&lt;")
    return f'<a href="{url}">{text}</a>'


class SettingsDialog(QDialog):
    """Edit the app's settings.

    Args:
        settings: The current settings (shown first).
        parent: Parent widget.
        store: When given, OK saves into it (a failed save shows the error and keeps the
            dialog open).
        logs: The log folder shown (default: :func:`log_folder`).
        cache: The cache folder shown (default: :func:`cache_folder`).
    """

    def __init__(
        self,
        settings: Settings,
        parent: QWidget | None = None,
        store: SettingsStore | None = None,
        logs: Path | None = None,
        cache: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._initial = settings
        self._store = store
        self._settings_file = store.path if store is not None else settings_path()
        self._logs = logs if logs is not None else log_folder()
        self._cache = cache if cache is not None else cache_folder()
        self._build()
        self._load(settings)
        self._connect()
        self._revalidate()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        grid = QGridLayout()
        grid.addWidget(self._appearance_box(), 0, 0)
        grid.addWidget(self._grouping_box(), 0, 1)
        grid.addWidget(self._behaviour_box(), 1, 0)
        grid.addWidget(self._export_box(), 1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self._storage_box())
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setObjectName("settings-error")
        layout.addWidget(self.error_label)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        layout.addWidget(self.buttons)

    def _appearance_box(self) -> QGroupBox:
        box = QGroupBox("Appearance")
        form = QFormLayout(box)
        self.theme_combo = QComboBox()
        for key, text in THEME_NAMES.items():
            self.theme_combo.addItem(text, key)
        self.theme_combo.setToolTip(
            "Follow the system switches between light and dark with your desktop."
        )
        form.addRow("&Theme:", self.theme_combo)
        self.thumbnail_combo = QComboBox()
        for size in THUMBNAIL_SIZES:
            self.thumbnail_combo.addItem(f"{size} px", size)
        form.addRow("T&humbnail size:", self.thumbnail_combo)
        self.neighbors_spin = QSpinBox()
        self.neighbors_spin.setRange(1, 100)
        self.neighbors_spin.setToolTip("How many similar images the detail panel lists.")
        form.addRow("Similar &images shown:", self.neighbors_spin)
        self.low_first_check = QCheckBox("Show the least confident images &first")
        form.addRow(self.low_first_check)
        return box

    def _grouping_box(self) -> QGroupBox:
        box = QGroupBox("Grouping")
        form = QFormLayout(box)
        self.clusters_spin = QSpinBox()
        self.clusters_spin.setRange(2, 1000)
        form.addRow("Default number of &groups:", self.clusters_spin)
        self.preset_combo = QComboBox()
        self.preset_combo.addItem(f"By device ({DEFAULT_PRESET_RULE})", AUTO_PRESET)
        for name, preset in PRESETS.items():
            self.preset_combo.addItem(name, name)
            self.preset_combo.setItemData(
                self.preset_combo.count() - 1, preset.summary, Qt.ItemDataRole.ToolTipRole
            )
        form.addRow("Default &preset:", self.preset_combo)
        self.device_combo = QComboBox()
        for name in DEVICE_CHOICES:
            self.device_combo.addItem(DEVICE_NAMES.get(name, name), name)
        form.addRow("Default &device:", self.device_combo)
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(0, max(64, cpu_cores()))
        self.workers_spin.setSpecialValueText(
            f"Automatic ({default_scan_workers()} of {cpu_cores()} cores)"
        )
        self.workers_spin.setToolTip(
            "Processes that decode images while scanning. Automatic leaves one core for the "
            "window so it stays responsive."
        )
        form.addRow("&Scan processes:", self.workers_spin)
        return box

    def _behaviour_box(self) -> QGroupBox:
        box = QGroupBox("Behaviour")
        form = QFormLayout(box)
        self.reopen_check = QCheckBox("&Reopen the last library at start-up")
        form.addRow(self.reopen_check)
        self.confirm_close_check = QCheckBox("Ask before &closing while a job runs")
        form.addRow(self.confirm_close_check)
        return box

    def _export_box(self) -> QGroupBox:
        box = QGroupBox("Export")
        form = QFormLayout(box)
        self.export_mode_combo = QComboBox()
        for mode in EXPORT_MODES:
            self.export_mode_combo.addItem(MODE_NAMES.get(mode, mode), mode)
            self.export_mode_combo.setItemData(
                self.export_mode_combo.count() - 1,
                MODE_HELP.get(mode, ""),
                Qt.ItemDataRole.ToolTipRole,
            )
        form.addRow("Default &mode:", self.export_mode_combo)
        self.confidence_spin = QDoubleSpinBox()
        self.confidence_spin.setRange(0.0, 1.0)
        self.confidence_spin.setSingleStep(0.05)
        self.confidence_spin.setDecimals(2)
        self.confidence_spin.setToolTip("Less confident images go to the _uncertain folder.")
        form.addRow("Minimum &confidence:", self.confidence_spin)
        return box

    def _storage_box(self) -> QGroupBox:
        box = QGroupBox("Storage")
        form = QFormLayout(box)
        self.workspace_edit = QLineEdit()
        self.workspace_edit.setPlaceholderText(f"Default: {default_workspace()}")
        self.workspace_edit.setClearButtonEnabled(True)
        self.browse_button = QPushButton("&Browse...")
        row = QHBoxLayout()
        row.addWidget(self.workspace_edit, 1)
        row.addWidget(self.browse_button)
        label = QLabel("&Workspace folder:")
        label.setBuddy(self.workspace_edit)
        form.addRow(label, row)
        self.workspace_note = QLabel("")
        self.workspace_note.setWordWrap(True)
        form.addRow("", self.workspace_note)
        self.locations: dict[str, QLabel] = {}
        for key, title in (
            ("workspaces", "Workspaces (caches, runs):"),
            ("settings", "Settings file:"),
            ("logs", "Log folder:"),
            ("cache", "Cache folder:"),
        ):
            label = QLabel("")
            label.setOpenExternalLinks(True)
            label.setWordWrap(True)
            label.setObjectName(f"location-{key}")
            self.locations[key] = label
            form.addRow(title, label)
        self.locations["settings"].setText(_link(self._settings_file))
        self.locations["logs"].setText(_link(self._logs))
        self.locations["cache"].setText(_link(self._cache))
        return box

    def _connect(self) -> None:
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.clicked.connect(self._on_button)
        self.workspace_edit.textChanged.connect(self._revalidate)
        self.browse_button.clicked.connect(self._browse)

    # ------------------------------------------------------------------ values
    def _load(self, settings: Settings) -> None:
        def pick(combo: QComboBox, value: object) -> None:
            row = combo.findData(value)
            combo.setCurrentIndex(max(row, 0))

        pick(self.theme_combo, settings.theme)
        pick(self.thumbnail_combo, settings.thumbnail_size)
        self.neighbors_spin.setValue(settings.neighbors)
        self.low_first_check.setChecked(settings.low_confidence_first)
        self.clusters_spin.setValue(settings.default_clusters)
        pick(self.preset_combo, settings.default_preset)
        pick(self.device_combo, settings.default_device)
        self.workers_spin.setValue(settings.scan_workers)
        self.reopen_check.setChecked(settings.reopen_last_library)
        self.confirm_close_check.setChecked(settings.confirm_close_with_job)
        pick(self.export_mode_combo, settings.export_mode)
        self.confidence_spin.setValue(settings.export_min_confidence)
        self.workspace_edit.setText(settings.workspace)

    def settings(self) -> Settings:
        """The settings as edited (the initial ones for a field whose value is invalid)."""
        values = {
            "theme": self.theme_combo.currentData(),
            "thumbnail_size": self.thumbnail_combo.currentData(),
            "neighbors": self.neighbors_spin.value(),
            "low_confidence_first": self.low_first_check.isChecked(),
            "default_clusters": self.clusters_spin.value(),
            "default_preset": self.preset_combo.currentData(),
            "default_device": self.device_combo.currentData(),
            "scan_workers": self.workers_spin.value(),
            "reopen_last_library": self.reopen_check.isChecked(),
            "confirm_close_with_job": self.confirm_close_check.isChecked(),
            "export_mode": self.export_mode_combo.currentData(),
            "export_min_confidence": round(self.confidence_spin.value(), 2),
            "workspace": self.workspace_edit.text().strip(),
        }
        valid = {k: v for k, v in values.items() if validate(k, v) is None}
        return self._initial.replace(**valid)

    def error(self) -> str | None:
        """Why OK is disabled (None when the values are valid)."""
        problem, _ = workspace_problem(self.workspace_edit.text().strip())
        return problem

    def _revalidate(self) -> None:
        text = self.workspace_edit.text().strip()
        problem, note = workspace_problem(text)
        if not problem and text != self._initial.workspace:
            note = (
                f"{note} " if note else ""
            ) + "Libraries grouped before stay in the old folder; new work goes here."
        self.workspace_note.setText(note)
        self.workspace_note.setVisible(bool(note))
        if problem:
            base = self.palette().color(QPalette.ColorRole.Window)
            red = readable_color(QColor(ERROR_RED), base, 4.5).name()
            text = problem.replace("&", "&amp;").replace("<", "&lt;")
            self.error_label.setText(f'<span style="color:{red}">{text}</span>')
        self.error_label.setVisible(bool(problem))
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(problem is None)
        ok.setToolTip(problem or "")
        shown = Path(text).expanduser() if text and not problem else default_workspace()
        self.locations["workspaces"].setText(_link(shown))

    # ------------------------------------------------------------------ actions
    def _on_button(self, button: QAbstractButton) -> None:
        role = self.buttons.buttonRole(button)
        if role == QDialogButtonBox.ButtonRole.ResetRole:
            self.restore_defaults()

    def restore_defaults(self) -> None:
        """Show the default of every setting (saved only with OK)."""
        self._load(Settings())

    def _browse(self) -> None:
        start = self.workspace_edit.text().strip() or str(default_workspace())
        folder = QFileDialog.getExistingDirectory(self, "Choose the workspace folder", start)
        if folder:
            self.workspace_edit.setText(folder)

    def accept(self) -> None:
        """Save (when a store was given) and close; a failed save keeps the dialog open."""
        if self.error() is not None:
            return
        if self._store is not None:
            try:
                self._store.save(self.settings())
            except OSError as exc:
                QMessageBox.warning(self, "Settings", f"The settings could not be saved:\n{exc}")
                return
        super().accept()
