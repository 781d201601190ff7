"""A bounded LRU of decoded thumbnails, filled off the GUI thread.

:class:`ThumbnailCache` turns an image id into a ``QImage`` of the library thumbnail
(``workspace/thumbs/<id>.jpg``, longest side 256), scaled to fit ``max_side``. Decoding runs
in the cache's own ``QThreadPool``; results come back to the GUI thread through a queued
signal, land in the LRU and are announced with :attr:`ThumbnailCache.loaded`.

The LRU is bounded twice: at most ``capacity`` images and at most ``max_bytes`` of pixels
(a 128 px thumbnail is 48-64 KB, a 256 px one 192-256 KB: 2,000 of those would hold 400-500
MB; the default 64 MB keeps about 1,000 at 128 px, 250 at 256 px, well above a screenful).

Requests are de-duplicated (a thumbnail cached, waiting or being decoded is not asked for
twice) and the waiting queue is bounded: past ``max_pending`` the oldest waiting request is
dropped, and the newest request is decoded first, so while the user scrolls the rows that
are on screen now win over rows that scrolled by. ``cancel_pending()`` drops every waiting
request at once. Nothing is decoded that nobody asked for.

Threading: all public methods are for the GUI thread (the thread that owns the cache); the
workers only take jobs from the queue and hand back ``QImage`` objects, which (unlike
``QPixmap``) may be created in any thread. Call :meth:`ThumbnailCache.shutdown` before the
cache goes away (e.g. on ``QApplication.aboutToQuit``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

from PIL import Image
from PySide6.QtCore import (
    QObject,
    QRunnable,
    Qt,
    QThread,
    QThreadPool,
    Signal,
    Slot,
)
from PySide6.QtGui import QImage

ThumbnailPath = Callable[[int], "str | os.PathLike[str]"]

DEFAULT_CAPACITY = 2000
#: Most bytes of decoded pixels the LRU keeps (besides at most ``capacity`` images).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_PENDING = 512


def default_threads() -> int:
    """Decoding threads: all cores but one for the GUI, at least one, at most four."""
    return max(1, min(4, QThread.idealThreadCount() - 1))


def decode_thumbnail(path: str, max_side: int | None) -> QImage:
    """Decode an image file into an opaque ``Format_RGB32`` QImage fitting ``max_side``.

    Uses Pillow's JPEG draft mode, so a 256 px thumbnail shown at 128 px is decoded at
    half scale by libjpeg itself. Safe to call in any thread.

    Raises:
        OSError: the file is missing or not an image Pillow can read.
    """
    with Image.open(path) as opened:
        if max_side is not None:
            opened.draft("RGB", (max_side, max_side))
        rgb = opened.convert("RGB")
    if max_side is not None and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    width, height = rgb.size
    data = rgb.tobytes("raw", "RGB")
    wrapped = QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888)
    # The conversion copies the pixels out of ``data`` into memory the QImage owns.
    return wrapped.convertToFormat(QImage.Format.Format_RGB32)


class _Relay(QObject):
    """Carries finished decodes from worker threads to the GUI thread (queued)."""

    decoded = Signal(int, QImage)


class _Jobs:
    """The waiting queue and worker bookkeeping shared by the GUI thread and the workers."""

    def __init__(self, max_pending: int, max_side: int | None) -> None:
        self.lock = threading.Lock()
        self.waiting: OrderedDict[int, str] = OrderedDict()  # image id -> path, newest last
        self.max_pending = max_pending
        self.max_side = max_side  # read by the workers for each decode
        self.workers = 0  # runnables started and not finished
        self.decodes = 0
        self.closed = False

    def take(self) -> tuple[int, str, int | None] | None:
        """The newest waiting job (id, path, size to fit), or None (and the calling worker
        counts as finished)."""
        with self.lock:
            if self.closed or not self.waiting:
                self.workers -= 1
                return None
            self.decodes += 1
            image_id, path = self.waiting.popitem(last=True)
            return image_id, path, self.max_side


class _DecodeWorker(QRunnable):
    """Decodes waiting thumbnails until the queue is empty."""

    def __init__(self, jobs: _Jobs, relay: _Relay) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self.jobs = jobs
        self.relay = relay

    def run(self) -> None:
        while (job := self.jobs.take()) is not None:
            image_id, path, max_side = job
            try:
                image = decode_thumbnail(path, max_side)
            except Exception:  # a missing or broken thumbnail shows as "missing"
                image = QImage()
            try:
                self.relay.decoded.emit(image_id, image)
            except RuntimeError:  # the cache was destroyed without shutdown()
                return


class ThumbnailCache(QObject):
    """Decoded thumbnails by image id: a bounded LRU filled by a thread pool.

    Args:
        thumbnail_path: image id -> thumbnail file (e.g. ``ImageLibrary.thumbnail_path``);
            called on the GUI thread when a request is queued.
        capacity: Most decoded images kept (least recently used dropped first).
        max_bytes: Most bytes of decoded pixels kept (least recently used dropped first;
            the image just decoded is always kept).
        max_side: Decode to fit a ``max_side`` square (the view's icon size); ``None``
            keeps the stored size.
        max_pending: Most requests waiting to be decoded; older ones are dropped. Keep it
            above the number of thumbnails one screen shows.
        threads: Decoding threads (default: :func:`default_threads`).
        parent: Qt parent.

    Signals:
        loaded(int): a requested thumbnail is in the cache now, decoded or failed (then
            :meth:`get` returns a null QImage). Emitted on the GUI thread.
    """

    loaded = Signal(int)

    def __init__(
        self,
        thumbnail_path: ThumbnailPath,
        capacity: int = DEFAULT_CAPACITY,
        max_side: int | None = 128,
        max_pending: int = DEFAULT_MAX_PENDING,
        threads: int | None = None,
        parent: QObject | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(parent)
        if capacity < 1 or max_pending < 1 or max_bytes < 1:
            raise ValueError("capacity, max_bytes and max_pending must be at least 1")
        self._thumbnail_path = thumbnail_path
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._images: OrderedDict[int, QImage] = OrderedDict()  # least recently used first
        self._bytes = 0  # pixels held in _images
        self._in_flight: set[int] = set()  # taken or waiting, result not yet delivered
        self._stale: set[int] = set()  # in flight but invalidated: decode again on arrival
        self._jobs = _Jobs(max_pending, max_side)
        self._threads = threads or default_threads()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(self._threads)
        self._relay = _Relay(self)
        self._relay.decoded.connect(self._on_decoded, Qt.ConnectionType.QueuedConnection)

    # ------------------------------------------------------------------ reading
    @property
    def capacity(self) -> int:
        """Most decoded images kept."""
        return self._capacity

    @property
    def max_bytes(self) -> int:
        """Most bytes of decoded pixels kept."""
        return self._max_bytes

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded pixels held in the LRU now."""
        return self._bytes

    @property
    def max_side(self) -> int | None:
        """Images are decoded to fit this square (None: stored size)."""
        return self._jobs.max_side

    def set_max_side(self, max_side: int | None) -> bool:
        """Decode to fit ``max_side`` from now on (e.g. the grid's thumbnail size changed).

        Every cached image is forgotten and one being decoded at the old size is decoded
        again when it arrives; views should repaint so that they ask again. Returns whether
        the size changed.
        """
        with self._jobs.lock:
            if self._jobs.max_side == max_side:
                return False
            self._jobs.max_side = max_side
        self.invalidate()
        return True

    @property
    def decode_count(self) -> int:
        """Decodes started since the cache was made (for tests and benchmarks)."""
        with self._jobs.lock:
            return self._jobs.decodes

    @property
    def pending_count(self) -> int:
        """Requests waiting for a decoding thread."""
        with self._jobs.lock:
            return len(self._jobs.waiting)

    @property
    def cached_count(self) -> int:
        """Images (and failed loads) held in the LRU now."""
        return len(self._images)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._images

    def get(self, image_id: int) -> QImage | None:
        """The cached image (marked most recently used), or None if not cached.

        A null QImage (``isNull()``) means the thumbnail could not be read.
        """
        image = self._images.get(image_id)
        if image is not None:
            self._images.move_to_end(image_id)
        return image

    def is_loading(self, image_id: int) -> bool:
        """Whether a request for the image is waiting or being decoded."""
        return image_id in self._in_flight

    def is_idle(self) -> bool:
        """Nothing waiting, being decoded, or decoded but not yet delivered."""
        return not self._in_flight

    # ------------------------------------------------------------------ requests
    def request(self, image_id: int) -> bool:
        """Ask for a thumbnail to be decoded in the background; never blocks.

        Returns:
            True if a new request was queued; False if the image is cached already, is
            being loaded (a waiting request becomes the newest) or the cache is shut down.
        """
        if image_id in self._images:
            return False
        jobs = self._jobs
        if image_id in self._in_flight:
            with jobs.lock:
                if image_id in jobs.waiting:
                    jobs.waiting.move_to_end(image_id)
            return False
        path = os.fspath(self._thumbnail_path(image_id))
        with jobs.lock:
            if jobs.closed:
                return False
            jobs.waiting[image_id] = path
            dropped = []
            while len(jobs.waiting) > jobs.max_pending:
                dropped.append(jobs.waiting.popitem(last=False)[0])
            start = min(self._threads - jobs.workers, len(jobs.waiting))
            jobs.workers += max(start, 0)
        self._in_flight.add(image_id)
        self._in_flight.difference_update(dropped)
        for _ in range(start):
            self._pool.start(_DecodeWorker(jobs, self._relay))
        return True

    def request_many(self, image_ids: Iterable[int]) -> int:
        """:meth:`request` each id in turn (the last one is decoded first); returns new ones."""
        return sum(self.request(i) for i in image_ids)

    def cancel_pending(self, keep: Iterable[int] = ()) -> int:
        """Drop waiting requests (those being decoded finish), except the ids in ``keep``.

        Call it when the visible rows change a lot (a jump, a new cluster); rows still on
        screen are simply asked for again by their next paint.

        Returns:
            How many requests were dropped.
        """
        kept = set(keep)
        with self._jobs.lock:
            waiting = self._jobs.waiting
            dropped = [i for i in waiting if i not in kept]
            for image_id in dropped:
                del waiting[image_id]
        self._in_flight.difference_update(dropped)
        return len(dropped)

    def invalidate(self, image_ids: Iterable[int] | None = None) -> None:
        """Forget cached images (all, or these ids), e.g. after thumbnails were rewritten.

        A forgotten image being decoded right now is decoded again when that decode ends.
        Views showing these images should repaint (e.g. the model emits ``dataChanged``).
        """
        ids = list(self._images) if image_ids is None else list(image_ids)
        for image_id in ids:
            image = self._images.pop(image_id, None)
            if image is not None:
                self._bytes -= image.sizeInBytes()
        with self._jobs.lock:
            running = {i for i in self._in_flight if i not in self._jobs.waiting}
        self._stale |= running if image_ids is None else running & set(ids)

    def clear(self) -> None:
        """Drop every waiting request and every cached image."""
        self.cancel_pending()
        self.invalidate()

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Drop waiting requests and wait for the decoding threads to end.

        After this, requests are ignored. Returns whether every thread ended in time.
        """
        with self._jobs.lock:
            self._jobs.closed = True
            self._jobs.waiting.clear()
        done = bool(self._pool.waitForDone(timeout_ms))
        self._in_flight.clear()
        self._stale.clear()
        return done

    @property
    def is_shut_down(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._jobs.closed

    def active_threads(self) -> int:
        """Pool threads running a decode job now."""
        return int(self._pool.activeThreadCount())

    # ------------------------------------------------------------------ results
    @Slot(int, QImage)
    def _on_decoded(self, image_id: int, image: QImage) -> None:
        if self._jobs.closed:
            return
        self._in_flight.discard(image_id)
        if image_id in self._stale:
            self._stale.discard(image_id)
            self.request(image_id)
            return
        old = self._images.pop(image_id, None)
        if old is not None:
            self._bytes -= old.sizeInBytes()
        self._images[image_id] = image
        self._bytes += image.sizeInBytes()
        while len(self._images) > self._capacity or (
            self._bytes > self._max_bytes and len(self._images) > 1
        ):
            self._bytes -= self._images.popitem(last=False)[1].sizeInBytes()
        self.loaded.emit(image_id)
