"""Export clustered photos to one folder per cluster: copy, hard link, symlink, move or CSV.

Layout: ``DEST/<cluster folder>/<file name>``, or ``DEST/<cluster folder>/<relative dirs>/<file
name>`` with ``keep_subfolders``. Photos below the confidence threshold go to
``DEST/_uncertain/``; ignored photos stay out. Cluster names are turned into portable folder
names by :func:`sanitize_folder_name` and made distinct by :func:`cluster_folder_names`.
Nothing is ever overwritten: a taken file name gets a ``" (2)"`` suffix.

Files this module writes in DEST, sharing one UTC stamp per export:

* ``crlc-export-<stamp>.csv``, the manifest (written atomically at the end, and also when the
  export is cancelled or fails): one row per input photo with the columns ``source,
  destination, cluster, folder, confidence, mode, status, note``. ``status`` is ``exported``
  (written by this export), ``already_present`` (found at its destination from an earlier
  export, left alone), ``pending`` (not reached: the export was cancelled), ``planned``
  (``csv`` mode), ``failed`` or ``skipped`` (``note`` says why).
* ``.crlc-export-<stamp>.journal`` (not in ``csv`` mode), JSON lines: a ``header`` (format,
  stamp, mode, DEST, settings fingerprint), then ``mkdir`` lines for each folder the export
  creates and ``file`` lines with a ``state``: ``moving``/``copying``/``linking`` appended
  and fsynced *before* a file is touched, ``moved``/``copied``/``linked`` after it, and
  ``present`` for files found already exported; finally ``finished``, ``cancelled``,
  ``resumed`` or ``undone`` markers.

Resuming: running :func:`export_images` again with the same mode and settings continues the
latest unfinished journal in DEST (same stamp, same manifest name): files it records as done
are not written twice. Files from another export are recognised at their planned destination
(same size and mtime for copies, same inode for hard links, same target for symlinks) and
counted as ``already_done`` too.

Writes are crash-safe: copies go to a hidden ``.crlc-partial-*`` file that is renamed into
place once complete, and moves are a hard link plus unlink on one file system (copy to a
partial file, rename, then delete the source across file systems), so a killed export leaves
every file complete at its source, its destination or both (never only a partial copy).

Undo (:func:`undo_export`, given the manifest, the journal or DEST): a move is put back file
by file (parent folders recreated, never overwriting a file that appeared at the original
path meanwhile); copies, hard links and symlinks made by the export are deleted, but only
while they still match their original (same bytes, same inode, same target), so undo never
deletes the last copy of a photo; ``csv`` exports have nothing to undo. Folders the export
created are removed once empty. Manifest and journal are kept; the journal is marked undone.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import filecmp
import hashlib
import io
import json
import os
import shutil
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from crlc_engine.control import JobControl
from crlc_engine.errors import CRLCError, InvalidSettingError
from crlc_engine.events import NullReporter, Reporter
from crlc_engine.fileio import atomic_write, fsync_dir

EXPORT_MODES = ("copy", "hardlink", "symlink", "move", "csv")
#: Folder of the photos whose confidence is below ``min_confidence``.
UNCERTAIN_FOLDER = "_uncertain"
#: Folder names are capped to this many characters and UTF-8 bytes.
MAX_NAME_CHARS = 120
MAX_NAME_BYTES = 200
#: Free space kept on top of the bytes to write: this many bytes plus 1 % of them.
FREE_SPACE_MARGIN = 64 * 1024 * 1024
#: mtime difference still taken as "the same" copy (FAT stores mtimes in 2 s steps).
MTIME_TOLERANCE_S = 2.0
MANIFEST_PREFIX = "crlc-export-"
JOURNAL_FORMAT = "crlc-export-journal"
FIRST_FILES = 10

_MANIFEST_COLUMNS = (
    "source",
    "destination",
    "cluster",
    "folder",
    "confidence",
    "mode",
    "status",
    "note",
)
_STATES = {
    "copy": ("copying", "copied"),
    "hardlink": ("linking", "linked"),
    "symlink": ("linking", "linked"),
    "move": ("moving", "moved"),
}
_ACTIVE = ("planned", "done", "present")
_SKIP_REASONS = {"ignored": "ignored", "duplicate": "listed twice", "missing": "source missing"}
_FORBIDDEN_CHARS = frozenset('/\\<>:"|?*')
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{prefix}{digit}" for prefix in ("COM", "LPT") for digit in "123456789¹²³"}
)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


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
        files: Photos in the export, ``already_done`` ones included (planned ones for a dry
            run or ``csv`` mode).
        folders: Top folder name -> number of those photos.
        skipped: ``(source, reason)`` of the photos left out (reason ``ignored``, ``source
            missing``, ``listed twice``, ``failed: ...``).
        dry_run: Whether nothing was written.
        already_done: Photos found already exported (earlier attempt or earlier export).
        cancelled: Whether the export stopped early; run it again to finish it.
        journal: The journal file (``None`` for dry runs and ``csv`` mode).
        entries: The full plan, in layout order.
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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``first_files`` lists up to 10 destinations)."""
        first = [os.fspath(e.destination) for e in self.entries if e.destination is not None]
        return {
            "manifest": os.fspath(self.manifest),
            "journal": None if self.journal is None else os.fspath(self.journal),
            "mode": self.mode,
            "files": self.files,
            "folders": dict(self.folders),
            "already_done": self.already_done,
            "skipped": [{"source": s, "reason": r} for s, r in self.skipped],
            "dry_run": self.dry_run,
            "cancelled": self.cancelled,
            "first_files": first[:FIRST_FILES],
        }


@dataclass
class UndoResult:
    """What :func:`undo_export` did.

    Attributes:
        manifest: The manifest, journal or folder that was undone.
        mode: The export's mode.
        restored: Moved photos put back at their original path.
        removed: Copies or links deleted.
        unchanged: Records with nothing left to undo (already back, or never written).
        kept: ``(path, reason)`` of files left alone on purpose.
        folders_removed: Empty folders (created by the export) removed.
    """

    manifest: Path
    mode: str
    restored: int = 0
    removed: int = 0
    unchanged: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)
    folders_removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "manifest": os.fspath(self.manifest),
            "mode": self.mode,
            "restored": self.restored,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "kept": [{"path": p, "reason": r} for p, r in self.kept],
            "folders_removed": self.folders_removed,
        }


# --------------------------------------------------------------------------- names


def sanitize_folder_name(name: str) -> str:
    """Turn a cluster name into a folder name that is safe on Linux, macOS and Windows.

    Path separators and characters Windows forbids become ``_``, control characters and
    other whitespace become spaces (runs collapsed), leading/trailing dots and spaces are
    dropped, reserved Windows device names (``CON``, ``com1.txt``...) get a ``_`` prefix,
    the result is capped to :data:`MAX_NAME_CHARS` characters and :data:`MAX_NAME_BYTES`
    UTF-8 bytes, an empty result becomes ``unnamed`` and ``_uncertain`` becomes
    ``_uncertain (cluster)`` so that it never merges with :data:`UNCERTAIN_FOLDER`.

    Args:
        name: The cluster name as the user typed it.

    Returns:
        A non-empty single path component.
    """
    text = _sanitize_component(name)
    if _fold(text) == _fold(UNCERTAIN_FOLDER):
        return f"{UNCERTAIN_FOLDER} (cluster)"
    return text


def cluster_folder_names(clusters: Iterable[str]) -> dict[str, str]:
    """Give every distinct cluster name its own folder name, deterministically.

    Names are taken in sorted order; a folder name already taken (compared case-insensitively,
    as on Windows and macOS, and including :data:`UNCERTAIN_FOLDER`) gets ``" (2)"``,
    ``" (3)"``...

    Args:
        clusters: Cluster names (repeats allowed).

    Returns:
        Cluster name -> folder name.
    """
    taken = {_fold(UNCERTAIN_FOLDER)}
    folders: dict[str, str] = {}
    for name in sorted(set(clusters)):
        base = sanitize_folder_name(name)
        folder, number = base, 1
        while _fold(folder) in taken:
            number += 1
            folder = _numbered_folder(base, number)
        taken.add(_fold(folder))
        folders[name] = folder
    return folders


def _sanitize_component(name: str) -> str:
    text = "".join(_clean_char(char) for char in unicodedata.normalize("NFC", name))
    text = " ".join(text.split()).strip(" .")
    if text.split(".")[0].rstrip(" ").upper() in _RESERVED_NAMES:
        text = f"_{text}"
    text = _truncate(text, MAX_NAME_CHARS, MAX_NAME_BYTES).rstrip(" .")
    return text or "unnamed"


def _clean_char(char: str) -> str:
    if char in _FORBIDDEN_CHARS:
        return "_"
    if char.isspace() or unicodedata.category(char) == "Cc":
        return " "
    if unicodedata.category(char) == "Cs":
        return "_"
    return char


def _byte_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _truncate(text: str, max_chars: int, max_bytes: int) -> str:
    text = text[:max_chars]
    while _byte_len(text) > max_bytes:
        text = text[:-1]
    return text


def _numbered_folder(base: str, number: int) -> str:
    suffix = f" ({number})"
    stem = _truncate(base, MAX_NAME_CHARS - len(suffix), MAX_NAME_BYTES - len(suffix))
    return f"{stem.rstrip(' .')}{suffix}"


def _numbered_file(name: str, number: int) -> str:
    if number == 1:
        return name
    stem, extension = os.path.splitext(name)
    suffix = f" ({number}){extension}"
    return _truncate(stem, len(stem), 255 - _byte_len(suffix)) + suffix


def _subfolders(relative: str) -> list[str]:
    parts = PurePosixPath(relative).parts[:-1]
    return [_sanitize_component(p) for p in parts if p not in ("", ".", "..", "/")]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def _key(path: Path) -> str:
    return _fold(os.fspath(path))


# --------------------------------------------------------------------------- journal


@dataclass
class _FileRecord:
    source: str
    destination: str
    state: str
    mode: str
    cluster: str = ""
    folder: str = ""
    confidence: float = 0.0


@dataclass
class _JournalState:
    path: Path
    header: dict[str, Any]
    files: dict[tuple[str, str], _FileRecord] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)
    finished: bool = False
    undone: bool = False

    @property
    def stamp(self) -> str:
        return str(self.header.get("stamp", ""))

    @property
    def mode(self) -> str:
        return str(self.header.get("mode", ""))

    def claims(self) -> dict[str, _FileRecord]:
        """Source -> its latest record (``present`` records are not this export's work)."""
        return {r.source: r for r in self.files.values() if r.state != "present"}


def _manifest_path(dest: Path, stamp: str) -> Path:
    return dest / f"{MANIFEST_PREFIX}{stamp}.csv"


def _journal_path(dest: Path, stamp: str) -> Path:
    return dest / f".{MANIFEST_PREFIX}{stamp}.journal"


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:  # a line cut short by a kill
        return None
    return value if isinstance(value, dict) else None


def _read_journal(path: Path) -> _JournalState | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    lines = [r for r in (_parse_line(line) for line in raw.splitlines()) if r is not None]
    if not lines or lines[0].get("kind") != "header" or lines[0].get("format") != JOURNAL_FORMAT:
        return None
    state = _JournalState(path, lines[0])
    for line in lines[1:]:
        _apply_line(state, line)
    return state


def _apply_line(state: _JournalState, line: dict[str, Any]) -> None:
    kind = line.get("kind")
    if kind == "file":
        record = _FileRecord(
            source=str(line.get("source", "")),
            destination=str(line.get("destination", "")),
            state=str(line.get("state", "")),
            mode=state.mode,
            cluster=str(line.get("cluster", "")),
            folder=str(line.get("folder", "")),
            confidence=_as_float(line.get("confidence")),
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


def _find_resumable(dest: Path, fingerprint: dict[str, Any]) -> _JournalState | None:
    if not dest.is_dir():
        return None
    candidates = []
    for path in dest.glob(f".{MANIFEST_PREFIX}*.journal"):
        state = _read_journal(path)
        if state is None or state.finished or state.undone:
            continue
        if state.header.get("fingerprint") == fingerprint:
            candidates.append(state)
    return max(candidates, key=lambda s: s.stamp) if candidates else None


def _new_stamp(dest: Path) -> str:
    base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stamp, number = base, 1
    while _manifest_path(dest, stamp).exists() or _journal_path(dest, stamp).exists():
        number += 1
        stamp = f"{base}-{number}"
    return stamp


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _open_for_append(path: Path) -> IO[bytes]:
    handle = open(path, "ab")  # noqa: SIM115 - kept open for the whole export
    if handle.tell() > 0:
        with open(path, "rb") as reader:
            reader.seek(-1, os.SEEK_END)
            if reader.read(1) != b"\n":  # the last line was cut short by a kill
                handle.write(b"\n")
    return handle


class _JournalWriter:
    """Appends JSON lines to an export journal; ``durable`` lines are fsynced."""

    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        self._handle = handle

    @classmethod
    def start(cls, plan: _Plan) -> _JournalWriter:
        if plan.resume is not None:
            writer = cls(plan.resume.path, _open_for_append(plan.resume.path))
            writer.write({"kind": "resumed", "at": _now()}, durable=True)
            return writer
        path = _journal_path(plan.dest, plan.stamp)
        writer = cls(path, open(path, "xb"))  # noqa: SIM115 - closed by close()
        header = {
            "kind": "header",
            "format": JOURNAL_FORMAT,
            "version": 1,
            "stamp": plan.stamp,
            "mode": plan.mode,
            "dest": os.fspath(plan.dest),
            "fingerprint": plan.fingerprint,
            "created": _now(),
        }
        writer.write(header, durable=True)
        fsync_dir(plan.dest)
        return writer

    def write(self, line: dict[str, Any], durable: bool) -> None:
        self._handle.write(json.dumps(line, ensure_ascii=True).encode("ascii") + b"\n")
        self._handle.flush()
        if durable:
            os.fsync(self._handle.fileno())

    def file(self, entry: ExportPlanEntry, state: str, durable: bool) -> None:
        self.write(
            {
                "kind": "file",
                "state": state,
                "source": os.fspath(entry.source),
                "destination": os.fspath(entry.destination or ""),
                "cluster": entry.cluster,
                "folder": entry.folder,
                "confidence": entry.confidence,
            },
            durable,
        )

    def mkdir(self, folder: Path) -> None:
        self.write({"kind": "mkdir", "path": os.fspath(folder)}, durable=True)

    def mark(self, kind: str) -> None:
        self.write({"kind": kind, "at": _now()}, durable=True)

    def close(self) -> None:
        self._handle.close()


# --------------------------------------------------------------------------- file checks


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


def _same_inode(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _same_size_mtime(source: Path, copy: Path) -> bool:
    try:
        if copy.is_symlink():
            return False
        s, c = os.stat(source), os.stat(copy)
    except OSError:
        return False
    return s.st_size == c.st_size and abs(s.st_mtime - c.st_mtime) <= MTIME_TOLERANCE_S


def _links_to(link: Path, source: Path) -> bool:
    try:
        return link.is_symlink() and os.readlink(link) == os.fspath(source)
    except OSError:
        return False


def _hardlinked(source: Path, link: Path) -> bool:
    try:
        return not link.is_symlink() and os.path.samefile(source, link)
    except OSError:
        return False


def _same_content(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file, equal symlinks or byte-identical files."""
    if _same_inode(a, b):
        return True
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    try:
        return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _matches_foreign(mode: str, source: Path, destination: Path) -> bool:
    """Whether an existing ``destination`` already is ``source`` exported in ``mode``."""
    if mode == "copy":
        return _same_size_mtime(source, destination)
    if mode == "hardlink":
        return _hardlinked(source, destination)
    if mode == "symlink":
        return _links_to(destination, source)
    return False


def _owned_state(mode: str, source: Path, destination: Path) -> str | None:
    """State of an existing destination recorded by this export's journal.

    Returns ``done``, ``planned`` (an interrupted move to finish) or ``None`` (not ours).
    """
    if mode == "move":
        if not _lexists(source):
            return "done"
        return "planned" if _same_content(source, destination) else None
    if mode == "copy" and not _lexists(source):
        return "done"  # the original went away; the copy is ours
    return "done" if _matches_foreign(mode, source, destination) else None


# --------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    dest: Path
    mode: str
    stamp: str
    fingerprint: dict[str, Any]
    entries: list[ExportPlanEntry]
    resume: _JournalState | None


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
    unfinished earlier attempt of the same export, see the module docstring, or by another
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
    return _build_plan(items, dest, roots, min_confidence, keep_subfolders, mode).entries


def _build_plan(
    items: Sequence[ExportItem],
    dest: Path,
    roots: Sequence[Path],
    min_confidence: float,
    keep_subfolders: bool,
    mode: str,
) -> _Plan:
    _check_settings(mode, min_confidence)
    dest_abs = _check_destination(dest, roots)
    fingerprint = {
        "mode": mode,
        "min_confidence": float(min_confidence),
        "keep_subfolders": bool(keep_subfolders),
    }
    resume = None if mode == "csv" else _find_resumable(dest_abs, fingerprint)
    stamp = resume.stamp if resume is not None else _new_stamp(dest_abs)
    claims = resume.claims() if resume is not None else {}
    entries = _plan_entries(items, dest_abs, mode, claims, min_confidence, keep_subfolders)
    _check_folders_outside_roots(entries, roots)
    return _Plan(dest_abs, mode, stamp, fingerprint, entries, resume)


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
    claims: dict[str, _FileRecord],
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
            directory = directory.joinpath(*_subfolders(item.relative))
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
    target: _Target, record: _FileRecord | None, mode: str, taken: set[str]
) -> ExportPlanEntry | None:
    """Keep the destination this export's journal gave the photo, when still valid."""
    if record is None:
        return None
    destination = Path(record.destination)
    if destination.parent != target.directory or _key(destination) in taken:
        return None
    if _lexists(destination):
        status = _owned_state(mode, target.source, destination)
    else:
        status = "planned" if _lexists(target.source) else None
    if status is None:
        return None
    taken.add(_key(destination))
    return _entry(target, destination, status)


def _allocate(target: _Target, mode: str, taken: set[str]) -> ExportPlanEntry:
    """First free ``name``, ``name (2)``... in the target folder (or one already exported)."""
    if not _lexists(target.source):
        return _entry(target, None, "missing")
    number = 0
    while True:
        number += 1
        candidate = target.directory / _numbered_file(target.source.name, number)
        if _key(candidate) in taken:
            continue
        if not _lexists(candidate):
            status = "planned"
        elif _matches_foreign(mode, target.source, candidate):
            status = "present"
        else:
            continue
        taken.add(_key(candidate))
        return _entry(target, candidate, status)


# --------------------------------------------------------------------------- preflight


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _device(path: Path, follow: bool = False) -> int:
    """Device id of ``path`` (-1 when it cannot be read: the write will report it)."""
    try:
        return (os.stat(path) if follow else os.lstat(path)).st_dev
    except OSError:
        return -1


def _bytes_to_write(plan: _Plan) -> int:
    if plan.mode not in ("copy", "move"):
        return 0
    dest_device = os.stat(_existing_ancestor(plan.dest)).st_dev
    total = 0
    for entry in plan.entries:
        if entry.status != "planned":
            continue
        if plan.mode == "copy":
            total += os.stat(entry.source).st_size if entry.source.exists() else 0
        elif _device(entry.source) != dest_device:
            total += _size(entry.source)
    return total


def _human(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _check_free_space(plan: _Plan) -> None:
    needed = _bytes_to_write(plan)
    if needed == 0:
        return
    free = shutil.disk_usage(_existing_ancestor(plan.dest)).free
    margin = FREE_SPACE_MARGIN + needed // 100
    if free < needed + margin:
        raise NotEnoughSpaceError(
            f"not enough free space for the export in {plan.dest}: it needs {_human(needed)} "
            f"(plus {_human(margin)} to spare) but only {_human(free)} are free; free some "
            "space, choose another folder, or use hard links or symlinks instead of copies"
        )


def _cross_device_message(source: Path, dest: Path) -> str:
    return (
        f"hard links cannot cross drives: {source} and the export folder {dest} are on "
        "different file systems; use the copy (or symlink) mode instead"
    )


def _check_link_devices(plan: _Plan) -> None:
    if plan.mode != "hardlink":
        return
    dest_device = os.stat(_existing_ancestor(plan.dest)).st_dev
    for entry in plan.entries:
        if entry.status == "planned" and _device(entry.source, follow=True) != dest_device:
            raise CrossDeviceLinkError(_cross_device_message(entry.source, plan.dest))


# --------------------------------------------------------------------------- file operations


def _partial_path(path: Path) -> Path:
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]
    return path.with_name(f".crlc-partial-{digest}")


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _rename_no_clobber(source: Path, destination: Path) -> None:
    """Rename within one file system, failing with FileExistsError instead of overwriting."""
    try:
        os.link(source, destination, follow_symlinks=False)
    except FileExistsError:
        raise
    except (OSError, NotImplementedError):  # no hard links here (FAT, exFAT...)
        if _lexists(destination):
            raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination)) from None
        os.rename(source, destination)
        return
    os.unlink(source)


def _move_file(source: Path, destination: Path) -> None:
    """Move without overwriting; a kill leaves the file complete at one place or both."""
    if _device(source) == os.stat(destination.parent).st_dev:
        _rename_no_clobber(source, destination)
        return
    if _lexists(destination):
        raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination))
    _copy_into_place(source, destination, follow_symlinks=False)
    os.unlink(source)


def _copy_action(source: Path, destination: Path) -> None:
    if _lexists(destination):
        raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination))
    _copy_into_place(source, destination, follow_symlinks=True)


def _copy_into_place(source: Path, destination: Path, follow_symlinks: bool) -> None:
    """``shutil.copy2`` to a partial file renamed into place once complete (no overwrite)."""
    partial = _partial_path(destination)
    _remove_quietly(partial)
    try:
        shutil.copy2(source, partial, follow_symlinks=follow_symlinks)
        _rename_no_clobber(partial, destination)
    except Exception:  # a failed copy leaves nothing (a kill leaves the partial file)
        _remove_quietly(partial)
        raise


def _hardlink_action(source: Path, destination: Path) -> None:
    os.link(source, destination)


def _symlink_action(source: Path, destination: Path) -> None:
    os.symlink(os.fspath(source), destination)


def _move_action(source: Path, destination: Path) -> None:
    if _lexists(destination):  # left by a killed attempt: finish it if it is the same file
        if not _same_content(source, destination):
            raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination))
        os.unlink(source)
        return
    _move_file(source, destination)


_ACTIONS: dict[str, Callable[[Path, Path], None]] = {
    "copy": _copy_action,
    "hardlink": _hardlink_action,
    "symlink": _symlink_action,
    "move": _move_action,
}


# --------------------------------------------------------------------------- export


def export_images(
    items: Sequence[ExportItem],
    dest: Path,
    mode: str = "copy",
    roots: Sequence[Path] = (),
    min_confidence: float = 0.0,
    keep_subfolders: bool = False,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
) -> ExportResult:
    """Export photos into one folder per cluster (see the module docstring for the files).

    Args:
        items: The photos.
        dest: Export folder, created when missing.
        mode: ``copy`` (``shutil.copy2``, timestamps kept), ``hardlink``, ``symlink`` (to
            the absolute source), ``move`` (journaled, undoable) or ``csv`` (manifest only).
        roots: Library root folders; DEST must not be one of them nor inside one.
        min_confidence: Photos below it go to ``_uncertain``.
        keep_subfolders: Recreate each photo's folders below its library root.
        dry_run: Plan only: write nothing at all and return the plan.
        reporter: Gets ``status`` lines and ``progress(done, total)`` once per photo.
        control: Checked before each photo; when cancelled the export stops with a
            consistent journal and manifest, ready to be resumed or undone.

    Returns:
        What was exported (or would be, for a dry run).

    Raises:
        InvalidSettingError: unknown mode or ``min_confidence`` outside 0..1.
        ExportDestinationError: DEST is a file, a library root or inside one.
        NotEnoughSpaceError: not enough free space for the copies (checked before, and
            raised when the drive fills up during the export).
        CrossDeviceLinkError: hard links asked for across file systems.
    """
    plan = _build_plan(items, dest, roots, min_confidence, keep_subfolders, mode)
    out = reporter if reporter is not None else NullReporter()
    if dry_run:
        return _result(plan, _initial_outcomes(plan, "planned"), dry_run=True)
    _check_free_space(plan)
    _check_link_devices(plan)
    plan.dest.mkdir(parents=True, exist_ok=True)
    if mode == "csv":
        return _export_csv(plan, out)
    return _Runner(plan, out, control).run()


def _initial_outcomes(plan: _Plan, pending: str) -> list[tuple[str, str]]:
    outcomes = []
    for entry in plan.entries:
        if entry.status == "planned":
            outcomes.append((pending, ""))
        elif entry.status == "done":
            outcomes.append(("exported", "done by an earlier attempt"))
        elif entry.status == "present":
            outcomes.append(("already_present", "already exported before"))
        else:
            outcomes.append(("skipped", _SKIP_REASONS[entry.status]))
    return outcomes


def _result(
    plan: _Plan,
    outcomes: list[tuple[str, str]],
    dry_run: bool = False,
    cancelled: bool = False,
    journal: Path | None = None,
) -> ExportResult:
    folders: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    for entry, (status, note) in zip(plan.entries, outcomes, strict=True):
        if status in ("exported", "already_present", "planned"):
            folders[entry.folder] = folders.get(entry.folder, 0) + 1
        elif status in ("skipped", "failed"):
            skipped.append((os.fspath(entry.source), note))
    return ExportResult(
        manifest=_manifest_path(plan.dest, plan.stamp),
        mode=plan.mode,
        files=sum(folders.values()),
        folders=folders,
        skipped=skipped,
        dry_run=dry_run,
        already_done=sum(e.status in ("done", "present") for e in plan.entries),
        cancelled=cancelled,
        journal=journal,
        entries=list(plan.entries),
    )


def _write_manifest(plan: _Plan, outcomes: list[tuple[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_MANIFEST_COLUMNS)
    for entry, (status, note) in zip(plan.entries, outcomes, strict=True):
        destination = "" if entry.destination is None else os.fspath(entry.destination)
        writer.writerow(
            [
                os.fspath(entry.source),
                destination,
                entry.cluster,
                entry.folder,
                f"{entry.confidence:.4f}",
                plan.mode,
                status,
                note,
            ]
        )
    data = buffer.getvalue().encode("utf-8", "surrogateescape")
    atomic_write(_manifest_path(plan.dest, plan.stamp), lambda handle: handle.write(data))


def _export_csv(plan: _Plan, reporter: Reporter) -> ExportResult:
    outcomes = _initial_outcomes(plan, "planned")
    _write_manifest(plan, outcomes)
    result = _result(plan, outcomes)
    reporter.progress(result.files, result.files)
    reporter.status(f"Wrote the export manifest {result.manifest} ({result.files} photos)")
    return result


class _Runner:
    """Runs the planned writes of one export, keeping journal and outcomes in step."""

    def __init__(self, plan: _Plan, reporter: Reporter, control: JobControl | None) -> None:
        self.plan = plan
        self.reporter = reporter
        self.control = control
        self.outcomes = _initial_outcomes(plan, "pending")
        self.known_dirs: set[Path] = {plan.dest}
        self.cancelled = False

    def run(self) -> ExportResult:
        journal = _JournalWriter.start(self.plan)
        try:
            self._run_all(journal)
        finally:
            journal.close()
            _write_manifest(self.plan, self.outcomes)
        result = _result(self.plan, self.outcomes, cancelled=self.cancelled, journal=journal.path)
        self._report_end(result)
        return result

    def _run_all(self, journal: _JournalWriter) -> None:
        entries = self.plan.entries
        todo = [i for i, e in enumerate(entries) if e.status == "planned"]
        total = sum(e.status in _ACTIVE for e in entries)
        done = total - len(todo)
        for entry in entries:
            if entry.status == "present":
                journal.file(entry, "present", durable=False)
        self.reporter.status(f"Exporting {len(todo)} photos to {self.plan.dest} ({self.plan.mode})")
        self.reporter.progress(done, total)
        for index in todo:
            if self.control is not None and self.control.checkpoint_wait():
                self.cancelled = True
                journal.mark("cancelled")
                return
            self._export_one(index, journal)
            done += 1
            self.reporter.progress(done, total)
        journal.mark("finished")

    def _export_one(self, index: int, journal: _JournalWriter) -> None:
        entry = self.plan.entries[index]
        assert entry.destination is not None
        start, end = _STATES[self.plan.mode]
        try:
            self._ensure_directory(entry.destination.parent, journal)
            _remove_quietly(_partial_path(entry.destination))  # left by a killed attempt
            journal.file(entry, start, durable=True)
            _ACTIONS[self.plan.mode](entry.source, entry.destination)
        except FileExistsError as exc:
            self.outcomes[index] = ("failed", f"failed: {exc.filename or exc} is in the way")
            return
        except OSError as exc:
            self._fail(index, exc)
            return
        journal.file(entry, end, durable=False)
        self.outcomes[index] = ("exported", "")

    def _fail(self, index: int, exc: OSError) -> None:
        if exc.errno in _NO_SPACE:
            raise NotEnoughSpaceError(
                f"the drive of {self.plan.dest} is full; free some space and run the export "
                "again to finish it"
            ) from exc
        if self.plan.mode == "hardlink" and exc.errno == errno.EXDEV:
            source = self.plan.entries[index].source
            raise CrossDeviceLinkError(_cross_device_message(source, self.plan.dest)) from exc
        self.outcomes[index] = ("failed", f"failed: {exc.strerror or exc}")

    def _ensure_directory(self, directory: Path, journal: _JournalWriter) -> None:
        if directory in self.known_dirs:
            return
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        for folder in reversed(missing):
            journal.mkdir(folder)
            folder.mkdir()
        self.known_dirs.add(directory)

    def _report_end(self, result: ExportResult) -> None:
        if self.cancelled:
            self.reporter.status(
                f"Export cancelled after {result.files} photos; run it again to finish it, "
                f"or undo it with {result.manifest}"
            )
            return
        self.reporter.status(
            f"Exported {result.files} photos into {len(result.folders)} folders; "
            f"manifest: {result.manifest}"
        )


# --------------------------------------------------------------------------- undo


@dataclass
class _UndoSource:
    path: Path
    mode: str
    dest: Path
    records: list[_FileRecord]
    folders: list[str] | None  # None: unknown (no journal), guessed from the destinations
    journal: Path | None


def undo_export(manifest: Path, reporter: Reporter | None = None) -> UndoResult:
    """Undo an export (see the module docstring for what is undone and what is kept).

    Works after a cancelled, failed or killed export too, and may be run again safely.

    Args:
        manifest: The export's manifest CSV, its journal, or the export folder (its latest
            export is undone). With a manifest, the journal next to it is used when present.
        reporter: Gets a ``status`` line and ``progress(done, total)`` once per file.

    Returns:
        What was restored, removed and kept.

    Raises:
        UndoError: no readable manifest or journal at ``manifest``.
    """
    out = reporter if reporter is not None else NullReporter()
    source = _load_undo_source(Path(manifest))
    result = UndoResult(manifest=source.path, mode=source.mode)
    out.status(f"Undoing the {source.mode} export {source.path}")
    for done, record in enumerate(source.records, start=1):
        _undo_record(record, result)
        out.progress(done, len(source.records))
    folders = source.folders
    if folders is None:
        folders = _destination_folders(source.records, source.dest)
    _remove_folders(folders, result)
    if source.journal is not None:
        _mark_undone(source.journal)
    out.status(
        f"Undo: {result.restored} restored, {result.removed} removed, {len(result.kept)} kept"
    )
    return result


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
            journal = path if _read_journal(path) is not None else None
            return journal, None if journal is not None else path
    else:
        raise UndoError(f"no export manifest or journal at {path}")
    journal, manifest = _journal_path(folder, stamp), _manifest_path(folder, stamp)
    return (journal if journal.is_file() else None), (manifest if manifest.is_file() else None)


def _load_undo_source(path: Path) -> _UndoSource:
    journal_path, manifest_path = _locate(path)
    if journal_path is not None:
        state = _read_journal(journal_path)
        if state is not None:
            records = [r for r in state.files.values() if r.state != "present"]
            dest = Path(str(state.header.get("dest") or journal_path.parent))
            return _UndoSource(path, state.mode, dest, records, state.folders, journal_path)
    if manifest_path is None:
        raise UndoError(f"{path} is not a readable export manifest or journal")
    mode, records = _read_manifest(manifest_path)
    return _UndoSource(path, mode, manifest_path.parent, records, None, None)


def _read_manifest(path: Path) -> tuple[str, list[_FileRecord]]:
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        rows = list(csv.DictReader(io.StringIO(text)))
    except (OSError, csv.Error) as exc:
        raise UndoError(f"cannot read the export manifest {path}: {exc}") from exc
    if rows and not set(_MANIFEST_COLUMNS[:7]) <= set(rows[0]):
        raise UndoError(f"{path} is not an export manifest (unexpected columns)")
    mode = rows[0]["mode"] if rows else "csv"
    records = [
        _FileRecord(row["source"], row["destination"], "manifest", row["mode"])
        for row in rows
        if row["status"] == "exported" and row["destination"]
    ]
    return mode, records


def _undo_record(record: _FileRecord, result: UndoResult) -> None:
    source, destination = Path(record.source), Path(record.destination)
    _remove_quietly(_partial_path(destination))
    if record.mode == "move":
        _remove_quietly(_partial_path(source))
        _undo_move(source, destination, result)
    elif record.mode in _STATES:
        _undo_link_or_copy(record.mode, source, destination, result)


def _undo_move(source: Path, destination: Path, result: UndoResult) -> None:
    at_source, at_destination = _lexists(source), _lexists(destination)
    if at_destination and not at_source:
        source.parent.mkdir(parents=True, exist_ok=True)
        try:
            _move_file(destination, source)
        except FileExistsError:
            _keep_appeared(source, destination, result)
            return
        result.restored += 1
    elif at_destination:
        if _same_content(source, destination):
            os.unlink(destination)  # a killed move left the same file at both places
            result.restored += 1
        else:
            _keep_appeared(source, destination, result)
    elif at_source:
        result.unchanged += 1
    else:
        result.kept.append((os.fspath(source), "missing at the original path and in the export"))


def _keep_appeared(source: Path, destination: Path, result: UndoResult) -> None:
    reason = f"another file is now at the original path; the exported photo stays at {destination}"
    result.kept.append((os.fspath(source), reason))


def _undo_link_or_copy(mode: str, source: Path, destination: Path, result: UndoResult) -> None:
    if not _lexists(destination):
        result.unchanged += 1
        return
    if mode == "copy":
        ours = _lexists(source) and not destination.is_symlink()
        ours = ours and _same_content(source, destination)
    elif mode == "hardlink":
        ours = _same_inode(source, destination)
    else:
        ours = _links_to(destination, source)
    if ours:
        os.unlink(destination)
        result.removed += 1
    else:
        reason = f"kept: it no longer matches the original {source} (or the original is gone)"
        result.kept.append((os.fspath(destination), reason))


def _destination_folders(records: list[_FileRecord], dest: Path) -> list[str]:
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


def _mark_undone(journal: Path) -> None:
    try:
        handle = _open_for_append(journal)
    except OSError:
        return
    with handle:
        handle.write(json.dumps({"kind": "undone", "at": _now()}).encode("ascii") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
