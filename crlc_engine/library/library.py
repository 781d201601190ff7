"""ImageLibrary: a set of photo folders and its persistent workspace.

``<base>/libraries/<key>/`` holds ``catalog.sqlite``, ``pixels-<S>.u8`` per training size,
``thumbs/<id>.jpg``, ``runs/`` and ``lock``. Nothing is written inside the photo folders.
A scan is incremental: unchanged files (same size and mtime) are skipped, changed ones are
decoded again into the same cache row, vanished ones are marked missing, new ones appended.

Bounds: the workspace may lie inside a photo folder only below a hidden folder (scans skip
those unless asked), and no photo folder inside the workspace (either way its thumbnails
would be scanned as photos); a scan first walks all the folders and stops before
adding anything when they hold more than ``ScanOptions.max_files`` image files; decoding
runs in at most as many processes as there are CPU cores (the scan job: :mod:`.scan`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import (
    FolderNotFoundError,
    InvalidSettingError,
    WorkspaceDamagedError,
)
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.core.fileio import atomic_write_json
from crlc_engine.library.catalog import REBUILD_ADVICE, Catalog, ImageRecord
from crlc_engine.library.decoded_sink import DecodedSink
from crlc_engine.library.disk_pixels import DiskPixels, training_pixels
from crlc_engine.library.lock import WorkspaceLock
from crlc_engine.library.pixel_cache import PixelCache
from crlc_engine.library.runs import RunStore, library_key, workspace_base
from crlc_engine.library.scan import FolderScan, ScanSummary, thumbnail_file, usable_images
from crlc_engine.library.walk import DEFAULT_MAX_FILES, ScanOptions

#: The folders of a library: one folder or several.
Folders = str | Path | Sequence[str | Path]


def resolve_roots(folders: Folders) -> tuple[Path, ...]:
    """Sorted, de-duplicated absolute roots of one folder or several; every one must be an
    existing folder.

    Raises:
        FolderNotFoundError: a folder does not exist or is not a folder.
    """
    if isinstance(folders, str | Path):
        folders = [folders]
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
        folders: Folders,
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
        return thumbnail_file(self.workspace, image_id)

    def images(self, status: str | None = "ok") -> list[ImageRecord]:
        """Catalog rows (default: usable images), ordered by id."""
        return self.catalog.images(status)

    def cached_images(self, side: int) -> list[ImageRecord]:
        """``ok`` images whose pixels at ``side`` are cached for their current version."""
        return usable_images(self.catalog, side)

    def pixels(self, side: int, records: Sequence[ImageRecord]) -> np.ndarray:
        """uint8 [N, S, S, 3] of the given images from the cache at ``side``."""
        return PixelCache(self.workspace, side).read([r.cache_row for r in records])

    def training_pixels(
        self, side: int, records: Sequence[ImageRecord], reporter: Reporter | None = None
    ) -> np.ndarray | DiskPixels:
        """The given images' pixels at ``side``: in memory, or left in the cache on disk and
        read a batch at a time when they would not fit (:func:`training_pixels`)."""
        return training_pixels(
            PixelCache(self.workspace, side), [r.cache_row for r in records], reporter
        )

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
        sink: DecodedSink | None = None,
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
            sink: Where the decoded squares go instead of the pixel cache (its side must be
                ``side``); see :mod:`crlc_engine.library.decoded_sink`.

        Raises:
            NoImagesFoundError: the folders hold no usable image at all.
            TooManyFilesError: more image files than ``options.max_files`` (nothing added).
            InvalidSettingError: ``side``, ``workers`` or ``options.max_files`` out of range.
            WorkspaceLockedError: another process is writing this workspace.
        """
        if not 8 <= side <= 1024:
            raise InvalidSettingError(f"size must be 8..1024 px (got {side})")
        if sink is not None and sink.side != side:
            raise InvalidSettingError(f"the scan is at {side} px but its sink takes {sink.side} px")
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
        lock = self.locked(f"scanning at {side} px")
        job = FolderScan(self.roots, self.workspace, self.catalog)
        return job.run(side, options, reporter, control, workers, thumbnails, lock, sink)


def scan_folders(
    folders: Folders,
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
