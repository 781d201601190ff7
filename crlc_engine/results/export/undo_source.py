"""What an undo works on: the journal or manifest found from a path, checked as a whole
against its export folder and the library roots before anything is touched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crlc_engine.results.export.journal import (
    MANIFEST_PREFIX,
    FileRecord,
    journal_file,
    manifest_file,
    read_journal,
)
from crlc_engine.results.export.manifest import read_manifest
from crlc_engine.results.export.model import UndoError

#: ``lookup(source) -> (size, mtime_ns)`` that a library's catalog recorded for the photo
#: at ``source`` (``None``: no library knows it). Vouches for moves whose record has no
#: identity (see the package docstring).
CatalogLookup = Callable[[Path], "tuple[int, int] | None"]


@dataclass
class UndoSource:
    """The records of the export to undo, read from its journal (or, without one, its
    manifest)."""

    path: Path
    mode: str
    dest: Path  # the export folder, resolved
    records: list[FileRecord]
    folders: list[str] | None  # None: unknown (no journal), guessed from the destinations
    journal: Path | None
    claimed_dest: Path  # the folder the journal's header names (the manifest's own folder)


@dataclass
class UndoGuard:
    """What undo may touch besides the checks on each record: the export folder and the
    library roots (resolved), and the catalogs' look-up for the photos they know."""

    dest: Path
    roots: tuple[Path, ...]
    catalog: CatalogLookup | None

    def library_root_of(self, path: Path) -> Path | None:
        """The root that ``path`` lies in (its folders resolved, not a final symlink)."""
        where = _real(path)
        for root in self.roots:
            if where == root or root in where.parents:
                return root
        return None

    def knows(self, source: Path) -> bool:
        """Whether ``source`` lies in a library root or a catalog knows the photo there:
        the only places a move is put back to."""
        if self.library_root_of(source) is not None:
            return True
        return self.catalog is not None and self.catalog(source) is not None

    def leads_into_export(self, source: Path) -> Path | None:
        """Where ``source`` leads (symlinks followed) when that is inside the export folder."""
        real = Path(os.path.realpath(source))
        return real if real == self.dest or self.dest in real.parents else None


def _stamp_of(path: Path) -> str | None:
    name = path.name
    if name.startswith(f".{MANIFEST_PREFIX}") and name.endswith(".journal"):
        return name[len(MANIFEST_PREFIX) + 1 : -len(".journal")]
    if name.startswith(MANIFEST_PREFIX) and name.endswith(".csv"):
        return name[len(MANIFEST_PREFIX) : -len(".csv")]
    return None


def _locate(path: Path) -> tuple[Path | None, Path | None]:
    """(journal, manifest) for a manifest, a journal or an export folder."""
    if path.is_dir():
        candidates = [p for p in path.iterdir() if _stamp_of(p) is not None]
        if not candidates:
            raise UndoError(f"no export manifest or journal in {path}")
        stamp = max(str(_stamp_of(p)) for p in candidates)
        folder = path
    elif path.is_file():
        stamp = _stamp_of(path) or ""
        folder = path.parent
        if not stamp:
            journal = path if read_journal(path) is not None else None
            return journal, None if journal is not None else path
    else:
        raise UndoError(f"no export manifest or journal at {path}")
    journal, manifest = journal_file(folder, stamp), manifest_file(folder, stamp)
    return (journal if journal.is_file() else None), (manifest if manifest.is_file() else None)


def load_undo_source(path: Path) -> UndoSource:
    journal_path, manifest_path = _locate(path)
    if journal_path is not None:
        state = read_journal(journal_path)
        if state is not None:
            records = [r for r in state.files.values() if r.state != "present"]
            folder = journal_path.parent.resolve()
            claimed = Path(str(state.header.get("dest") or ""))
            return UndoSource(
                path, state.mode, folder, records, state.folders, journal_path, claimed
            )
    if manifest_path is None:
        raise UndoError(f"{path} is not a readable export manifest or journal")
    mode, records = read_manifest(manifest_path)
    folder = manifest_path.parent.resolve()
    return UndoSource(path, mode, folder, records, None, None, folder)


def _real(path: Path) -> Path:
    """``path`` with its folders resolved (symlinks followed) but not its last part."""
    return Path(os.path.realpath(path.parent)) / path.name


def _outside_problem(dest: Path, text: str) -> str | None:
    """Why ``text`` is not a path strictly inside the (resolved) folder ``dest``."""
    path = Path(text)
    if not text or not path.is_absolute() or ".." in path.parts or path.name in ("", "."):
        return f"{text!r} is not a plain absolute path"
    where = _real(path)
    if where.parent != dest and dest not in where.parent.parents:
        return f"{text} is outside the export folder {dest}"
    return None


def _record_problem(dest: Path, record: FileRecord) -> str | None:
    problem = _outside_problem(dest, record.destination)
    if problem is not None:
        return problem
    source = Path(record.source)
    if not record.source or not source.is_absolute() or ".." in source.parts:
        return f"the original {record.source!r} is not a plain absolute path"
    if _real(source) == _real(Path(record.destination)):
        return f"{record.destination} is named as both the original and the exported file"
    return None


def check_undo_source(source: UndoSource, guard: UndoGuard) -> None:
    """Refuse, as a whole, a journal or manifest that names files outside its export folder
    or inside a library root.

    Raises:
        UndoError: it does not lie in the folder its header names, or a record's
            destination (or a created folder) is not inside that folder or lies inside a
            library root, or a record's source and destination are one file.
    """
    where = source.journal or source.path
    claimed = source.claimed_dest
    if not claimed.is_absolute() or Path(os.path.realpath(claimed)) != source.dest:
        raise UndoError(
            f"cannot undo {where}: it names the export folder {claimed} but lies in "
            f"{source.dest}; undo it from its own export folder. Nothing was changed."
        )
    problems = (_record_problem(source.dest, r) for r in source.records)
    folders = (_outside_problem(source.dest, f) for f in source.folders or ())
    problem = next((p for p in (*problems, *folders) if p is not None), None)
    if problem is not None:
        raise UndoError(
            f"cannot undo {where}: {problem}. An export only writes inside its own folder, "
            "so the file list was edited or damaged; nothing was changed."
        )
    written = [*(r.destination for r in source.records), *(source.folders or ())]
    for text in written:
        root = guard.library_root_of(Path(text))
        if root is not None:
            raise UndoError(
                f"cannot undo {where}: {text} lies inside the photo folder {root}. An export "
                "never writes into a library's photo folders, so the file list was edited or "
                "damaged (or that folder was added to a library after the export); nothing "
                "was changed."
            )
