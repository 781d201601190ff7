"""ImageLibrary: a set of photo folders and its persistent workspace.

``<base>/libraries/<key>/`` holds ``catalog.sqlite``, ``pixels-<S>.u8`` per training size,
``thumbs/<id>.jpg``, ``runs/`` and ``lock``. Nothing is written inside the photo folders.
A scan is incremental: unchanged files (same size and mtime) are skipped, changed ones are
decoded again into the same cache row, vanished ones are marked missing, new ones appended.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crlc_engine.control import JobControl
from crlc_engine.errors import FolderNotFoundError, InvalidSettingError, NoImagesFoundError
from crlc_engine.events import NullReporter, Reporter
from crlc_engine.fileio import atomic_write_json
from crlc_engine.library.catalog import Catalog, ImageRecord
from crlc_engine.library.decode import DecodeResult, decode_file, heif_available
from crlc_engine.library.lock import WorkspaceLock
from crlc_engine.library.pixel_cache import PixelCache
from crlc_engine.library.walk import ScanOptions, walk_root
from crlc_engine.runs import RunStore, library_key, workspace_base

COMMIT_EVERY_S = 1.0


@dataclass(frozen=True)
class SkippedFile:
    """A file (or folder) that a scan could not use, and why."""

    path: str
    reason: str


@dataclass
class ScanSummary:
    """What a scan found and did.

    Attributes:
        workspace: The library's workspace folder.
        images_ok: Images usable for training at this size.
        skipped: Files and folders that could not be used, with reasons.
        new: Files seen for the first time.
        changed: Known files whose size or mtime changed.
        unchanged: Known files skipped without decoding.
        missing: Known files no longer on disk.
        decoded: Files decoded in this scan.
        seconds: Wall time of the scan.
        cancelled: Whether the scan was cancelled (the next scan continues it).
    """

    workspace: Path
    images_ok: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    missing: int = 0
    decoded: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def images_skipped(self) -> int:
        """Number of skipped files and folders."""
        return len(self.skipped)

    @property
    def files_per_s(self) -> float:
        """Decoded files per second of scan time."""
        return self.decoded / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object of ``crlc scan``."""
        return {
            "workspace": str(self.workspace),
            "images_ok": self.images_ok,
            "images_skipped": self.images_skipped,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "missing": self.missing,
            "decoded": self.decoded,
            "seconds": round(self.seconds, 3),
            "files_per_s": round(self.files_per_s, 2),
            "cancelled": self.cancelled,
        }


def resolve_roots(folders: Sequence[str | Path]) -> tuple[Path, ...]:
    """Sorted, de-duplicated absolute roots; every one must be an existing folder.

    Raises:
        FolderNotFoundError: a folder does not exist or is not a folder.
    """
    if not folders:
        raise FolderNotFoundError("give at least one folder")
    roots = set()
    for folder in folders:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise FolderNotFoundError(f"folder not found: {path}")
        roots.add(path.resolve())
    return tuple(sorted(roots, key=str))


def default_workers() -> int:
    """Decoding processes: all cores but one (at least one)."""
    return max(1, (os.cpu_count() or 2) - 1)


class ImageLibrary:
    """A set of root folders, its catalog, pixel caches, thumbnails and runs."""

    def __init__(self, roots: tuple[Path, ...], workspace: Path) -> None:
        self.roots = roots
        self.workspace = workspace
        self.key = workspace.name
        (workspace / "thumbs").mkdir(parents=True, exist_ok=True)
        (workspace / "runs").mkdir(parents=True, exist_ok=True)
        info = workspace / "library.json"
        if not info.exists():
            atomic_write_json(info, {"roots": [str(r) for r in roots]})
        self.catalog = Catalog(workspace / "catalog.sqlite")
        self.catalog.ensure_roots(roots)
        self.runs = RunStore(workspace / "runs", roots)

    @classmethod
    def open(cls, folders: Sequence[str | Path], base: str | Path | None = None) -> ImageLibrary:
        """Open (creating if needed) the library of ``folders`` under a workspace base."""
        roots = resolve_roots(folders)
        workspace = workspace_base(base) / "libraries" / library_key(roots)
        return cls(roots, workspace)

    def close(self) -> None:
        """Close the catalog connection."""
        self.catalog.close()

    def __enter__(self) -> ImageLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def locked(self, purpose: str, name: str = "lock") -> Iterator[None]:
        """Hold the workspace lock ``name`` (raises ``WorkspaceLockedError`` naming the holder).

        ``lock`` guards the catalog, caches and runs; exports take ``export.lock``.
        """
        with WorkspaceLock(self.workspace, purpose, name):
            yield

    def thumbnail_path(self, image_id: int) -> Path:
        """Where the thumbnail of an image lives."""
        return self.workspace / "thumbs" / f"{image_id}.jpg"

    def images(self, status: str | None = "ok") -> list[ImageRecord]:
        """Catalog rows (default: usable images), ordered by id."""
        return self.catalog.images(status)

    def cached_images(self, side: int) -> list[ImageRecord]:
        """``ok`` images whose pixels at ``side`` are cached for their current version."""
        cached = self.catalog.cached(side)
        return [r for r in self.catalog.images("ok") if cached.get(r.id) == (r.size, r.mtime_ns)]

    def pixels(self, side: int, records: Sequence[ImageRecord]) -> np.ndarray:
        """uint8 [N, S, S, 3] of the given images from the cache at ``side``."""
        return PixelCache(self.workspace, side).read([r.cache_row for r in records])

    # ------------------------------------------------------------------ scanning
    def scan_options(self) -> ScanOptions:
        """The options of the last scan that was given some (defaults otherwise)."""
        try:
            data = json.loads((self.workspace / "library.json").read_text(encoding="utf-8"))
            stored = data.get("scan_options") or {}
            return ScanOptions(
                include_hidden=bool(stored.get("include_hidden", False)),
                include=tuple(stored.get("include", ())),
                exclude=tuple(stored.get("exclude", ())),
                follow_symlinks=bool(stored.get("follow_symlinks", True)),
            )
        except (OSError, ValueError):
            return ScanOptions()

    def _store_scan_options(self, options: ScanOptions) -> None:
        path = self.workspace / "library.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {"roots": [str(r) for r in self.roots]}
        data["scan_options"] = dataclasses.asdict(options)
        atomic_write_json(path, data)

    def scan(
        self,
        side: int,
        options: ScanOptions | None = None,
        reporter: Reporter | None = None,
        control: JobControl | None = None,
        workers: int | None = None,
        thumbnails: bool = True,
    ) -> ScanSummary:
        """Bring catalog, pixel cache at ``side`` and thumbnails up to date with the disk.

        Args:
            side: Training size S of the pixel cache to fill.
            options: What to scan (hidden files, include / exclude patterns, symlinks);
                stored with the library and reused when ``None``.
            reporter: Progress (files decoded / to decode), status lines with files/s and ETA.
            control: Cancel token, checked after every file; work done so far is kept.
            workers: Decoding processes (default: all cores but one); 0 decodes in this
                process (tests, debugging).
            thumbnails: Also write thumbnails.

        Raises:
            NoImagesFoundError: the folders hold no usable image at all.
            WorkspaceLockedError: another process is writing this workspace.
        """
        if not 8 <= side <= 1024:
            raise InvalidSettingError(f"size must be 8..1024 px (got {side})")
        if options is None:
            options = self.scan_options()
        else:
            self._store_scan_options(options)
        reporter = reporter or NullReporter()
        control = control or JobControl()
        started = time.monotonic()
        summary = ScanSummary(self.workspace)
        with self.locked(f"scanning at {side} px"):
            for leftover in (self.workspace / "thumbs").glob("*.tmp"):  # from a killed scan
                leftover.unlink(missing_ok=True)
            todo = self._plan(side, options, summary, reporter)
            self._decode_all(todo, side, summary, reporter, control, workers, thumbnails)
        summary.seconds = time.monotonic() - started
        ok = self.cached_images(side)
        summary.images_ok = len(ok)
        for record in self.catalog.images():
            if record.status in ("error", "unsupported"):
                summary.skipped.append(SkippedFile(str(record.path), record.error or "error"))
        if not ok and not summary.cancelled:
            where = ", ".join(map(str, self.roots))
            files = [r for r in self.catalog.images() if r.status != "missing"]
            if not files:
                raise NoImagesFoundError(
                    f"no image files (jpg, png, webp, bmp, tiff, gif, heic) in {where}"
                )
            first = summary.skipped[0] if summary.skipped else SkippedFile(where, "unknown")
            raise NoImagesFoundError(
                f"none of the {len(files)} image files in {where} could be used "
                f"(e.g. {first.path}: {first.reason})"
            )
        return summary

    def _plan(
        self, side: int, options: ScanOptions, summary: ScanSummary, reporter: Reporter
    ) -> list[tuple[int, Path, bool]]:
        """Walk the roots, update rows; return (id, path, needs_thumbnail) to decode."""
        reporter.status(f"Looking for images in {', '.join(map(str, self.roots))}")
        root_ids = self.catalog.root_ids()
        cached = self.catalog.cached(side)
        todo: list[tuple[int, Path, bool]] = []
        self.catalog.begin()
        try:
            for root in self.roots:
                root_id = root_ids[root]
                walked = walk_root(root, options)
                summary.skipped.extend(SkippedFile(p, r) for p, r in walked.problems)
                known = self.catalog.known_files(root_id)
                seen: set[str] = set()
                for found in walked.files:
                    seen.add(found.rel_path)
                    entry = known.get(found.rel_path)
                    if entry is None:
                        image_id = self.catalog.insert_image(
                            root_id, found.rel_path, found.size, found.mtime_ns
                        )
                        summary.new += 1
                        todo.append((image_id, root / found.rel_path, True))
                        continue
                    image_id, size, mtime, status, error = entry
                    same_file = (size, mtime) == (found.size, found.mtime_ns)
                    if not same_file:
                        summary.changed += 1
                        # Old pixels stop counting now, even if this scan is cancelled.
                        self.catalog.forget_pixels(image_id)
                        todo.append((image_id, root / found.rel_path, True))
                    elif status == "ok" and cached.get(image_id) != (size, mtime):
                        summary.unchanged += 1  # decoded before, but not at this size
                        todo.append((image_id, root / found.rel_path, False))
                    elif (
                        status == "missing"
                        or (status == "error" and _transient(error))
                        or (status == "unsupported" and heif_available())
                    ):
                        todo.append((image_id, root / found.rel_path, True))
                    else:
                        summary.unchanged += 1
                gone = [
                    entry[0]
                    for rel, entry in known.items()
                    if rel not in seen and entry[3] != "missing"
                ]
                unlisted = [
                    Path(p).relative_to(root).as_posix() if p != str(root) else ""
                    for p, reason in walked.problems
                    if reason.startswith("cannot list folder") and Path(p).is_relative_to(root)
                ]
                if unlisted:  # files below a folder we could not list are not known to be gone
                    gone = [
                        entry[0]
                        for rel, entry in known.items()
                        if entry[0] in gone
                        and not any(u == "" or rel.startswith(u + "/") for u in unlisted)
                    ]
                self.catalog.mark_missing(gone)
                summary.missing += len(gone)
            self.catalog.commit()
        except BaseException:
            self.catalog.rollback()
            raise
        return todo

    def _decode_all(
        self,
        todo: list[tuple[int, Path, bool]],
        side: int,
        summary: ScanSummary,
        reporter: Reporter,
        control: JobControl,
        workers: int | None,
        thumbnails: bool,
    ) -> None:
        if not todo:
            return
        cache = PixelCache(self.workspace, side)
        cache.ensure_rows(self.catalog.max_id())
        total = len(todo)
        n_workers = default_workers() if workers is None else workers
        reporter.status(
            f"Decoding {total} images at {side} px with {max(n_workers, 1)} process(es)"
        )
        pending: list[tuple[int, DecodeResult]] = []
        last_commit = time.monotonic()
        started = time.monotonic()

        def flush() -> None:
            rows = [(i, r) for i, r in pending if r.status == "ok" and r.pixels is not None]
            cache.write_rows([i - 1 for i, _ in rows], [r.pixels for _, r in rows if r.pixels])
            self.catalog.begin()
            try:
                for image_id, result in pending:
                    if result.status == "ok":
                        self.catalog.record_ok(
                            image_id,
                            result.size,
                            result.mtime_ns,
                            result.width,
                            result.height,
                            side,
                            result.thumbnail,
                        )
                    else:
                        self.catalog.record_skipped(
                            image_id,
                            result.size,
                            result.mtime_ns,
                            result.status,
                            result.reason or "error",
                        )
                self.catalog.commit()
            except BaseException:
                self.catalog.rollback()
                raise
            pending.clear()

        def jobs() -> Iterator[tuple[int, str, str | None]]:
            for image_id, path, needs_thumb in todo:
                thumb = str(self.thumbnail_path(image_id)) if thumbnails and needs_thumb else None
                yield image_id, str(path), thumb

        for done, (image_id, result) in enumerate(
            _run_decoders(jobs(), side, n_workers, control), start=1
        ):
            pending.append((image_id, result))
            summary.decoded += 1
            if result.status == "missing":
                summary.missing += 1
            if result.status != "ok":
                self.thumbnail_path(image_id).unlink(missing_ok=True)
            now = time.monotonic()
            if now - last_commit >= COMMIT_EVERY_S:
                flush()
                last_commit = now
                rate = done / (now - started)
                reporter.status(
                    f"{done}/{total} images, {rate:.1f} files/s, ETA {(total - done) / rate:.0f} s"
                )
            reporter.progress(done, total)
        flush()
        summary.cancelled = control.cancelled and summary.decoded < total


TRANSIENT_ERRORS = (
    "not decoded yet",
    "permission denied",
    "cannot read file",
    "changed while",
    "deleted during",
)


def _transient(reason: str | None) -> bool:
    """Errors worth retrying on an unchanged file (a broken file stays broken)."""
    return reason is None or reason.startswith(TRANSIENT_ERRORS)


def scan_folders(
    folders: Sequence[str | Path],
    side: int,
    workspace: str | Path | None = None,
    options: ScanOptions | None = None,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    workers: int | None = None,
) -> ScanSummary:
    """Scan the library of ``folders`` at training size ``side`` (the ``crlc scan`` job)."""
    with ImageLibrary.open(folders, workspace) as library:
        return library.scan(side, options, reporter, control, workers)


def _run_decoders(
    jobs: Iterator[tuple[int, str, str | None]], side: int, workers: int, control: JobControl
) -> Iterator[tuple[int, DecodeResult]]:
    """Decode in ``workers`` processes (0: here), a bounded number in flight, until cancelled."""
    if workers == 0:
        for image_id, path, thumb in jobs:
            if control.cancelled:
                return
            yield image_id, decode_file(path, side, thumb)
        return
    context = multiprocessing.get_context("spawn")
    in_flight: dict[cf.Future[DecodeResult], int] = {}
    limit = workers * 4
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        iterator = iter(jobs)
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < limit and not control.cancelled:
                try:
                    image_id, path, thumb = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                in_flight[pool.submit(decode_file, path, side, thumb)] = image_id
            if not in_flight:
                return
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                image_id = in_flight.pop(future)
                yield image_id, future.result()
            if control.cancelled:
                for future in in_flight:
                    future.cancel()
                for future in cf.as_completed(list(in_flight)):
                    if not future.cancelled():
                        yield in_flight[future], future.result()
                return
