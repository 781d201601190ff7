"""The group list with covers (model + :class:`GroupDelegate`) and the grid's confidence bar.

Thumbnails are small solid-colour JPEGs written with Pillow, so a cover's tiles and the bar
can be told apart by pixel colour. Views run offscreen (pytest-qt).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QIdentityProxyModel, QModelIndex, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPixmap
from PySide6.QtTest import QAbstractItemModelTester
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QLineEdit,
    QListView,
    QStyleOptionViewItem,
)
from pytestqt.qtbot import QtBot

from app.itemmodels import GroupListModel, ThumbnailCache, ThumbnailGridModel
from app.itemmodels.clusters import stats_text
from app.itemmodels.covers import COVER_SIDE, compose_cover, cover_ids
from app.views.group_delegate import GroupDelegate, row_rects
from app.views.thumbnail_delegate import ThumbnailDelegate, confidence_color
from crlc_engine.results.groups import GroupSummary
from tests.app.conftest import solid_thumbnails, thumbnail_caches, thumbnail_grid

N_COLOURS = 12
GREY = (128, 128, 128)


def colour_of(image_id: int) -> tuple[int, int, int]:
    """The solid colour of thumbnail ``image_id`` (ids from N_COLOURS on are grey)."""
    table = [
        (220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 200, 20),
        (200, 30, 200), (20, 200, 200), (240, 120, 20), (120, 60, 20),
        (250, 250, 250), (10, 10, 10), (120, 200, 120), (90, 40, 160),
    ]  # fmt: skip
    return table[image_id] if image_id < N_COLOURS else GREY


def close(colour: QColor, rgb: tuple[int, int, int], tol: int = 12) -> bool:
    return all(
        abs(a - b) <= tol for a, b in zip(colour.getRgb()[:3], rgb, strict=True)
    )  # fmt: skip


@pytest.fixture(scope="module")
def thumbs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cover-thumbs")
    return solid_thumbnails(folder, N_COLOURS + 1, colour_of, quality=95)


@pytest.fixture
def make_cache(qtbot: QtBot, thumbs: Path) -> Iterator[Callable[..., ThumbnailCache]]:
    yield from thumbnail_caches(lambda i: thumbs / f"{min(i, N_COLOURS)}.jpg")


def summary(
    key: str, top: list[int], size: int = 80, conf: float = 0.91, **kw: Any
) -> GroupSummary:
    values: dict[str, Any] = {"name": None, "clusters": (0,), "labelled": 0, "colour": 0}
    values.update(kw)
    return GroupSummary(key=key, size=size, mean_confidence=conf, top_image_ids=top, **values)


def groups_model(cache: ThumbnailCache | None, groups: list[GroupSummary]) -> GroupListModel:
    model = GroupListModel()
    QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Warning)
    model.set_groups(groups)
    model.set_thumbnail_source(cache)
    return model


def wait_cover(qtbot: QtBot, model: GroupListModel, row: int, side: int = COVER_SIDE) -> QImage:
    qtbot.waitUntil(lambda: model.cover(row, side, 1.0) is not None, timeout=5000)
    cover = model.cover(row, side, 1.0)
    assert cover is not None
    return cover.toImage()


def list_view(qtbot: QtBot, model: Any, height: int = 400) -> QListView:
    view = QListView()
    qtbot.addWidget(view)
    view.setUniformItemSizes(True)
    view.setModel(model)
    view.setItemDelegate(GroupDelegate(view))
    view.setEditTriggers(
        QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.DoubleClicked
    )
    view.resize(300, height)
    view.show()
    qtbot.waitExposed(view)
    return view


# ---------------------------------------------------------------------- the model's covers
def test_cover_is_the_most_confident_image(qtbot: QtBot, make_cache: Any) -> None:
    model = groups_model(
        make_cache(), [summary("cluster:0", [5, 1, 2]), summary("cluster:1", []), summary("g", [7])]
    )
    assert model.data(model.index(0), GroupListModel.CoverIdsRole) == (5,)
    assert cover_ids([]) == () and model.cover(1) is None  # no pictures: no cover
    image = wait_cover(qtbot, model, 0)
    assert image.width() == image.height() == COVER_SIDE
    for x, y in ((COVER_SIDE // 2, COVER_SIDE // 2), (8, 8), (COVER_SIDE - 8, COVER_SIDE - 8)):
        assert close(image.pixelColor(x, y), colour_of(5)), (x, y)
    assert close(wait_cover(qtbot, model, 2).pixelColor(28, 28), colour_of(7))


def test_mosaic_of_the_first_four_when_four_or_more(qtbot: QtBot, make_cache: Any) -> None:
    model = groups_model(make_cache(), [summary("cluster:0", [3, 1, 4, 0, 2, 6])])
    assert model.data(model.index(0), GroupListModel.CoverIdsRole) == (3, 1, 4, 0)
    image = wait_cover(qtbot, model, 0)
    q = COVER_SIDE // 4
    quadrants = [(q, q), (3 * q, q), (q, 3 * q), (3 * q, 3 * q)]  # row by row
    for (x, y), image_id in zip(quadrants, (3, 1, 4, 0), strict=True):
        assert close(image.pixelColor(x, y), colour_of(image_id)), (x, y, image_id)


def test_compose_cover_scales_to_side_and_pixel_ratio() -> None:
    red = QImage(200, 100, QImage.Format.Format_RGB32)
    red.fill(QColor(*colour_of(0)))
    cover = compose_cover([red], 40, 2.0)
    assert cover.size() == QSize(80, 80) and cover.devicePixelRatio() == 2.0
    missing = compose_cover([red, QImage(), red, red], 40)
    assert not close(missing.toImage().pixelColor(30, 10), colour_of(0))  # a grey tile


def test_cover_is_composed_once_and_kept(qtbot: QtBot, make_cache: Any) -> None:
    model = groups_model(make_cache(), [summary("cluster:0", [0, 1, 2, 3])])
    wait_cover(qtbot, model, 0)
    store = model.cover_store
    composed = store.composed
    first = model.cover(0, COVER_SIDE, 1.0)
    assert first is not None
    for _ in range(20):
        again = model.cover(0, COVER_SIDE, 1.0)
        assert again is not None and again.cacheKey() == first.cacheKey()
    assert store.composed == composed
    small = wait_cover(qtbot, model, 0, side=32)  # another size is another cover
    assert small.width() == 32 and store.composed == composed + 1


def test_row_repaints_once_when_its_cover_thumbnails_arrive(qtbot: QtBot, make_cache: Any) -> None:
    cache = make_cache()
    model = groups_model(cache, [summary("a", [0, 1, 2, 3]), summary("b", [4])])
    changes: list[tuple[int, list[int]]] = []
    model.dataChanged.connect(lambda a, b, roles=(): changes.append((a.row(), list(roles))))
    assert model.data(model.index(0), GroupListModel.CoverRole) is None  # requested now
    assert all(cache.is_loading(i) or i in cache for i in (0, 1, 2, 3))
    assert not cache.is_loading(4)  # row 1 was not asked for
    with qtbot.waitSignal(model.dataChanged, timeout=5000):
        pass
    qtbot.waitUntil(lambda: cache.is_idle(), timeout=5000)
    QApplication.processEvents()
    assert changes == [(0, [GroupListModel.CoverRole])]  # once, for the whole mosaic
    assert isinstance(model.data(model.index(0), GroupListModel.CoverRole), QPixmap)


def test_a_new_thumbnail_source_forgets_covers_and_repaints(qtbot: QtBot, make_cache: Any) -> None:
    model = groups_model(make_cache(), [summary("a", [0]), summary("b", [1])])
    wait_cover(qtbot, model, 0)
    changes: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda a, b, roles=(): changes.append((a.row(), b.row())))
    other = make_cache()
    model.set_thumbnail_source(other)
    assert changes == [(0, 1)] and len(model.cover_store) == 0
    assert model.thumbnail_source is other
    assert model.cover(0, COVER_SIDE, 1.0) is None and other.is_loading(0)
    model.set_thumbnail_source(None)
    assert model.cover(0) is None


def test_stats_text() -> None:
    assert stats_text(80, 0.912) == "80 photos \u00b7 91 %"
    assert stats_text(1, 0.5) == "1 photo \u00b7 50 %"
    assert stats_text(0, 0.0) == "0 photos"
    assert stats_text(3, float("nan")) == "3 photos"


# ---------------------------------------------------------------------- the delegate
def test_size_hint_and_row_layout(qtbot: QtBot, make_cache: Any) -> None:
    model = groups_model(make_cache(), [summary(f"c{k}", [k]) for k in range(3)])
    view = list_view(qtbot, model)
    delegate = view.itemDelegate()
    assert isinstance(delegate, GroupDelegate)
    option = QStyleOptionViewItem()
    option.initFrom(view)
    hint = delegate.sizeHint(option, model.index(0))
    assert 64 <= hint.height() <= 72
    rect = view.visualRect(model.index(1))
    assert rect.height() == hint.height() and rect.width() == view.viewport().width()
    parts = row_rects(rect, 18, 16, COVER_SIDE)
    assert parts.cover.left() > rect.left() and parts.cover.bottom() < rect.bottom()
    assert parts.name.left() > parts.swatch.right() > parts.cover.right()
    assert parts.stats.top() > parts.name.top() and parts.name.right() < rect.right()


class CountingDelegate(GroupDelegate):
    """Records (row, whether its cover was ready) for every row it paints."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.painted: list[tuple[int, bool]] = []

    def paint(self, painter: QPainter, option: Any, index: Any) -> None:
        super().paint(painter, option, index)
        model = index.model()
        ready = model.cover(index.row(), self.cover_side, 1.0) is not None
        self.painted.append((index.row(), ready))


def test_delegate_paints_a_placeholder_then_the_cover(qtbot: QtBot, make_cache: Any) -> None:
    cache = make_cache()
    model = groups_model(cache, [summary(f"c{k}", [k, 8, 9, 10]) for k in range(3)])
    view = list_view(qtbot, model)
    delegate = CountingDelegate(view)
    view.setItemDelegate(delegate)
    cover = row_rects(view.visualRect(model.index(0)), 18, 16, COVER_SIDE).cover
    q = cover.width() // 4
    tile = (cover.left() + q, cover.top() + q)  # the first tile: image k
    first = view.viewport().grab().toImage()
    assert (0, False) in delegate.painted
    assert not close(first.pixelColor(*tile), colour_of(0))  # placeholder while loading
    # no grab (which would paint anyway): the row repaints by itself when the covers came
    qtbot.waitUntil(lambda: (0, True) in delegate.painted, timeout=5000)
    shot = view.viewport().grab().toImage()
    assert close(shot.pixelColor(*tile), colour_of(0))


def test_only_visible_rows_request_covers(qtbot: QtBot, make_cache: Any) -> None:
    cache = make_cache(max_pending=2000)
    requested: list[int] = []
    real = cache.request

    def request(image_id: int) -> bool:
        requested.append(image_id)
        return real(image_id)

    cache.request = request  # type: ignore[method-assign]
    groups = [summary(f"c{k}", [1000 + 4 * k + j for j in range(4)]) for k in range(200)]
    model = groups_model(cache, groups)
    view = list_view(qtbot, model, height=300)
    qtbot.waitUntil(lambda: bool(requested) and cache.is_idle(), timeout=5000)
    QApplication.processEvents()
    rows = {(i - 1000) // 4 for i in requested}
    visible = {
        r for r in range(200) if view.visualRect(model.index(r)).intersects(view.viewport().rect())
    }
    assert rows <= visible and len(visible) < 10


def test_rename_through_the_delegate_editor(qtbot: QtBot, make_cache: Any) -> None:
    model = groups_model(
        make_cache(), [summary("group:Beach", [0], name="Beach"), summary("cluster:1", [1])]
    )
    view = list_view(qtbot, model)
    index = model.index(0)
    view.setCurrentIndex(index)
    view.edit(index)
    editor = view.findChild(QLineEdit, "group-name-editor")
    assert isinstance(editor, QLineEdit) and editor.isVisible()
    assert editor.text() == "Beach" and editor.selectedText() == "Beach"
    rect = view.visualRect(index)
    cover = row_rects(rect, 18, 16, COVER_SIDE).cover
    assert editor.geometry().left() > cover.right()  # over the name, not the cover
    assert rect.top() <= editor.geometry().center().y() < rect.center().y() + 4
    editor.clear()
    qtbot.keyClicks(editor, "  Sea   side ")
    # a cover arriving while the user types repaints the row; the typing stays
    model.dataChanged.emit(index, index, [GroupListModel.CoverRole])
    model.set_groups([summary("group:Beach", [0], name="Beach", size=81), model.summary(1)])
    assert editor.text() == "  Sea   side "
    with qtbot.waitSignal(model.renameRequested, timeout=2000) as blocker:
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert blocker.args == ["group:Beach", "Sea side"]


def test_delegate_works_through_a_proxy_model(qtbot: QtBot, make_cache: Any) -> None:
    model = groups_model(make_cache(), [summary("c0", [2], flags=("changed",))])
    proxy = QIdentityProxyModel()
    proxy.setSourceModel(model)
    view = list_view(qtbot, proxy)
    cover = row_rects(view.visualRect(proxy.index(0, 0)), 18, 16, COVER_SIDE).cover
    qtbot.waitUntil(
        lambda: close(view.viewport().grab().toImage().pixelColor(cover.center()), colour_of(2)),
        timeout=5000,
    )


# ---------------------------------------------------------------------- confidence bar
def grid(qtbot: QtBot, cache: ThumbnailCache, show: bool) -> tuple[QListView, ThumbnailDelegate]:
    model = ThumbnailGridModel(cache)
    ids = [N_COLOURS + k for k in range(4)]  # grey thumbnails
    model.set_images(ids, [0.95, 0.65, 0.3, float("nan")], [f"{i}.jpg" for i in ids])
    view, delegate = thumbnail_grid(qtbot, model, 500, 160, show_confidence=show)
    qtbot.waitUntil(lambda: all(i in cache for i in ids), timeout=5000)
    QApplication.processEvents()
    return view, delegate


def bar_pixels(shot: QImage, rect: Any, colour: QColor) -> list[tuple[int, int]]:
    rgb = colour.getRgb()[:3]
    return [
        (x, y)
        for y in range(rect.top(), rect.bottom() + 1)
        for x in range(rect.left(), rect.right() + 1)
        if close(shot.pixelColor(x, y), rgb, tol=10)
    ]


@pytest.mark.parametrize("show", [True, False])
def test_confidence_bar_follows_show_confidence(qtbot: QtBot, make_cache: Any, show: bool) -> None:
    view, delegate = grid(qtbot, make_cache(max_side=96), show)
    assert delegate.show_confidence is show
    model = view.model()
    palette = view.palette()
    shot = view.viewport().grab().toImage()
    colours = [confidence_color(v, palette) for v in (0.95, 0.65, 0.3)]
    assert len({c.rgb() for c in colours}) == 3  # green, amber, red
    widths = []
    for row, colour in enumerate(colours):
        cell = view.visualRect(model.index(row, 0))
        found = bar_pixels(shot, cell, colour)
        assert bool(found) is show, (row, colour.name())
        if found:
            assert min(y for _, y in found) > cell.center().y()  # at the bottom
            widths.append(max(x for x, _ in found) - min(x for x, _ in found))
    if show:
        assert widths[0] > widths[1] > widths[2]  # filled to the confidence
    nan_cell = view.visualRect(model.index(3, 0))
    assert not any(bar_pixels(shot, nan_cell, c) for c in colours)  # no confidence: no bar


def test_toggling_show_confidence_repaints(qtbot: QtBot, make_cache: Any) -> None:
    view, delegate = grid(qtbot, make_cache(max_side=96), True)
    cell = view.visualRect(view.model().index(0, 0))
    green = confidence_color(0.95, view.palette())
    assert bar_pixels(view.viewport().grab().toImage(), cell, green)
    delegate.show_confidence = False
    assert not bar_pixels(view.viewport().grab().toImage(), cell, green)
    delegate.set_show_confidence(True)
    assert bar_pixels(view.viewport().grab().toImage(), cell, green)


def test_confidence_colours_stay_readable_on_a_dark_base() -> None:
    from app.theme import contrast_ratio, dark_palette, light_palette

    for palette in (light_palette(), dark_palette()):
        base = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Base)
        for value in (0.1, 0.6, 0.9):
            assert contrast_ratio(confidence_color(value, palette), base) >= 2.95


def test_an_invalid_index_paints_nothing(qtbot: QtBot) -> None:
    delegate = GroupDelegate()
    image = QImage(200, 70, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    delegate.paint(painter, QStyleOptionViewItem(), QModelIndex())  # no model: nothing drawn
    painter.end()
