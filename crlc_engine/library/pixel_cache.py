"""The pixel cache: ``pixels-<S>.u8``, a flat uint8 file of rows [S, S, 3], row = image id - 1.

Rows never move: a new image appends, a changed one is rewritten in place, a deleted one
keeps its (stale) row. The catalog's ``pixel_cache`` table says which rows are valid for
which file version. Rows are written and flushed before the catalog commits them.

A file cut short (emptied, truncated, replaced) no longer holds the rows the catalog counts
on: a scan finds those rows with :meth:`PixelCache.rows` and decodes them again, and
:meth:`PixelCache.read` refuses them with a message naming that way out.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from crlc_engine.core.errors import WorkspaceDamagedError


class PixelCache:
    """Read and write rows of one ``pixels-<S>.u8`` file."""

    def __init__(self, workspace: Path, side: int) -> None:
        self.side = side
        self.path = workspace / f"pixels-{side}.u8"
        self.row_bytes = side * side * 3

    @property
    def rows(self) -> int:
        """Rows the file can hold now."""
        return self.path.stat().st_size // self.row_bytes if self.path.exists() else 0

    def ensure_rows(self, rows: int) -> None:
        """Grow the file (sparse) to hold at least ``rows`` rows."""
        if rows > self.rows:
            with self.path.open("ab") as handle:
                handle.truncate(rows * self.row_bytes)

    def write_rows(self, rows: list[int], pixels: list[bytes]) -> None:
        """Write several rows and fsync (call :meth:`ensure_rows` first)."""
        if not rows:
            return
        with self.path.open("r+b") as handle:
            for row, data in zip(rows, pixels, strict=True):
                if len(data) != self.row_bytes:
                    raise ValueError(f"row {row}: {len(data)} bytes, expected {self.row_bytes}")
                handle.seek(row * self.row_bytes)
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def check_rows(self, last: int) -> int:
        """The rows the file holds now, when it holds row ``last``.

        Raises:
            WorkspaceDamagedError: it does not (the message says how to get them back).
        """
        available = self.rows
        if last >= available:
            raise WorkspaceDamagedError(
                f"the pixel cache {self.path} is shorter than the library's catalog says (it "
                f"holds {available} images, row {last} was asked for): it was cut short "
                "or replaced. Scan the folders again (`crlc scan FOLDER... --size "
                f"{self.side}`): the scan decodes the missing images again"
            )
        return available

    def read(self, rows: list[int]) -> np.ndarray:
        """uint8 [len(rows), S, S, 3] copy of the given rows."""
        out = np.empty((len(rows), self.side, self.side, 3), dtype=np.uint8)
        if not rows:
            return out
        available = self.check_rows(max(rows))
        mm = np.memmap(
            self.path, dtype=np.uint8, mode="r", shape=(available, self.side, self.side, 3)
        )
        try:
            order = np.argsort(rows)
            out[order] = mm[np.asarray(rows)[order]]
        finally:
            del mm
        return out
