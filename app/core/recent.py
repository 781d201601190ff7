"""The libraries opened recently (``recent.json`` in the platformdirs config folder).

Each library is its list of folders; the most recent comes first. Folders that no longer
exist are kept: opening such a library offers to locate the moved folder (re-link).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import platformdirs

from app.core.state_file import read_state, write_state

__all__ = [
    "MAX_RECENT",
    "forget_recent",
    "recent_file",
    "recent_folders",
    "recent_libraries",
    "remember_folders",
    "replace_folder",
]

#: Libraries kept in the list.
MAX_RECENT = 8


def recent_file() -> Path:
    """Where the list lives."""
    return Path(platformdirs.user_config_dir("crlc-organizer")) / "recent.json"


def _normalised(folders: Sequence[str | Path]) -> list[str]:
    return sorted({str(Path(f).expanduser().absolute()) for f in folders})


def recent_libraries() -> list[list[str]]:
    """The recent libraries (each a list of folders), most recent first."""
    data = read_state(recent_file())
    if not isinstance(data, dict):
        return []
    libraries = data.get("libraries")
    if not isinstance(libraries, list):  # the first format held only the last library
        libraries = [data.get("folders", [])]
    out: list[list[str]] = []
    for entry in libraries:
        if isinstance(entry, list) and entry and all(isinstance(f, str) for f in entry):
            folders = _normalised(entry)
            if folders not in out:
                out.append(folders)
    return out[:MAX_RECENT]


def recent_folders() -> list[str]:
    """The folders of the most recently opened library (empty if none)."""
    libraries = recent_libraries()
    return libraries[0] if libraries else []


def _write(libraries: list[list[str]]) -> None:
    libraries = libraries[:MAX_RECENT]
    write_state(
        recent_file(), {"folders": libraries[0] if libraries else [], "libraries": libraries}
    )


def remember_folders(folders: Sequence[str | Path]) -> None:
    """Put the library of ``folders`` first in the list."""
    entry = _normalised([Path(f).resolve() for f in folders])
    _write([entry, *(lib for lib in recent_libraries() if lib != entry)])


def forget_recent(folders: Sequence[str | Path]) -> None:
    """Take the library of ``folders`` off the list (the library itself is kept)."""
    entry = _normalised(folders)
    _write([lib for lib in recent_libraries() if lib != entry])


def replace_folder(old: str | Path, new: str | Path) -> None:
    """After a re-link: every recent library with folder ``old`` gets ``new`` instead."""
    old_s, new_s = str(Path(old).absolute()), str(Path(new).resolve())
    _write([_normalised([new_s if f == old_s else f for f in lib]) for lib in recent_libraries()])
