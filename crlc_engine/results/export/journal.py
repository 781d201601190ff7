"""The export journal and manifest files as read back: their names in DEST, the identity of
a file an export created, the records of a journal, and the unfinished export to resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_PREFIX = "crlc-export-"
JOURNAL_FORMAT = "crlc-export-journal"
#: Version 2 journals record the identity of every file the export created.
JOURNAL_VERSION = 2
#: Mode -> (state of a journal's ``file`` line before the file is touched, state after it).
MODE_STATES = {
    "copy": ("copying", "copied"),
    "hardlink": ("linking", "linked"),
    "symlink": ("linking", "linked"),
    "move": ("moving", "moved"),
}
_START_STATES = frozenset(start for start, _ in MODE_STATES.values())
_DONE_STATES = frozenset(end for _, end in MODE_STATES.values())


@dataclass(frozen=True)
class FileIdentity:
    """A file's ``size`` and ``mtime_ns``, with the ``sha256`` of its bytes (a copy), its
    ``device`` and ``inode`` (a hard link, a move on one drive) or, for a symlink, its
    ``target`` (none of them: a source's stat on a journal's start line)."""

    size: int
    mtime_ns: int
    sha256: str | None = None
    target: str | None = None
    device: int | None = None
    inode: int | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"size": self.size, "mtime_ns": self.mtime_ns}
        if self.target is not None:
            data["target"] = self.target
        elif self.sha256 is not None:
            data["sha256"] = self.sha256
        elif self.inode is not None:
            data |= {"device": self.device, "inode": self.inode}
        return data

    @classmethod
    def from_json(cls, line: dict[str, Any]) -> FileIdentity | None:
        size, mtime_ns = line.get("size"), line.get("mtime_ns")
        if not isinstance(size, int) or not isinstance(mtime_ns, int):
            return None
        if isinstance(size, bool) or isinstance(mtime_ns, bool):
            return None
        sha256, target = line.get("sha256"), line.get("target")
        device, inode = _plain_int(line.get("device")), _plain_int(line.get("inode"))
        return cls(
            size,
            mtime_ns,
            sha256 if isinstance(sha256, str) and sha256 else None,
            target if isinstance(target, str) else None,
            device if inode is not None else None,
            inode if device is not None else None,
        )

    @property
    def complete(self) -> bool:
        """Whether it pins the file (a hash, a symlink target, or a drive and inode), not
        only size and date."""
        return self.sha256 is not None or self.target is not None or self.inode is not None


def _plain_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class FileRecord:
    """One photo's latest ``file`` line in a journal (or its row in a manifest)."""

    source: str
    destination: str
    state: str
    mode: str
    cluster: str = ""
    folder: str = ""
    confidence: float = 0.0
    identity: FileIdentity | None = None

    @property
    def kind(self) -> str:
        """How undo can check it: ``verified`` (a done line with the identity of the file
        created), ``started`` (a start line with the source's size and mtime: the action was
        cut short) or ``legacy`` (no identity: a version 1 journal, or a manifest)."""
        if self.identity is None:
            return "legacy"
        if self.state in _DONE_STATES and self.identity.complete:
            return "verified"
        return "started" if self.state in _START_STATES else "legacy"


@dataclass
class JournalState:
    """A journal as read back: its header, latest record per photo, folders and markers."""

    path: Path
    header: dict[str, Any]
    files: dict[tuple[str, str], FileRecord] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)
    finished: bool = False
    undone: bool = False

    @property
    def stamp(self) -> str:
        return str(self.header.get("stamp", ""))

    @property
    def mode(self) -> str:
        return str(self.header.get("mode", ""))

    def claims(self) -> dict[str, FileRecord]:
        """Source -> its latest record (``present`` records are not this export's work)."""
        return {r.source: r for r in self.files.values() if r.state != "present"}


def manifest_file(dest: Path, stamp: str) -> Path:
    return dest / f"{MANIFEST_PREFIX}{stamp}.csv"


def journal_file(dest: Path, stamp: str) -> Path:
    return dest / f".{MANIFEST_PREFIX}{stamp}.journal"


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:  # a line cut short by a kill
        return None
    return value if isinstance(value, dict) else None


def read_journal(path: Path) -> JournalState | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    lines = [r for r in (_parse_line(line) for line in raw.splitlines()) if r is not None]
    if not lines or lines[0].get("kind") != "header" or lines[0].get("format") != JOURNAL_FORMAT:
        return None
    state = JournalState(path, lines[0])
    for line in lines[1:]:
        _apply_line(state, line)
    return state


def _apply_line(state: JournalState, line: dict[str, Any]) -> None:
    kind = line.get("kind")
    if kind == "file":
        record = FileRecord(
            source=str(line.get("source", "")),
            destination=str(line.get("destination", "")),
            state=str(line.get("state", "")),
            mode=state.mode,
            cluster=str(line.get("cluster", "")),
            folder=str(line.get("folder", "")),
            confidence=_as_float(line.get("confidence")),
            identity=FileIdentity.from_json(line),
        )
        state.files[(record.source, record.destination)] = record
    elif kind == "mkdir":
        state.folders.append(str(line.get("path", "")))
    elif kind == "finished":
        state.finished = True
    elif kind == "undone":
        state.undone = True


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def find_resumable(dest: Path, fingerprint: dict[str, Any]) -> JournalState | None:
    if not dest.is_dir():
        return None
    candidates = []
    for path in dest.glob(f".{MANIFEST_PREFIX}*.journal"):
        state = read_journal(path)
        if state is None or state.finished or state.undone:
            continue
        if state.header.get("fingerprint") == fingerprint:
            candidates.append(state)
    return max(candidates, key=lambda s: s.stamp) if candidates else None


def new_stamp(dest: Path) -> str:
    base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stamp, number = base, 1
    while manifest_file(dest, stamp).exists() or journal_file(dest, stamp).exists():
        number += 1
        stamp = f"{base}-{number}"
    return stamp
