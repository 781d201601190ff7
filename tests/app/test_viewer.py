"""The photo viewer: fit / 100 %, EXIF orientation, stepping, closing, off-thread decoding."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QEvent, QPoint, QPointF, QSize, Qt
from PySide6.QtGui import QAction, QColor, QImage, QKeySequence, QMouseEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMainWindow, QWidget
from pytestqt.qtbot import QtBot

from app.itemmodels.full_image import FullImageLoader, decode_full_image, describe_error
from app.views.viewer import PhotoViewer
from tests.app.conftest import made_then_torn_down

WAIT_MS = 10_000
Viewers = Callable[..., PhotoViewer]


# ---------------------------------------------------------------------- fixtures
def _save_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Five small PNGs of distinct flat colours."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]
    return [
        _save_png(tmp_path / f"photo_{k}.png", np.full((60, 90, 3), c, dtype=np.uint8))
        for k, c in enumerate(colours)
    ]


@pytest.fixture
def noise(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 1200 x 900 PNG of random pixels (exact after decoding) and its pixels."""
    pixels = np.random.default_rng(3).integers(0, 256, size=(900, 1200, 3), dtype=np.uint8)
    return _save_png(tmp_path / "noise.png", pixels), pixels


@pytest.fixture
def viewers(qtbot: QtBot) -> Iterator[Viewers]:
    """Makes shown 480 x 360 viewers; each is shut down after the test."""

    def make(**kwargs: object) -> PhotoViewer:
        viewer = PhotoViewer(**kwargs)  # type: ignore[arg-type]
        qtbot.addWidget(viewer)
        viewer.resize(480, 360)
        viewer.show()
        qtbot.waitExposed(viewer)
        return viewer

    yield from made_then_torn_down(make, PhotoViewer.shutdown)


Wait = Callable[..., None]


@pytest.fixture
def wait(qtbot: QtBot) -> Wait:
    """Process events until ``condition()`` is true (fails after 10 s)."""

    def until(condition: Callable[[], object], timeout_ms: int = WAIT_MS) -> None:
        qtbot.waitUntil(lambda: bool(condition()), timeout=timeout_ms)

    return until


@pytest.fixture
def open_photo(viewers: Viewers, wait: Wait) -> Callable[..., PhotoViewer]:
    """Shows ``path`` (as image ``image_id``) in a new viewer; returns once it is decoded."""

    def open_(path: Path, image_id: int = 1) -> PhotoViewer:
        viewer = viewers()
        viewer.set_sequence([image_id], [str(path)], 0)
        wait(lambda: shown(viewer))
        return viewer

    return open_


def press(
    widget: PhotoViewer,
    key: Qt.Key,
    modifier: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier,
) -> None:
    """A key press as the window system delivers it (shortcut override first)."""
    QTest.keyClick(widget, key, modifier)


class Gate:
    """A decoder that waits for :meth:`open` before decoding the chosen paths, and records
    the thread of every decode."""

    def __init__(self, held: set[str] | None = None) -> None:
        self.event = threading.Event()
        self.held = held  # None: every path waits
        self.threads: list[int] = []
        self.paths: list[str] = []

    def __call__(self, path: str) -> QImage:
        self.threads.append(threading.get_ident())
        self.paths.append(path)
        if self.held is None or path in self.held:
            assert self.event.wait(WAIT_MS / 1000)
        return decode_full_image(path)

    def open(self) -> None:
        self.event.set()


def shown(viewer: PhotoViewer) -> bool:
    return viewer.canvas.image() is not None


def grab(viewer: PhotoViewer) -> QImage:
    return viewer.canvas.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)


def rgb(image: QImage, x: int, y: int) -> tuple[int, int, int]:
    colour = QColor(image.pixel(x, y))
    return colour.red(), colour.green(), colour.blue()


def ids_paths(photos: list[Path]) -> tuple[list[int], list[str]]:
    return [10 + k for k in range(len(photos))], [str(p) for p in photos]


def give_photos(
    viewer: PhotoViewer, photos: list[Path], index: int
) -> tuple[list[int], list[str], list[int]]:
    """Gives ``viewer`` the photos (ids from :func:`ids_paths`) at ``index``: (ids, paths,
    the ids it announces as current, from just before)."""
    ids, paths = ids_paths(photos)
    changes = watch(viewer)
    viewer.set_sequence(ids, paths, index)
    return ids, paths, changes


def watch(viewer: PhotoViewer) -> list[int]:
    """The image ids ``viewer`` announces as current from now on."""
    changes: list[int] = []
    viewer.currentChanged.connect(changes.append)
    return changes


def send_mouse(canvas: QWidget, kind: QEvent.Type, point: QPointF, buttons: Qt.MouseButton) -> None:
    """A mouse event of the left button at ``point`` (``canvas`` coordinates)."""
    event = QMouseEvent(
        kind,
        point,
        canvas.mapToGlobal(point),
        Qt.MouseButton.LeftButton,
        buttons,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(canvas, event)


# ---------------------------------------------------------------------- decoding
def test_decode_gives_opaque_rgb32_and_plain_reasons(tmp_path: Path) -> None:
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, fully transparent: composited on white
    path = tmp_path / "clear.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = decode_full_image(str(path))
    assert image.format() == QImage.Format.Format_RGB32
    assert image.size() == QSize(6, 4)
    assert QColor(image.pixel(0, 0)).getRgb() == (255, 255, 255, 255)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((3, 5), 77, dtype=np.uint8), "L").save(grey)
    assert QColor(decode_full_image(str(grey)).pixel(2, 1)).getRgb() == (77, 77, 77, 255)

    with pytest.raises(OSError) as missing:
        decode_full_image(str(tmp_path / "gone.jpg"))
    assert describe_error(missing.value) == "the file is missing"


# ---------------------------------------------------------------------- display
def test_opens_fitted_then_100_percent_shows_the_real_pixels(
    open_photo: Callable[..., PhotoViewer], noise: tuple[Path, np.ndarray]
) -> None:
    path, pixels = noise
    viewer = open_photo(path, 7)
    canvas = viewer.canvas
    assert viewer.is_fit() and viewer.zoom() < 1
    assert canvas.is_settled() and canvas.rescale_count == 0  # the worker made the fit copy
    assert viewer.zoom_label.text().startswith("Fit ")
    fitted = canvas.photo_rect()
    assert fitted.width() <= canvas.width() and fitted.height() <= canvas.height()

    viewer.setFocus()
    press(viewer, Qt.Key.Key_1)
    assert not viewer.is_fit() and viewer.zoom() == 1.0
    assert viewer.zoom_label.text() == "100 %"
    picture = grab(viewer)
    rect = canvas.photo_rect()
    assert rect.width() == 1200 and rect.height() == 900  # larger than the view: cropped
    ox, oy = round(rect.x()), round(rect.y())
    for x, y in [(0, 0), (canvas.width() // 2, canvas.height() // 2), (canvas.width() - 1, 5)]:
        assert rgb(picture, x, y) == tuple(int(v) for v in pixels[y - oy, x - ox])

    # Z and double-click toggle fit <-> 100 %; "0" fits
    press(viewer, Qt.Key.Key_Z)
    assert viewer.is_fit()
    press(viewer, Qt.Key.Key_Z)
    assert viewer.zoom() == 1.0
    press(viewer, Qt.Key.Key_0)
    assert viewer.is_fit()
    send_mouse(canvas, QEvent.Type.MouseButtonDblClick, QPointF(40, 40), Qt.MouseButton.LeftButton)
    assert viewer.zoom() == 1.0 and not viewer.is_fit()


def test_exif_orientation_is_applied(
    open_photo: Callable[..., PhotoViewer], tmp_path: Path
) -> None:
    stored = np.zeros((40, 60, 3), dtype=np.uint8)
    stored[:20] = (230, 20, 20)  # top half red
    stored[20:] = (20, 20, 230)  # bottom half blue
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    picture.save(path, quality=95, exif=exif)
    image = open_photo(path).canvas.image()
    assert image is not None and image.size() == QSize(40, 60)  # upright: portrait
    right, left = rgb(image, 32, 30), rgb(image, 8, 30)  # the stored top is on the right
    assert right[0] > 180 and right[2] < 80
    assert left[2] > 180 and left[0] < 80


def test_a_broken_file_shows_a_plain_message(viewers: Viewers, tmp_path: Path, wait: Wait) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    viewer = viewers()
    viewer.set_sequence([1, 2], [str(broken), str(tmp_path / "missing.jpg")], 0)
    wait(lambda: viewer.canvas.message().startswith("Cannot open this photo: "))
    message = viewer.canvas.message()
    assert "Traceback" not in message and "Error" not in message
    assert viewer.canvas.image() is None and viewer.zoom_label.text() == ""
    viewer.step(1)
    wait(lambda: viewer.canvas.message() == "Cannot open this photo: the file is missing")
    assert viewer.name_label.full_text() == "missing.jpg"


# ---------------------------------------------------------------------- stepping and closing
def test_arrow_keys_home_end_and_space_step_through_the_sequence(
    viewers: Viewers, photos: list[Path], wait: Wait
) -> None:
    viewer = viewers()
    ids, paths, changes = give_photos(viewer, photos, 1)
    assert viewer.current_image_id() == ids[1] and changes == [ids[1]]
    assert viewer.position_label.text() == "2 / 5"
    assert viewer.name_label.toolTip() == paths[1]
    viewer.setFocus()
    key = press
    key(viewer, Qt.Key.Key_Right)
    assert viewer.current_image_id() == ids[2]
    key(viewer, Qt.Key.Key_Left)
    key(viewer, Qt.Key.Key_Left)
    assert viewer.current_index() == 0
    key(viewer, Qt.Key.Key_Left)  # at the start: stays
    key(viewer, Qt.Key.Key_End)
    assert viewer.current_index() == 4 and viewer.position_label.text() == "5 / 5"
    key(viewer, Qt.Key.Key_Right)  # at the end: stays
    key(viewer, Qt.Key.Key_Home)
    key(viewer, Qt.Key.Key_Space)
    key(viewer, Qt.Key.Key_Down)
    assert viewer.current_index() == 2
    key(viewer, Qt.Key.Key_Space, Qt.KeyboardModifier.ShiftModifier)
    key(viewer, Qt.Key.Key_Up)
    assert viewer.current_index() == 0
    assert changes == [
        ids[1],
        ids[2],
        ids[1],
        ids[0],
        ids[4],
        ids[0],
        ids[1],
        ids[2],
        ids[1],
        ids[0],
    ]
    wait(lambda: shown(viewer))
    assert rgb(viewer.canvas.image(), 5, 5) == (200, 30, 30)  # type: ignore[arg-type]


def test_escape_and_the_close_button_emit_closed(
    viewers: Viewers, photos: list[Path], qtbot: QtBot
) -> None:
    viewer = viewers()
    viewer.set_sequence(*ids_paths(photos), 0)
    viewer.setFocus()
    with qtbot.waitSignal(viewer.closed, timeout=1000):
        press(viewer, Qt.Key.Key_Escape)
    with qtbot.waitSignal(viewer.closed, timeout=1000):
        viewer.close_button.click()


def test_the_windows_actions_keep_their_keys_and_the_viewer_keeps_its_own(
    qtbot: QtBot, photos: list[Path]
) -> None:
    """L, M, Delete and Ctrl+Z reach the main window's actions; arrows stay the viewer's
    even when an action of the window uses them."""
    window = QMainWindow()
    qtbot.addWidget(window)
    viewer = PhotoViewer()
    window.setCentralWidget(viewer)
    fired: list[str] = []
    for shortcut in ("L", "M", "Delete", "Ctrl+Z", "Right"):
        action = QAction(shortcut, window)
        action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _=False, s=shortcut: fired.append(s))
        window.addAction(action)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    viewer.setFocus()
    qtbot.waitUntil(viewer.hasFocus, timeout=WAIT_MS)
    try:
        viewer.set_sequence(*ids_paths(photos), 0)
        for key, modifier in (
            (Qt.Key.Key_L, Qt.KeyboardModifier.NoModifier),
            (Qt.Key.Key_M, Qt.KeyboardModifier.NoModifier),
            (Qt.Key.Key_Delete, Qt.KeyboardModifier.NoModifier),
            (Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier),
            (Qt.Key.Key_Right, Qt.KeyboardModifier.NoModifier),
        ):
            press(viewer, key, modifier)
        assert fired == ["L", "M", "Delete", "Ctrl+Z"]
        assert viewer.current_index() == 1
    finally:
        viewer.shutdown()


def test_a_new_order_after_a_removal_shows_the_photo_in_its_place(
    viewers: Viewers, photos: list[Path], wait: Wait
) -> None:
    viewer = viewers()
    ids, paths, changes = give_photos(viewer, photos, 1)
    wait(lambda: shown(viewer))
    viewer.set_sequence(ids, paths, 1)  # the same photo: nothing changes
    assert changes == [ids[1]] and shown(viewer)
    viewer.set_sequence(ids[:1] + ids[2:], paths[:1] + paths[2:], 1)  # ids[1] ignored
    assert viewer.current_image_id() == ids[2] and changes[-1] == ids[2]
    assert viewer.position_label.text() == "2 / 4"
    viewer.set_sequence(ids[:2], paths[:2], 3)  # clamped to the end
    assert viewer.current_image_id() == ids[1]
    viewer.set_sequence([], [], 0)
    assert viewer.current_image_id() is None and viewer.canvas.message() == "No photos here"
    with pytest.raises(ValueError):
        viewer.set_sequence(ids, paths[:2], 0)


# ---------------------------------------------------------------------- threads and cache
def test_decoding_runs_off_the_gui_thread(viewers: Viewers, photos: list[Path], wait: Wait) -> None:
    gate = Gate(held=set())
    viewer = viewers(decode=gate)
    viewer.set_sequence(*ids_paths(photos), 2)
    wait(lambda: shown(viewer) and viewer.loader.is_idle())
    assert gate.threads and threading.get_ident() not in gate.threads
    assert set(gate.paths) == {str(photos[k]) for k in (1, 2, 3)}  # shown + neighbours


def test_placeholder_and_loading_text_while_decoding(
    viewers: Viewers, photos: list[Path], wait: Wait
) -> None:
    ids, paths = ids_paths(photos)
    gate = Gate()
    viewer = viewers(decode=gate, threads=1)
    thumb = QImage(16, 12, QImage.Format.Format_RGB32)
    thumb.fill(QColor(0, 255, 0))
    try:
        viewer.set_sequence(ids, paths, 0, placeholder=thumb)
        assert viewer.canvas.has_placeholder() and viewer.canvas.message() == "Loading…"
        assert viewer.is_loading()
        centre = grab(viewer)
        assert rgb(centre, viewer.canvas.width() // 2, viewer.canvas.height() // 3) == (0, 255, 0)
        viewer.set_placeholder_source(lambda image_id: thumb if image_id == ids[1] else None)
        viewer.step(1)
        assert viewer.canvas.has_placeholder()
        viewer.step(1)
        assert not viewer.canvas.has_placeholder() and viewer.canvas.message() == "Loading…"
    finally:
        gate.open()
    wait(lambda: shown(viewer))
    assert viewer.canvas.message() == "" and not viewer.is_loading()


def test_stale_decodes_are_dropped(viewers: Viewers, photos: list[Path], wait: Wait) -> None:
    ids, paths = ids_paths(photos)
    gate = Gate(held={paths[0]})
    viewer = viewers(decode=gate, threads=1)
    loader = viewer.loader
    try:
        viewer.set_sequence(ids, paths, 0)
        wait(lambda: gate.paths == [paths[0]])  # the slow decode has started
        viewer.set_current_index(4)  # photo 0 is no longer wanted
    finally:
        gate.open()
    wait(lambda: loader.dropped_count == 1 and shown(viewer) and loader.is_idle())
    assert viewer.current_image_id() == ids[4]
    assert rgb(viewer.canvas.image(), 1, 1) == (30, 200, 200)  # type: ignore[arg-type]
    assert loader.get(ids[0]) is None and paths[1] not in gate.paths  # withdrawn unseen
    assert sorted(loader.cached_ids) == [ids[3], ids[4]]


def test_at_most_three_photos_stay_decoded(
    viewers: Viewers, photos: list[Path], wait: Wait
) -> None:
    ids, paths = ids_paths(photos)
    viewer = viewers()
    viewer.set_sequence(ids, paths, 0)
    for index in range(len(ids)):
        viewer.set_current_index(index)
        wait(lambda: shown(viewer) and viewer.loader.is_idle())
        assert len(viewer.loader.cached_ids) <= 3
    assert sorted(viewer.loader.cached_ids) == [ids[3], ids[4]]
    decodes = viewer.loader.decode_count
    viewer.step(-1)  # prefetched: shown at once, nothing decoded again
    assert shown(viewer) and viewer.current_image_id() == ids[3]
    wait(viewer.loader.is_idle)
    assert viewer.loader.decode_count == decodes + 1  # only the new neighbour, ids[2]
    viewer.hide()  # back to the grid: the memory is freed
    assert viewer.loader.cached_ids == [] and viewer.canvas.image() is None
    decodes = viewer.loader.decode_count
    changes = watch(viewer)
    viewer.set_sequence(ids, paths, 0)  # hidden: announced, but nothing decoded yet
    assert changes == [ids[0]] and viewer.loader.is_idle()
    viewer.show()
    wait(lambda: shown(viewer) and viewer.loader.is_idle())
    assert viewer.current_image_id() == ids[0]
    assert viewer.loader.decode_count == decodes + 2  # the photo and its next


def test_loader_requests_are_ignored_after_shutdown(qtbot: QtBot, photos: list[Path]) -> None:
    loader = FullImageLoader(threads=1)
    assert loader.request(1, photos[0])
    with qtbot.waitSignal(loader.loaded, timeout=WAIT_MS):
        pass
    assert loader.get(1) is not None and not loader.request(1, photos[0])
    assert loader.get(1, "elsewhere.png") is None
    assert loader.shutdown() and loader.is_shut_down
    assert not loader.request(2, photos[1])


# ---------------------------------------------------------------------- zoom, pan, painting
def test_zoom_keys_ctrl_wheel_and_dragging(
    open_photo: Callable[..., PhotoViewer], noise: tuple[Path, np.ndarray]
) -> None:
    viewer = open_photo(noise[0])
    canvas = viewer.canvas
    fit = viewer.zoom()
    viewer.setFocus()
    press(viewer, Qt.Key.Key_Plus)
    assert not viewer.is_fit() and viewer.zoom() > fit
    press(viewer, Qt.Key.Key_Minus)
    assert viewer.is_fit()

    def wheel(steps: int) -> None:
        event = QWheelEvent(
            QPointF(100, 80),
            canvas.mapToGlobal(QPointF(100, 80)),
            QPoint(),
            QPoint(0, 120 * steps),
            Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.ControlModifier,
            Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        QApplication.sendEvent(canvas, event)

    for _ in range(3):
        wheel(1)
    assert viewer.zoom() > fit and canvas.can_pan()
    viewer.zoom_actual()
    before = canvas.photo_rect().topLeft()

    send_mouse(canvas, QEvent.Type.MouseButtonPress, QPointF(200, 100), Qt.MouseButton.LeftButton)
    send_mouse(canvas, QEvent.Type.MouseMove, QPointF(150, 100), Qt.MouseButton.LeftButton)
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, QPointF(150, 100), Qt.MouseButton.NoButton)
    assert canvas.photo_rect().topLeft() == before + QPointF(-50, 0)
    for _ in range(40):  # panning stops at the photo's edge
        canvas.pan_by(500, 500)
    assert canvas.photo_rect().topLeft() == QPointF(0, 0)
    for _ in range(3):
        wheel(-1)
    assert viewer.zoom() < 1


def test_a_resize_rescales_once_and_paints_never_do(
    open_photo: Callable[..., PhotoViewer], noise: tuple[Path, np.ndarray], wait: Wait
) -> None:
    viewer = open_photo(noise[0])
    canvas = viewer.canvas
    for _ in range(5):
        canvas.repaint()
    assert canvas.rescale_count == 0
    viewer.resize(420, 330)
    wait(canvas.is_settled)
    assert canvas.rescale_count == 1
    for _ in range(5):
        canvas.repaint()
    assert canvas.rescale_count == 1


def test_bar_shows_the_caption_and_a_middle_elided_name(viewers: Viewers, tmp_path: Path) -> None:
    name = "a_very_long_file_name_" + "x" * 120 + "_end.png"
    path = _save_png(tmp_path / name, np.zeros((8, 8, 3), dtype=np.uint8))
    viewer = viewers()
    viewer.set_sequence([1], [str(path)], 0)
    viewer.set_caption("Beach · labelled")
    assert viewer.caption_label.isVisible() and viewer.caption() == "Beach · labelled"
    text = viewer.name_label.text()
    assert "…" in text and text.startswith("a_very") and text.endswith("_end.png")
    assert viewer.name_label.toolTip() == str(path)
    viewer.set_caption("")
    assert not viewer.caption_label.isVisible()
