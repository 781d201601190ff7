"""Planning an export: where every photo goes, checked against the library roots, and what
DEST already holds (an unfinished attempt of this export, another export's files).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.results.export.file_checks import lexists, matches_foreign, owned_state
from crlc_engine.results.export.journal import FileRecord, JournalState, find_resumable, new_stamp
from crlc_engine.results.export.model import (
    EXPORT_MODES,
    ExportDestinationError,
    ExportItem,
    ExportPlanEntry,
)
from crlc_engine.results.export.names import (
    UNCERTAIN_FOLDER,
    cluster_folder_names,
    fold_name,
    numbered_file_name,
    subfolder_names,
)


@dataclass
class ExportPlan:
    """Where every photo of one export goes, under which stamp, and the journal it resumes."""

    dest: Path
    mode: str
    stamp: str
    fingerprint: dict[str, Any]
    entries: list[ExportPlanEntry]
    resume: JournalState | None


@dataclass(frozen=True)
class _Target:
    item: ExportItem
    source: Path
    folder: str
    directory: Path


def plan_export(
    items: Sequence[ExportItem],
    dest: Path,
    roots: Sequence[Path],
    min_confidence: float = 0.0,
    keep_subfolders: bool = False,
    *,
    mode: str = "copy",
) -> list[ExportPlanEntry]:
    """Plan where every photo goes, without writing anything.

    Reads DEST to avoid taken file names and to recognise files already exported (by an
    unfinished earlier attempt of the same export, see the package docstring, or by another
    export in ``mode``).

    Args:
        items: The photos.
        dest: Export folder (created by the export when missing).
        roots: Library root folders; DEST must not be one of them nor inside one.
        min_confidence: Photos below it go to ``_uncertain``.
        keep_subfolders: Recreate each photo's folders below its library root.
        mode: The export mode the plan is for (see :data:`EXPORT_MODES`).

    Returns:
        One entry per item, in layout order (left-out items last).

    Raises:
        InvalidSettingError: unknown mode or ``min_confidence`` outside 0..1.
        ExportDestinationError: DEST is a file, a library root or inside one.
    """
    return build_plan(items, dest, roots, min_confidence, keep_subfolders, mode).entries


def build_plan(
    items: Sequence[ExportItem],
    dest: Path,
    roots: Sequence[Path],
    min_confidence: float,
    keep_subfolders: bool,
    mode: str,
) -> ExportPlan:
    _check_settings(mode, min_confidence)
    dest_abs = _check_destination(dest, roots)
    fingerprint = {
        "mode": mode,
        "min_confidence": float(min_confidence),
        "keep_subfolders": bool(keep_subfolders),
    }
    resume = None if mode == "csv" else find_resumable(dest_abs, fingerprint)
    stamp = resume.stamp if resume is not None else new_stamp(dest_abs)
    claims = resume.claims() if resume is not None else {}
    entries = _plan_entries(items, dest_abs, mode, claims, min_confidence, keep_subfolders)
    _check_folders_outside_roots(entries, roots)
    return ExportPlan(dest_abs, mode, stamp, fingerprint, entries, resume)


def _check_settings(mode: str, min_confidence: float) -> None:
    if mode not in EXPORT_MODES:
        raise InvalidSettingError(
            f"unknown export mode {mode!r}; choose one of: {', '.join(EXPORT_MODES)}"
        )
    if not 0.0 <= min_confidence <= 1.0:
        raise InvalidSettingError(
            f"the minimum confidence must be between 0 and 1, got {min_confidence}"
        )


def _library_root_of(path: Path, roots: Sequence[Path]) -> Path | None:
    """The root that ``path`` (resolved, symlinks followed) is or lies inside, if any."""
    target = path.resolve()
    for root in roots:
        library = Path(os.path.abspath(root)).resolve()
        if target == library or library in target.parents:
            return Path(root)
    return None


def _check_destination(dest: Path, roots: Sequence[Path]) -> Path:
    target = Path(os.path.abspath(dest)).resolve()
    if target.exists() and not target.is_dir():
        raise ExportDestinationError(f"the export folder {dest} is a file; choose a folder")
    root = _library_root_of(target, roots)
    if root is not None:
        raise ExportDestinationError(
            f"the export folder {dest} is inside the photo folder {root}; choose a folder "
            "outside it (a parent folder is fine), or the next scan would pick the "
            "exported files up as new photos"
        )
    return target


def _check_folders_outside_roots(entries: list[ExportPlanEntry], roots: Sequence[Path]) -> None:
    """Refuse a cluster folder that would land in a library (DEST is a parent of a root)."""
    if not roots:
        return
    folders = {e.destination.parent for e in entries if e.destination is not None}
    for folder in sorted(folders):
        root = _library_root_of(folder, roots)
        if root is not None:
            raise ExportDestinationError(
                f"the export folder {folder} would be inside the photo folder {root} (a "
                "cluster has the same name as that folder); rename the cluster or choose "
                "another export folder"
            )


def _plan_entries(
    items: Sequence[ExportItem],
    dest: Path,
    mode: str,
    claims: dict[str, FileRecord],
    min_confidence: float,
    keep_subfolders: bool,
) -> list[ExportPlanEntry]:
    folders = cluster_folder_names(item.cluster for item in items if not item.ignored)
    targets, left_out = _targets(items, dest, folders, min_confidence, keep_subfolders)
    taken: set[str] = set()
    placed: list[ExportPlanEntry] = []
    unclaimed: list[_Target] = []
    for target in targets:
        entry = _claim(target, claims.get(os.fspath(target.source)), mode, taken)
        if entry is None:
            unclaimed.append(target)
        else:
            placed.append(entry)
    placed.extend(_allocate(target, mode, taken) for target in unclaimed)
    placed.sort(key=lambda e: (e.destination is None, _key(e.destination or e.source)))
    return placed + left_out


def _targets(
    items: Sequence[ExportItem],
    dest: Path,
    folders: dict[str, str],
    min_confidence: float,
    keep_subfolders: bool,
) -> tuple[list[_Target], list[ExportPlanEntry]]:
    targets: list[_Target] = []
    left_out: list[ExportPlanEntry] = []
    seen: set[str] = set()
    for item in items:
        source = Path(os.path.abspath(item.source))
        if item.ignored or os.fspath(source) in seen:
            status = "ignored" if item.ignored else "duplicate"
            left_out.append(
                ExportPlanEntry(source, None, "", item.cluster, item.confidence, status)
            )
            continue
        seen.add(os.fspath(source))
        folder = UNCERTAIN_FOLDER if item.confidence < min_confidence else folders[item.cluster]
        directory = dest / folder
        if keep_subfolders:
            directory = directory.joinpath(*subfolder_names(item.relative))
        targets.append(_Target(item, source, folder, directory))
    targets.sort(key=lambda t: (_key(t.directory), t.source.name, os.fspath(t.source)))
    return targets, left_out


def _entry(target: _Target, destination: Path | None, status: str) -> ExportPlanEntry:
    item = target.item
    folder = target.folder if destination is not None else ""
    return ExportPlanEntry(
        target.source, destination, folder, item.cluster, item.confidence, status
    )


def _claim(
    target: _Target, record: FileRecord | None, mode: str, taken: set[str]
) -> ExportPlanEntry | None:
    """Keep the destination this export's journal gave the photo, when still valid."""
    if record is None:
        return None
    destination = Path(record.destination)
    if destination.parent != target.directory or _key(destination) in taken:
        return None
    if lexists(destination):
        status = owned_state(mode, target.source, destination)
    else:
        status = "planned" if lexists(target.source) else None
    if status is None:
        return None
    taken.add(_key(destination))
    return _entry(target, destination, status)


def _allocate(target: _Target, mode: str, taken: set[str]) -> ExportPlanEntry:
    """First free ``name``, ``name (2)``... in the target folder (or one already exported)."""
    if not lexists(target.source):
        return _entry(target, None, "missing")
    number = 0
    while True:
        number += 1
        candidate = target.directory / numbered_file_name(target.source.name, number)
        if _key(candidate) in taken:
            continue
        if not lexists(candidate):
            status = "planned"
        elif matches_foreign(mode, target.source, candidate):
            status = "present"
        else:
            continue
        taken.add(_key(candidate))
        return _entry(target, candidate, status)


def _key(path: Path) -> str:
    return fold_name(os.fspath(path))
