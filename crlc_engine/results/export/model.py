"""What an export takes and gives back: the photos, the plan's entries, the results of
an export and of its undo, and the errors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlc_engine.core.errors import CRLCError

EXPORT_MODES = ("copy", "hardlink", "symlink", "move", "csv")
FIRST_FILES = 10


class ExportError(CRLCError):
    """An export cannot start or go on (bad destination, unreadable manifest...)."""

    kind = "export"


class ExportDestinationError(ExportError):
    """The export folder is a file, or lies inside a photo library folder."""

    kind = "export_destination"


class NotEnoughSpaceError(ExportError):
    """The export folder's drive has not enough free space for the files to write."""

    kind = "not_enough_space"


class CrossDeviceLinkError(ExportError):
    """Hard links were asked for across file systems (drives), which is impossible."""

    kind = "cross_device_link"


class UndoError(ExportError):
    """No usable manifest or journal was found to undo."""

    kind = "export_undo"


@dataclass(frozen=True)
class ExportItem:
    """One photo to export.

    Attributes:
        source: Absolute path of the photo.
        cluster: Cluster name, unsanitised (e.g. ``"Beach / 2024"``).
        confidence: Cluster confidence in 0..1.
        relative: POSIX path relative to its library root (used by ``keep_subfolders``).
        ignored: Ignored photos stay out of the export.
    """

    source: Path
    cluster: str
    confidence: float
    relative: str
    ignored: bool = False


@dataclass(frozen=True)
class ExportPlanEntry:
    """Where one photo goes.

    Attributes:
        source: Absolute path of the photo.
        destination: Its path in the export, ``None`` when it stays out.
        folder: Top folder in DEST (sanitised cluster name or ``_uncertain``), ``""`` if out.
        cluster: Cluster name as given.
        confidence: Cluster confidence.
        status: ``planned`` (to write), ``done`` (written by an earlier attempt of this
            export), ``present`` (already at its destination from another export),
            ``ignored``, ``duplicate`` (source listed twice) or ``missing`` (no source file).
    """

    source: Path
    destination: Path | None
    folder: str
    cluster: str
    confidence: float
    status: str = "planned"


@dataclass
class ExportResult:
    """What an export did (or, with ``dry_run``, would do).

    Attributes:
        manifest: The manifest CSV (not written by a dry run).
        mode: One of :data:`EXPORT_MODES`.
        files: Photos in the export (written now, by an earlier attempt, or already
            present; the planned ones for a dry run or ``csv`` mode): the ``done`` count.
        folders: Top folder name -> number of those photos.
        skipped: ``(source, reason)`` of the photos left out on purpose (reason ``ignored``
            or ``listed twice``).
        dry_run: Whether nothing was written.
        already_done: Photos found already exported (earlier attempt or earlier export).
        cancelled: Whether the export stopped early; run it again to finish it.
        journal: The journal file (``None`` for dry runs and ``csv`` mode).
        entries: The full plan, in layout order.
        in_export: Destinations of the ``files`` photos in the export, in layout order.
        failed: ``(source, reason)`` of the photos that could not be exported.
        missing: ``(source, reason)`` of the photos whose file is not there (deleted after
            training, or marked missing by a scan).
    """

    manifest: Path
    mode: str
    files: int
    folders: dict[str, int]
    skipped: list[tuple[str, str]]
    dry_run: bool
    already_done: int
    cancelled: bool = False
    journal: Path | None = None
    entries: list[ExportPlanEntry] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    in_export: list[Path] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Photos now in the export (for a dry run: that would be)."""
        return self.files

    @property
    def state(self) -> str:
        """``cancelled``, ``finished_with_failures`` (a photo failed or is missing) or
        ``completed``."""
        if self.cancelled:
            return "cancelled"
        return "finished_with_failures" if self.failed or self.missing else "completed"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary.

        Counts ``done``, ``failed``, ``skipped`` and ``missing`` with the lists
        ``failed_files``, ``skipped_files`` and ``missing_files`` (``[{"path", "reason"}]``);
        ``first_files`` lists up to 10 destinations of photos in the export.
        """
        first = [os.fspath(path) for path in self.in_export[:FIRST_FILES]]
        return {
            "state": self.state,
            "manifest": os.fspath(self.manifest),
            "journal": None if self.journal is None else os.fspath(self.journal),
            "mode": self.mode,
            "files": self.files,
            "done": self.done,
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "missing": len(self.missing),
            "folders": dict(self.folders),
            "already_done": self.already_done,
            "failed_files": _path_list(self.failed),
            "skipped_files": _path_list(self.skipped),
            "missing_files": _path_list(self.missing),
            "dry_run": self.dry_run,
            "cancelled": self.cancelled,
            "first_files": first,
        }

    def counts_text(self) -> str:
        """``"1 failed, 0 skipped, 1 missing"``."""
        return (
            f"{len(self.failed)} failed, {len(self.skipped)} skipped, {len(self.missing)} missing"
        )


def _path_list(rows: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"path": path, "reason": reason} for path, reason in rows]


@dataclass
class UndoResult:
    """What :func:`undo_export` did.

    Attributes:
        manifest: The manifest, journal or folder that was undone.
        mode: The export's mode.
        restored: Moved photos put back at their original path.
        removed: Copies or links deleted.
        unchanged: Records with nothing left to undo (already back, or never written).
        kept: ``(path, reason)`` of files left alone: on purpose, or because the system
            refused (then undo went on with the others).
        folders_removed: Empty folders (created by the export) removed.
        unverified: How many of ``kept`` were kept because their record has no identity
            (an export by an older version) and nothing else could vouch for them.
    """

    manifest: Path
    mode: str
    restored: int = 0
    removed: int = 0
    unchanged: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)
    folders_removed: int = 0
    unverified: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "manifest": os.fspath(self.manifest),
            "mode": self.mode,
            "restored": self.restored,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "kept": _path_list(self.kept),
            "unverified": self.unverified,
            "folders_removed": self.folders_removed,
        }
