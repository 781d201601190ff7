"""Fixtures of the app tests: a scanned library with a written (fake) run, theme restore."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QToolTip
from pytestqt.qtbot import QtBot

from app.theme import ThemeController
from crlc_engine.library import ImageLibrary
from crlc_engine.results import ResultStore


@pytest.fixture
def library(shapes_folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The shapes folder scanned, with a completed fake run of 3 clusters (the folder is
    shared by the session: a test that changes photos takes :func:`own_library`)."""
    return make_library(shapes_folder, tmp_path / "ws")


@pytest.fixture
def own_library(shapes_folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Like :func:`library`, on the test's own copy of the photos (free to change)."""
    photos = tmp_path / "photos"
    shutil.copytree(shapes_folder, photos)
    return make_library(photos, tmp_path / "ws")


def make_library(shapes_folder: Path, ws: Path) -> tuple[Path, Path]:
    """Scan ``shapes_folder`` into ``ws`` and write a completed fake run of 3 clusters."""
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
def restore_theme(qtbot: QtBot) -> Iterator[QApplication]:
    """The application; its palette and style are restored and a theme controller made
    during the test is removed afterwards."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    palette, style = QPalette(app.palette()), app.style().name()
    yield app
    controller = app.findChild(ThemeController, "crlc-theme-controller")
    if controller is not None:
        controller.detach()
        controller.deleteLater()
    app.setStyle(style)
    app.setPalette(palette)
    QToolTip.setPalette(palette)
