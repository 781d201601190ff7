"""The main window with a real library and a fake (written) run: browse, detail, correct."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.main import main
from app.views.main_window import MainWindow
from crlc_engine.library import ImageLibrary
from crlc_engine.results import ResultStore


@pytest.fixture
def library(shapes_folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The shapes folder scanned, with a completed fake run of 3 clusters."""
    ws = tmp_path / "ws"
    with ImageLibrary.open([shapes_folder], ws) as lib:
        lib.scan(32, workers=0)
        records = lib.images()
        run = lib.runs.create_run()
        run.config_path.write_text('{"train": {"clusters": 3}}')
        run.write_status("completed")
        rng = np.random.default_rng(1)
        probs = rng.dirichlet(np.ones(3) * 0.5, size=len(records)).astype(np.float32)
        feats = rng.normal(size=(len(records), 8)).astype(np.float32)
        ResultStore(lib.catalog).write(
            run.run_id,
            np.array([r.id for r in records]),
            probs,
            feats / np.linalg.norm(feats, axis=1, keepdims=True),
        )
    return shapes_folder, ws


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


def test_browse_clusters_images_and_detail(
    window: MainWindow, library: tuple[Path, Path], qtbot: QtBot
) -> None:
    folder, ws = library
    window.workspace = ws
    window.open_folders([folder], scan=False)
    assert window.cluster_model.rowCount() >= 2
    sizes = [
        window.cluster_model.data(window.cluster_model.index(r), window.cluster_model.SizeRole)
        for r in range(window.cluster_model.rowCount())
    ]
    assert sum(sizes) == 48
    assert window.grid_model is not None and window.grid_model.rowCount() == sizes[0]
    window.grid.setCurrentIndex(window.grid_model.index(0))
    assert str(folder) in window.detail.path.text()
    assert window.detail.neighbors.count() == 10
    assert "%" in window.detail.probabilities.text()
    neighbor = window.detail.neighbors.item(0)
    neighbor_id = int(neighbor.data(Qt.ItemDataRole.UserRole))
    window._neighbor_clicked(neighbor)  # clicking a neighbour shows it
    assert window.session is not None
    assert str(window.session.detail(neighbor_id).path) in window.detail.path.text()


def test_rename_ignore_and_undo(window: MainWindow, library: tuple[Path, Path]) -> None:
    folder, ws = library
    window.workspace = ws
    window.open_folders([folder], scan=False)
    model = window.cluster_model
    first = model.index(0)
    cluster = model.data(first, model.ClusterRole)
    model.setData(first, "Beach", Qt.ItemDataRole.EditRole)  # routed through the session
    assert window.session is not None and window.session.cluster_name(cluster) == "Beach"
    before = window.grid_model.rowCount() if window.grid_model else 0
    window.grid.selectionModel().select(
        window.grid_model.index(0), window.grid.selectionModel().SelectionFlag.Select
    )
    window._ignore()
    assert window.grid_model is not None and window.grid_model.rowCount() == before - 1
    window._undo()
    assert window.grid_model.rowCount() == before
    window._undo()
    assert window.session.cluster_name(cluster) == f"Cluster {cluster}"


@pytest.mark.parametrize("state", ["start", "clusters", "training"])
def test_screenshot_states(
    state: str, library: tuple[Path, Path], tmp_path: Path, qtbot: QtBot
) -> None:
    folder, ws = library
    out = tmp_path / f"{state}.png"
    assert (
        main(["--screenshot", str(out), "--state", state, "--workspace", str(ws), str(folder)]) == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    window._export()
    qtbot.waitUntil(lambda: not window.runner.running, timeout=30000)
    exported = [p for p in dest.rglob("*.png")]
    assert len(exported) == 48
    assert any(dest.glob("crlc-export-*.csv"))


def test_dropping_images_on_a_cluster_moves_them(
    window: MainWindow, library: tuple[Path, Path]
) -> None:
    folder, ws = library
    window.workspace = ws
    window.open_folders([folder], scan=False)
    assert window.grid_model is not None and window.session is not None
    image = window.grid_model.image_id(0)
    mime = window.grid_model.mimeData([window.grid_model.index(0)])
    target = window.cluster_model.index(window.cluster_model.rowCount() - 1)
    cluster = window.cluster_model.data(target, window.cluster_model.ClusterRole)
    assert window.cluster_model.dropMimeData(mime, Qt.DropAction.MoveAction, -1, 0, target)
    assert window.session.detail(image).label == window.session.cluster_name(cluster)


def test_job_panel_plots_loss_and_cluster_sizes(window: MainWindow, tmp_path: Path) -> None:
    from crlc_engine.events import EpochEnded, TrainingStarted

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
