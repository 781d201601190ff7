"""Fixtures of the app tests: a scanned library with a written (fake) run, theme restore;
helpers for factory fixtures, solid-colour thumbnails and a thumbnail grid."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSize
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QListView, QToolTip
from pytestqt.qtbot import QtBot

from app.itemmodels import ThumbnailCache
from app.theme import ThemeController
from app.views.thumbnail_delegate import ThumbnailDelegate
from crlc_engine.library import ImageLibrary
from crlc_engine.results.assignments import ResultStore

T = TypeVar("T")


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


# ---------------------------------------------------------------------- factory fixtures
def made_then_torn_down(
    make: Callable[..., T], teardown: Callable[[T], object]
) -> Iterator[Callable[..., T]]:
    """The body of a factory fixture (``yield from`` it): yields ``make``, keeping what it
    made, and after the test calls ``teardown`` on each of those in turn."""
    made: list[T] = []

    def keep(*args: Any, **kwargs: Any) -> T:
        thing = make(*args, **kwargs)
        made.append(thing)
        return thing

    yield keep
    for thing in made:
        teardown(thing)


def solid_thumbnails(
    folder: Path, count: int, colour_of: Callable[[int], tuple[int, int, int]], quality: int
) -> Path:
    """``count`` solid-colour 256 x 192 JPEGs ``<k>.jpg`` of ``colour_of(k)`` in ``folder``."""
    for k in range(count):
        Image.new("RGB", (256, 192), colour_of(k)).save(folder / f"{k}.jpg", quality=quality)
    return folder


def shut_down_cache(cache: ThumbnailCache) -> None:
    assert cache.shutdown(5000)


def thumbnail_caches(
    thumbnail_path: Callable[[int], Path],
) -> Iterator[Callable[..., ThumbnailCache]]:
    """The body of a factory fixture of :class:`ThumbnailCache`s reading ``thumbnail_path``
    (unless given another), all shut down after the test."""

    def make(**kwargs: Any) -> ThumbnailCache:
        kwargs.setdefault("thumbnail_path", thumbnail_path)
        return ThumbnailCache(**kwargs)

    yield from made_then_torn_down(make, shut_down_cache)


def thumbnail_grid(
    qtbot: QtBot, model: Any, width: int, height: int, **delegate_options: Any
) -> tuple[QListView, ThumbnailDelegate]:
    """A shown ``width`` x ``height`` icon-mode list of ``model`` (96 px icons, the grid's
    cells) painted by a :class:`ThumbnailDelegate` made with ``delegate_options``."""
    view = QListView()
    qtbot.addWidget(view)
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setIconSize(QSize(96, 96))
    view.setGridSize(QSize(106, 126))
    view.setModel(model)
    delegate = ThumbnailDelegate(view, **delegate_options)
    view.setItemDelegate(delegate)
    view.resize(width, height)
    view.show()
    return view, delegate
