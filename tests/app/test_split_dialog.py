"""The "Split cluster" dialog: preview of the part sizes, names, applying what was shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QDialogButtonBox, QLineEdit, QTableWidgetItem
from pytestqt.qtbot import QtBot

from app.views.split_dialog import SplitDialog
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.library import Catalog
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.results.cluster_split import SplitPlan

#: Cluster 0: two tight sub-groups of 9 and 5 images; cluster 1: 4 images.
SIZES = (9, 5, 4)


@pytest.fixture
def notes(tmp_path: Path) -> Annotations:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    roots = catalog.ensure_roots([tmp_path])
    catalog.begin()
    for k in range(sum(SIZES)):
        catalog.insert_image(roots[tmp_path], f"img{k}.jpg", 10, 10)
    catalog.commit()
    rng = np.random.default_rng(0)
    directions = np.eye(3, 8)
    group = np.repeat([0, 1, 2], SIZES)
    feats = (directions[group] + 0.05 * rng.normal(size=(len(group), 8))).astype(np.float32)
    clusters = (group == 2).astype(np.int64)  # sub-groups 0 and 1 -> cluster 0
    probs = np.full((len(group), 2), 0.2, dtype=np.float32)
    probs[np.arange(len(group)), clusters] = 0.8
    ResultStore(catalog).write("r1", np.arange(1, len(group) + 1), probs, feats)
    annotations = Annotations(catalog)
    annotations.name_cluster("r1", 0, "Animals")
    annotations.name_cluster("r1", 1, "Cars")
    return annotations


def make(qtbot: QtBot, notes: Annotations, parts: int = 2) -> SplitDialog:
    dialog = SplitDialog(
        0,
        "Animals",
        SIZES[0] + SIZES[1],
        lambda k: notes.plan_split("r1", 0, k),
        names_in_use=notes.names("r1"),
        parts=parts,
    )
    qtbot.addWidget(dialog)
    return dialog


def ok(dialog: SplitDialog) -> bool:
    return dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()


def cell(dialog: SplitDialog, row: int, column: int) -> QTableWidgetItem:
    item = dialog.table.item(row, column)
    assert item is not None
    return item


def names_column(dialog: SplitDialog) -> list[QLineEdit]:
    edits = [dialog.table.cellWidget(row, 3) for row in range(dialog.table.rowCount())]
    assert all(isinstance(e, QLineEdit) for e in edits)
    return edits  # type: ignore[return-value]


def test_the_preview_shows_the_part_sizes(qtbot: QtBot, notes: Annotations) -> None:
    dialog = make(qtbot, notes)
    assert dialog.table.rowCount() == 2
    assert [cell(dialog, r, 1).text() for r in range(2)] == ["9", "5"]
    assert [cell(dialog, r, 2).text() for r in range(2)] == ["64%", "36%"]
    assert cell(dialog, 0, 0).text() == "Cluster 0 (kept)"
    assert cell(dialog, 1, 0).text() == "Cluster 2 (new)"
    assert not cell(dialog, 1, 0).icon().isNull()  # the colour swatch
    assert names_column(dialog)[0].placeholderText() == "Animals"
    assert ok(dialog) and dialog.error() is None
    assert notes.history()[-1][1].startswith("name")  # previewing changed nothing


def test_changing_the_parts_replans_after_a_pause(qtbot: QtBot, notes: Annotations) -> None:
    calls: list[int] = []

    def planner(parts: int) -> SplitPlan:
        calls.append(parts)
        return notes.plan_split("r1", 0, parts)

    dialog = SplitDialog(0, "Animals", 14, planner)
    qtbot.addWidget(dialog)
    names_column(dialog)[1].setText("Cats")
    dialog.parts_spin.setValue(3)
    dialog.parts_spin.setValue(4)
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 4, timeout=2000)
    assert calls == [2, 4]  # one plan for the last value only
    sizes = [int(cell(dialog, r, 1).text()) for r in range(4)]
    assert sum(sizes) == 14 and sizes == sorted(sizes, reverse=True)
    assert names_column(dialog)[1].text() == "Cats"  # typed names survive a re-plan


def test_names_are_checked(qtbot: QtBot, notes: Annotations) -> None:
    dialog = make(qtbot, notes)
    edits = names_column(dialog)
    edits[1].setText("Animals")  # the kept part's name
    assert not ok(dialog) and "same name" in (dialog.error() or "")
    assert "same name" in dialog.message.text()
    edits[1].setText("Cars")  # another cluster's name: merges, allowed
    assert ok(dialog)
    assert "another group" in dialog.message.text()
    edits[1].setText("  Big   cats ")
    assert dialog.names() == [None, "Big cats"]


def test_labelling_names_the_unnamed_parts(qtbot: QtBot, notes: Annotations) -> None:
    notes.name_cluster("r1", 0, "Cluster 2")  # would clash with part 1's default name
    dialog = SplitDialog(
        0, "Cluster 2", 14, lambda k: notes.plan_split("r1", 0, k), names_in_use={}
    )
    qtbot.addWidget(dialog)
    assert ok(dialog)
    dialog.label_check.setChecked(True)
    assert dialog.label_parts() and not ok(dialog)
    names_column(dialog)[1].setText("Dogs")
    assert ok(dialog)


def test_a_planning_error_is_shown(qtbot: QtBot) -> None:
    def planner(parts: int) -> SplitPlan:
        raise InvalidSettingError(f"cannot make {parts} parts")

    dialog = SplitDialog(3, None, 10, planner)
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Split Cluster 3"
    assert not ok(dialog) and dialog.plan() is None
    assert "cannot make 2 parts" in dialog.message.text()
    dialog.accept()
    assert dialog.result() != SplitDialog.DialogCode.Accepted


def test_the_parts_are_bounded_by_the_images(qtbot: QtBot, notes: Annotations) -> None:
    dialog = SplitDialog(0, None, 3, lambda k: notes.plan_split("r1", 0, k))
    qtbot.addWidget(dialog)
    assert (dialog.parts_spin.minimum(), dialog.parts_spin.maximum()) == (2, 3)


def test_what_is_applied_is_what_was_previewed(qtbot: QtBot, notes: Annotations) -> None:
    dialog = make(qtbot, notes)
    names_column(dialog)[1].setText("Cats")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert dialog.result() == SplitDialog.DialogCode.Accepted
    plan = dialog.plan()
    assert plan is not None
    notes.apply_split(plan, dialog.names(), dialog.label_parts())
    clusters = ResultStore(notes.catalog).load("r1").cluster_of()
    assert {i for i, c in clusters.items() if c == 2} == set(plan.image_ids[1].tolist())
    assert set(plan.image_ids[1].tolist()) == set(range(10, 15))  # the 5-image sub-group
    assert notes.names("r1") == {0: "Animals", 1: "Cars", 2: "Cats"}
    notes.undo()
    assert notes.names("r1") == {0: "Animals", 1: "Cars"}
