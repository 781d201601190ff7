"""The scan job: bring a library's catalog, pixel cache and thumbnails up to date with its
folders.

A scan walks every root first (writing nothing; it stops before adding anything when the
folders hold more than ``ScanOptions.max_files`` image files), then updates the catalog's
rows (new, changed and missing files), then decodes what changed in at most as many
processes as there are CPU cores (:mod:`.decode_pool`), committing every
:data:`COMMIT_EVERY_S` seconds so that a cancelled or killed scan keeps its work.

The decoded S x S squares go to a :class:`~crlc_engine.library.decoded_sink.DecodedSink`: the
pixel cache by default, or a consumer that keeps something else (the quick preset's features)
and writes no pixel file. A known file the sink does not hold yet is decoded again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import NoImagesFoundError, TooManyFilesError
from crlc_engine.core.events import Reporter
from crlc_engine.library.catalog import Catalog, ImageRecord
from crlc_engine.library.decode import DecodeResult, decode_file, heif_available
from crlc_engine.library.decode_pool import available_cores, run_decoders
from crlc_engine.library.decoded_sink import DecodedSink, Held, PixelCacheSink
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


def thumbnail_file(workspace: Path, image_id: int) -> Path:
    """Where the thumbnail of an image lives in a library's workspace."""
    return workspace / "thumbs" / f"{image_id}.jpg"


def usable_images(catalog: Catalog, side: int) -> list[ImageRecord]:
    """``ok`` images whose pixels at ``side`` are cached for their current version."""
    return held_images(catalog, catalog.cached(side))


def held_images(catalog: Catalog, held: Held) -> list[ImageRecord]:
    """``ok`` images whose current version is in ``held`` (what a sink holds)."""
    return [r for r in catalog.images("ok") if held.get(r.id) == (r.size, r.mtime_ns)]


class FolderScan:
    """One scan of a library's roots into its workspace (see the module docstring)."""

    def __init__(self, roots: Sequence[Path], workspace: Path, catalog: Catalog) -> None:
        self.roots = tuple(roots)
        self.workspace = workspace
        self.catalog = catalog

    def thumbnail_path(self, image_id: int) -> Path:
        """Where the thumbnail of an image lives."""
        return thumbnail_file(self.workspace, image_id)

    def run(
        self,
        side: int,
        options: ScanOptions,
        reporter: Reporter,
        control: JobControl,
        workers: int | None,
        thumbnails: bool,
        lock: AbstractContextManager[Any],
        sink: DecodedSink | None = None,
    ) -> ScanSummary:
        """Scan (the arguments are those of ``ImageLibrary.scan``), holding ``lock`` while
        the workspace is written; raises what ``ImageLibrary.scan`` documents."""
        started = time.monotonic()
        summary = ScanSummary(self.workspace)
        sink = sink or PixelCacheSink(self.workspace, side, self.catalog)
        with lock:
            for leftover in (self.workspace / "thumbs").glob("*.tmp"):  # from a killed scan
                leftover.unlink(missing_ok=True)
            summary.repaired = sink.repair(self.catalog, reporter)
            todo = self._plan(sink.held(self.catalog), options, summary, reporter)
            self._decode_all(todo, sink, summary, reporter, control, workers, thumbnails)
        summary.seconds = time.monotonic() - started
        ok = held_images(self.catalog, sink.held(self.catalog))
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

    def _plan(
        self, cached: Held, options: ScanOptions, summary: ScanSummary, reporter: Reporter
    ) -> list[tuple[int, Path, bool]]:
        """Walk the roots, update rows; return (id, path, needs_thumbnail) to decode
        (``cached``: the file versions the sink holds already)."""
        reporter.status(f"Looking for images in {', '.join(map(str, self.roots))}")
        root_ids = self.catalog.root_ids()
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
                        summary.unchanged += 1  # decoded before, but not into this sink
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

    def _commit(self, results: list[tuple[int, DecodeResult]], side: int | None) -> None:
        """Record decode results in the catalog, in one transaction (``side``: where their
        pixels were cached; ``None``: no pixel cache counts them)."""
        self.catalog.begin()
        try:
            for image_id, result in results:
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

    def _decode_all(
        self,
        todo: list[tuple[int, Path, bool]],
        sink: DecodedSink,
        summary: ScanSummary,
        reporter: Reporter,
        control: JobControl,
        workers: int | None,
        thumbnails: bool,
    ) -> None:
        if not todo:
            return
        side = sink.side
        total = len(todo)
        n_workers = decode_workers(workers, total, reporter)
        summary.workers = n_workers
        reporter.status(sink.describe(total, n_workers))
        pending: list[tuple[int, DecodeResult]] = []
        last_commit = time.monotonic()
        started = time.monotonic()

        def flush() -> None:
            sink.flush()
            self._commit(pending, side if sink.pixel_rows else None)
            pending.clear()

        def jobs() -> Iterator[tuple[int, str, str | None]]:
            for image_id, path, needs_thumb in todo:
                thumb = str(self.thumbnail_path(image_id)) if thumbnails and needs_thumb else None
                yield image_id, str(path), thumb

        decoded = run_decoders(
            jobs(), side, n_workers, control, decode=decode_file, ahead=sink.batch_size
        )
        for done, (image_id, result) in enumerate(decoded, start=1):
            pending.append((image_id, result))
            durable = False
            if result.status == "ok" and result.pixels is not None:
                durable = sink.put(image_id, result.size, result.mtime_ns, result.pixels)
            summary.decoded += 1
            if result.status == "missing":
                summary.missing += 1
            if result.status != "ok":
                self.thumbnail_path(image_id).unlink(missing_ok=True)
            now = time.monotonic()
            timed = now - last_commit >= COMMIT_EVERY_S
            if durable or timed:
                flush()
            if timed:
                last_commit = now
                rate = done / (now - started)
                reporter.status(
                    f"{done}/{total} images, {rate:.1f} files/s, ETA {(total - done) / rate:.0f} s"
                )
            reporter.progress(done, total)
        sink.finish()
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
