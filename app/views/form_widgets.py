"""Small pieces the settings dialogs share: lists of named choices and labelled form rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

import app.itemmodels  # noqa: F401  (pins None/True/False on affected PySide6 builds)
from crlc_engine.api import DeviceChoice

__all__ = [
    "DeviceProbe",
    "add_row",
    "choice_combo",
    "combo_item_enabled",
    "select_data",
    "set_item_enabled",
]

#: ``probe(request) -> DeviceChoice``, raising a ``CRLCError`` for an unavailable device.
DeviceProbe = Callable[[str], DeviceChoice]


def choice_combo(names: Sequence[str], texts: dict[str, str], tooltip: str) -> QComboBox:
    """A list of ``names`` (item data) shown with ``texts`` (the name where there is none)."""
    combo = QComboBox()
    for name in names:
        combo.addItem(texts.get(name, name), name)
    combo.setToolTip(tooltip)
    return combo


def select_data(combo: QComboBox, value: Any) -> None:
    """Select the item whose data is ``value`` (the first item when none is)."""
    combo.setCurrentIndex(max(0, combo.findData(value)))


def set_item_enabled(combo: QComboBox, row: int, enabled: bool) -> None:
    """Grey out (or enable) item ``row`` of ``combo``."""
    model = combo.model()
    if isinstance(model, QStandardItemModel):
        item = model.item(row)
        if item is not None:
            item.setEnabled(enabled)


def combo_item_enabled(combo: QComboBox, row: int) -> bool:
    """Whether item ``row`` of ``combo`` can be chosen."""
    model = combo.model()
    flags = model.flags(model.index(row, 0))
    return bool(flags & Qt.ItemFlag.ItemIsEnabled)


def add_row(form: QFormLayout, text: str, field: QWidget) -> QLabel:
    """Add ``field`` with a label whose mnemonic focuses it; lists and boxes get wide."""
    if not isinstance(field, QSpinBox | QDoubleSpinBox):
        field.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    label = QLabel(text)
    label.setBuddy(field)
    form.addRow(label, field)
    return label
