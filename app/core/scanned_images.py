"""The usable images of a library by id: what the "All images" grid shows before anything
is grouped, also while the first scan runs (:func:`scanned_images` reads them from any
thread)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crlc_engine.api import Catalog

__all__ = ["ScannedImages", "scanned_images"]


@dataclass(frozen=True)
class ScannedImages:
    """The usable images of a library, by id (what the "All images" grid shows).

    Attributes:
        image_ids: int64 [M], ascending.
        paths: Absolute path of each image, length M.
    """

    image_ids: np.ndarray
    paths: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def scanned_images(workspace: Path, known: int = -1) -> ScannedImages | None:
    """The images a scan has made usable so far (status ``ok``), read with a new connection.

    Safe on any thread while another connection writes (SQLite WAL). The rows a scan
    commits are complete: pixels and thumbnail are written before the row.

    Args:
        workspace: The library's workspace folder.
        known: How many usable images the caller already has; when the count is the
            same, nothing more is read and ``None`` is returned.
    """
    catalog = Catalog(workspace / "catalog.sqlite", read_only=True)
    try:
        if known >= 0 and catalog.counts().get("ok", 0) == known:
            return None
        records = catalog.images("ok")
    finally:
        catalog.close()
    return ScannedImages(
        np.array([r.id for r in records], dtype=np.int64), [str(r.path) for r in records]
    )
