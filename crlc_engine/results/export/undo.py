"""Undoing an export file by file: moves put back, copies and links removed, each only
while it is what the export made (see the package docstring); folders removed once empty.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.results.export.file_checks import (
    identity_mismatch,
    lexists,
    links_to,
    same_content,
    sha256_of,
)
from crlc_engine.results.export.file_ops import move_file, partial_path, remove_quietly
from crlc_engine.results.export.journal import MODE_STATES, FileIdentity, FileRecord
from crlc_engine.results.export.journal_writer import mark_undone
from crlc_engine.results.export.model import UndoResult
from crlc_engine.results.export.undo_source import (
    CatalogLookup,
    UndoGuard,
    check_undo_source,
    load_undo_source,
)

#: Why undo keeps a copy or link whose record has no identity (journal version 1, manifest).
UNVERIFIED_REASON = (
    "made by an older version that recorded no checksums; delete it yourself if you want it gone"
)


def undo_export(
    manifest: Path,
    roots: Sequence[Path],
    reporter: Reporter | None = None,
    catalog: CatalogLookup | None = None,
) -> UndoResult:
    """Undo an export (see the package docstring for what is undone and what is kept).

    Works after a cancelled, failed or killed export too, and may be run again safely.

    Args:
        manifest: The export's manifest CSV, its journal, or the export folder (its latest
            export is undone). With a manifest, the journal next to it is used when present.
        roots: The root folders of every library: nothing inside them is deleted, and a
            moved photo is put back only inside them (or where ``catalog`` knows it).
        reporter: Gets a ``status`` line and ``progress(done, total)`` once per file.
        catalog: Look-up of what the libraries' catalogs recorded for a photo; moves
            recorded without identity are put back only when it vouches for them.

    Returns:
        What was restored, removed and kept (with reasons).

    Raises:
        UndoError: no readable manifest or journal at ``manifest``, or one that names files
            outside its export folder or inside a library root (then nothing is touched).
    """
    out = reporter if reporter is not None else NullReporter()
    source = load_undo_source(Path(manifest))
    guard = UndoGuard(source.dest, tuple(Path(os.path.realpath(r)) for r in roots), catalog)
    check_undo_source(source, guard)
    result = UndoResult(manifest=source.path, mode=source.mode)
    out.status(f"Undoing the {source.mode} export {source.path}")
    for done, record in enumerate(source.records, start=1):
        try:
            _undo_record(record, guard, result)
        except OSError as exc:  # this file only: the others are still undone
            _keep(result, Path(record.destination), _error_reason(exc))
        out.progress(done, len(source.records))
    folders = source.folders
    if folders is None:
        folders = _destination_folders(source.records, source.dest)
    _remove_folders([f for f in folders if guard.library_root_of(Path(f)) is None], result)
    if source.journal is not None:
        mark_undone(source.journal)
    out.status(
        f"Undo: {result.restored} restored, {result.removed} removed, {len(result.kept)} kept"
    )
    return result


def _keep(result: UndoResult, path: Path, reason: str, unverified: bool = False) -> None:
    result.kept.append((os.fspath(path), reason))
    result.unverified += unverified


def _error_reason(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return (
        f"undo could not finish it: {exc.strerror or exc}{where}; it was left where it is, "
        "fix that and run the undo again"
    )


def _undo_record(record: FileRecord, guard: UndoGuard, result: UndoResult) -> None:
    source, destination = Path(record.source), Path(record.destination)
    remove_quietly(partial_path(destination))
    if record.mode == "move":
        if guard.library_root_of(source) is not None:  # left by a killed undo
            remove_quietly(partial_path(source))
        _undo_move(record, guard, result)
    elif record.mode in MODE_STATES:
        _undo_link_or_copy(record, guard, result)


def _undo_move(record: FileRecord, guard: UndoGuard, result: UndoResult) -> None:
    source, destination = Path(record.source), Path(record.destination)
    at_source, at_destination = lexists(source), lexists(destination)
    if at_destination and not guard.knows(source):
        reason = (
            f"its original place {source} is in none of your libraries, so undo does not put "
            "it there; move it back yourself if it belongs there"
        )
        _keep(result, destination, reason)
    elif at_destination and not at_source:
        refusal = _move_refusal(record, guard)
        if refusal is not None:
            _keep(result, destination, refusal, unverified=record.kind == "legacy")
            return
        _put_back(source, destination, result)
    elif at_destination:
        if guard.library_root_of(destination) is None and same_content(source, destination):
            os.unlink(destination)  # a killed move left the same file at both places
            result.restored += 1
        else:
            _keep_appeared(source, destination, result)
    elif at_source:
        result.unchanged += 1
    else:
        _keep(result, source, "missing at the original path and in the export")


def _put_back(source: Path, destination: Path, result: UndoResult) -> None:
    """Move ``destination`` back to ``source``, recreating its folders, never overwriting."""
    try:
        source.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        in_the_way = isinstance(exc, FileExistsError | NotADirectoryError)
        why = "a file is in the way" if in_the_way else exc.strerror or str(exc)
        reason = f"its folder {source.parent} cannot be made again ({why}); it stays in the export"
        _keep(result, destination, reason)
        return
    try:
        move_file(destination, source)
    except FileExistsError:
        _keep_appeared(source, destination, result)
        return
    result.restored += 1


def _move_refusal(record: FileRecord, guard: UndoGuard) -> str | None:
    """Why the moved file at the record's destination may not be put back (``None``: it may).

    Only a file or symlink goes back. Checked against the record's identity (a move cut
    short: the source's size and mtime), else against what the library's catalog recorded
    for the source.
    """
    destination = Path(record.destination)
    kind = os.lstat(destination).st_mode
    if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
        return "it is a folder or a special file, not a photo the export moved; undo leaves it"
    if record.identity is not None and record.kind != "legacy":
        return identity_mismatch(destination, record.identity, record.kind == "verified")
    recorded = guard.catalog(Path(record.source)) if guard.catalog is not None else None
    if recorded is None:
        return (
            "moved by an older version that recorded no checksums, and no library's catalog "
            f"knows the photo {record.source}; move it back yourself if it is that photo"
        )
    size, mtime_ns = recorded
    mismatch = identity_mismatch(destination, FileIdentity(size, mtime_ns), exact=False)
    if mismatch is None:
        return None
    return (
        f"it differs from the photo the library recorded at {record.source} (size or date); "
        "move it back yourself if it is that photo"
    )


def _keep_appeared(source: Path, destination: Path, result: UndoResult) -> None:
    reason = f"another file is now at the original path; the exported photo stays at {destination}"
    _keep(result, source, reason)


def _undo_link_or_copy(record: FileRecord, guard: UndoGuard, result: UndoResult) -> None:
    destination = Path(record.destination)
    if not lexists(destination):
        result.unchanged += 1
        return
    if record.kind == "legacy":
        _keep(result, destination, UNVERIFIED_REASON, unverified=True)
        return
    refusal = _removal_refusal(record, guard)
    if refusal is not None:
        _keep(result, destination, refusal)
        return
    os.unlink(destination)
    result.removed += 1


def _removal_refusal(record: FileRecord, guard: UndoGuard) -> str | None:
    """Why a copy or link with an identity may not be deleted (``None``: it may)."""
    source, destination = Path(record.source), Path(record.destination)
    identity = record.identity
    assert identity is not None
    root = guard.library_root_of(destination)
    if root is not None:
        return f"it lies inside the photo folder {root}; delete it yourself if you want it gone"
    if record.mode != "symlink":
        if not lexists(source):
            return f"its original {source} is gone, so it may be the last copy of the photo"
        leads = guard.leads_into_export(source)
        if leads is not None:
            return (
                f"its original {source} now leads to a file in the export folder ({leads}), "
                "so it may be the last copy of the photo; delete it yourself if you want it gone"
            )
    if not _matches_original(record.mode, source, destination):
        return f"it no longer matches the original {source}"
    verified = record.kind == "verified"
    if record.mode == "symlink" and not verified:  # a link cut short: its target matches
        return None
    mismatch = identity_mismatch(destination, identity, exact=verified)
    if mismatch is None and record.mode == "copy" and not _copy_matches(record):
        return f"it no longer matches the original {source}"
    return mismatch


def _matches_original(mode: str, source: Path, destination: Path) -> bool:
    """Whether ``destination`` still is ``source`` exported in ``mode``: a symlink pointing
    at it, else a plain file that is (a hard link) or is not (a copy) the file ``source``
    leads to (symlinks followed, as the export did)."""
    if mode == "symlink":
        return links_to(destination, source)
    try:
        original, created = os.stat(source), os.lstat(destination)
    except OSError:
        return False
    same = (original.st_dev, original.st_ino) == (created.st_dev, created.st_ino)
    return stat.S_ISREG(created.st_mode) and same == (mode == "hardlink")


def _copy_matches(record: FileRecord) -> bool:
    """Whether a copy's original still has the bytes the export copied."""
    source, destination = Path(record.source), Path(record.destination)
    if record.identity is None or record.identity.sha256 is None:
        return same_content(source, destination)
    try:
        return sha256_of(source) == record.identity.sha256
    except OSError:
        return False


def _destination_folders(records: list[FileRecord], dest: Path) -> list[str]:
    folders: set[str] = set()
    for record in records:
        folder = Path(record.destination).parent
        while folder != dest and dest in folder.parents:
            folders.add(os.fspath(folder))
            folder = folder.parent
    return sorted(folders)


def _remove_folders(folders: list[str], result: UndoResult) -> None:
    for folder in sorted(set(folders), key=lambda f: len(Path(f).parts), reverse=True):
        try:
            os.rmdir(folder)
        except OSError:  # not empty (or already gone): keep it
            continue
        result.folders_removed += 1
