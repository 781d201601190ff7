"""Full-resolution photos for the viewer, decoded off the GUI thread, a few kept in memory.

:func:`decode_full_image` turns a photo file into an opaque ``Format_RGB32`` :class:`QImage`
at full resolution, upright (EXIF orientation applied with ``ImageOps.exif_transpose``).
:class:`FullImageLoader` runs it in its own ``QThreadPool`` and keeps the results in a small
LRU (default 3: the photo shown, the next and the previous one). A 24 MP photo is about
96 MB decoded, so the cache holds at most ``capacity`` of them; the viewer says which ids it
still wants (:meth:`FullImageLoader.retain`) and everything else is dropped: cached images,
requests still waiting (never decoded) and decodes that finish later (their result is
thrown away on arrival, see :attr:`FullImageLoader.dropped_count`).

Along with the full image a worker makes a smooth, down-scaled copy that fits the box the
viewer asked for (its size in device pixels), so that the fit-to-window view of a fresh
photo costs the GUI thread nothing but a small ``QPixmap`` conversion.

Threading: public methods are for the GUI thread (the thread that owns the loader); workers
hand results back through a queued signal. ``QImage`` (unlike ``QPixmap``) may be made in
any thread. Call :meth:`FullImageLoader.shutdown` before the loader goes away.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError
from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThread, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage

from crlc_engine.api import HEIF_EXTENSIONS, heif_available, to_rgb

__all__ = [
    "DEFAULT_CAPACITY",
    "FullImage",
    "FullImageLoader",
    "decode_full_image",
    "default_threads",
    "describe_error",
    "fit_zoom",
    "scaled_copy",
]

#: Decoded photos kept (the one shown, the next and the previous).
DEFAULT_CAPACITY = 3

Decoder = Callable[[str], QImage]


def default_threads() -> int:
    """Decoding threads: one per spare core (the GUI keeps one), at least one, at most two
    (the photo shown and one neighbour decode side by side; more would only hold memory)."""
    return max(1, min(2, QThread.idealThreadCount() - 1))


def decode_full_image(path: str) -> QImage:
    """Decode a photo at full resolution into an opaque ``Format_RGB32`` QImage.

    The EXIF orientation is applied (``ImageOps.exif_transpose``); other modes than RGB
    (greyscale, 16-bit, CMYK, palettes, transparency composited on white) are converted as
    the library's decoder does. HEIC/HEIF opens when ``pillow-heif`` is installed. Pillow's
    decompression-bomb limit stays in force. Safe to call in any thread.

    Raises:
        OSError: the file is missing, unreadable or not an image Pillow can decode.
        Image.DecompressionBombError: the image is too large.
    """
    if Path(path).suffix.lower() in HEIF_EXTENSIONS:
        heif_available()  # registers the HEIF opener when pillow-heif is installed
    with Image.open(path) as opened:
        opened.load()
        ImageOps.exif_transpose(opened, in_place=True)  # no copy when already upright
        rgb = opened if opened.mode == "RGB" else to_rgb(opened)
        width, height = rgb.size
        little = sys.byteorder == "little"
        # Format_RGB32 is 0xffRRGGBB as 32-bit words: bytes B, G, R, X on little-endian.
        data = rgb.tobytes("raw", "BGRX" if little else "XRGB")
        del rgb
    wrapped = QImage(data, width, height, 4 * width, QImage.Format.Format_RGB32)
    # Pillow pads with 0, Qt wants 0xff: this conversion sets the alpha byte and copies the
    # pixels into memory the QImage owns; the words are then valid RGB32 (no second copy).
    image = wrapped.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
    del wrapped, data
    image.reinterpretAsFormat(QImage.Format.Format_RGB32)
    return image


def describe_error(error: BaseException) -> str:
    """A short plain reason for a failed decode (no traceback, no exception class names)."""
    if isinstance(error, FileNotFoundError):
        return "the file is missing"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, IsADirectoryError):
        return "this is a folder, not a file"
    if isinstance(error, UnidentifiedImageError):
        return "not an image file this app can read (or the file is damaged)"
    if isinstance(error, Image.DecompressionBombError):
        return "the image is too large to open safely"
    if isinstance(error, MemoryError):
        return "not enough memory to open it"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
    text = text or "the file could not be decoded"
    return text if len(text) <= 160 else text[:157] + "..."


def fit_zoom(image: QSize, box: QSize) -> float:
    """The scale that fits ``image`` into ``box`` (never above 1: small photos stay 1:1)."""
    if image.isEmpty() or box.isEmpty():
        return 1.0
    return min(1.0, box.width() / image.width(), box.height() / image.height())


def scaled_copy(image: QImage, zoom: float) -> QImage:
    """``image`` scaled by ``zoom`` with smooth (area-averaging) filtering, at least 1 px."""
    width = max(1, round(image.width() * zoom))
    height = max(1, round(image.height() * zoom))
    return image.scaled(
        width,
        height,
        Qt.AspectRatioMode.IgnoreAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )


@dataclass(frozen=True)
class FullImage:
    """One decoded photo (or the reason it could not be decoded).

    Attributes:
        image_id: The library id.
        path: The file decoded.
        image: Full resolution, upright; null when ``error`` is set.
        error: Why decoding failed ("" when it did not).
        scaled: A smooth copy fitting the box of the request (None: not made, the photo
            fits at 1:1 or the request had no box).
        scaled_zoom: The scale of ``scaled`` relative to ``image``.
    """

    image_id: int
    path: str
    image: QImage
    error: str = ""
    scaled: QImage | None = None
    scaled_zoom: float = 1.0

    @property
    def ok(self) -> bool:
        return not self.error and not self.image.isNull()

    @property
    def nbytes(self) -> int:
        """Memory held by the pixels."""
        held = int(self.image.sizeInBytes())
        if self.scaled is not None:
            held += int(self.scaled.sizeInBytes())
        return held


class _Relay(QObject):
    """Carries finished decodes from worker threads to the GUI thread (queued)."""

    decoded = Signal(int, object)  # request token, FullImage


class _Jobs:
    """Bookkeeping shared by the GUI thread and the workers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: set[int] = set()  # tokens of requests still wanted
        self.decodes = 0
        self.closed = False

    def start(self, token: int) -> bool:
        """Whether a worker should decode this request (it is still wanted)."""
        with self.lock:
            if self.closed or token not in self.live:
                return False
            self.decodes += 1
            return True


class _DecodeJob(QRunnable):
    """Decodes one photo (unless its request was withdrawn while it waited)."""

    def __init__(
        self,
        jobs: _Jobs,
        relay: _Relay,
        decode: Decoder,
        token: int,
        image_id: int,
        path: str,
        box: QSize | None,
    ) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self.jobs, self.relay, self.decode = jobs, relay, decode
        self.token, self.image_id, self.path, self.box = token, image_id, path, box

    def run(self) -> None:
        if not self.jobs.start(self.token):
            return
        try:
            image = self.decode(self.path)
            if image.isNull():
                raise OSError("the file could not be decoded")
        except Exception as error:  # shown as a plain message in the viewer
            result = FullImage(self.image_id, self.path, QImage(), describe_error(error))
        else:
            scaled, zoom = None, 1.0
            if self.box is not None:
                zoom = fit_zoom(image.size(), self.box)
                if zoom < 1.0:
                    scaled = scaled_copy(image, zoom)
            result = FullImage(self.image_id, self.path, image, "", scaled, zoom)
        try:
            self.relay.decoded.emit(self.token, result)
        except RuntimeError:  # the loader was destroyed without shutdown()
            return


class FullImageLoader(QObject):
    """Full-resolution photos by image id: a small LRU filled by a thread pool.

    Args:
        capacity: Most decoded photos kept (least recently used dropped first).
        threads: Decoding threads (default: :func:`default_threads`).
        decode: path -> QImage (default :func:`decode_full_image`); runs in the workers.
        parent: Qt parent.

    Signals:
        loaded(int): a requested photo is in the cache now, decoded or failed (then
            :attr:`FullImage.error` says why). Emitted on the GUI thread.
    """

    loaded = Signal(int)

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        threads: int | None = None,
        decode: Decoder | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._decode: Decoder = decode or decode_full_image
        self._images: OrderedDict[int, FullImage] = OrderedDict()  # least recently used first
        self._requests: dict[int, tuple[int, str]] = {}  # image id -> (token, path) in flight
        self._next_token = 0
        self._dropped = 0
        self._jobs = _Jobs()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads or default_threads())
        self._relay = _Relay(self)
        self._relay.decoded.connect(self._on_decoded, Qt.ConnectionType.QueuedConnection)

    # ------------------------------------------------------------------ reading
    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def decode_count(self) -> int:
        """Decodes started since the loader was made."""
        with self._jobs.lock:
            return self._jobs.decodes

    @property
    def dropped_count(self) -> int:
        """Finished decodes thrown away because nobody wanted them any more."""
        return self._dropped

    @property
    def cached_ids(self) -> list[int]:
        """Ids of the photos held, least recently used first."""
        return list(self._images)

    @property
    def cached_bytes(self) -> int:
        """Memory held by the cached pixels."""
        return sum(entry.nbytes for entry in self._images.values())

    def get(self, image_id: int, path: str | None = None) -> FullImage | None:
        """The cached photo (marked most recently used), or None; with ``path``, only if it
        was decoded from that file."""
        entry = self._images.get(image_id)
        if entry is None or (path is not None and entry.path != path):
            return None
        self._images.move_to_end(image_id)
        return entry

    def is_loading(self, image_id: int) -> bool:
        """Whether a request for the photo is waiting or being decoded."""
        return image_id in self._requests

    def is_idle(self) -> bool:
        """No request waiting or being decoded."""
        return not self._requests

    # ------------------------------------------------------------------ requests
    def request(
        self,
        image_id: int,
        path: str | os.PathLike[str],
        box: QSize | None = None,
        priority: int = 0,
    ) -> bool:
        """Ask for a photo to be decoded in the background; never blocks.

        Args:
            image_id: The id the result is filed under.
            path: The photo file.
            box: Also make a smooth copy fitting this size (device pixels).
            priority: Higher runs first among waiting requests.

        Returns:
            True if a decode was queued; False if the photo is cached, already requested
            or the loader is shut down.
        """
        path = os.fspath(path)
        if self.get(image_id, path) is not None:
            return False
        asked = self._requests.get(image_id)
        if asked is not None:
            if asked[1] == path:
                return False
            self._withdraw([image_id])
        with self._jobs.lock:
            if self._jobs.closed:
                return False
            token = self._next_token = self._next_token + 1
            self._jobs.live.add(token)
        self._requests[image_id] = (token, path)
        job = _DecodeJob(self._jobs, self._relay, self._decode, token, image_id, path, box)
        self._pool.start(job, priority)
        return True

    def retain(self, image_ids: Iterable[int]) -> None:
        """Keep only these photos: drop the other cached ones and withdraw their requests
        (a waiting one is never decoded, a running one is thrown away when it ends)."""
        keep = set(image_ids)
        for image_id in [i for i in self._images if i not in keep]:
            del self._images[image_id]
        self._withdraw([i for i in self._requests if i not in keep])

    def _withdraw(self, image_ids: list[int]) -> None:
        tokens = [self._requests.pop(i)[0] for i in image_ids if i in self._requests]
        with self._jobs.lock:
            self._jobs.live.difference_update(tokens)

    def clear(self) -> None:
        """Drop every cached photo and withdraw every request."""
        self.retain(())

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Withdraw every request and wait for the decoding threads to end.

        After this, requests are ignored. Returns whether every thread ended in time.
        """
        with self._jobs.lock:
            self._jobs.closed = True
            self._jobs.live.clear()
        self._requests.clear()
        done = bool(self._pool.waitForDone(timeout_ms))
        self._images.clear()
        return done

    @property
    def is_shut_down(self) -> bool:
        return self._jobs.closed

    # ------------------------------------------------------------------ results
    @Slot(int, object)
    def _on_decoded(self, token: int, result: FullImage) -> None:
        with self._jobs.lock:
            wanted = token in self._jobs.live
            self._jobs.live.discard(token)
        if not wanted:
            self._dropped += 1
            return
        self._requests.pop(result.image_id, None)
        self._images[result.image_id] = result
        self._images.move_to_end(result.image_id)
        while len(self._images) > self._capacity:
            self._images.popitem(last=False)
        self.loaded.emit(result.image_id)
