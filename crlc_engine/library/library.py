"""ImageLibrary: a set of photo folders and its persistent workspace.

``<base>/libraries/<key>/`` holds ``catalog.sqlite``, ``pixels-<S>.u8`` per training size,
``thumbs/<id>.jpg``, ``runs/`` and ``lock``. Nothing is written inside the photo folders.
A scan is incremental: unchanged files (same size and mtime) are skipped, changed ones are
decoded again into the same cache row, vanished ones are marked missing, new ones appended.

Bounds: the workspace may lie inside a photo folder only below a hidden folder (scans skip
those unless asked), and no photo folder inside the workspace (either way its thumbnails
would be scanned as photos); a scan first walks all the folders and stops before
adding anything when they hold more than ``ScanOptions.max_files`` image files; decoding
runs in at most as many processes as there are CPU cores (:mod:`.decode_pool`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import (
    FolderNotFoundError,
    InvalidSettingError,
    NoImagesFoundError,
    TooManyFilesError,
    WorkspaceDamagedError,
)
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.core.fileio import atomic_write_json
from crlc_engine.library.catalog import REBUILD_ADVICE, Catalog, ImageRecord
from crlc_engine.library.decode import DecodeResult, decode_file, heif_available
from crlc_engine.library.decode_pool import available_cores, run_decoders
from crlc_engine.library.lock import WorkspaceLock
from crlc_engine.library.pixel_cache import PixelCache
from crlc_engine.library.runs import RunStore, library_key, workspace_base
from crlc_engine.library.walk import DEFAULT_MAX_FILES, ScanOptions, WalkResult, walk_root

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
        links_outside: Symbolic links that were followed to a target outside every
            folder of the library: link path -> resolved target.
        workers: Decoding processes used (0: in this process, or nothing to decode).
        repaired: Images decoded again because the pixel cache file was cut short.
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
    links_outside: dict[str, str] = field(default_factory=dict)
    workers: int = 0
    repaired: int = 0

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
            "links_outside": [
                {"path": path, "target": target}
                for path, target in sorted(self.links_outside.items())
            ],
            "workers": self.workers,
            "repaired": self.repaired,
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


def refuse_lost_catalog(workspace: Path) -> None:
    """Refuse a workspace whose catalog is gone (or emptied) while runs made with it remain.

    A new catalog would number the photos anew, and those runs would then name the wrong
    photos; the way out is to forget the library and scan again.

    Raises:
        WorkspaceDamagedError: no catalog (or an empty file) and at least one run.
    """
    catalog = workspace / "catalog.sqlite"
    runs = workspace / "runs"
    if catalog.is_file() and catalog.stat().st_size > 0:
        return
    made = [p for p in runs.iterdir() if (p / "config.json").exists()] if runs.is_dir() else []
    if made:
        state = "empty" if catalog.exists() else "missing"
        raise WorkspaceDamagedError(
            f"the library's catalog {catalog} is {state}, but the workspace holds {len(made)} "
            f"run(s) made with it, whose results can no longer be matched to the photos; "
            f"{REBUILD_ADVICE}"
        )


def default_workers() -> int:
    """Decoding processes: all available cores but one (at least one)."""
    return max(1, available_cores() - 1)


def decode_workers(requested: int | None, jobs: int, reporter: Reporter) -> int:
    """Processes to decode ``jobs`` files with (0: in this process).

    ``requested`` (default :func:`default_workers`), lowered to the cores this process may
    use (said on ``reporter``) and to ``jobs``.
    """
    cores = available_cores()
    count = default_workers() if requested is None else requested
    if count > cores:
        reporter.status(
            f"{count} decoding processes asked for, but only {cores} CPU core(s) are "
            f"available: using {cores}"
        )
        count = cores
    return min(count, jobs)


def refuse_nested_workspace(
    roots: Sequence[Path], workspace: Path, include_hidden: bool = False
) -> None:
    """Refuse a workspace that a scan would walk into, or a photo folder inside it.

    Either way a scan would find the library's own thumbnails and add them as photos. A
    workspace below a hidden folder of a root (the default one, ``~/.local/share/...``, when
    the photos are the home folder) is not walked unless hidden files are scanned.

    Raises:
        InvalidSettingError: they are nested (after resolving symbolic links).
    """
    place = workspace.resolve()
    for root in roots:
        hidden = place.is_relative_to(root) and any(
            part.startswith(".") for part in place.relative_to(root).parts
        )
        if place.is_relative_to(root) and (include_hidden or not hidden):
            raise InvalidSettingError(
                f"the workspace {workspace} is inside the photo folder {root}: its thumbnails "
                "would be scanned as photos; choose a workspace outside your photo folders "
                "(--workspace or CRLC_WORKSPACE)"
            )
        if root.is_relative_to(place):
            raise InvalidSettingError(
                f"the photo folder {root} is inside the library's workspace {workspace}; "
                "keep photos outside the workspace, or choose another one (--workspace or "
                "CRLC_WORKSPACE)"
            )


def read_scan_options(workspace: Path) -> ScanOptions:
    """The scan options stored in a workspace's ``library.json`` (defaults where none)."""
    try:
        data = json.loads((workspace / "library.json").read_text(encoding="utf-8"))
        stored = data.get("scan_options") or {}
        limit = stored.get("max_files", DEFAULT_MAX_FILES)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            limit = DEFAULT_MAX_FILES
        return ScanOptions(
            include_hidden=bool(stored.get("include_hidden", False)),
            include=tuple(stored.get("include", ())),
            exclude=tuple(stored.get("exclude", ())),
            follow_symlinks=bool(stored.get("follow_symlinks", True)),
            max_files=limit,
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return ScanOptions()


def stored_scan_options(
    folders: Sequence[str | Path], base: str | Path | None = None
) -> ScanOptions:
    """The scan options stored with the library of ``folders`` (defaults for a new one).

    Raises:
        FolderNotFoundError: a folder does not exist.
    """
    roots = resolve_roots(folders)
    return read_scan_options(workspace_base(base) / "libraries" / library_key(roots))


class ImageLibrary:
    """A set of root folders, its catalog, pixel caches, thumbnails and runs."""

    def __init__(self, roots: tuple[Path, ...], workspace: Path, read_only: bool = False) -> None:
        """Open the workspace of ``roots`` (creating it unless ``read_only``).

        Args:
            roots: The library's resolved root folders.
            workspace: Its workspace folder.
            read_only: Write nothing (commands that only read: they then work on a full
                disk and in a read-only workspace); the library must exist.

        Raises:
            WorkspaceDamagedError: the catalog is damaged, or lost while runs made with it
                remain (see :func:`refuse_lost_catalog`).
            LibraryNotFoundError: ``read_only`` and the library has no catalog yet.
            InvalidSettingError: the workspace is inside a root, or a root inside it
                (:func:`refuse_nested_workspace`; not checked when ``read_only``).
        """
        if not read_only:
            refuse_nested_workspace(roots, workspace, read_scan_options(workspace).include_hidden)
        self.roots = roots
        self.workspace = workspace
        self.key = workspace.name
        self.read_only = read_only
        refuse_lost_catalog(workspace)
        if not read_only:
            (workspace / "thumbs").mkdir(parents=True, exist_ok=True)
            (workspace / "runs").mkdir(parents=True, exist_ok=True)
            info = workspace / "library.json"
            if not info.exists():
                atomic_write_json(info, {"roots": [str(r) for r in roots]})
        self.catalog = Catalog(workspace / "catalog.sqlite", read_only=read_only)
        if not read_only:
            self.catalog.ensure_roots(roots)
        self.runs = RunStore(workspace / "runs", roots, self.catalog)

    @classmethod
    def open(
        cls,
        folders: Sequence[str | Path],
        base: str | Path | None = None,
        read_only: bool = False,
    ) -> ImageLibrary:
        """Open (creating if needed, unless ``read_only``) the library of ``folders``."""
        roots = resolve_roots(folders)
        workspace = workspace_base(base) / "libraries" / library_key(roots)
        return cls(roots, workspace, read_only)

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
        return read_scan_options(self.workspace)

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
            workers: Decoding processes (default: all cores but one), at most the cores this
                process may use (a larger number is lowered, with a status line); 0 decodes
                in this process (tests, debugging).
            thumbnails: Also write thumbnails.

        Raises:
            NoImagesFoundError: the folders hold no usable image at all.
            TooManyFilesError: more image files than ``options.max_files`` (nothing added).
            InvalidSettingError: ``side``, ``workers`` or ``options.max_files`` out of range.
            WorkspaceLockedError: another process is writing this workspace.
        """
        if not 8 <= side <= 1024:
            raise InvalidSettingError(f"size must be 8..1024 px (got {side})")
        if workers is not None and workers < 0:
            raise InvalidSettingError(
                f"decoding processes must be 0 (decode in this process) or more (got {workers})"
            )
        if options is None:
            options = self.scan_options()
        else:
            if options.max_files < 1:
                raise InvalidSettingError(
                    f"the file limit must be at least 1 (got {options.max_files})"
                )
            refuse_nested_workspace(self.roots, self.workspace, options.include_hidden)
            self._store_scan_options(options)
        reporter = reporter or NullReporter()
        control = control or JobControl()
        started = time.monotonic()
        summary = ScanSummary(self.workspace)
        with self.locked(f"scanning at {side} px"):
            for leftover in (self.workspace / "thumbs").glob("*.tmp"):  # from a killed scan
                leftover.unlink(missing_ok=True)
            summary.repaired = self._repair_pixel_cache(side, reporter)
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
                    f"{_patterns_note(options)}"
                )
            first = summary.skipped[0] if summary.skipped else SkippedFile(where, "unknown")
            raise NoImagesFoundError(
                f"none of the {len(files)} image files in {where} could be used "
                f"(e.g. {first.path}: {first.reason})"
            )
        return summary

    def _repair_pixel_cache(self, side: int, reporter: Reporter) -> int:
        """Forget cached rows that the pixel file no longer holds (it was cut short or
        replaced); the scan then decodes those images again. Returns how many."""
        rows = PixelCache(self.workspace, side).rows
        self.catalog.begin()
        try:
            lost = self.catalog.forget_rows_beyond(side, rows)
            self.catalog.commit()
        except BaseException:
            self.catalog.rollback()
            raise
        if lost:
            reporter.status(
                f"The pixel cache at {side} px was cut short: decoding {lost} images again"
            )
        return lost

    def _plan(
        self, side: int, options: ScanOptions, summary: ScanSummary, reporter: Reporter
    ) -> list[tuple[int, Path, bool]]:
        """Walk the roots, update rows; return (id, path, needs_thumbnail) to decode."""
        reporter.status(f"Looking for images in {', '.join(map(str, self.roots))}")
        root_ids = self.catalog.root_ids()
        cached = self.catalog.cached(side)
        todo: list[tuple[int, Path, bool]] = []
        walks = self._walk_all(options, summary)
        self.catalog.begin()
        try:
            for root, walked in walks:
                root_id = root_ids[root]
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

    def _walk_all(
        self, options: ScanOptions, summary: ScanSummary
    ) -> list[tuple[Path, WalkResult]]:
        """Walk every root (writing nothing), up to ``options.max_files`` files in all.

        Raises:
            TooManyFilesError: the roots hold more image files than ``options.max_files``.
        """
        walks = []
        left = options.max_files
        for root in self.roots:
            walked = walk_root(root, options, self.roots, left)
            if walked.too_many:
                limit = options.max_files
                where = ", ".join(map(str, self.roots))
                which = (
                    "the default limit"
                    if limit == DEFAULT_MAX_FILES
                    else f"the limit set with --max-files (default {DEFAULT_MAX_FILES:,})"
                )
                raise TooManyFilesError(
                    f"more than {limit:,} image files in {where}, {which}: nothing was added. "
                    "Scan a smaller folder, leave files out with --exclude PATTERN, or lift "
                    f"the limit with --max-files N (e.g. --max-files {limit * 2})"
                )
            left -= len(walked.files)
            summary.skipped.extend(SkippedFile(p, r) for p, r in walked.problems)
            summary.links_outside.update(walked.links_outside)
            walks.append((root, walked))
        return walks

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
        n_workers = decode_workers(workers, total, reporter)
        summary.workers = n_workers
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
            run_decoders(jobs(), side, n_workers, control, decode=decode_file), start=1
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


def _patterns_note(options: ScanOptions) -> str:
    """Why a scan with remembered patterns may find nothing (empty without patterns)."""
    given = [f"--include {p!r}" for p in options.include]
    given += [f"--exclude {p!r}" for p in options.exclude]
    if not given:
        return ""
    return (
        f" that match the library's remembered patterns ({' '.join(given)}); scan with "
        "other patterns to change them, e.g. `--include '*'` to take every file again"
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
