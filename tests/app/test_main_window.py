"""The main window with a real library and a fake (written) run: browse, detail, correct."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage
from pytestqt.qtbot import QtBot

import crlc_engine.library.scan as library_module
from app.core import recent
from app.main import main
from app.screenshots import (
    SCREENSHOT_STATES,
    prepare_scan_workspace,
    replay_scan,
    show_export,
    show_viewer,
    wait_for_viewer,
)
from app.views.main_window import MainWindow, settings
from crlc_engine.library import ImageLibrary
from crlc_engine.library.decode import DecodeResult, decode_file
from crlc_engine.results.assignments import ResultStore


@pytest.fixture
def window(qtbot: QtBot) -> Iterator[MainWindow]:
    win = MainWindow()
    qtbot.addWidget(win)
    yield win
    win.close()
    assert not win.runner.running


def test_start_state_says_what_to_do(window: MainWindow) -> None:
    assert window.empty.isVisibleTo(window) and "Open a folder" in window.empty.text()
    assert window.device_label.text().startswith("Device:")
    assert not window.group_action.isEnabled()


def test_browse_groups_images_and_detail(
    window: MainWindow, library: tuple[Path, Path], qtbot: QtBot
) -> None:
    folder, ws = library
    window.workspace = ws
    window.open_folders([folder], scan=False)
    assert window.group_model.rowCount() >= 2
    sizes = [
        window.group_model.data(window.group_model.index(r), window.group_model.SizeRole)
        for r in range(window.group_model.rowCount())
    ]
    assert sum(sizes) == 48
    assert window.grid_model is not None and window.grid_model.rowCount() == sizes[0]
    window.grid.setCurrentIndex(window.grid_model.index(0))
    assert str(folder) in window.detail.path.text()
    assert window.detail.neighbors.count() == 10
    assert "%" in window.detail.probabilities.text()
    neighbor = window.detail.neighbors.item(0)
    neighbor_id = int(neighbor.data(Qt.ItemDataRole.UserRole))
    window.browsing.neighbor_clicked(neighbor)  # clicking a neighbour shows it
    assert window.session is not None
    assert str(window.session.detail(neighbor_id).path) in window.detail.path.text()


def test_rename_ignore_and_undo(window: MainWindow, library: tuple[Path, Path]) -> None:
    folder, ws = library
    window.workspace = ws
    window.open_folders([folder], scan=False)
    model = window.group_model
    first = model.index(0)
    key = model.data(first, model.KeyRole)
    model.setData(first, "Beach", Qt.ItemDataRole.EditRole)  # routed through the session
    assert window.session is not None and window.session.group_name("group:Beach") == "Beach"
    assert window.browsing.current_group() == "group:Beach"  # the renamed group stays selected
    assert window.grid_model is not None
    before = window.grid_model.rowCount()
    window.grid.selectionModel().select(
        window.grid_model.index(0), window.grid.selectionModel().SelectionFlag.Select
    )
    window.corrections.ignore()
    assert window.grid_model is not None and window.grid_model.rowCount() == before - 1
    window.corrections.undo()
    assert window.grid_model.rowCount() == before
    window.corrections.undo()
    assert window.session.group_name(key) == f"Cluster {key.split(':')[1]}"


@pytest.mark.parametrize("state", SCREENSHOT_STATES)
def test_screenshot_states(
    state: str, library: tuple[Path, Path], tmp_path: Path, qtbot: QtBot
) -> None:
    folder, ws = library
    out = tmp_path / f"{state}.png"
    settings_file = Path(settings().fileName())
    before = settings_file.read_bytes() if settings_file.exists() else None
    assert (
        main(["--screenshot", str(out), "--state", state, "--workspace", str(ws), str(folder)]) == 0
    )
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1280, 800)
    after = settings_file.read_bytes() if settings_file.exists() else None
    assert after == before  # a screenshot neither reads nor changes the user's layout


def test_export_runs_in_the_background(
    window: MainWindow,
    library: tuple[Path, Path],
    tmp_path: Path,
    qtbot: QtBot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.views import export_dialog

    folder, ws = library
    window.workspace = ws
    window.open_folders([folder], scan=False)
    dest = tmp_path / "sorted"
    monkeypatch.setattr(export_dialog.ExportDialog, "exec", lambda self: 1)
    monkeypatch.setattr(
        export_dialog.ExportDialog,
        "options",
        lambda self: export_dialog.ExportOptions(
            dest=dest, mode="copy", min_confidence=0.0, keep_subfolders=False
        ),
    )
    window.exports.export()
    qtbot.waitUntil(lambda: not window.runner.running, timeout=30000)
    exported = [p for p in dest.rglob("*.png")]
    assert len(exported) == 48
    assert any(dest.glob("crlc-export-*.csv"))


def test_dropping_images_on_a_group_moves_them(
    window: MainWindow, library: tuple[Path, Path]
) -> None:
    folder, ws = library
    window.workspace = ws
    window.open_folders([folder], scan=False)
    assert window.grid_model is not None and window.session is not None
    image = window.grid_model.image_id(0)
    mime = window.grid_model.mimeData([window.grid_model.index(0)])
    target = window.group_model.index(window.group_model.rowCount() - 1)
    key = window.group_model.data(target, window.group_model.KeyRole)
    size = window.group_model.data(target, window.group_model.SizeRole)
    assert window.group_model.dropMimeData(mime, Qt.DropAction.MoveAction, -1, 0, target)
    name = window.session.detail(image).label  # an unnamed cluster is named when moved to
    assert name == f"Cluster {key.split(':')[1]}" and window.session.group(key) is None
    assert image not in window.grid_model.image_ids()  # it left the group shown
    row = window.group_model.row_of(f"group:{name}")
    assert window.group_model.data(window.group_model.index(row), window.group_model.SizeRole) == (
        size + 1
    )


def test_job_panel_plots_loss_and_cluster_sizes(window: MainWindow, tmp_path: Path) -> None:
    from crlc_engine.core.events import EpochEnded, TrainingStarted

    panel = window.jobs
    panel._on_event(TrainingStarted("r", "cpu", 100, 10, 10, 5, None, 0))
    for epoch, loss in enumerate([3.0, 2.5, 2.2], start=1):
        panel._on_event(
            EpochEnded(epoch, {"total": loss}, [loss], 0, [60, 40], 500.0, float(epoch), 10.0, 10)
        )
    assert panel.loss_plot.values == [3.0, 2.5, 2.2]
    assert panel.size_bars.sizes == [60, 40]
    assert "Epoch 3" in panel.detail.text() and "60, 40" in panel.detail.text()
    out = tmp_path / "panel.png"
    panel.resize(900, 120)
    assert panel.grab().save(str(out)) and out.stat().st_size > 0


def test_layout_and_view_options_survive_a_restart(qtbot: QtBot) -> None:
    first = MainWindow()
    qtbot.addWidget(first)
    first.low_first.setChecked(True)
    first.resize(1000, 700)
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    assert second.low_first.isChecked()
    second.low_first.setChecked(False)
    second.close()


def test_screenshot_replays_show_a_scan_and_the_export_preview(
    window: MainWindow, library: tuple[Path, Path]
) -> None:
    folder, ws = library
    base = prepare_scan_workspace([str(folder)])  # the library as on its first opening
    try:
        window.workspace = base.name
        window.open_folders([folder], scan=False)
        replay_scan(window, fraction=0.5)
        assert window.all_images_mode and window.grid_model is not None
        assert window.grid_model.rowCount() == 24
        assert window.grid_title.text() == "<b>All images</b> · 24 so far (scanning…)"
        assert "24 / 48 files · 42.0 files/s" in window.jobs.rate.text()
        window._close_session()
    finally:
        base.cleanup()
    window.workspace = ws
    window.open_folders([folder], scan=False)
    dialog = show_export(window)
    try:
        assert dialog.preview is not None and dialog.preview.files == 48
    finally:
        dialog.reject()


def test_the_viewer_state_shows_the_newest_runs_first_group_and_picture(
    window: MainWindow, library: tuple[Path, Path]
) -> None:
    folder, ws = library
    newest = write_run(ws, folder, clusters=2)
    window.workspace = ws
    window.open_folders([folder], scan=False)
    assert window.session is not None and len(window.session.runs()) == 2
    window.show_run(window.session.runs()[0])  # an older run shown
    show_viewer(window)
    wait_for_viewer(window)
    assert window.session is not None and window.session.run_id == newest
    first_group = window.session.groups()[0].key
    assert window.browsing.current_group() == first_group
    assert window.viewer_shown() and not window.viewer.is_loading()
    assert window.viewer.current_image_id() == window.session.images_of(first_group).image_ids[0]
    assert window.viewer.canvas.image is not None  # decoded in full, not the thumbnail


# ---------------------------------------------------------------------- the features
def write_run(ws: Path, folder: Path, clusters: int = 3, seed: int = 2) -> str:
    """One more completed fake run of the library (newest)."""
    with ImageLibrary.open([folder], ws) as lib:
        records = lib.images()
        run = lib.runs.create_run()
        run.config_path.write_text(f'{{"train": {{"clusters": {clusters}}}}}')
        run.write_status("completed")
        rng = np.random.default_rng(seed)
        ResultStore(lib.catalog).write(
            run.run_id,
            np.array([r.id for r in records]),
            rng.dirichlet(np.ones(clusters), size=len(records)).astype(np.float32),
            rng.normal(size=(len(records), 8)).astype(np.float32),
        )
        return run.run_id


def test_reopening_shows_the_run_and_cluster_selected_last(
    library: tuple[Path, Path], qtbot: QtBot
) -> None:
    folder, ws = library
    first = MainWindow(workspace=ws)
    qtbot.addWidget(first)
    first.open_folders([folder], scan=False)
    assert first.session is not None and first.session.run_id is not None
    shown = first.session.run_id
    newer = write_run(ws, folder, clusters=2)
    first.refresh()
    assert first.session.run_id == shown  # a new run does not replace the one looked at
    first.runs.fill_runs_menu()
    entries = {a.text().split()[0]: a for a in first.runs_menu.actions() if a.isCheckable()}
    assert set(entries) == {shown, newer} and entries[shown].isChecked()
    first.group_list.setCurrentIndex(first.group_model.index(2))
    cluster = first.browsing.current_group()
    first.close()

    second = MainWindow(workspace=ws)
    qtbot.addWidget(second)
    second.open_folders([folder], scan=False)
    assert second.session is not None and second.session.run_id == shown
    assert second.browsing.current_group() == cluster
    second.show_run(newer)
    second.close()
    third = MainWindow([folder], workspace=ws)
    qtbot.addWidget(third)
    assert third.session is not None and third.session.run_id == newer
    third.close()


def test_first_scan_shows_thumbnails_as_they_are_ready_and_lists_skipped_files(
    qtbot: QtBot, shapes_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(shapes_folder / "disc", folder / "disc")
    shutil.copytree(shapes_folder / "square", folder / "square")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")

    def slow_decode(path: str, side: int, thumb: str | None) -> DecodeResult:
        time.sleep(0.03)
        return decode_file(path, side, thumb)

    monkeypatch.setattr(library_module, "decode_file", slow_decode)
    monkeypatch.setattr(library_module, "COMMIT_EVERY_S", 0.0)  # commit every file
    window = MainWindow(workspace=tmp_path / "ws")
    qtbot.addWidget(window)
    window.scan_workers = 0  # decode in the job's thread (where the patch applies)
    window.scan_poll_ms = 20
    counts: list[int] = []
    resets: list[int] = []

    def watch_model() -> None:
        assert window.grid_model is not None
        model = window.grid_model
        model.rowsInserted.connect(lambda *_: counts.append(model.rowCount()))
        window.grid_model.modelReset.connect(lambda: resets.append(1))

    window.open_folders([folder], scan=False)
    watch_model()
    window.scan()
    assert window.scanning and window.all_images_mode
    qtbot.waitUntil(lambda: not window.runner.running, timeout=60_000)
    assert window.grid_model is not None and window.grid_model.rowCount() == 24
    assert any(0 < n < 24 for n in counts), counts  # images appeared while scanning
    assert counts == sorted(counts) and resets == []  # appended: no reset, no jump
    assert window.grid_title.text() == "<b>All images</b> · 24"
    assert window.jobs.title.text() == "Scan finished"
    assert "24 usable images" in window.jobs.detail.text()
    assert window.left.currentWidget() is window.no_groups

    assert window.skipped_button.isVisibleTo(window)
    assert window.skipped_button.text() == "1 file skipped"
    dialog = window.show_skipped()
    assert dialog is not None and dialog.model.rowCount() == 1
    path, reason = dialog.model.rows[0]
    assert path == str(folder / "broken.jpg") and reason
    dialog.copy_list()
    assert f"{folder / 'broken.jpg'}\t{reason}" in QGuiApplication.clipboard().text()
    dialog.close()
    window.grid.setCurrentIndex(window.grid_model.index(3))
    assert "Not grouped yet" in window.detail.probabilities.text()
    assert str(folder) in window.detail.path.text()


def test_a_moved_folder_is_located_and_relinked(
    qtbot: QtBot, shapes_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(shapes_folder, photos)
    ws = tmp_path / "ws2"
    with ImageLibrary.open([photos], ws) as lib:
        lib.scan(16, workers=0)
    run_id = write_run(ws, photos)
    window = MainWindow(workspace=ws)
    qtbot.addWidget(window)
    window.open_folders([photos], scan=False)
    window.close()
    moved = tmp_path / "renamed photos"
    photos.rename(moved)

    window = MainWindow(workspace=ws)
    qtbot.addWidget(window)
    assert not window.open_folders(recent.recent_folders(), scan=False)
    assert window.session is None and window.notice.key == "relink"
    assert str(photos) in window.notice.text.text()
    monkeypatch.setattr(
        "app.controllers.library.QFileDialog.getExistingDirectory", lambda *a, **k: str(moved)
    )
    button = window.notice.button("Locate folder…")
    assert button is not None
    button.click()
    qtbot.waitUntil(lambda: window.session is not None, timeout=30_000)
    assert window.session is not None and window.session.folders == (moved,)
    assert window.session.run_id == run_id and window.session.has_results  # nothing lost
    assert recent.recent_folders() == [str(moved)]
    qtbot.waitUntil(lambda: not window.runner.running, timeout=30_000)  # its rescan
    window.close()


def _cancelled_tiny_run(folder: Path, ws: Path) -> str:
    """Train the tiny config and cancel it after its first epoch (a checkpoint is kept)."""
    from crlc_engine.core.config import TrainConfig
    from crlc_engine.core.control import JobControl
    from crlc_engine.core.events import EpochEnded, Event, RecordingReporter
    from crlc_engine.pipeline.jobs import train_folder

    control = JobControl()

    class CancelAfterFirstEpoch(RecordingReporter):
        def event(self, event: Event) -> None:
            super().event(event)
            if isinstance(event, EpochEnded):
                control.cancel()

    config = TrainConfig(
        clusters=3, backbone="small", stem="imagenet", image_size=16, batch_size=16,
        epochs=3, subheads=2, device="cpu", preset="cpu",
    )  # fmt: skip
    outcome = train_folder([folder], config, ws, CancelAfterFirstEpoch(), control, workers=0)
    assert outcome.state == "cancelled" and outcome.run.checkpoint_path.exists()
    return outcome.run.run_id


def test_an_unfinished_run_is_offered_and_resumed(
    qtbot: QtBot, shapes_folder: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    run_id = _cancelled_tiny_run(shapes_folder, ws)
    window = MainWindow(workspace=ws)
    qtbot.addWidget(window)
    window.open_folders([shapes_folder], scan=False)
    assert window.session is not None and not window.session.has_results
    assert window.notice.key == f"resume:{run_id}"
    assert "stopped after epoch 1 of 3" in window.notice.text.text()
    window.runs.fill_runs_menu()
    unfinished = [a for a in window.runs_menu.actions() if a.menu() is not None]
    assert len(unfinished) == 1 and "Unfinished" in unfinished[0].text()
    button = window.notice.button("Resume")
    assert button is not None
    button.click()
    assert window.runner.running and window.jobs.title.text() == "Resuming the grouping"
    assert not window.notice.isVisibleTo(window)
    qtbot.waitUntil(lambda: not window.runner.running, timeout=120_000)
    assert window.session.run_id == run_id and window.session.has_results
    assert window.session.unfinished_runs() == []
    assert window.group_model.rowCount() >= 1 and not window.all_images_mode
    window.close()


def test_a_run_killed_before_its_first_checkpoint_is_offered_to_start_again(
    qtbot: QtBot, shapes_folder: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    run_id = _cancelled_tiny_run(shapes_folder, ws)
    with ImageLibrary.open([shapes_folder], ws) as lib:  # as a kill in epoch 1 leaves it
        run = lib.runs.get(run_id, state=None)
        run.checkpoint_path.unlink()
        run.write_status("running", "pid 999999999")
    window = MainWindow(workspace=ws)
    qtbot.addWidget(window)
    window.open_folders([shapes_folder], scan=False)
    assert window.notice.key == f"resume:{run_id}"
    assert "before its first checkpoint" in window.notice.text.text()
    assert window.notice.button("Resume") is None
    button = window.notice.button("Start again")
    assert button is not None
    button.click()
    qtbot.waitUntil(lambda: not window.runner.running, timeout=120_000)
    assert window.session is not None and window.session.run_id == run_id
    assert window.session.has_results and window.session.unfinished_runs() == []
    window.close()


def test_an_unfinished_run_can_be_discarded(
    window: MainWindow, library: tuple[Path, Path], qtbot: QtBot
) -> None:
    folder, ws = library
    with ImageLibrary.open([folder], ws) as lib:
        run = lib.runs.create_run()
        run.config_path.write_text('{"train": {"clusters": 3, "epochs": 5}}')
        run.write_status("running")  # as left by a crash
        run.checkpoint_path.write_bytes(b"checkpoint")
    window.workspace = ws
    window.open_folders([folder], scan=False)
    assert window.notice.key == f"resume:{run.run_id}"
    assert window.notice.button("Later") is not None
    window.discard_run(run.run_id, confirm=False)
    qtbot.waitUntil(lambda: not window.runner.running, timeout=30_000)
    assert not run.path.exists() and not window.notice.isVisibleTo(window)
    assert window.session is not None and window.session.has_results  # the other run stays


def _error_dialogs(window: MainWindow) -> list[Any]:
    from app.views.error_dialog import ErrorDialog

    return [d for d in window.findChildren(ErrorDialog) if d.isVisible()]


def test_a_workspace_locked_by_another_program_says_who_and_what_to_do(
    window: MainWindow, library: tuple[Path, Path], qtbot: QtBot
) -> None:
    folder, ws = library
    window.workspace = ws
    window.open_folders([folder], scan=False)
    assert window.session is not None
    script = (
        "import sys, pathlib, time\n"
        "from crlc_engine.library.lock import WorkspaceLock\n"
        "WorkspaceLock(pathlib.Path(sys.argv[1]), 'training (cpu preset)').acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(window.session.library.workspace)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        window.scan()
        qtbot.waitUntil(lambda: bool(_error_dialogs(window)), timeout=30_000)
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    dialog = _error_dialogs(window)[0]
    assert dialog.title_label.text() == "<b>The library is in use</b>"
    advice = dialog.advice_label.text()
    assert f"Process {holder.pid} on this computer is training (cpu preset)" in advice
    assert "Ctrl+C" in advice and "no lock file to delete" in advice
    assert "Traceback" not in dialog.message_label.text() + advice
    assert not dialog.details_view.isVisibleTo(dialog)  # details only on request
    dialog.copy_details()
    copied = QGuiApplication.clipboard().text()
    assert "WorkspaceLockedError" in copied and "Traceback" in copied
    dialog.close()


@pytest.mark.parametrize(
    ("error", "title"),
    [
        (OSError(28, "No space left on device", "/ws/pixels-32.u8"), "The disk is full"),
        (MemoryError(), "Out of memory"),
        (PermissionError(13, "Permission denied", "/sorted"), "No permission"),
        (ValueError("oops"), "Something went wrong"),
    ],
)
def test_job_failures_are_plain_messages_with_advice(
    window: MainWindow, qtbot: QtBot, error: BaseException, title: str
) -> None:
    from app.workers import JobWorker

    def job(reporter: object, control: object) -> None:
        raise error

    window._start("Exporting", JobWorker(job, "export"))
    qtbot.waitUntil(lambda: bool(_error_dialogs(window)), timeout=10_000)
    dialog = _error_dialogs(window)[0]
    assert dialog.title_label.text() == f"<b>{title}</b>"
    assert dialog.advice_label.text().startswith("<b>What to do:</b>")
    assert "Traceback" not in dialog.message_label.text()
    dialog.close()
    qtbot.waitUntil(lambda: not window.runner.running, timeout=10_000)


def test_open_recent_lists_libraries_and_marks_moved_ones(
    window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, gone = tmp_path / "here", tmp_path / "gone"
    here.mkdir()
    monkeypatch.setattr(recent, "recent_file", lambda: tmp_path / "recent.json")
    recent.remember_folders([gone])
    recent.remember_folders([here])
    monkeypatch.setattr("app.controllers.library.recent_libraries", recent.recent_libraries)
    window.libraries.fill_recent_menu()
    texts = [a.text() for a in window.recent_menu.actions()]
    assert texts == [str(here), f"{gone}  (not found)"]
    window.recent_menu.actions()[1].trigger()  # opening the moved one offers to locate it
    assert window.notice.key == "relink" and window.session is None


def test_failed_exports_are_listed(window: MainWindow) -> None:
    from app.views.skipped_dialog import FileListDialog
    from crlc_engine.results.export import ExportResult

    result = ExportResult(
        manifest=Path("/sorted/crlc-export-1.csv"),
        mode="copy",
        files=2,
        folders={"Beach": 2},
        skipped=[("/p/b.jpg", "ignored")],
        dry_run=False,
        already_done=0,
        failed=[("/p/a.jpg", "Input/output error")],
    )
    window.exports.on_exported(result)
    assert "Exported 2 photos into 1 folder" in window.statusBar().currentMessage()
    (dialog,) = window.findChildren(FileListDialog)
    assert dialog.model.rows == [("/p/a.jpg", "failed: Input/output error")]
    dialog.close()


def test_an_exception_escaping_a_slot_is_a_plain_message(
    window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.main import install_excepthook

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored afterwards
    install_excepthook(window)
    try:
        raise OSError(28, "No space left on device", "/ws/catalog.sqlite")
    except OSError as error:
        sys.excepthook(type(error), error, error.__traceback__)
    (dialog,) = _error_dialogs(window)
    assert dialog.help.title == "The disk is full" and "/ws/catalog.sqlite" in dialog.help.message
    assert "Traceback" in dialog.details
    dialog.close()


def test_a_folder_without_images_says_what_to_do(
    window: MainWindow, tmp_path: Path, qtbot: QtBot
) -> None:
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "todo.txt").write_text("not a photo")
    window.workspace = tmp_path / "ws"
    window.scan_workers = 0
    window.open_folders([empty])
    qtbot.waitUntil(lambda: bool(_error_dialogs(window)), timeout=30_000)
    (dialog,) = _error_dialogs(window)
    assert dialog.help.title == "No usable images"
    assert str(empty) in dialog.help.message and "JPEG" in dialog.help.what_to_do
    dialog.close()
    qtbot.waitUntil(lambda: not window.runner.running, timeout=10_000)
