"""The Refine dialog: what it will do, length, device, estimate; nothing starts unasked."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.views.refine_dialog import CRLC_SEMI, RefineDialog, describe_labels
from crlc_engine.core.config import TrainConfig
from crlc_engine.pipeline.estimate import estimate_training
from tests.app.test_dialogs import fake_probe


def test_the_labels_in_words() -> None:
    assert describe_labels({}, 5) == "There are no labelled pictures yet."
    assert describe_labels({1: "Dog"}, 1) == "1 labelled picture in 1 group: Dog (1)."
    labels = {1: "Dog", 2: "Dog", 3: "Cat", 4: "Dog", 5: "Cat", 6: "Fish"}
    assert describe_labels(labels, 5) == (
        "6 labelled pictures in 3 groups: Dog (3), Cat (2), Fish (1); the other 2 groups "
        "are not forced anywhere."
    )
    many = {i: f"G{i % 6}" for i in range(12)}
    assert "G0 (2), G1 (2), G2 (2), G3 (2) and 2 more." in describe_labels(many, 6)


def make_dialog(qtbot: QtBot, labels: dict[int, str], calls: list[Any]) -> RefineDialog:
    base = TrainConfig(clusters=4, preset="cpu", epochs=40, image_size=32)

    def estimate(epochs: int | None, minutes: float | None, kind: str) -> Any:
        calls.append((epochs, minutes, kind))
        return estimate_training(base.replace(epochs=epochs, minutes=minutes), 400, kind)

    dialog = RefineDialog(labels, 4, 10, estimate, device_probe=fake_probe("cpu"))
    qtbot.addWidget(dialog)
    return dialog


def test_what_it_does_options_and_an_estimate(qtbot: QtBot) -> None:
    calls: list[Any] = []
    dialog = make_dialog(qtbot, {1: "Dog", 2: "Dog", 3: "Cat"}, calls)
    assert dialog.what.text().startswith("3 labelled pictures in 2 groups: Dog (2), Cat (1)")
    assert dialog.method.text() == CRLC_SEMI and "CRLC-semi" in CRLC_SEMI
    assert dialog.ok_button.isEnabled() and dialog.ok_button.text() == "Refine"
    assert dialog.epochs_spin.value() == 10 and calls[-1] == (10, None, "cpu")
    first = dialog.estimate_label.text()
    assert first.startswith("About") and "10 epochs" in first
    dialog.epochs_spin.setValue(20)
    assert calls[-1] == (20, None, "cpu") and dialog.estimate_label.text() != first
    dialog.minutes_radio.setChecked(True)
    dialog.minutes_spin.setValue(3.0)
    assert calls[-1] == (None, 3.0, "cpu") and "Time budget" in dialog.estimate_label.text()
    assert not dialog.epochs_spin.isEnabled()
    choice = dialog.choice()
    assert (choice.epochs, choice.minutes, choice.device) == (None, 3.0, "auto")


def test_an_unavailable_device_is_greyed_and_no_labels_cannot_start(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, {}, [])
    assert not dialog.ok_button.isEnabled()
    assert "Label a few pictures first" in dialog.estimate_label.text()
    row = dialog.device_combo.findData("cuda")
    model = dialog.device_combo.model()
    assert row >= 0 and not model.flags(model.index(row, 0)) & Qt.ItemFlag.ItemIsEnabled


def test_a_failing_estimate_is_said_not_raised(qtbot: QtBot) -> None:
    def broken(epochs: int | None, minutes: float | None, kind: str) -> Any:
        raise ValueError("no speed known")

    dialog = RefineDialog({1: "Dog"}, 2, 5, broken, device_probe=fake_probe("cpu"))
    qtbot.addWidget(dialog)
    assert dialog.estimate_label.text() == "No estimate: no speed known"
    assert dialog.ok_button.isEnabled()
