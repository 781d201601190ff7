"""The finished pieces wired into the main window: split, merge, settings, theme, icons,
About, confirm-close, start-up (a scanned library with a written run; nothing is trained)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication, QMenu, QMessageBox
from pytestqt.qtbot import QtBot

from app import main as app_main
from app.controllers import corrections as corrections_module
from app.controllers import export as export_module
from app.controllers import library as library_module
from app.core.settings_store import Settings, SettingsStore, settings_path
from app.engine_jobs import scan_job
from app.itemmodels.clusters import GroupListModel
from app.main import open_main_window
from app.theme import DARK, contrast_ratio, is_dark, make_palette
from app.views import export_dialog, group_dialog, main_window, split_dialog
from app.views.about_dialog import device_rows
from app.views.error_dialog import ErrorDialog
from app.views.main_window import MainWindow
from app.views.plots import ClusterSizeBars, LossPlot, chart_colors
from app.views.settings_dialog import SettingsDialog
from app.workers import JobWorker
from crlc_engine.core.control import JobControl
from crlc_engine.core.events import Reporter
from tests.app.conftest import made_then_torn_down


@pytest.fixture
def store(tmp_path: Path) -> SettingsStore:
    """A settings file of the test's own (the user's is never touched)."""
    return SettingsStore(tmp_path / "config" / "settings.json")


@pytest.fixture
def make_window(qtbot: QtBot, store: SettingsStore) -> Iterator[Callable[..., MainWindow]]:
    """Windows on the test's settings file; closed (no thread left) at the end."""

    def make(**kwargs: Any) -> MainWindow:
        window = MainWindow(store=kwargs.pop("store", store), **kwargs)
        qtbot.addWidget(window)
        return window

    def close(window: MainWindow) -> None:
        window.close()
        assert not window.runner.running

    yield from made_then_torn_down(make, close)


@pytest.fixture
def opened(make_window: Callable[..., MainWindow], library: tuple[Path, Path]) -> MainWindow:
    """A window showing the library's run, the largest cluster selected."""
    folder, ws = library
    window = make_window(workspace=ws)
    window.open_folders([folder], scan=False)
    assert window.session is not None and window.session.has_results
    return window


def rows(window: MainWindow) -> dict[str, int]:
    """group key -> size, as the group list shows them."""
    model = window.group_model
    return {
        model.data(model.index(r), GroupListModel.KeyRole): model.data(
            model.index(r), GroupListModel.SizeRole
        )
        for r in range(model.rowCount())
    }


def select_group(window: MainWindow, key: str) -> None:
    window.group_list.setCurrentIndex(window.group_model.index(window.group_model.row_of(key)))


def choose_in_menu(monkeypatch: pytest.MonkeyPatch, title: str, offered: list[list[str]]) -> None:
    """A stand-in for a popup menu: record the entries, choose the one called ``title``."""

    def run(menu: QMenu, where: Any) -> Any:
        actions = [a for a in menu.actions() if not a.isSeparator()]
        offered.append([a.text() for a in actions])
        return next(a for a in actions if a.text() == title)

    monkeypatch.setattr(corrections_module, "popup", run)


def grid_ids(window: MainWindow) -> set[int]:
    assert window.grid_model is not None
    return {int(i) for i in window.grid_model.image_ids()}


def error_dialogs(window: MainWindow) -> list[ErrorDialog]:
    return [d for d in window.findChildren(ErrorDialog) if d.isVisible()]


# ---------------------------------------------------------------------- split, merge
def accept_split(parts: int, names: dict[int, str]) -> Callable[[Any], int]:
    """A stand-in for SplitDialog.exec: choose ``parts`` and names, press Split."""

    def run(dialog: split_dialog.SplitDialog) -> int:
        dialog.parts_spin.setValue(parts)
        dialog.update_preview()
        for row, name in names.items():
            dialog._name_edits[row].setText(name)
        dialog.accept()
        return int(dialog.result())

    return run


def test_split_through_the_window(
    opened: MainWindow, monkeypatch: pytest.MonkeyPatch, qtbot: QtBot
) -> None:
    window = opened
    session = window.session
    assert session is not None
    key = window.browsing.current_group()
    assert key is not None and window.split_action.isEnabled()
    assert window.split_action in window.group_list.actions()  # the list's context menu
    before = rows(window)
    shown: list[split_dialog.SplitDialog] = []

    def run(dialog: split_dialog.SplitDialog) -> int:
        shown.append(dialog)
        return accept_split(3, {1: "Dunes"})(dialog)

    monkeypatch.setattr(split_dialog.SplitDialog, "exec", run)
    window.split_action.trigger()
    (dialog,) = shown
    plan = dialog.plan()
    assert plan is not None and dialog.images == before[key]
    _, other = plan.new_clusters

    after = rows(window)  # the list: the kept part and two new groups
    assert after == {
        **before,
        key: plan.sizes[0],
        "group:Dunes": plan.sizes[1],
        f"cluster:{other}": plan.sizes[2],
    }
    assert window.browsing.current_group() == key  # the kept part stays selected
    assert grid_ids(window) == set(plan.image_ids[0].tolist())
    assert "Split" in window.statusBar().currentMessage()

    select_group(window, "group:Dunes")  # the grid and the detail panel of a new group
    assert grid_ids(window) == set(plan.image_ids[1].tolist())
    assert "<b>Dunes</b> · " in window.grid_title.text()
    assert window.grid_model is not None
    window.grid.setCurrentIndex(window.grid_model.index(0))
    text = window.detail.probabilities.text()
    assert text.startswith("<b>Dunes</b>: made by a split") and text.count("%") == 3
    assert window.detail.neighbors.count() == 10

    moved = int(plan.image_ids[0][0])  # drag & drop onto a new group
    select_group(window, key)
    mime = window.grid_model.mimeData([window.grid_model.index(window.grid_model.row_of(moved))])
    model = window.group_model
    target = model.index(model.row_of(f"cluster:{other}"))
    assert model.dropMimeData(mime, Qt.DropAction.MoveAction, -1, 0, target)
    assert session.detail(moved).label == f"Cluster {other}"
    assert moved not in grid_ids(window)  # it left the group shown at once

    offered: list[list[str]] = []  # "Move to group..." lists every other group, once
    choose_in_menu(monkeypatch, "Dunes", offered)
    window.grid.selectionModel().clearSelection()
    window.grid.selectionModel().select(
        window.grid_model.index(0), window.grid.selectionModel().SelectionFlag.Select
    )
    picked = window.grid_model.image_id(0)
    window.move_action.trigger()
    assert "Dunes" in offered[0] and f"Cluster {other}" in offered[0]
    assert len(offered[0]) == len(set(offered[0])) == len(rows(window)) - 1
    assert session.detail(picked).label == "Dunes"


def test_undoing_a_split_refreshes_the_view(
    opened: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = opened
    key = window.browsing.current_group()
    assert key is not None
    before, images = rows(window), grid_ids(window)
    monkeypatch.setattr(split_dialog.SplitDialog, "exec", accept_split(2, {}))
    window.corrections.split()
    assert len(rows(window)) == len(before) + 1 and grid_ids(window) < images
    window.undo_action.trigger()
    assert rows(window) == before and grid_ids(window) == images
    assert window.browsing.current_group() == key
    assert "Undid: split cluster" in window.statusBar().currentMessage()
    window.redo_action.trigger()
    assert len(rows(window)) == len(before) + 1


def test_a_split_planned_before_a_change_is_a_plain_error(
    opened: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = opened
    session = window.session
    assert session is not None
    before = rows(window)

    def change_meanwhile(dialog: split_dialog.SplitDialog) -> int:
        plan = dialog.plan()
        assert plan is not None
        session.ignore([int(plan.image_ids[1][0])])  # e.g. in another window
        return 1

    monkeypatch.setattr(split_dialog.SplitDialog, "exec", change_meanwhile)
    window.corrections.split()
    (dialog,) = error_dialogs(window)
    assert dialog.help.title == "A setting needs a change"
    assert "plan it again" in dialog.help.message and "Traceback" not in dialog.help.message
    dialog.close()
    assert set(rows(window)) == set(before)  # nothing was split


def test_the_same_name_on_two_groups_merges_them_into_one_row(
    opened: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crlc_engine.results.export_sources import export_items

    window = opened
    session = window.session
    assert session is not None and session.run_id is not None
    first, second = (g.key for g in session.groups()[:2])
    sizes = rows(window)
    window.corrections.rename(first, "Beach")
    window.corrections.rename(second, " Beach ")
    assert "merged with 'Beach'" in window.statusBar().currentMessage()
    assert rows(window)["group:Beach"] == sizes[first] + sizes[second]  # one row
    assert second not in rows(window) and window.browsing.current_group() == "group:Beach"
    folders = {item.cluster for item in export_items(session.library, session.run_id)}
    assert "Beach" in folders and f"Cluster {second.split(':')[1]}" not in folders
    offered: list[list[str]] = []  # one Move-to entry, with the group's colour
    choose_in_menu(monkeypatch, "Beach", offered)
    select_group(window, next(k for k in rows(window) if k != "group:Beach"))
    assert window.grid_model is not None
    window.grid.setCurrentIndex(window.grid_model.index(0))
    window.move_action.trigger()
    assert offered[0].count("Beach") == 1
    window.corrections.undo()  # the move
    window.corrections.undo()  # the second name
    assert second in rows(window) and session.group_name(second) == f"Cluster {second[8:]}"


def test_after_a_correction_the_next_image_takes_the_selection(
    opened: MainWindow, qtbot: QtBot
) -> None:
    window = opened
    window.resize(700, 420)
    window.set_thumbnail_size(160)
    window.show()
    qtbot.waitExposed(window)
    assert window.grid_model is not None and window.grid_model.rowCount() > 5
    window.grid.setCurrentIndex(window.grid_model.index(3))
    bar = window.grid.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 40)  # the grid scrolls: the check can fail
    bar.setValue(bar.maximum() // 2)
    fifth = window.grid_model.image_id(4)
    scroll = bar.value()
    assert scroll > 0
    window.ignore_action.trigger()  # Delete
    assert window.grid.currentIndex().row() == 3
    assert window.grid_model.image_id(3) == fifth and window.shown_image == fifth
    assert window.grid.verticalScrollBar().value() == scroll
    other = next(k for k in rows(window) if k != window.browsing.current_group())
    sixth = window.grid_model.image_id(4)
    window.move_to([fifth], other)  # M
    assert window.grid.currentIndex().row() == 3 and window.shown_image == sixth


# ---------------------------------------------------------------------- settings
def test_settings_apply_at_once_and_are_saved(
    opened: MainWindow,
    store: SettingsStore,
    restore_theme: QApplication,
    monkeypatch: pytest.MonkeyPatch,
    qtbot: QtBot,
    make_window: Callable[..., MainWindow],
) -> None:
    window = opened
    assert window.grid.iconSize() == QSize(128, 128) and not is_dark(restore_theme.palette())

    def edit(dialog: SettingsDialog) -> int:
        for combo, value in (
            (dialog.theme_combo, "dark"),
            (dialog.thumbnail_combo, 192),
            (dialog.export_mode_combo, "symlink"),
        ):
            combo.setCurrentIndex(combo.findData(value))
        dialog.neighbors_spin.setValue(3)
        dialog.low_first_check.setChecked(True)
        dialog.workers_spin.setValue(1)
        dialog.accept()
        return int(dialog.result())

    monkeypatch.setattr(SettingsDialog, "exec", edit)
    window.settings_action.trigger()

    assert is_dark(restore_theme.palette())  # the theme
    assert window.grid.iconSize() == QSize(192, 192)  # the grid
    assert window.grid.gridSize().width() > 192
    assert window.cache is not None and window.cache.max_side == 192
    assert window.grid_model is not None and window.grid_model.placeholder.width() == 192
    assert window.detail.neighbors.count() == 3  # the shown image's neighbours again
    assert window.low_first.isChecked()
    confidences = [
        window.grid_model.data(window.grid_model.index(r), window.grid_model.ConfidenceRole)
        for r in range(window.grid_model.rowCount())
    ]
    assert confidences == sorted(confidences)
    assert window.scan_workers == 1
    saved = json.loads(store.path.read_text())
    assert (saved["theme"], saved["thumbnail_size"], saved["export_mode"]) == (
        "dark",
        192,
        "symlink",
    )

    window.low_first.setChecked(False)  # the check box is the same setting
    window.close()
    assert json.loads(store.path.read_text())["low_confidence_first"] is False
    again = make_window()
    assert again.settings.thumbnail_size == 192 and not again.low_first.isChecked()
    assert again.grid.iconSize() == QSize(192, 192)


def test_the_dialogs_start_from_the_default_settings(
    library: tuple[Path, Path],
    make_window: Callable[..., MainWindow],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, ws = library
    settings = Settings(
        default_clusters=7,
        default_preset="balanced",
        default_device="cpu",
        export_mode="symlink",
        export_min_confidence=0.3,
    )
    window = make_window(workspace=ws, settings=settings)
    window.open_folders([folder], scan=False)
    seen: dict[str, Any] = {}

    def group_exec(dialog: group_dialog.GroupDialog) -> int:
        seen["group"] = (
            dialog.clusters_spin.value(),
            dialog.preset_name(),
            dialog.device_request(),
        )
        return 0

    def export_exec(dialog: export_dialog.ExportDialog) -> int:
        seen["export"] = (dialog.mode(), dialog.confidence_spin.value())
        return 0

    monkeypatch.setattr(group_dialog.GroupDialog, "exec", group_exec)
    monkeypatch.setattr(export_dialog.ExportDialog, "exec", export_exec)
    window.group_action.trigger()
    window.export_action.trigger()
    assert seen == {"group": (7, "balanced", "cpu"), "export": ("symlink", 0.3)}


def test_scan_jobs_use_the_scan_processes_setting(
    library: tuple[Path, Path],
    make_window: Callable[..., MainWindow],
    monkeypatch: pytest.MonkeyPatch,
    qtbot: QtBot,
) -> None:
    folder, ws = library
    calls: list[Any] = []
    real_scan_job = scan_job

    def fake_scan_job(
        folders: Any, side: int, workspace: Any, options: Any = None, workers: int | None = None
    ) -> JobWorker:
        calls.append(workers)
        return real_scan_job(folders, side, workspace, options, workers=0)  # in the job's thread

    monkeypatch.setattr("app.controllers.scans.scan_job", fake_scan_job)
    window = make_window(workspace=ws, settings=Settings(scan_workers=3))
    window.open_folders([folder])  # scans
    assert calls == [3]
    qtbot.waitUntil(lambda: not window.runner.running, timeout=30_000)


def test_the_command_line_workspace_wins_over_the_setting(
    tmp_path: Path, make_window: Callable[..., MainWindow]
) -> None:
    chosen = str(tmp_path / "chosen")
    assert make_window(settings=Settings(workspace=chosen)).workspace == chosen
    window = make_window(workspace=tmp_path / "cli", settings=Settings(workspace=chosen))
    window.apply_settings(Settings(workspace=str(tmp_path / "other")))
    assert window.workspace == tmp_path / "cli"


class BlockingJob:
    """A job that runs until it is cancelled."""

    def __call__(self, reporter: Reporter, control: JobControl) -> None:
        while not control.cancelled:
            time.sleep(0.01)


@pytest.mark.parametrize("confirm", [True, False])
def test_closing_during_a_job_asks_only_when_the_setting_says_so(
    make_window: Callable[..., MainWindow],
    monkeypatch: pytest.MonkeyPatch,
    qtbot: QtBot,
    confirm: bool,
) -> None:
    window = make_window(settings=Settings(confirm_close_with_job=confirm))
    window.show()
    asked: list[str] = []
    answer = [QMessageBox.StandardButton.No]

    def question(parent: Any, title: str, text: str, *args: Any) -> Any:
        asked.append(text)
        return answer[0]

    monkeypatch.setattr(QMessageBox, "question", question)
    window._start("Waiting", JobWorker(BlockingJob(), "wait"))
    assert window.runner.running
    window.close()
    if confirm:
        assert len(asked) == 1 and "still running" in asked[0]
        assert window.isVisible() and window.runner.running  # "No": the window stays
        answer[0] = QMessageBox.StandardButton.Yes
        window.close()
    assert len(asked) == (2 if confirm else 0)
    assert not window.isVisible() and not window.runner.running


def test_a_theme_switch_changes_the_palette(
    make_window: Callable[..., MainWindow], restore_theme: QApplication
) -> None:
    window = make_window()
    window.apply_settings(window.settings.replace(theme="dark"))
    QApplication.processEvents()  # the palette change reaches the widgets
    assert is_dark(restore_theme.palette()) and is_dark(window.grid.palette())
    window.apply_settings(window.settings.replace(theme="light"))
    QApplication.processEvents()
    assert not is_dark(restore_theme.palette()) and not is_dark(window.grid.palette())


# ---------------------------------------------------------------------- icons, about
def menu_actions(menu: QMenu) -> Iterator[QAction]:
    for act in menu.actions():
        if act.isSeparator():
            continue
        yield act
        if isinstance(sub := act.menu(), QMenu):
            yield from menu_actions(sub)


def test_every_action_and_job_button_has_an_icon(
    make_window: Callable[..., MainWindow], qtbot: QtBot
) -> None:
    window = make_window()
    assert not window.windowIcon().isNull()
    menus = [m.menu() for m in window.menuBar().actions()]
    actions = [a for m in menus if isinstance(m, QMenu) for a in menu_actions(m)]
    assert len(actions) >= 18
    assert [a.text() for a in actions if a.icon().isNull()] == []
    names = {a.text(): a.icon().name() for a in actions}
    assert names["Split group..."] == "split" and names["Settings..."] == "settings"
    assert names["About CRLC Organizer"] == "about" and names["Undo"] == "undo"
    panel = window.jobs
    assert panel.pause_button.icon().name() == "pause"
    assert panel.cancel_button.icon().name() == "cancel"
    window._start("Waiting", JobWorker(BlockingJob(), "wait"))
    panel.pause_button.click()
    assert panel.pause_button.text() == "Resume" and panel.pause_button.icon().name() == "resume"
    panel.pause_button.click()
    assert panel.pause_button.icon().name() == "pause"
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: not window.runner.running, timeout=10_000)


def test_about_shows_the_versions_the_device_and_the_log_folder(
    make_window: Callable[..., MainWindow], store: SettingsStore
) -> None:
    import faiss
    import numpy
    import PySide6
    import torch
    import torchvision

    from crlc_engine import __version__

    window = make_window()
    dialog = window.show_about()
    text = dialog.text()
    for line in (
        f"CRLC Organizer: {__version__}",
        f"PyTorch: {torch.__version__}",
        f"torchvision: {torchvision.__version__}",
        f"PySide6 / Qt: {PySide6.__version__} / Qt ",
        f"NumPy: {numpy.__version__}",
        f"faiss: {faiss.__version__}",
        f"Python: {sys.version.split()[0]}",
        f"Log folder: {main_window.log_file().parent}",
        f"Settings file: {store.path}",
    ):
        assert line in text, line
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"Device in use: {device}" in text
    assert "Log folder" in dialog.details.text()
    dialog.copy()
    assert QApplication.clipboard().text() == text
    dialog.close()


@pytest.mark.skipif(
    "torch" in sys.modules and sys.modules["torch"].cuda.is_available(), reason="has CUDA"
)
def test_a_device_setting_this_computer_lacks_is_said() -> None:
    found = dict(device_rows("cuda"))
    assert found["Device in use"].startswith("cpu")
    assert "not available here" in found["Device setting"] and "CUDA device" not in found


@pytest.mark.cuda
def test_the_cuda_device_is_named() -> None:
    import torch

    found = dict(device_rows("auto"))
    assert found["Device in use"].startswith("cuda")
    assert found["CUDA device"].startswith(torch.cuda.get_device_name(0))


# ---------------------------------------------------------------------- plots, start-up
def ink_colours(image: QImage) -> set[str]:
    return {
        image.pixelColor(x, y).name()
        for x in range(image.width())
        for y in range(image.height())
        if image.pixelColor(x, y).alpha() == 255
    }


@pytest.mark.parametrize("scheme", ["light", DARK])
def test_charts_draw_with_the_palette(qtbot: QtBot, scheme: str) -> None:
    palette = make_palette(scheme)
    window = palette.color(QPalette.ColorRole.Window)
    colors = chart_colors(palette)
    assert contrast_ratio(colors["curve"], window) >= 3.0
    assert contrast_ratio(colors["text"], window) >= 7.0
    plot, bars = LossPlot(), ClusterSizeBars()
    for widget in (plot, bars):
        qtbot.addWidget(widget)
        widget.setPalette(palette)
        widget.setAutoFillBackground(True)
        widget.resize(240, 80)
    for value in (3.0, 2.0, 1.5):
        plot.add(value)
    bars.set_sizes([30, 12, 20])
    drawn = ink_colours(plot.grab().toImage())
    assert colors["curve"].name() in drawn
    text = colors["text"]
    assert any(contrast_ratio(QColor(c), text) < 1.2 for c in drawn)  # the label, antialiased
    if scheme == DARK:
        assert "#000000" not in drawn  # nothing hard-coded black on the dark window
    assert colors["frame"].name() in ink_colours(bars.grab().toImage())


def test_start_up_applies_the_theme_and_reopens_the_last_library_if_asked(
    library: tuple[Path, Path],
    store: SettingsStore,
    restore_theme: QApplication,
    monkeypatch: pytest.MonkeyPatch,
    qtbot: QtBot,
) -> None:
    folder, ws = library
    monkeypatch.setattr(app_main, "recent_folders", lambda: [str(folder)])
    store.save(Settings(theme="dark", reopen_last_library=False, workspace=str(ws)))
    window = open_main_window(restore_theme, [], None, store)
    qtbot.addWidget(window)
    assert is_dark(restore_theme.palette()) and not restore_theme.windowIcon().isNull()
    assert window.session is None and window.workspace == str(ws)
    window.close()

    store.save(Settings(reopen_last_library=True, workspace=str(ws)))
    window = open_main_window(restore_theme, [], None, store)
    qtbot.addWidget(window)
    assert window.session is not None and window.session.folders == (folder,)
    assert window.session.has_results  # the library in the settings' workspace
    qtbot.waitUntil(lambda: not window.runner.running, timeout=30_000)  # its scan
    window.close()


def test_a_dark_screenshot_leaves_the_application_as_it_was(
    library: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, ws = library
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    before = app.palette().color(QPalette.ColorRole.Window)
    user_file = settings_path()
    stored = user_file.read_bytes() if user_file.exists() else None
    out = tmp_path / "dark.png"
    assert (
        app_main.main(
            ["--screenshot", str(out), "--theme", "dark", "--workspace", str(ws), str(folder)]
        )
        == 0
    )
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1280, 800)
    lightness = [image.pixelColor(x, y).lightness() for x in range(0, 1280, 16) for y in (60, 400)]
    assert np.median(lightness) < 80  # a dark window
    assert app.palette().color(QPalette.ColorRole.Window) == before
    assert (user_file.read_bytes() if user_file.exists() else None) == stored  # not touched


# ---------------------------------------------------------------------- panels, small things
def test_clicking_a_similar_image_selects_it_in_its_group(opened: MainWindow) -> None:
    window = opened
    session = window.session
    assert session is not None and window.grid_model is not None
    here = window.browsing.current_group()
    elsewhere = next(k for k in rows(window) if k != here)
    target = int(session.images_of(elsewhere).image_ids[2])
    window.detail.show_neighbors([(target, 0.9, session.thumbnail_path(target))])
    item = window.detail.neighbors.item(0)
    window.detail.neighbors.itemClicked.emit(item)
    assert window.browsing.current_group() == elsewhere  # switched group
    assert window.grid_model.image_id(window.grid.currentIndex().row()) == target
    assert window.browsing.selected_ids() == [target] and window.shown_image == target
    window.ignore_action.trigger()  # Delete acts on the picture shown
    assert session.detail(target).ignored
    assert not window.select_image(target)  # an ignored picture: shown, and said
    assert "ignored" in window.statusBar().currentMessage()


def test_quit_open_dialog_start_and_sort_order_saved_at_once(
    make_window: Callable[..., MainWindow],
    store: SettingsStore,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    window = make_window()
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"
    assert window.quit_action in window.menuBar().actions()[0].menu().actions()
    started: list[str] = []
    monkeypatch.setattr(
        library_module.QFileDialog,
        "getExistingDirectory",
        lambda parent, title, start: started.append(start) or "",
    )
    pictures = tmp_path / "Pictures"
    monkeypatch.setattr(
        library_module.QStandardPaths, "writableLocation", lambda kind: str(pictures)
    )
    window.libraries.choose_folder()  # no Pictures folder yet: home
    pictures.mkdir()
    window.libraries.choose_folder()
    assert started == [str(Path.home()), str(pictures)]

    window.low_first.setChecked(True)  # saved now, not only on a normal close
    assert json.loads(store.path.read_text())["low_confidence_first"] is True
    window.quit_action.trigger()
    assert not window.isVisible()


def test_an_export_offers_to_open_its_folder(
    opened: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from crlc_engine.results.export import ExportResult

    shown: list[Path] = []
    monkeypatch.setattr(export_module, "open_folder", lambda f: shown.append(f) or False)
    dest = tmp_path / "sorted"
    result = ExportResult(
        manifest=dest / ".crlc-export-1.csv",
        mode="copy",
        files=3,
        folders={"A": 2, "B": 1},
        skipped=[],
        dry_run=False,
        already_done=0,
    )
    opened.exports.on_exported(result)
    notice = opened.notice
    assert notice.key == "export-done" and "3 photos into 2 folders" in notice.text.text()
    button = notice.button("Open folder")
    assert button is not None
    button.click()
    assert shown == [dest] and not notice.isVisibleTo(opened)
    # no file manager here (the stand-in says so): the window says where the folder is
    assert "No file manager could be started" in opened.statusBar().currentMessage()


def test_long_skipped_paths_keep_their_file_name(qtbot: QtBot) -> None:
    from app.views.skipped_dialog import skipped_files_dialog

    path = "/photos/" + "very-long-folder-name/" * 12 + "IMG_0042.jpg"
    dialog = skipped_files_dialog([(path, "not an image")])
    qtbot.addWidget(dialog)
    assert dialog.table.textElideMode() == Qt.TextElideMode.ElideMiddle
    index = dialog.model.index(0, 0)
    assert dialog.model.data(index, Qt.ItemDataRole.ToolTipRole) == path


def test_the_viewer_steps_corrects_and_returns_to_the_grid(
    opened: MainWindow, qtbot: QtBot
) -> None:
    window = opened
    model = window.grid_model
    assert model is not None and model.rowCount() > 4
    window.grid.setCurrentIndex(model.index(1))
    window.grid.setFocus()
    qtbot.keyClick(window.grid, Qt.Key.Key_Space)  # Space opens the picture large
    assert window.viewer_shown() and window.viewer.current_image_id() == model.image_id(1)
    assert window.viewer.count() == model.rowCount()
    qtbot.keyClick(window.viewer, Qt.Key.Key_Right)  # the grid and the detail follow
    third = model.image_id(2)
    assert window.viewer.current_image_id() == third
    assert window.browsing.selected_ids() == [third] and window.shown_image == third
    assert window.session is not None
    assert window.session.detail(third).group_name in window.viewer.caption()
    fourth = model.image_id(3)
    window.ignore_action.trigger()  # Delete ignores the picture shown; the next takes its place
    assert window.session.detail(third).ignored
    assert window.viewer_shown() and window.viewer.current_image_id() == fourth
    window.undo_action.trigger()  # the picture comes back in its place, in the viewer too
    assert not window.session.detail(third).ignored
    assert window.viewer.current_image_id() == third
    qtbot.keyClick(window.viewer, Qt.Key.Key_Right)
    qtbot.keyClick(window.viewer, Qt.Key.Key_Escape)  # back to the grid, on the last picture
    assert not window.viewer_shown()
    assert window.grid_model is not None
    assert window.grid_model.image_id(window.grid.currentIndex().row()) == fourth
    window.grid.doubleClicked.emit(window.grid.currentIndex())  # a double-click opens it too
    assert window.viewer_shown()
    other = next(k for k in rows(window) if k != window.browsing.current_group())
    select_group(window, other)  # another group: the viewer shows it from its start
    assert window.viewer.current_image_id() == window.grid_model.image_id(0)


def test_covers_in_the_group_list_and_the_confidence_toggle(
    opened: MainWindow, store: SettingsStore, make_window: Callable[..., MainWindow]
) -> None:
    from app.views.group_delegate import GroupDelegate

    window = opened
    assert isinstance(window.group_list.itemDelegate(), GroupDelegate)
    assert window.group_model.thumbnail_source is window.cache  # covers from the grid's cache
    assert window.grid_delegate.show_confidence and window.show_confidence_action.isChecked()
    window.show_confidence_action.trigger()  # View > Show confidence: off, saved at once
    assert not window.grid_delegate.show_confidence
    assert json.loads(store.path.read_text())["show_confidence"] is False
    again = make_window()
    assert not again.grid_delegate.show_confidence
    assert not again.show_confidence_action.isChecked()
    window._close_session()
    assert window.group_model.thumbnail_source is None


def test_the_viewer_acts_on_its_photo_and_follows_refreshes_and_clicks(
    opened: MainWindow, qtbot: QtBot
) -> None:
    window = opened
    model = window.grid_model
    assert model is not None and window.session is not None
    window.grid.setCurrentIndex(model.index(2))
    window.grid.selectAll()  # many selected in the grid...
    assert window.open_viewer()
    shown = window.viewer.current_image_id()
    assert shown == model.image_id(2) and window.browsing.selected_ids() == [shown]
    size = model.rowCount()
    window.ignore_action.trigger()  # ...Delete ignores the photo shown, only
    assert model.rowCount() == size - 1 and window.session.detail(shown).ignored
    window.undo_action.trigger()
    qtbot.keyClick(window.viewer, Qt.Key.Key_Right)
    viewed = window.viewer.current_image_id()
    window.refresh()  # e.g. a finished job: the viewer and the grid stay on the photo
    assert window.viewer.current_image_id() == viewed == window.browsing.selected_ids()[0]
    assert model.image_id(window.grid.currentIndex().row()) == viewed
    other = next(k for k in rows(window) if k != window.browsing.current_group())
    target = int(window.session.images_of(other).image_ids[1])
    assert window.select_image(target)  # a similar picture clicked: the viewer shows it
    assert window.browsing.current_group() == other and window.viewer.current_image_id() == target


def test_undo_and_redo_are_greyed_when_there_is_nothing_to_do(opened: MainWindow) -> None:
    window = opened
    assert not window.undo_action.isEnabled() and not window.redo_action.isEnabled()
    assert window.grid_model is not None
    window.grid.setCurrentIndex(window.grid_model.index(0))
    window.ignore_action.trigger()
    assert window.undo_action.isEnabled() and not window.redo_action.isEnabled()
    assert window.undo_action.toolTip() == "Undo: ignore 1 image(s)"
    window.undo_action.trigger()
    assert not window.undo_action.isEnabled() and window.redo_action.isEnabled()
    assert window.redo_action.toolTip().startswith("Redo: ignore")
