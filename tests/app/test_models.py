"""Qt item models over plain engine data: groups, thumbnail grid, thumbnail cache.

Every model runs under Qt's QAbstractItemModelTester (warnings collected and failed on).
Thumbnails are small JPEGs written with Pillow; decodes are counted and, where a test needs
determinism, held back by a patched decoder.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QImage, QPalette
from PySide6.QtTest import QAbstractItemModelTester
from PySide6.QtWidgets import QApplication, QListView
from pytestqt.qtbot import QtBot

import app.itemmodels.thumbnail_cache as cache_module
from app.itemmodels import (
    IMAGE_IDS_MIME,
    PALETTE,
    PYSIDE_REFCOUNT_WORKAROUND,
    GroupListModel,
    ThumbnailCache,
    ThumbnailGridModel,
    binding_drops_references,
    cluster_members,
    decode_image_ids,
    decode_thumbnail,
    encode_image_ids,
    group_color,
    pin_python_singletons,
)
from crlc_engine.results.assignments import RunAssignments
from crlc_engine.results.groups import GroupSummary
from tests.app.conftest import solid_thumbnails, thumbnail_caches, thumbnail_grid

DISPLAY = Qt.ItemDataRole.DisplayRole
EDIT = Qt.ItemDataRole.EditRole
DECORATION = Qt.ItemDataRole.DecorationRole
TOOLTIP = Qt.ItemDataRole.ToolTipRole
N_FILES = 24


def colour_of(k: int) -> tuple[int, int, int]:
    """The solid colour of generated thumbnail file ``k``."""
    return (40 + (k * 53) % 200, 40 + (k * 97) % 200, 40 + (k * 151) % 200)


@pytest.fixture(scope="module")
def thumbs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N_FILES solid-colour 256 x 192 JPEG thumbnails named ``<k>.jpg``."""
    return solid_thumbnails(tmp_path_factory.mktemp("thumbs"), N_FILES, colour_of, quality=90)


@pytest.fixture
def make_cache(qtbot: QtBot, thumbs_dir: Path) -> Iterator[Callable[..., ThumbnailCache]]:
    """Caches mapping image id i to file ``i % N_FILES``; all shut down afterwards."""
    yield from thumbnail_caches(lambda i: thumbs_dir / f"{i % N_FILES}.jpg")


@pytest.fixture
def checked(qtlog: Any) -> Iterator[Callable[[Any], None]]:
    """Attach Qt's model tester to a model; fail on any complaint it logged."""
    testers = []

    def attach(model: Any) -> None:
        mode = QAbstractItemModelTester.FailureReportingMode.Warning
        testers.append(QAbstractItemModelTester(model, mode))

    yield attach
    failures = [r.message for r in qtlog.records if "FAIL!" in r.message]
    assert not failures, failures


class Recorder:
    """Patches the decoder: records (image id, thread) and can hold decodes back."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: bool = False) -> None:
        self.calls: list[tuple[int, int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        real = decode_thumbnail

        def fake(path: str, max_side: int | None) -> QImage:
            self.calls.append((int(Path(path).stem.split("-")[-1]), threading.get_ident()))
            self.started.set()
            assert self.release.wait(10)
            return real(path, max_side)

        monkeypatch.setattr(cache_module, "decode_thumbnail", fake)

    @property
    def ids(self) -> list[int]:
        return [i for i, _ in self.calls]


def by_id_paths(thumbs_dir: Path, tmp_path: Path, ids: list[int]) -> Callable[[int], Path]:
    """A path function whose file names carry the image id (links to the generated files)."""
    for i in ids:
        link = tmp_path / f"img-{i}.jpg"
        if not link.exists():
            link.symlink_to(thumbs_dir / f"{i % N_FILES}.jpg")
    return lambda i: tmp_path / f"img-{i}.jpg"


def group(
    key: str, name: str | None, size: int, conf: float, colour: int, **kw: Any
) -> GroupSummary:
    values: dict[str, Any] = {"clusters": (colour,), "top_image_ids": [], "labelled": 0}
    values.update(kw)
    return GroupSummary(key, name, mean_confidence=conf, size=size, colour=colour, **values)


def summaries() -> list[GroupSummary]:
    return [
        group("group:Beach", "Beach", 812, 0.87, 0, clusters=(0, 3), labelled=4),
        group("cluster:1", None, 331, 0.61, 1),
        group("group:Food", "Food", 377, 0.92, 2, flags=("changed: only 5 of 10",)),
    ]


def pixel(image: QImage, x: int, y: int) -> tuple[int, int, int]:
    colour = QColor(image.pixel(x, y))
    return colour.red(), colour.green(), colour.blue()


def close_to(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------- groups
def test_group_roles(qtbot: QtBot, checked: Callable[[Any], None]) -> None:
    model = GroupListModel()
    checked(model)
    model.set_groups(summaries())
    assert model.rowCount() == 3
    idx = [model.index(r) for r in range(3)]
    assert [model.data(i) for i in idx] == ["Beach (812)", "Cluster 1 (331)", "Food (377) \u26a0"]
    assert model.data(idx[1], EDIT) == "Cluster 1"
    assert model.data(idx[2], GroupListModel.ColorRole) == group_color(2) == QColor(PALETTE[2])
    swatch = model.data(idx[2], DECORATION)  # the colour, outlined for the palette
    assert isinstance(swatch, QIcon)
    palette = QGuiApplication.palette()
    for mode, role in (
        (QIcon.Mode.Normal, QPalette.ColorRole.Text),
        (QIcon.Mode.Selected, QPalette.ColorRole.HighlightedText),
    ):
        image = swatch.pixmap(QSize(16, 16), mode).toImage()
        assert image.pixelColor(8, 8) == group_color(2)  # not tinted when selected
        edge = image.pixelColor(1, 8)
        assert abs(edge.lightness() - palette.color(role).lightness()) < 90
    assert model.data(idx[2], DECORATION).cacheKey() == swatch.cacheKey()  # made once
    assert "0.61" in model.data(idx[1], TOOLTIP) and "331" in model.data(idx[1], TOOLTIP)
    beach = model.data(idx[0], TOOLTIP)
    assert "clusters 0, 3" in beach and "merged" in beach and "4 labelled or moved" in beach
    assert "changed: only 5 of 10" in model.data(idx[2], TOOLTIP)
    assert model.data(idx[2], GroupListModel.KeyRole) == "group:Food"
    assert model.data(idx[0], GroupListModel.ClustersRole) == (0, 3)
    assert model.data(idx[0], GroupListModel.SizeRole) == 812
    assert model.data(idx[0], GroupListModel.MeanConfidenceRole) == pytest.approx(0.87)
    assert model.data(idx[0], GroupListModel.NameRole) == "Beach"
    assert model.data(idx[1], GroupListModel.NameRole) is None
    assert model.data(idx[2], GroupListModel.FlagsRole) == ("changed: only 5 of 10",)
    assert model.data(idx[0], GroupListModel.StatsRole) == "812 photos \u00b7 87 %"
    assert model.data(idx[0], GroupListModel.CoverIdsRole) == ()  # no top pictures
    assert model.data(idx[0], GroupListModel.CoverRole) is None  # no thumbnail source
    assert model.flags(idx[0]) & Qt.ItemFlag.ItemIsEditable
    names = model.roleNames()
    assert bytes(names[GroupListModel.MeanConfidenceRole].data()) == b"meanConfidence"
    assert bytes(names[GroupListModel.CoverRole].data()) == b"cover"
    assert model.row_of("group:Food") == 2 and model.row_of("cluster:9") == -1
    assert model.summary(0).name == "Beach"


def test_palette_is_distinct_and_deterministic() -> None:
    def rgb(c: QColor) -> np.ndarray:
        return np.array([c.red(), c.green(), c.blue()], dtype=float)

    colours = [rgb(group_color(k)) for k in range(len(PALETTE))]
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(colours) for b in colours[i + 1 :]]
    assert min(gaps) > 40
    extra = [group_color(k) for k in range(len(PALETTE), len(PALETTE) + 60)]
    assert all(c.isValid() for c in extra)
    assert [c.name() for c in extra] == [group_color(k).name() for k in range(20, 80)]
    # Neighbouring indices beyond the palette still look different.
    assert all(np.linalg.norm(rgb(a) - rgb(b)) > 40 for a, b in itertools.pairwise(extra))


def test_set_groups_updates_in_place_or_resets(
    qtbot: QtBot, checked: Callable[[Any], None]
) -> None:
    model = GroupListModel()
    checked(model)
    model.set_groups(summaries())
    kept = QPersistentModelIndex(model.index(1))
    changes: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda a, b, roles=(): changes.append((a.row(), b.row())))
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))

    grown = summaries()
    grown[1] = group("cluster:1", None, 340, 0.6, 1)
    model.set_groups(grown)
    assert changes == [(1, 1)] and not resets
    assert kept.isValid() and kept.row() == 1
    assert model.data(model.index(1)) == "Cluster 1 (340)"

    model.set_groups(grown)  # nothing changed: no signal
    assert changes == [(1, 1)]

    model.set_groups([group("group:Dogs", "Dogs", 5, 0.5, 4)])
    assert resets == [1] and model.rowCount() == 1
    assert model.data(model.index(0)) == "Dogs (5)"
    assert model.data(model.index(0), GroupListModel.ColorRole) == group_color(4)
    model.set_groups([])
    assert model.rowCount() == 0 and resets == [1, 1]


def test_rename_emits_a_request_and_changes_nothing(qtbot: QtBot) -> None:
    model = GroupListModel()
    model.set_groups(summaries())
    requests: list[tuple[str, str]] = []
    model.renameRequested.connect(lambda k, n: requests.append((k, n)))

    assert model.setData(model.index(0), "  Sea   side ", EDIT)
    assert requests == [("group:Beach", "Sea side")]
    assert model.data(model.index(0)) == "Beach (812)"  # unchanged until set_groups

    assert not model.setData(model.index(0), "Beach", EDIT)  # same name
    assert not model.setData(model.index(1), "Cluster 1", EDIT)  # the default name
    assert not model.setData(model.index(1), "   ", EDIT)  # nothing to clear
    assert not model.setData(model.index(0), "", EDIT)  # a merge keeps a name
    assert not model.setData(model.index(0), "Sea", DISPLAY)  # wrong role
    assert model.setData(model.index(2), "", EDIT)  # clear a one-cluster name
    assert model.setData(model.index(1), "Kids", EDIT)
    assert requests == [("group:Beach", "Sea side"), ("group:Food", ""), ("cluster:1", "Kids")]

    changed: list[int] = []
    model.dataChanged.connect(lambda a, b, roles=(): changed.append(a.row()))
    model.set_name("cluster:1", "Kids")
    assert changed == [1] and model.data(model.index(1)) == "Kids (331)"
    with pytest.raises(KeyError):
        model.set_name("cluster:7", "x")


def test_images_dropped_on_a_group_request_a_move(qtbot: QtBot, make_cache: Any) -> None:
    clusters = GroupListModel()
    clusters.set_groups(summaries())
    grid = ThumbnailGridModel(make_cache())
    grid.set_images([10, 11, 12], [0.5, 0.9, 0.7], ["a.jpg", "b.jpg", "c.jpg"])
    mime = grid.mimeData([grid.index(2), grid.index(0), grid.index(0)])
    assert decode_image_ids(mime) == [11, 10]  # row order: 11 (0.9), 12 (0.7), 10 (0.5)
    moves: list[tuple[list[int], str]] = []
    clusters.moveRequested.connect(lambda ids, k: moves.append((list(ids), k)))

    move = Qt.DropAction.MoveAction
    assert clusters.canDropMimeData(mime, move, -1, -1, clusters.index(2))
    assert not clusters.canDropMimeData(mime, move, 1, 0, QModelIndex())  # between rows
    other = QMimeData()
    other.setText("hello")
    assert not clusters.canDropMimeData(other, move, -1, -1, clusters.index(2))
    assert clusters.dropMimeData(mime, move, -1, -1, clusters.index(2))
    assert moves == [([11, 10], "group:Food")]
    assert clusters.rowCount() == 3 and IMAGE_IDS_MIME in clusters.mimeTypes()
    bad = QMimeData()
    bad.setData(IMAGE_IDS_MIME, b"not json")
    assert decode_image_ids(bad) is None
    assert decode_image_ids(encode_image_ids([])) == []


# ---------------------------------------------------------------------- grid model
def grid_with(cache: ThumbnailCache, n: int = 5) -> ThumbnailGridModel:
    model = ThumbnailGridModel(cache)
    ids = [3, 1, 4, 2, 5][:n]
    conf = [0.5, 0.9, 0.5, 0.2, 0.99][:n]
    model.set_images(
        np.array(ids),
        np.array(conf),
        [f"Trip/Day 1/IMG_{i}.JPG" for i in ids],
        labels={4: "Beach", 2: "Food", 77: "elsewhere"},
        ignored={2, 99},
    )
    return model


def test_grid_roles_and_default_order(
    qtbot: QtBot, make_cache: Any, checked: Callable[[Any], None]
) -> None:
    model = ThumbnailGridModel(make_cache())
    checked(model)
    model.set_images(
        np.array([3, 1, 4, 2, 5]),
        np.array([0.5, 0.9, 0.5, 0.2, 0.99]),
        [f"Trip/Day 1/IMG_{i}.JPG" for i in (3, 1, 4, 2, 5)],
        labels={4: "Beach", 2: "Food", 77: "elsewhere"},
        ignored={2, 99},
    )
    assert not model.low_confidence_first
    assert model.image_ids().tolist() == [5, 1, 3, 4, 2]  # ties (0.5) by id
    assert [model.image_id(r) for r in range(5)] == [5, 1, 3, 4, 2]
    row = model.row_of(4)
    assert row == 3 and model.row_of(42) == -1
    index = model.index(row)
    assert model.data(index) == "IMG_4.JPG"
    assert model.data(index, ThumbnailGridModel.ImageIdRole) == 4
    assert model.data(index, ThumbnailGridModel.ConfidenceRole) == pytest.approx(0.5)
    assert model.data(index, ThumbnailGridModel.LabelRole) == "Beach"
    assert model.label_of(row) == "Beach"
    assert model.data(index, ThumbnailGridModel.IgnoredRole) is False
    assert model.data(index, ThumbnailGridModel.PathRole) == "Trip/Day 1/IMG_4.JPG"
    tip = model.data(index, TOOLTIP)
    assert "Trip/Day 1/IMG_4.JPG" in tip and "0.500" in tip and "Beach" in tip
    last = model.index(4)
    assert model.data(last, ThumbnailGridModel.IgnoredRole) is True
    assert "ignored" in model.data(last, TOOLTIP)
    assert model.data(model.index(0), ThumbnailGridModel.LabelRole) is None
    assert model.flags(index) & Qt.ItemFlag.ItemIsDragEnabled
    assert not model.flags(index) & Qt.ItemFlag.ItemIsEditable
    assert model.data(model.index(9)) is None


def test_low_confidence_first_moves_persistent_indexes(
    qtbot: QtBot, make_cache: Any, checked: Callable[[Any], None]
) -> None:
    model = grid_with(make_cache())
    checked(model)
    selected = QPersistentModelIndex(model.index(model.row_of(1)))
    layouts: list[int] = []
    model.layoutChanged.connect(lambda *args: layouts.append(1))

    model.set_low_confidence_first(True)
    assert model.low_confidence_first
    assert model.sortOrder() == Qt.SortOrder.AscendingOrder
    assert model.image_ids().tolist() == [2, 3, 4, 1, 5]
    assert selected.row() == 3 and selected.data(ThumbnailGridModel.ImageIdRole) == 1
    assert layouts == [1]
    model.set_low_confidence_first(True)  # already so: no layout change
    assert layouts == [1]
    model.sort(0, Qt.SortOrder.DescendingOrder)
    assert model.image_ids().tolist() == [5, 1, 3, 4, 2] and selected.row() == 1
    # New images keep the chosen order.
    model.set_low_confidence_first(True)
    model.set_images([7, 8], [0.9, 0.1], ["x/7.jpg", "x/8.jpg"])
    assert model.image_ids().tolist() == [8, 7]


def test_extend_images_appends_rows_while_a_scan_brings_them(
    qtbot: QtBot, make_cache: Any, checked: Callable[[Any], None]
) -> None:
    model = ThumbnailGridModel(make_cache())
    checked(model)
    nan = float("nan")
    model.set_images([1, 2, 3], [nan] * 3, ["a/1.jpg", "a/2.jpg", "a/3.jpg"], labels={2: "Cat"})
    current = QPersistentModelIndex(model.index(1))
    inserted: list[tuple[int, int]] = []
    resets: list[int] = []
    model.rowsInserted.connect(lambda _parent, first, last: inserted.append((first, last)))
    model.modelReset.connect(lambda: resets.append(1))

    added = model.extend_images(
        [2, 3, 4, 5], [nan] * 4, ["a/2.jpg", "a/3.jpg", "b/4.jpg", "b/5.jpg"]
    )
    assert added == 2 and inserted == [(3, 4)] and resets == []
    assert model.image_ids().tolist() == [1, 2, 3, 4, 5]  # not grouped: by id
    assert current.row() == 1 and model.label_of(1) == "Cat"  # kept through the insert
    assert model.data(model.index(4)) == "5.jpg"
    tip = model.data(model.index(4), TOOLTIP)
    assert tip == "b/5.jpg"  # no confidence for an image not grouped yet
    assert model.extend_images([1, 5], [nan, nan], ["a/1.jpg", "b/5.jpg"]) == 0

    # an image that sorts before the shown rows (a lower id) cannot be appended: reset
    model.set_images([10, 11], [nan, nan], ["c/10.jpg", "c/11.jpg"])
    resets.clear()
    assert model.extend_images([9], [nan], ["c/9.jpg"]) == 1
    assert resets == [1] and model.image_ids().tolist() == [9, 10, 11]
    with pytest.raises(ValueError, match="unique"):
        model.extend_images([12, 12], [nan, nan], ["x", "y"])


def test_labels_and_ignores_repaint_all_rows(qtbot: QtBot, make_cache: Any) -> None:
    model = grid_with(make_cache())
    changes: list[tuple[int, int, list[int]]] = []
    model.dataChanged.connect(lambda a, b, roles: changes.append((a.row(), b.row(), list(roles))))
    model.set_labels({5: "Sky"})
    model.set_ignored({5})
    assert changes == [
        (0, 4, [ThumbnailGridModel.LabelRole, TOOLTIP]),
        (0, 4, [ThumbnailGridModel.IgnoredRole, TOOLTIP]),
    ]
    top = model.index(0)
    assert model.data(top, ThumbnailGridModel.LabelRole) == "Sky"
    assert model.data(top, ThumbnailGridModel.IgnoredRole) is True
    assert model.data(model.index(model.row_of(4)), ThumbnailGridModel.LabelRole) is None


def test_set_images_rejects_bad_input(qtbot: QtBot, make_cache: Any) -> None:
    model = ThumbnailGridModel(make_cache())
    with pytest.raises(ValueError, match="length"):
        model.set_images([1, 2], [0.5], ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        model.set_images([1, 1], [0.5, 0.6], ["a", "b"])
    assert model.rowCount() == 0


def test_cluster_members_selects_one_cluster() -> None:
    run = RunAssignments(
        image_ids=np.array([1, 2, 3, 4]),
        clusters=np.array([0, 1, 0, 1]),
        confidences=np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32),
        probabilities=np.zeros((4, 2), np.float32),
        features=np.zeros((4, 3), np.float32),
    )
    ids, conf = cluster_members(run, 1)
    assert ids.tolist() == [2, 4] and conf.tolist() == pytest.approx([0.2, 0.4])


# ---------------------------------------------------------------------- lazy loading
def test_thumbnail_loads_lazily_and_repaints_one_row(
    qtbot: QtBot, make_cache: Any, checked: Callable[[Any], None]
) -> None:
    cache = make_cache()
    model = ThumbnailGridModel(cache)
    ids = np.arange(100, 150)
    model.set_images(ids, np.linspace(0.99, 0.5, 50), [f"p/{i}.jpg" for i in ids])
    checked(model)  # the tester reads row 0 and so asks for its thumbnail
    qtbot.waitUntil(cache.is_idle, timeout=5000)
    changes: list[tuple[int, int, list[int]]] = []
    model.dataChanged.connect(lambda a, b, roles: changes.append((a.row(), b.row(), list(roles))))
    before = cache.decode_count

    index = model.index(7)
    image_id = model.image_id(7)
    first = model.data(index, DECORATION)
    assert first.cacheKey() == model.placeholder.cacheKey()
    assert cache.is_loading(image_id)
    with qtbot.waitSignal(cache.loaded, timeout=5000) as blocker:
        pass
    assert blocker.args == [image_id]
    assert changes == [(7, 7, [int(DECORATION)])]
    loaded = model.data(index, DECORATION)
    assert isinstance(loaded, QImage) and not loaded.isNull()
    assert loaded.size() == QSize(128, 96)
    assert close_to(pixel(loaded, 64, 48), colour_of(image_id % N_FILES))
    assert cache.decode_count == before + 1
    assert model.data(index, DECORATION).cacheKey() == loaded.cacheKey()  # cached now
    assert cache.decode_count == before + 1


def test_data_never_decodes_on_the_gui_thread(
    qtbot: QtBot, make_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, hold=True)
    cache = make_cache(threads=2)
    model = ThumbnailGridModel(cache)
    model.set_images(np.arange(20), np.full(20, 0.5), [f"{i}.jpg" for i in range(20)])
    try:
        shown = [model.data(model.index(r), DECORATION) for r in range(10)]
        assert all(s.cacheKey() == model.placeholder.cacheKey() for s in shown)
    finally:
        recorder.release.set()
    qtbot.waitUntil(cache.is_idle, timeout=5000)
    assert len(recorder.calls) == 10
    gui = threading.get_ident()
    assert all(thread != gui for _, thread in recorder.calls)


def test_only_requested_rows_are_decoded(
    qtbot: QtBot,
    make_cache: Any,
    monkeypatch: pytest.MonkeyPatch,
    thumbs_dir: Path,
    tmp_path: Path,
) -> None:
    recorder = Recorder(monkeypatch)
    ids = list(range(1000))
    cache = make_cache(thumbnail_path=by_id_paths(thumbs_dir, tmp_path, ids[:40]))
    model = ThumbnailGridModel(cache)
    model.set_images(np.array(ids), np.linspace(1, 0, 1000), [f"{i}.jpg" for i in ids])
    for row in range(10, 15):
        model.data(model.index(row), DECORATION)
        model.data(model.index(row), DISPLAY)
    for row in range(20, 40):  # other roles never load thumbnails
        for role in (DISPLAY, TOOLTIP, ThumbnailGridModel.ConfidenceRole):
            model.data(model.index(row), role)
    qtbot.waitUntil(cache.is_idle, timeout=5000)
    assert cache.decode_count == 5
    assert sorted(recorder.ids) == [model.image_id(r) for r in range(10, 15)]
    assert cache.cached_count == 5


def test_a_list_view_decodes_only_visible_thumbnails(
    qtbot: QtBot,
    make_cache: Any,
    monkeypatch: pytest.MonkeyPatch,
    thumbs_dir: Path,
    tmp_path: Path,
) -> None:
    """An IconMode view with uniform item sizes asks only for the painted thumbnails."""
    recorder = Recorder(monkeypatch)
    n = 3000
    cache = make_cache(
        thumbnail_path=by_id_paths(thumbs_dir, tmp_path, list(range(n))), max_side=48
    )
    model = ThumbnailGridModel(cache)
    model.set_images(np.arange(n), np.linspace(1, 0, n), [f"{i}.jpg" for i in range(n)])
    view = QListView()
    qtbot.addWidget(view)
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setMovement(QListView.Movement.Static)
    view.setUniformItemSizes(True)  # without it Qt sizes, and so decodes, every item
    view.setLayoutMode(QListView.LayoutMode.Batched)
    view.setIconSize(QSize(48, 48))
    view.setGridSize(QSize(64, 72))
    view.resize(400, 300)
    view.setModel(model)
    view.show()
    qtbot.waitExposed(view)
    bar = view.verticalScrollBar()
    columns = view.viewport().width() // 64
    full_height = -(-n // columns) * 72 - view.viewport().height()
    qtbot.waitUntil(lambda: bar.maximum() >= full_height, timeout=10000)  # batched layout

    def visible_rows() -> set[int]:
        area = view.viewport().rect()
        return {r for r in range(n) if view.visualRect(model.index(r)).intersects(area)}

    seen: set[int] = set()
    for value in (0, bar.maximum() // 3, bar.maximum()):
        bar.setValue(value)
        QApplication.processEvents()
        qtbot.waitUntil(cache.is_idle, timeout=5000)
        seen |= visible_rows()
    assert any(r > n // 2 for r in seen)
    visible_ids = {model.image_id(r) for r in seen}
    decoded = set(recorder.ids)
    assert visible_ids <= decoded
    # Besides the painted rows, Qt's layout sizes the first and last item once.
    assert decoded <= visible_ids | {model.image_id(0), model.image_id(n - 1)}
    assert cache.decode_count == len(decoded) < 0.1 * n


# ---------------------------------------------------------------------- the cache
def test_binding_reference_bug_is_neutralised(qtbot: QtBot, make_cache: Any) -> None:
    """PySide6 6.12 on CPython 3.11 loses a reference to None per Python override returning
    None to C++ and one to True per emit(); importing app.itemmodels pins both, so long
    sessions of painting and signalling do not abort the interpreter."""
    if binding_drops_references():
        assert PYSIDE_REFCOUNT_WORKAROUND
        assert min(sys.getrefcount(x) for x in (None, True, False)) > 1 << 40
    model = grid_with(make_cache())
    clusters = GroupListModel()
    clusters.set_groups(summaries())
    index = model.index(0)
    for k in range(10_000):
        assert index.data(Qt.ItemDataRole.FontRole) is None  # C++ -> Python data() -> None
        clusters.set_name("group:Beach", f"Beach {k % 3}")  # emit()
    assert pin_python_singletons() == PYSIDE_REFCOUNT_WORKAROUND  # idempotent


def test_decode_thumbnail_fits_the_box(thumbs_dir: Path) -> None:
    small = decode_thumbnail(str(thumbs_dir / "3.jpg"), 128)
    assert small.size() == QSize(128, 96)
    assert small.format() == QImage.Format.Format_RGB32
    assert close_to(pixel(small, 10, 10), colour_of(3))
    assert decode_thumbnail(str(thumbs_dir / "3.jpg"), None).size() == QSize(256, 192)
    with pytest.raises(OSError):
        decode_thumbnail(str(thumbs_dir / "nope.jpg"), 64)


def test_lru_keeps_the_most_recently_used(qtbot: QtBot, make_cache: Any) -> None:
    cache = make_cache(capacity=3)
    for image_id in (1, 2, 3):  # one at a time: the LRU order is 1, 2, 3
        with qtbot.waitSignal(cache.loaded, timeout=5000):
            cache.request(image_id)
    assert cache.cached_count == 3
    assert cache.get(1) is not None  # 1 becomes the most recently used
    with qtbot.waitSignal(cache.loaded, timeout=5000):
        cache.request(4)
    assert cache.cached_count == 3
    assert 2 not in cache and all(i in cache for i in (1, 3, 4))
    assert cache.get(2) is None
    assert cache.request(2)  # evicted: decoded again when asked
    qtbot.waitUntil(cache.is_idle, timeout=5000)
    assert 3 not in cache and cache.decode_count == 5


def test_lru_keeps_at_most_max_bytes_of_pixels(qtbot: QtBot, make_cache: Any) -> None:
    one = 128 * 96 * 4  # a 256 x 192 thumbnail fitted to 128 px, RGB32
    cache = make_cache(max_bytes=2 * one + 1)
    assert cache.max_bytes == 2 * one + 1 and cache.cached_bytes == 0
    for image_id in (1, 2, 3):  # one at a time: the LRU order is 1, 2, 3
        with qtbot.waitSignal(cache.loaded, timeout=5000):
            cache.request(image_id)
    assert cache.cached_count == 2 and cache.cached_bytes == 2 * one
    assert 1 not in cache and all(i in cache for i in (2, 3))  # the least recently used went
    cache.invalidate([2])
    assert cache.cached_count == 1 and cache.cached_bytes == one
    cache.clear()
    assert cache.cached_bytes == 0


def test_an_image_over_max_bytes_is_still_kept(qtbot: QtBot, make_cache: Any) -> None:
    cache = make_cache(max_bytes=1)
    for image_id in (1, 2):
        with qtbot.waitSignal(cache.loaded, timeout=5000):
            cache.request(image_id)
        assert cache.cached_count == 1 and image_id in cache  # the one just asked for
    assert cache.cached_bytes == 128 * 96 * 4
    with pytest.raises(ValueError):
        make_cache(max_bytes=0)


def test_requests_are_deduplicated(
    qtbot: QtBot, make_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, hold=True)
    cache = make_cache(threads=1)
    try:
        assert cache.request(1)
        assert recorder.started.wait(5)
        assert not cache.request(1)  # being decoded
        assert cache.request(2)
        assert not any(cache.request(2) for _ in range(5))  # waiting
        assert cache.pending_count == 1
    finally:
        recorder.release.set()
    qtbot.waitUntil(cache.is_idle, timeout=5000)
    assert recorder.ids == [1, 2] and cache.decode_count == 2
    assert not cache.request(1)  # cached
    assert cache.request_many([1, 2, 3]) == 1
    qtbot.waitUntil(cache.is_idle, timeout=5000)
    assert cache.decode_count == 3


def test_queue_is_bounded_and_newest_first(
    qtbot: QtBot, make_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, hold=True)
    cache = make_cache(threads=1, max_pending=3)
    try:
        cache.request(1)
        assert recorder.started.wait(5)
        for image_id in range(2, 11):
            cache.request(image_id)
        assert cache.pending_count == 3
        assert not cache.is_loading(5) and cache.is_loading(10)
        cache.request(8)  # asked again: becomes the newest
    finally:
        recorder.release.set()
    qtbot.waitUntil(cache.is_idle, timeout=5000)
    assert recorder.ids == [1, 8, 10, 9]
    assert 5 not in cache and cache.decode_count == 4


def test_cancel_pending_drops_waiting_requests(
    qtbot: QtBot, make_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, hold=True)
    cache = make_cache(threads=1)
    try:
        cache.request(1)
        assert recorder.started.wait(5)
        cache.request_many([2, 3, 4, 5])
        assert cache.cancel_pending(keep=[4]) == 3
        assert cache.pending_count == 1 and not cache.is_loading(2)
    finally:
        recorder.release.set()
    qtbot.waitUntil(cache.is_idle, timeout=5000)
    assert sorted(recorder.ids) == [1, 4]
    assert cache.request(2)  # dropped requests can be made again
    qtbot.waitUntil(cache.is_idle, timeout=5000)
    assert 2 in cache


def test_unreadable_thumbnail_shows_as_missing(
    qtbot: QtBot, make_cache: Any, tmp_path: Path
) -> None:
    cache = make_cache(thumbnail_path=lambda i: tmp_path / f"{i}.jpg")
    model = ThumbnailGridModel(cache)
    model.set_images([1], [0.5], ["gone.jpg"])
    with qtbot.waitSignal(cache.loaded, timeout=5000):
        model.data(model.index(0), DECORATION)
    image = cache.get(1)
    assert image is not None and image.isNull()
    shown = model.data(model.index(0), DECORATION)
    assert shown.cacheKey() == model.missing_image.cacheKey()
    assert not cache.request(1)  # not retried on every paint
    cache.invalidate([1])
    assert cache.request(1)  # retried once invalidated
    qtbot.waitUntil(cache.is_idle, timeout=5000)
    assert cache.decode_count == 2


def test_invalidate_redecodes_even_an_image_in_flight(
    qtbot: QtBot, make_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, hold=True)
    cache = make_cache(threads=1)
    try:
        cache.request(1)
        assert recorder.started.wait(5)
        cache.invalidate()
    finally:
        recorder.release.set()
    qtbot.waitUntil(lambda: 1 in cache, timeout=5000)
    assert recorder.ids == [1, 1]
    cache.clear()
    assert cache.cached_count == 0 and cache.is_idle()


def test_a_new_thumbnail_size_redecodes_at_that_size(
    qtbot: QtBot, make_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, hold=True)
    cache = make_cache(threads=1, max_side=64)
    model = ThumbnailGridModel(cache)
    model.set_images([1, 2], [0.9, 0.8], ["a.jpg", "b.jpg"])
    changed: list[int] = []
    model.dataChanged.connect(lambda a, b, roles=(): changed.append(b.row() - a.row() + 1))
    try:
        cache.request(1)
        assert recorder.started.wait(5)
        model.set_thumbnail_side(160)  # while image 1 is decoded at 64 px
    finally:
        recorder.release.set()
    assert cache.max_side == 160 and model.placeholder.size() == QSize(160, 160)
    assert changed == [2]  # every row repaints (and asks the cache again)
    qtbot.waitUntil(lambda: 1 in cache and cache.is_idle(), timeout=5000)
    assert recorder.ids == [1, 1]  # the 64 px decode was thrown away
    image = cache.get(1)
    assert image is not None and (image.width(), image.height()) == (160, 120)
    assert not cache.set_max_side(160)  # the same size: nothing to do
    assert cache.get(1) is not None


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_shutdown_leaves_no_running_threads(qtbot: QtBot, make_cache: Any) -> None:
    before = _os_threads()
    cache = make_cache(threads=2)
    loaded: list[int] = []
    cache.loaded.connect(loaded.append)
    cache.request_many(range(40))
    assert cache.shutdown(5000)
    assert cache.is_shut_down and cache.active_threads() == 0
    assert cache.pending_count == 0 and cache.is_idle()
    # OS threads of the pool may expire later and other libraries start their own, so the
    # OS-level count is only checked not to have grown by the pool's two threads for good.
    qtbot.waitUntil(lambda: _os_threads() <= before + 2, timeout=5000)
    count = len(loaded)
    QApplication.processEvents()  # decodes finished before shutdown are not delivered now
    assert len(loaded) == count
    assert not cache.request(99) and cache.pending_count == 0


def test_labelled_thumbnails_carry_a_mark(qtbot: QtBot, make_cache: Any) -> None:
    """The grid's delegate paints a round mark in the highlight colour on labelled (or moved)
    pictures, and nothing on the others."""
    from app.views.thumbnail_delegate import mark_rect

    model = grid_with(make_cache())  # labels: 4 (Beach) and 2 (Food)
    view, _ = thumbnail_grid(qtbot, model, 700, 200)
    qtbot.waitUntil(lambda: model.cache.get(1) is not None, timeout=5000)
    shot = view.viewport().grab().toImage()
    highlight = view.palette().color(QPalette.ColorRole.Highlight)
    for row in range(model.rowCount()):
        labelled = model.label_of(row) is not None
        mark = mark_rect(view.visualRect(model.index(row)))
        inside = [(mark.left() + 3, mark.center().y()), (mark.center().x(), mark.top() + 3)]
        colours = [shot.pixelColor(x, y) for x, y in inside]  # the fill, beside the glyph
        near = any(
            max(abs(c.red() - highlight.red()), abs(c.green() - highlight.green()),
                abs(c.blue() - highlight.blue())) <= 12
            for c in colours
        )  # fmt: skip
        assert near == labelled, (row, model.label_of(row), [c.name() for c in colours])
