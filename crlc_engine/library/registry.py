"""All libraries under a workspace base: list, forget, re-link a moved root."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crlc_engine.core.errors import (
    CRLCError,
    FolderNotFoundError,
    InvalidSettingError,
    LibraryNotFoundError,
)
from crlc_engine.core.fileio import atomic_write_json
from crlc_engine.library.catalog import Catalog
from crlc_engine.library.library import refuse_lost_catalog
from crlc_engine.library.lock import WorkspaceLock
from crlc_engine.library.runs import library_key, workspace_base


@dataclass(frozen=True)
class LibraryInfo:
    """One library: its workspace, roots, disk use and image counts."""

    key: str
    workspace: Path
    roots: list[str]
    disk_bytes: int
    counts: dict[str, int]
    runs: int
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "key": self.key,
            "workspace": str(self.workspace),
            "roots": self.roots,
            "disk_bytes": self.disk_bytes,
            "images": self.counts,
            "runs": self.runs,
            "problem": self.problem,
        }


def _disk_use(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_blocks * 512
            except (OSError, AttributeError):
                continue
    return total


def _roots_of(workspace: Path) -> list[str]:
    catalog_path = workspace / "catalog.sqlite"
    if catalog_path.exists():
        with contextlib.suppress(CRLCError, sqlite3.Error):  # damaged: library.json says
            catalog = Catalog(catalog_path, read_only=True)
            try:
                return sorted(str(p) for p in catalog.root_ids())
            finally:
                catalog.close()
    try:
        data = json.loads((workspace / "library.json").read_text(encoding="utf-8"))
        return [str(r) for r in data.get("roots", [])]
    except (OSError, ValueError):
        return []


def _library_json(workspace: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((workspace / "library.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def library_roots(base: str | Path | None = None) -> list[tuple[Path, list[str]]]:
    """(workspace, root folders) of every library under the base, cheaply: from each
    ``library.json`` (no catalog opened, no disk use counted)."""
    folder = workspace_base(base) / "libraries"
    if not folder.is_dir():
        return []
    found = []
    for workspace in sorted(p for p in folder.iterdir() if p.is_dir()):
        roots = _library_json(workspace).get("roots", [])
        if isinstance(roots, list) and roots:
            found.append((workspace, [str(r) for r in roots]))
    return found


def list_libraries(base: str | Path | None = None) -> list[LibraryInfo]:
    """Every library under the workspace base, sorted by roots."""
    folder = workspace_base(base) / "libraries"
    if not folder.is_dir():
        return []
    out = []
    for workspace in sorted(p for p in folder.iterdir() if p.is_dir()):
        counts: dict[str, int] = {}
        problem: str | None = None
        try:
            refuse_lost_catalog(workspace)
        except CRLCError as exc:
            problem = str(exc)
        if problem is None and (workspace / "catalog.sqlite").exists():
            try:
                catalog = Catalog(workspace / "catalog.sqlite", read_only=True)
            except (CRLCError, sqlite3.Error) as exc:  # listed, with the problem
                problem = str(exc)
            else:
                try:
                    counts = catalog.counts()
                finally:
                    catalog.close()
        runs_dir = workspace / "runs"
        runs = sum(1 for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else 0
        out.append(
            LibraryInfo(
                workspace.name,
                workspace,
                _roots_of(workspace),
                _disk_use(workspace),
                counts,
                runs,
                problem,
            )
        )
    return sorted(out, key=lambda info: info.roots)


def _find(base: str | Path | None, roots: list[Path]) -> Path:
    workspace = workspace_base(base) / "libraries" / library_key(roots)
    if not workspace.is_dir():
        raise LibraryNotFoundError(
            f"no library for {', '.join(map(str, roots))} under {workspace_base(base)}"
        )
    return workspace


def forget_library(folders: list[str | Path], base: str | Path | None = None) -> Path:
    """Delete the workspace of the library of ``folders`` (the photos are not touched).

    The folders need not exist any more. Raises ``WorkspaceLockedError`` while in use.
    """
    roots = [Path(f).expanduser().resolve() for f in folders]
    workspace = _find(base, roots)
    with WorkspaceLock(workspace, "being forgotten"):
        trash = workspace.with_name(workspace.name + ".deleting")
        os.replace(workspace, trash)
    shutil.rmtree(trash)
    return workspace


def relink_root(old: str | Path, new: str | Path, base: str | Path | None = None) -> list[Path]:
    """Point every library that has root ``old`` at ``new`` (a moved or renamed folder).

    Image ids, cache rows, thumbnails, runs and labels are kept; the workspace folder is
    renamed to the key of the new set of roots. Returns the new workspace folders.

    Raises:
        FolderNotFoundError: ``new`` is not an existing folder.
        LibraryNotFoundError: no library has ``old`` as a root.
        InvalidSettingError: a library for the new set of roots already exists.
    """
    old_path = Path(old).expanduser().resolve()
    new_path = Path(new).expanduser()
    if not new_path.is_dir():
        raise FolderNotFoundError(f"folder not found: {new_path}")
    new_path = new_path.resolve()
    moved: list[Path] = []
    for info in list_libraries(base):
        if str(old_path) not in info.roots:
            continue
        new_roots = sorted(
            {new_path, *(Path(r) for r in info.roots if r != str(old_path))}, key=str
        )
        target = info.workspace.with_name(library_key(new_roots))
        if target != info.workspace and target.exists():
            raise InvalidSettingError(
                f"a library for {', '.join(map(str, new_roots))} already exists ({target}); "
                "forget one of them first"
            )
        # Rename first, then update the catalog: re-running after a crash in between finds
        # the workspace under its new key still naming the old root, and finishes.
        with WorkspaceLock(info.workspace, f"re-linking {old_path} -> {new_path}"):
            if target != info.workspace:
                os.replace(info.workspace, target)
            catalog = Catalog(target / "catalog.sqlite")
            try:
                catalog.relink_root(old_path, new_path)
            finally:
                catalog.close()
            atomic_write_json(
                target / "library.json",
                {**_library_json(target), "roots": [str(r) for r in new_roots]},
            )
        moved.append(target)
    if not moved:
        raise LibraryNotFoundError(f"no library has the folder {old_path}")
    return moved
