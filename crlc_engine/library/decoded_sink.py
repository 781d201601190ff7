"""Where a scan puts the S x S squares it decodes: the pixel cache, or a consumer of them.

A scan decodes every new or changed file (and every known file the sink does not hold yet)
into an S x S uint8 square and hands it to a :class:`DecodedSink`. The default,
:class:`PixelCacheSink`, writes the squares to ``pixels-<S>.u8`` and lets the catalog count
them as cached pixels. Another sink can consume the squares instead (the quick preset turns
them into backbone features: :class:`crlc_engine.training.feature_sink.FeatureSink`), so that
no pixel file is written at all.

What a sink holds is versioned like the pixel cache: image id -> (size, mtime_ns) of the file
it was computed from, so a changed file is decoded again and a known one is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from crlc_engine.core.events import Reporter
from crlc_engine.library.catalog import Catalog
from crlc_engine.library.pixel_cache import PixelCache

__all__ = ["DecodedSink", "PixelCacheSink"]

#: image id -> (size, mtime_ns) of the file version a sink holds.
Held = dict[int, tuple[int, int]]


class DecodedSink(Protocol):
    """What a scan hands its decoded squares to.

    Attributes:
        side: Side S of the squares it takes.
        pixel_rows: Whether the squares end up in the pixel cache (the catalog then records
            them as cached pixels at S).
        batch_size: Squares it consumes at once (0: one by one); the scan keeps that many
            files decoding ahead, so the decoders go on while it works.
    """

    side: int
    pixel_rows: bool
    batch_size: int

    def describe(self, count: int, workers: int) -> str:
        """The status line of a scan that hands it ``count`` images."""
        ...

    def held(self, catalog: Catalog) -> Held:
        """Which file version of each image it holds already."""
        ...

    def repair(self, catalog: Catalog, reporter: Reporter) -> int:
        """Forget what it claims but lost (a file cut short); returns how many images."""
        ...

    def put(self, image_id: int, size: int, mtime_ns: int, pixels: bytes) -> bool:
        """Take the square of one decoded image (uint8 [S, S, 3] bytes); ``True`` when all
        squares taken so far are durable now (the scan then commits the catalog at once)."""
        ...

    def flush(self) -> None:
        """Make the squares taken so far durable where the catalog will count on them
        (called before every catalog commit)."""
        ...

    def finish(self) -> None:
        """The scan's last squares were put: finish what is still buffered."""
        ...


class PixelCacheSink:
    """The pixel cache ``pixels-<S>.u8`` of a workspace (what every scan fills by default)."""

    pixel_rows = True
    batch_size = 0

    def __init__(self, workspace: Path, side: int, catalog: Catalog) -> None:
        self.side = side
        self.cache = PixelCache(workspace, side)
        self.catalog = catalog
        self._rows: list[int] = []
        self._pixels: list[bytes] = []

    def describe(self, count: int, workers: int) -> str:
        return f"Decoding {count} images at {self.side} px with {max(workers, 1)} process(es)"

    def held(self, catalog: Catalog) -> Held:
        return catalog.cached(self.side)

    def repair(self, catalog: Catalog, reporter: Reporter) -> int:
        catalog.begin()
        try:
            lost = catalog.forget_rows_beyond(self.side, self.cache.rows)
            catalog.commit()
        except BaseException:
            catalog.rollback()
            raise
        if lost:
            reporter.status(
                f"The pixel cache at {self.side} px was cut short: decoding {lost} images again"
            )
        return lost

    def put(self, image_id: int, size: int, mtime_ns: int, pixels: bytes) -> bool:
        self._rows.append(image_id - 1)
        self._pixels.append(pixels)
        return False  # written at the next flush

    def flush(self) -> None:
        if not self._rows:
            return
        self.cache.ensure_rows(max(self.catalog.max_id(), max(self._rows) + 1))
        self.cache.write_rows(self._rows, self._pixels)
        self._rows, self._pixels = [], []

    def finish(self) -> None:
        self.flush()
