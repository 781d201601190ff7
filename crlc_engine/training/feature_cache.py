"""The feature cache of a library workspace, and computing a library's features into it.

``<workspace>/features/<key>/``: ``spec.json`` (the :class:`FeatureSpec`), ``features.f16``
(float16 rows ``[D]``, row = image id - 1 like the pixel cache) and ``marks.i64`` (int64 rows
``[done, size, mtime_ns]``: the file version the row was computed from). A row counts only
while its mark names the image's current file version; rows are flushed before their marks,
so a kill loses at most the batch in flight.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.core.fileio import atomic_write_json
from crlc_engine.library import ImageLibrary, ImageRecord
from crlc_engine.library.decode import decode_file
from crlc_engine.library.pixel_cache import PixelCache
from crlc_engine.training.frozen_features import STATUS_EVERY_S, FeatureExtractor, FeatureSpec

__all__ = ["FeatureCache", "FeatureResult", "compute_features"]

_MARK_COLUMNS = 3  # done, size, mtime_ns


class FeatureCache:
    """The feature rows of one :class:`FeatureSpec` in a library workspace.

    Args:
        workspace: The library's workspace folder.
        spec: What the features depend on; picks the folder ``features/<spec.key>``.
    """

    def __init__(self, workspace: Path, spec: FeatureSpec) -> None:
        self.spec = spec
        self.folder = workspace / "features" / spec.key
        self.features_path = self.folder / "features.f16"
        self.marks_path = self.folder / "marks.i64"
        self._row_bytes = spec.dim * 2
        self._mark_bytes = _MARK_COLUMNS * 8

    @property
    def rows(self) -> int:
        """Rows both files can hold now."""
        if not (self.features_path.exists() and self.marks_path.exists()):
            return 0
        return min(
            self.features_path.stat().st_size // self._row_bytes,
            self.marks_path.stat().st_size // self._mark_bytes,
        )

    def _ensure_rows(self, rows: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        spec_path = self.folder / "spec.json"
        if not spec_path.exists():
            atomic_write_json(spec_path, self.spec.as_dict())
        for path, width in (
            (self.features_path, self._row_bytes),
            (self.marks_path, self._mark_bytes),
        ):
            size = path.stat().st_size if path.exists() else 0
            if size < rows * width:
                with path.open("ab") as handle:
                    handle.truncate(rows * width)  # sparse: unwritten marks read as not done

    def _marks(self, rows: np.ndarray) -> np.ndarray:
        """int64 [n, 3] marks of the given rows (zeros beyond the files)."""
        out = np.zeros((rows.shape[0], _MARK_COLUMNS), dtype=np.int64)
        available = self.rows
        inside = rows < available
        if available and inside.any():
            marks = np.memmap(
                self.marks_path, dtype=np.int64, mode="r", shape=(available, _MARK_COLUMNS)
            )
            out[inside] = marks[rows[inside]]
            del marks
        return out

    def held(self) -> dict[int, tuple[int, int]]:
        """image id -> (size, mtime_ns) of every row computed (the file version it is of)."""
        available = self.rows
        if not available:
            return {}
        marks = np.memmap(
            self.marks_path, dtype=np.int64, mode="r", shape=(available, _MARK_COLUMNS)
        )
        table = np.array(marks)
        del marks
        done = np.flatnonzero(table[:, 0] == 1)
        return {
            int(row) + 1: (int(size), int(mtime))
            for row, size, mtime in zip(done, table[done, 1], table[done, 2], strict=True)
        }

    def valid(self, records: Sequence[ImageRecord]) -> np.ndarray:
        """bool [N]: which records have features computed from their current file version."""
        rows = np.array([r.cache_row for r in records], dtype=np.int64)
        marks = self._marks(rows)
        size = np.array([r.size for r in records], dtype=np.int64)
        mtime = np.array([r.mtime_ns for r in records], dtype=np.int64)
        valid: np.ndarray = (marks[:, 0] == 1) & (marks[:, 1] == size) & (marks[:, 2] == mtime)
        return valid

    def read(self, records: Sequence[ImageRecord]) -> np.ndarray:
        """float32 [N, D] features of records that are all :meth:`valid`.

        Raises:
            InvalidSettingError: a record's features are missing or stale.
        """
        if not records:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        if not self.valid(records).all():
            raise InvalidSettingError(
                "some images have no up-to-date features yet; compute them first"
            )
        rows = np.array([r.cache_row for r in records], dtype=np.int64)
        table = np.memmap(
            self.features_path, dtype=np.float16, mode="r", shape=(self.rows, self.spec.dim)
        )
        out: np.ndarray = table[rows].astype(np.float32)
        del table
        return out

    def write(self, records: Sequence[ImageRecord], features: np.ndarray) -> None:
        """Store features [n, D] of records; rows are flushed before their marks."""
        self.write_rows(
            np.array([r.cache_row for r in records], dtype=np.int64),
            np.array([r.size for r in records], dtype=np.int64),
            np.array([r.mtime_ns for r in records], dtype=np.int64),
            features,
        )

    def write_rows(
        self, rows: np.ndarray, sizes: np.ndarray, mtimes: np.ndarray, features: np.ndarray
    ) -> None:
        """Store features [n, D] at rows [n] (image id - 1), computed from the file versions
        (sizes [n], mtimes [n]); the rows are flushed before their marks."""
        if not len(rows):
            return
        if features.shape != (len(rows), self.spec.dim):
            raise ValueError(f"features must be [{len(rows)}, {self.spec.dim}]")
        if not np.isfinite(features).all():
            raise InvalidSettingError("the backbone produced non-finite features")
        self._ensure_rows(int(rows.max()) + 1)
        table = np.memmap(
            self.features_path, dtype=np.float16, mode="r+", shape=(self.rows, self.spec.dim)
        )
        table[rows] = features.astype(np.float16)
        table.flush()
        del table
        marks = np.memmap(
            self.marks_path, dtype=np.int64, mode="r+", shape=(self.rows, _MARK_COLUMNS)
        )
        marks[rows] = np.stack([np.ones(len(rows), dtype=np.int64), sizes, mtimes], axis=1)
        marks.flush()
        del marks


@dataclass(frozen=True)
class FeatureResult:
    """Features of a list of records and how they were obtained.

    Attributes:
        features: float32 [N, D], in the records' order.
        spec: What they depend on.
        computed: Rows computed by this call.
        reused: Rows taken from the cache.
        seconds: Wall time of the computation (0 when everything was cached).
    """

    features: np.ndarray
    spec: FeatureSpec
    computed: int
    reused: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        """Images computed per second (0 when none were)."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def compute_features(
    library: ImageLibrary,
    records: Sequence[ImageRecord],
    extractor: FeatureExtractor,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    batch_size: int | None = None,
) -> FeatureResult:
    """Features of ``records``: cached rows are reused, the others computed and stored.

    Pixels are read one batch at a time from the library's cache at ``extractor.spec.side``
    where it holds them, else decoded again from the files (a library scanned by the quick
    preset has no pixel cache: its features came straight from the scan's decoding, and only
    images whose features were lost are decoded here). Progress goes to the reporter (images
    done / to do, and a status line with images/s and the ETA every couple of seconds).

    Args:
        library: The open library (the caller holds its lock while writing).
        records: ``ok`` images of the library's catalog.
        extractor: The frozen backbone.
        reporter: Progress and status.
        control: Cancel / pause; checked before every batch.
        batch_size: Images per forward pass (default: the extractor's).

    Raises:
        InvalidSettingError: an image to compute is no longer the version the catalog knows,
            or cannot be decoded any more (scan again).
        InterruptedError: cancelled; every finished batch is kept.
    """
    reporter = reporter or NullReporter()
    control = control or JobControl()
    spec = extractor.spec
    batch_size = batch_size or extractor.batch_size
    cache = FeatureCache(library.workspace, spec)
    todo = [r for r, ok in zip(records, cache.valid(records), strict=True) if not ok]
    pixels = _PixelSource(library, spec.side)
    total = len(todo)
    started = time.monotonic()
    if total:
        reporter.status(
            f"Computing {spec.backbone} features of {total} images at {spec.side} px "
            f"({len(records) - total} cached)"
        )
    last_status = started
    paused_s = 0.0
    for start in range(0, total, batch_size):
        pause_started = time.monotonic()
        stop = control.checkpoint_wait()
        paused_s += time.monotonic() - pause_started
        if stop:
            raise InterruptedError(
                f"cancelled while computing features ({start} of {total} done; they are kept "
                "and the next run continues from there)"
            )
        batch = todo[start : start + batch_size]
        cache.write(batch, extractor(pixels.read(batch)))
        done = start + len(batch)
        reporter.progress(done, total)
        now = time.monotonic()
        if now - last_status >= STATUS_EVERY_S or done == total:
            rate = done / max(now - started - paused_s, 1e-9)
            eta = (total - done) / rate if rate > 0 else math.inf
            reporter.status(
                f"Features: {done}/{total} images, {rate:.1f} images/s, ETA {eta:.0f} s"
            )
            last_status = now
    seconds = time.monotonic() - started - paused_s if total else 0.0
    return FeatureResult(cache.read(records), spec, total, len(records) - total, seconds)


class _PixelSource:
    """S x S squares of catalog images: from the pixel cache where it holds their current
    version, else decoded from their files (which must still be that version)."""

    def __init__(self, library: ImageLibrary, side: int) -> None:
        self.side = side
        self.cache = PixelCache(library.workspace, side)
        self.cached = library.catalog.cached(side)

    def read(self, records: Sequence[ImageRecord]) -> np.ndarray:
        """uint8 [len(records), S, S, 3]."""
        out = np.empty((len(records), self.side, self.side, 3), dtype=np.uint8)
        in_cache = [i for i, r in enumerate(records) if self.cached.get(r.id) == r.version]
        if in_cache:
            out[in_cache] = self.cache.read([records[i].cache_row for i in in_cache])
        for i in sorted(set(range(len(records))) - set(in_cache)):
            out[i] = self._decode(records[i])
        return out

    def _decode(self, record: ImageRecord) -> np.ndarray:
        result = decode_file(str(record.path), self.side, None)
        if result.status != "ok" or result.pixels is None:
            problem = result.reason or result.status
        elif (result.size, result.mtime_ns) != record.version:
            problem = "changed since the last scan"
        else:
            return np.frombuffer(result.pixels, dtype=np.uint8).reshape(self.side, self.side, 3)
        raise InvalidSettingError(
            f"{record.path} cannot be read again ({problem}); scan the folders again"
        )
