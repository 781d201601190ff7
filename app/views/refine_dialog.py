"""The Refine dialog: what a CRLC-semi refinement will do, its length and device, an estimate.

Like the Group dialog, nothing starts before the user has read what will happen: how many
labelled pictures in how many groups, that groups without labels stay free, the length
(epochs or a time budget), the device, and the time and disk the run will take.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.views.form_widgets import DeviceProbe, set_item_enabled
from crlc_engine.api import DeviceOptions, TrainingEstimate, resolve_device

__all__ = ["RefineChoice", "RefineDialog", "RefineEstimator", "describe_labels"]

#: ``(epochs, minutes, device_kind) -> estimate`` of the refine run (None: no estimate).
RefineEstimator = Callable[[int | None, float | None, str], TrainingEstimate | None]

#: One sentence on the method, shown in the dialog.
CRLC_SEMI = (
    "CRLC-semi continues this grouping's network and adds a cross-entropy term on your "
    "labelled pictures: each labelled group becomes one class (also a group merged from "
    "several clusters), while the groups without labels stay free to change."
)

_DEVICE_TEXTS = {
    "auto": "Automatic",
    "cpu": "Processor (CPU)",
    "cuda": "NVIDIA GPU (CUDA)",
    "mps": "Apple GPU (MPS)",
}


@dataclass(frozen=True)
class RefineChoice:
    """What the user chose: a length in epochs or minutes (one is ``None``) and a device."""

    epochs: int | None
    minutes: float | None
    device: str


def describe_labels(labels: Mapping[int, str], groups: int) -> str:
    """One sentence: how many labelled pictures in how many groups, the biggest named.

    Args:
        labels: Image id -> group name (ignored pictures left out).
        groups: How many groups the run shows.
    """
    per_group = Counter(labels.values())
    if not per_group:
        return "There are no labelled pictures yet."
    shown = ", ".join(
        f"{name} ({count})" for name, count in sorted(per_group.items(), key=lambda x: -x[1])[:4]
    )
    more = f" and {len(per_group) - 4} more" if len(per_group) > 4 else ""
    free = max(0, groups - len(per_group))
    pictures = "picture" if len(labels) == 1 else "pictures"
    in_groups = "group" if len(per_group) == 1 else "groups"
    free_text = (
        f"; the other {free} {'group is' if free == 1 else 'groups are'} not forced anywhere"
        if free
        else ""
    )
    return (
        f"{len(labels):,} labelled {pictures} in {len(per_group)} {in_groups}: "
        f"{shown}{more}{free_text}."
    )


class RefineDialog(QDialog):
    """Settings of a refinement with labels (CRLC-semi).

    Args:
        labels: Image id -> group name of the labelled (and moved) pictures.
        groups: How many groups the shown run has.
        default_epochs: The refine length the engine would choose.
        estimate: Gives the estimate of a choice (see :data:`RefineEstimator`).
        parent: Parent widget.
        device_probe: As in :class:`~app.views.group_dialog.GroupDialog`.
        default_device: The user's default device request (settings), if available.
    """

    def __init__(
        self,
        labels: Mapping[int, str],
        groups: int,
        default_epochs: int,
        estimate: RefineEstimator,
        parent: QWidget | None = None,
        device_probe: DeviceProbe = resolve_device,
        default_device: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Refine with labels")
        self._estimate = estimate
        self._devices = DeviceOptions.probe(device_probe)
        self._has_labels = bool(labels)

        self.what = QLabel(describe_labels(labels, groups))
        self.what.setWordWrap(True)
        self.method = QLabel(CRLC_SEMI)
        self.method.setWordWrap(True)
        self.method.setStyleSheet("color: palette(placeholder-text);")

        length = self._build_length(default_epochs)
        self.device_combo = self._device_combo(default_device)

        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Length:", length)
        form.addRow("Device:", self.device_combo)
        self.button_box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button.setText("Refine")
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.what)
        layout.addWidget(self.method)
        layout.addLayout(form)
        layout.addWidget(self.estimate_label)
        layout.addWidget(self.button_box)

        for signal in (
            self.epochs_radio.toggled,
            self.epochs_spin.valueChanged,
            self.minutes_spin.valueChanged,
            self.device_combo.currentIndexChanged,
        ):
            signal.connect(self._update)
        self._update()
        self.resize(520, self.sizeHint().height())

    def _build_length(self, default_epochs: int) -> QHBoxLayout:
        """Epochs or a time budget, in one row."""
        self.epochs_radio = QRadioButton("Epochs")
        self.minutes_radio = QRadioButton("Time budget")
        length_mode = QButtonGroup(self)
        length_mode.addButton(self.epochs_radio)
        length_mode.addButton(self.minutes_radio)
        self.epochs_radio.setChecked(True)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setValue(max(1, int(default_epochs)))
        self.epochs_spin.setToolTip("Passes over all photos; the default is a quarter of the run's")
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.5, 10_080.0)
        self.minutes_spin.setDecimals(1)
        self.minutes_spin.setSuffix(" min")
        self.minutes_spin.setValue(5.0)
        length = QHBoxLayout()
        for widget in (self.epochs_radio, self.epochs_spin, self.minutes_radio, self.minutes_spin):
            length.addWidget(widget)
        length.addStretch(1)
        return length

    def _device_combo(self, default_device: str | None) -> QComboBox:
        """Every device; those unavailable here shown greyed, with the reason."""
        combo = QComboBox()
        for request, text in _DEVICE_TEXTS.items():
            combo.addItem(text, request)
            note = self._devices.note(request)
            if note is not None:  # unavailable here: shown, greyed, with the reason
                row = combo.count() - 1
                combo.setItemData(row, note, Qt.ItemDataRole.ToolTipRole)
                set_item_enabled(combo, row, False)
        if default_device and self._devices.usable(default_device):
            combo.setCurrentIndex(combo.findData(default_device))
        return combo

    @property
    def ok_button(self) -> QPushButton:
        """The button that starts the refinement."""
        return self.button_box.button(QDialogButtonBox.StandardButton.Ok)

    def device_kind(self) -> str:
        """The device the run would use (``auto`` resolved)."""
        return self._devices.kind(str(self.device_combo.currentData()))

    def choice(self) -> RefineChoice:
        """The chosen length and device."""
        if self.minutes_radio.isChecked():
            return RefineChoice(None, float(self.minutes_spin.value()), self.device_combo_value())
        return RefineChoice(int(self.epochs_spin.value()), None, self.device_combo_value())

    def device_combo_value(self) -> str:
        """The chosen device request: ``auto``, ``cpu``, ``cuda`` or ``mps``."""
        return str(self.device_combo.currentData())

    def _update(self, *_args: object) -> None:
        by_epochs = self.epochs_radio.isChecked()
        self.epochs_spin.setEnabled(by_epochs)
        self.minutes_spin.setEnabled(not by_epochs)
        self.ok_button.setEnabled(self._has_labels)
        if not self._has_labels:
            self.estimate_label.setText(
                "Label a few pictures first (select them, press L), or move them (M)."
            )
            return
        choice = self.choice()
        try:
            estimate = self._estimate(choice.epochs, choice.minutes, self.device_kind())
        except Exception as error:  # an estimate must never stop the dialog
            self.estimate_label.setText(f"No estimate: {error}")
            return
        self.estimate_label.setText(estimate.text() if estimate is not None else "")
