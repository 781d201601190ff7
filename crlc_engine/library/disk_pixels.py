"""A job's pixels left in the cache file on disk, read a batch at a time:
:class:`DiskPixels`, and the choice between it and reading them into memory
(:func:`training_pixels`).

Pixel training reads its images' rows of ``pixels-<S>.u8`` into one uint8 array [N, S, S, 3]
and draws every batch from it. When that array would not fit in the memory this machine has
free (more than :data:`MEMORY_SHARE` of it), the job streams instead: each batch's rows are
read from the memory-mapped file (the operating system keeps what it can in its page cache).
The values are the same, so a streamed run trains exactly like one held in memory, only with
a read per step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crlc_engine.core.events import Reporter
from crlc_engine.core.memory import available_memory_bytes
from crlc_engine.library.pixel_cache import PixelCache

__all__ = ["MEMORY_SHARE", "DiskPixels", "training_pixels"]

#: The share of the free memory a job's pixels may take before they are streamed instead.
MEMORY_SHARE = 0.5


class DiskPixels:
    """uint8 rows [N, S, S, 3] of a pixel cache file, read on demand, never all at once.

    Args:
        cache: The pixel cache file.
        rows: The cache row of each of the job's N images, in the job's order.

    Raises:
        WorkspaceDamagedError: the file is shorter than the rows need.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, cache: PixelCache, rows: Sequence[int]) -> None:
        self.cache = cache
        self.rows = np.asarray(rows, dtype=np.int64)
        available = cache.check_rows(int(self.rows.max())) if self.rows.size else cache.rows
        side = cache.side
        self.shape = (int(self.rows.size), side, side, 3)
        file_shape = (available, side, side, 3)
        self._file = np.memmap(cache.path, dtype=np.uint8, mode="r", shape=file_shape)

    @property
    def nbytes(self) -> int:
        """Bytes the N images would take in memory."""
        return pixel_bytes(self.cache, len(self))

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [len(indices), S, S, 3]: the job's images at ``indices`` (0..N-1), in that
        order (read in file order, which is kinder to the disk)."""
        wanted = self.rows[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(wanted, kind="stable")
        out = np.empty((wanted.size, *self.shape[1:]), dtype=np.uint8)
        out[order] = self._file[wanted[order]]
        return out

    def block(self, start: int, stop: int) -> np.ndarray:
        """uint8 [stop - start, S, S, 3]: the job's images ``start..stop-1``."""
        return self.take(np.arange(start, min(stop, self.shape[0])))

    def subsample(self, max_images: int) -> np.ndarray:
        """Every ``ceil(N / max_images)``-th image (all if N <= max_images), as
        :func:`~crlc_engine.augment.normalize.dataset_mean_std` picks them."""
        n = self.shape[0]
        step = -(-n // max_images) if max_images < n else 1
        return self.take(np.arange(0, n, step))


def pixel_bytes(cache: PixelCache, count: int) -> int:
    """Bytes ``count`` images of ``cache`` take in memory."""
    return count * cache.row_bytes


def training_pixels(
    cache: PixelCache, rows: Sequence[int], reporter: Reporter | None = None
) -> np.ndarray | DiskPixels:
    """The job's pixels in memory, or left on disk when they would take more than
    :data:`MEMORY_SHARE` of the free memory (the reporter is told)."""
    free = available_memory_bytes()
    if free is None or pixel_bytes(cache, len(rows)) <= MEMORY_SHARE * free:
        return cache.read([int(r) for r in rows])
    disk = DiskPixels(cache, rows)
    if reporter is not None:
        reporter.status(
            f"The {disk.shape[0]} images' {cache.side} px pixels ({disk.nbytes / 2**30:.1f} GB) "
            f"do not fit in the free memory ({free / 2**30:.1f} GB): reading each batch from "
            "the cache on disk"
        )
    return disk
