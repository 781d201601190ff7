"""Export clustered photos to one folder per cluster: copy, hard link, symlink, move or CSV.

Layout: ``DEST/<cluster folder>/<file name>``, or ``DEST/<cluster folder>/<relative dirs>/<file
name>`` with ``keep_subfolders``. Photos below the confidence threshold go to
``DEST/_uncertain/``; ignored photos stay out. Cluster names are turned into portable folder
names by :func:`sanitize_folder_name` and made distinct by :func:`cluster_folder_names`.
Nothing is ever overwritten: a taken file name gets a ``" (2)"`` suffix.

Files this module writes in DEST, sharing one UTC stamp per export (never another export's:
a stamp whose journal or manifest exists is skipped, and the journal, or the manifest in
``csv`` mode, is created with ``O_EXCL``; on a clash the next stamp, ``-2``, ``-3``..., is
taken):

* ``crlc-export-<stamp>.csv``, the manifest (written atomically at the end, and also when the
  export is cancelled or fails): one row per input photo with the columns ``source,
  destination, cluster, folder, confidence, mode, status, note``. ``status`` is ``exported``
  (written by this export), ``already_present`` (found at its destination from an earlier
  export, left alone), ``pending`` (not reached: the export was cancelled), ``planned``
  (``csv`` mode), ``failed``, ``missing`` (no file at the source: deleted after training,
  or marked missing by a scan) or ``skipped`` (ignored or listed twice; ``note`` says why).
* ``.crlc-export-<stamp>.journal`` (not in ``csv`` mode), JSON lines: a ``header`` (format,
  ``version`` 2, stamp, mode, DEST, settings fingerprint), then ``mkdir`` lines for each
  folder the export creates and ``file`` lines with a ``state``: ``moving``/``copying``/
  ``linking`` appended and fsynced *before* a file is touched (with the source's ``size``
  and ``mtime_ns``), ``moved``/``copied``/``linked`` after it, with the identity of what
  the export created at the destination: ``size``, ``mtime_ns`` and, for a copy (or a move
  across drives, a copy too), the ``sha256`` of its bytes (hashed while copying); for a hard
  link or a move on one drive (the library's own file, never read) its ``device`` and
  ``inode``; for a symlink its ``target``. ``present`` lines name files found already
  exported; finally ``finished``, ``cancelled``, ``resumed`` or ``undone`` markers. Version 1
  journals (older versions) have no identities; version 2 journals written before hard links
  and moves recorded their inode have a ``sha256`` for them, which undo still checks.

Every export reports what it could not do: :class:`ExportResult` counts the photos ``done``
(now in the export), ``failed``, ``skipped`` and ``missing`` and lists them with reasons; its
``state`` is ``finished_with_failures`` when any photo failed or is missing.

Resuming: running :func:`export_images` again with the same mode and settings continues the
latest unfinished journal in DEST (same stamp, same manifest name): files it records as done
are not written twice. Files from another export are recognised at their planned destination
(same size and mtime for copies, same inode for hard links, same target for symlinks) and
counted as ``already_done`` too.

Writes are crash-safe: copies go to a hidden ``.crlc-partial-*`` file (hashed while copied)
that is renamed into place once complete, and moves are a hard link plus unlink on one file
system (copy to a partial file, rename, then delete the source across file systems), so a
killed export leaves every file complete at its source, its destination or both (never only
a partial copy). A move whose source cannot be
deleted (a read-only folder) is taken back and reported as failed.

Undo (:func:`undo_export`, given the manifest, the journal or DEST) never trusts the paths
it reads. It refuses, as a whole and touching nothing, a journal that does not lie in the
export folder its header names, or any record (or ``mkdir`` line) whose destination is not
inside that folder (after resolving its parent folders: no ``..``, no symlinked folder
leading out) or lies inside a library root (``roots``: an export never writes there, even
when DEST is a parent of a root), or whose source and destination are one path; a manifest
without its journal is checked the same way against its own folder. Then, file by file:

* a move is put back (parent folders recreated, never overwriting a file that appeared at
  the original path meanwhile) only when the exported file is a file or a symlink (never a
  folder), its original path lies in a library root or is a photo a library's catalog
  knows (the ``catalog`` look-up), and its identity (size, mtime and sha256, or drive and
  inode; a symlink's target) matches its record; a file changed since is kept. A move cut
  short between its two journal lines is checked against the source's size and mtime
  instead. Nothing inside a library root is ever deleted, save the ``.crlc-partial-*``
  file a killed undo may leave next to an original (removed only inside a library root);
* copies, hard links and symlinks made by the export are deleted only while their identity
  matches the record *and* they still match their original (same bytes, same inode, same
  target, the original's symlinks followed; copies and hard links only while the original
  exists and does not lead, through symlinks, into the export folder), so undo never
  deletes the last copy of a photo;
* records without identities (version 1 journals, a manifest whose journal is gone): a move
  is put back only when the exported file has the size and mtime that the library's catalog
  recorded for its source; copies and links are kept, listed in ``kept`` with
  :data:`UNVERIFIED_REASON`;
* a file the system will not let undo handle (a file where its folder should be, no
  permission...) is kept with the reason, and undo goes on with the others.

Files kept are listed with the reason in :attr:`UndoResult.kept`. ``csv`` exports have
nothing to undo. Folders the export created are removed once empty (never one inside a
library root). Manifest and journal are kept; the journal is marked undone.

Free space: before copying (or moving across drives) the export needs the bytes to write
plus a margin of :data:`FREE_SPACE_BASE`, :data:`FREE_SPACE_PER_FILE` per file written (its
journal lines, manifest row and block rounding) and 1 % of the bytes
(:func:`free_space_margin`).
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
import stat
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CRLCError, InvalidSettingError
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.core.fileio import atomic_write, fsync_dir

EXPORT_MODES = ("copy", "hardlink", "symlink", "move", "csv")
#: Folder of the photos whose confidence is below ``min_confidence``.
UNCERTAIN_FOLDER = "_uncertain"
#: Folder names are capped to this many characters and UTF-8 bytes.
MAX_NAME_CHARS = 120
MAX_NAME_BYTES = 200
#: Free space kept on top of the bytes to write: this many bytes, plus
#: :data:`FREE_SPACE_PER_FILE` per file written, plus 1 % of the bytes
#: (see :func:`free_space_margin`).
FREE_SPACE_BASE = 1024 * 1024
#: Margin per file written: its journal lines and manifest row, and the rounding of its size
#: up to the file system's blocks.
FREE_SPACE_PER_FILE = 8 * 1024
#: mtime difference still taken as "the same" copy (FAT stores mtimes in 2 s steps).
MTIME_TOLERANCE_S = 2.0
MANIFEST_PREFIX = "crlc-export-"
JOURNAL_FORMAT = "crlc-export-journal"
#: Version 2 journals record the identity of every file the export created.
JOURNAL_VERSION = 2
#: Why undo keeps a copy or link whose record has no identity (journal version 1, manifest).
UNVERIFIED_REASON = (
    "made by an older version that recorded no checksums; delete it yourself if you want it gone"
)
#: Why undo keeps a file whose identity no longer matches its record.
CHANGED_REASON = (
    "it changed after the export (its size, date or content differ from what the export "
    "wrote), so undo leaves it alone"
)
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
_START_STATES = frozenset(start for start, _ in _STATES.values())
_DONE_STATES = frozenset(end for _, end in _STATES.values())
_ACTIVE = ("planned", "done", "present")
_SKIP_REASONS = {"ignored": "ignored", "duplicate": "listed twice", "missing": "source missing"}
_HASH_CHUNK = 1024 * 1024
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


@dataclass(frozen=True)
class _Identity:
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
    def from_json(cls, line: dict[str, Any]) -> _Identity | None:
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
class _FileRecord:
    source: str
    destination: str
    state: str
    mode: str
    cluster: str = ""
    folder: str = ""
    confidence: float = 0.0
    identity: _Identity | None = None

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
            identity=_Identity.from_json(line),
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


def _split_stamp(stamp: str) -> tuple[str, int]:
    """``("<base>", n)`` of ``<base>-<n>`` (``n`` 1 for a stamp without a number)."""
    base, _, number = stamp.rpartition("-")
    if base and number.isdigit():
        return base, int(number)
    return stamp, 1


def _claim_stamp(
    plan: _Plan, own: Callable[[Path, str], Path], other: Callable[[Path, str], Path]
) -> int:
    """Create ``own(DEST, stamp)`` exclusively (``O_EXCL``) and return its descriptor.

    On a clash (another export took the stamp meanwhile), or when ``other(DEST, stamp)``
    exists, the next stamp (``-2``, ``-3``...) is tried; ``plan.stamp`` is set to the one
    taken.
    """
    base, number = _split_stamp(plan.stamp)
    while True:
        stamp = base if number == 1 else f"{base}-{number}"
        number += 1
        if _lexists(other(plan.dest, stamp)):
            continue
        try:
            fd = os.open(own(plan.dest, stamp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        plan.stamp = stamp
        return fd


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
        fd = _claim_stamp(plan, _journal_path, _manifest_path)
        writer = cls(_journal_path(plan.dest, plan.stamp), os.fdopen(fd, "wb"))
        header = {
            "kind": "header",
            "format": JOURNAL_FORMAT,
            "version": JOURNAL_VERSION,
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

    def file(
        self,
        entry: ExportPlanEntry,
        state: str,
        durable: bool,
        identity: _Identity | None = None,
    ) -> None:
        """A ``file`` line; ``identity``: the source's stat on a start line, what was
        created at the destination on a done line."""
        line = {
            "kind": "file",
            "state": state,
            "source": os.fspath(entry.source),
            "destination": os.fspath(entry.destination or ""),
            "cluster": entry.cluster,
            "folder": entry.folder,
            "confidence": entry.confidence,
        }
        self.write(line | (identity.as_json() if identity is not None else {}), durable)

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


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _source_stat(source: Path, follow: bool) -> _Identity | None:
    """Size and mtime of a source, for a journal's start line (``None``: unreadable)."""
    try:
        info = os.stat(source) if follow else os.lstat(source)
    except OSError:
        return None
    return _Identity(info.st_size, info.st_mtime_ns)


def _identity_after(path: Path, digest: str | None = None, read: bool = False) -> _Identity | None:
    """The identity of what an export just created at ``path``.

    A symlink: its target. A copy: ``digest``, the sha256 computed while copying, or with
    ``read`` the file is read once to hash it. Else (a hard link, a move on one drive: the
    very file of the library) its drive and inode, without reading it. ``None`` when it
    cannot be read: undo then treats the file as unverifiable.
    """
    try:
        info = os.lstat(path)
        size, mtime_ns = info.st_size, info.st_mtime_ns
        if stat.S_ISLNK(info.st_mode):
            return _Identity(size, mtime_ns, target=os.readlink(path))
        if digest is not None or read:
            return _Identity(size, mtime_ns, sha256=digest or _sha256_of(path))
        return _Identity(size, mtime_ns, device=info.st_dev, inode=info.st_ino)
    except OSError:
        return None


def _identity_mismatch(path: Path, identity: _Identity, exact: bool) -> str | None:
    """Why what is at ``path`` is not what ``identity`` describes (``None``: it is).

    ``exact``: the mtime must be equal to the nanosecond (else within
    :data:`MTIME_TOLERANCE_S`). The target, hash or drive and inode is compared when the
    identity has one.
    """
    try:
        info = os.lstat(path)
        delta = abs(info.st_mtime_ns - identity.mtime_ns)
        same = info.st_size == identity.size and (
            delta == 0 if exact else delta <= MTIME_TOLERANCE_S * 1e9
        )
        if same and identity.target is not None:
            same = stat.S_ISLNK(info.st_mode) and os.readlink(path) == identity.target
        elif same and identity.sha256 is not None:
            same = stat.S_ISREG(info.st_mode) and _sha256_of(path) == identity.sha256
        elif same and identity.inode is not None:
            same = stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) == (
                identity.device,
                identity.inode,
            )
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc}), so undo cannot tell it is unchanged"
    return None if same else CHANGED_REASON


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


def _bytes_to_write(plan: _Plan) -> tuple[int, int]:
    """(bytes, files) the export will write on DEST's drive (links and same-drive moves
    write no bytes)."""
    if plan.mode not in ("copy", "move"):
        return 0, 0
    dest_device = os.stat(_existing_ancestor(plan.dest)).st_dev
    total = files = 0
    for entry in plan.entries:
        if entry.status != "planned":
            continue
        if plan.mode == "copy":
            total += os.stat(entry.source).st_size if entry.source.exists() else 0
            files += 1
        elif _device(entry.source) != dest_device:
            total += _size(entry.source)
            files += 1
    return total, files


def free_space_margin(needed: int, files: int) -> int:
    """Free space to keep on top of ``needed`` bytes written as ``files`` files.

    :data:`FREE_SPACE_BASE` (1 MiB) + :data:`FREE_SPACE_PER_FILE` (8 KiB) per file + 1 % of
    ``needed``: a 164 KB export of 48 photos needs about 1.6 MB free, a 10 GB one of 3,000
    photos about 10.1 GB + 125 MB.
    """
    return FREE_SPACE_BASE + FREE_SPACE_PER_FILE * files + needed // 100


def _human(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _check_free_space(plan: _Plan) -> None:
    needed, files = _bytes_to_write(plan)
    if needed == 0:
        return
    free = shutil.disk_usage(_existing_ancestor(plan.dest)).free
    margin = free_space_margin(needed, files)
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
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.unlink(path)


def _rename_no_clobber(source: Path, destination: Path) -> None:
    """Rename within one file system, failing with FileExistsError instead of overwriting.

    When ``source`` cannot be removed after the hard link (a read-only folder), the link is
    taken back and the error raised: the file stays at ``source`` only.
    """
    try:
        os.link(source, destination, follow_symlinks=False)
    except FileExistsError:
        raise
    except (OSError, NotImplementedError):  # no hard links here (FAT, exFAT...)
        if _lexists(destination):
            raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination)) from None
        os.rename(source, destination)
        return
    _unlink_or_take_back(source, destination)


def _unlink_or_take_back(source: Path, copy: Path) -> None:
    """Delete ``source`` now that ``copy`` holds it; if that fails, delete ``copy`` instead."""
    try:
        os.unlink(source)
    except OSError:
        _remove_quietly(copy)
        raise


def _move_file(source: Path, destination: Path) -> str | None:
    """Move without overwriting; a kill leaves the file complete at one place or both.

    Returns the sha256 of the bytes when they were copied (across file systems), else
    ``None``.
    """
    if _device(source) == os.stat(destination.parent).st_dev:
        _rename_no_clobber(source, destination)
        return None
    if _lexists(destination):
        raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination))
    digest = _copy_into_place(source, destination, follow_symlinks=False)
    _unlink_or_take_back(source, destination)
    return digest


def _copy_contents(source: Path, partial: Path, follow_symlinks: bool) -> str | None:
    """Copy ``source`` to the new file ``partial`` with its metadata (as ``shutil.copy2``),
    hashing the bytes on the way; returns their sha256 (``None`` for a symlink copied as
    a symlink, when ``follow_symlinks`` is false)."""
    if not follow_symlinks and os.path.islink(source):
        os.symlink(os.readlink(source), partial)
        return None
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(partial, "xb") as writer:
        while chunk := reader.read(_HASH_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    shutil.copystat(source, partial, follow_symlinks=follow_symlinks)
    return digest.hexdigest()


def _copy_into_place(source: Path, destination: Path, follow_symlinks: bool) -> str | None:
    """Copy to a partial file renamed into place once complete (no overwrite).

    Returns the sha256 of the bytes copied (``None``: a symlink copied as a symlink).
    """
    partial = _partial_path(destination)
    _remove_quietly(partial)
    try:
        digest = _copy_contents(source, partial, follow_symlinks)
        _rename_no_clobber(partial, destination)
    except Exception:  # a failed copy leaves nothing (a kill leaves the partial file)
        _remove_quietly(partial)
        raise
    return digest


def _copy_action(source: Path, destination: Path) -> _Identity | None:
    if _lexists(destination):
        raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination))
    digest = _copy_into_place(source, destination, follow_symlinks=True)
    return _identity_after(destination, digest)


def _hardlink_action(source: Path, destination: Path) -> _Identity | None:
    os.link(source, destination)
    return _identity_after(destination)


def _symlink_action(source: Path, destination: Path) -> _Identity | None:
    os.symlink(os.fspath(source), destination)
    return _identity_after(destination)


def _move_action(source: Path, destination: Path) -> _Identity | None:
    """Move; the identity: drive and inode on one drive, the bytes' hash across drives."""
    if _lexists(destination):  # left by a killed attempt: finish it if it is the same file
        if not _same_content(source, destination):
            raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination))
        linked = _same_inode(source, destination)  # else a complete copy from another drive
        _unlink_or_take_back(source, destination)
        return _identity_after(destination, read=not linked)
    return _identity_after(destination, _move_file(source, destination))


#: Mode -> ``action(source, destination)``, returning the identity of what it created.
_ACTIONS: dict[str, Callable[[Path, Path], _Identity | None]] = {
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
        elif entry.status == "missing":
            outcomes.append(("missing", _SKIP_REASONS["missing"]))
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
    in_export: list[Path] = []
    left_out: dict[str, list[tuple[str, str]]] = {"skipped": [], "failed": [], "missing": []}
    for entry, (status, note) in zip(plan.entries, outcomes, strict=True):
        if status in ("exported", "already_present", "planned"):
            folders[entry.folder] = folders.get(entry.folder, 0) + 1
            in_export.extend([entry.destination] if entry.destination is not None else [])
        elif status in left_out:
            left_out[status].append((os.fspath(entry.source), note.removeprefix("failed: ")))
    return ExportResult(
        manifest=_manifest_path(plan.dest, plan.stamp),
        mode=plan.mode,
        files=sum(folders.values()),
        folders=folders,
        skipped=left_out["skipped"],
        dry_run=dry_run,
        already_done=sum(e.status in ("done", "present") for e in plan.entries),
        cancelled=cancelled,
        journal=journal,
        entries=list(plan.entries),
        failed=left_out["failed"],
        missing=left_out["missing"],
        in_export=in_export,
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
    os.close(_claim_stamp(plan, _manifest_path, _journal_path))  # replaced atomically below
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
        self._record_earlier_work(journal)
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

    def _record_earlier_work(self, journal: _JournalWriter) -> None:
        """Journal the files found already exported: ``present`` ones (another export's),
        and ``done`` ones whose done line a kill cut off (with their identity, when the file
        has the size and mtime its start line recorded for the source)."""
        claims = self.plan.resume.claims() if self.plan.resume is not None else {}
        start, end = _STATES[self.plan.mode]
        for entry in self.plan.entries:
            if entry.status == "present":
                journal.file(entry, "present", durable=False)
            record = claims.get(os.fspath(entry.source))
            if entry.status != "done" or record is None or record.state != start:
                continue
            assert entry.destination is not None
            if record.identity is None or _identity_mismatch(
                entry.destination, record.identity, exact=False
            ):
                continue
            identity = _identity_after(entry.destination, read=self.plan.mode != "hardlink")
            journal.file(entry, end, False, identity)

    def _export_one(self, index: int, journal: _JournalWriter) -> None:
        entry = self.plan.entries[index]
        assert entry.destination is not None
        start, end = _STATES[self.plan.mode]
        try:
            self._ensure_directory(entry.destination.parent, journal)
            _remove_quietly(_partial_path(entry.destination))  # left by a killed attempt
            follow = self.plan.mode != "move"
            journal.file(entry, start, True, _source_stat(entry.source, follow))
            identity = _ACTIONS[self.plan.mode](entry.source, entry.destination)
        except FileExistsError as exc:
            self.outcomes[index] = ("failed", f"failed: {exc.filename or exc} is in the way")
            return
        except OSError as exc:
            self._fail(index, exc)
            return
        journal.file(entry, end, durable=False, identity=identity)
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
        if isinstance(exc, FileNotFoundError) and not _lexists(self.plan.entries[index].source):
            self.outcomes[index] = ("missing", _SKIP_REASONS["missing"])  # deleted meanwhile
            return
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
            folder.mkdir(exist_ok=True)  # made meanwhile by another export: fine
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
            f"{result.counts_text()}; manifest: {result.manifest}"
        )


# --------------------------------------------------------------------------- undo

#: ``lookup(source) -> (size, mtime_ns)`` that a library's catalog recorded for the photo
#: at ``source`` (``None``: no library knows it). Vouches for moves whose record has no
#: identity (see the module docstring).
CatalogLookup = Callable[[Path], "tuple[int, int] | None"]


@dataclass
class _UndoSource:
    path: Path
    mode: str
    dest: Path  # the export folder, resolved
    records: list[_FileRecord]
    folders: list[str] | None  # None: unknown (no journal), guessed from the destinations
    journal: Path | None
    claimed_dest: Path  # the folder the journal's header names (the manifest's own folder)


@dataclass
class _UndoGuard:
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


def undo_export(
    manifest: Path,
    roots: Sequence[Path],
    reporter: Reporter | None = None,
    catalog: CatalogLookup | None = None,
) -> UndoResult:
    """Undo an export (see the module docstring for what is undone and what is kept).

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
    source = _load_undo_source(Path(manifest))
    guard = _UndoGuard(source.dest, tuple(Path(os.path.realpath(r)) for r in roots), catalog)
    _check_undo_source(source, guard)
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
            folder = journal_path.parent.resolve()
            claimed = Path(str(state.header.get("dest") or ""))
            return _UndoSource(
                path, state.mode, folder, records, state.folders, journal_path, claimed
            )
    if manifest_path is None:
        raise UndoError(f"{path} is not a readable export manifest or journal")
    mode, records = _read_manifest(manifest_path)
    folder = manifest_path.parent.resolve()
    return _UndoSource(path, mode, folder, records, None, None, folder)


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


def _record_problem(dest: Path, record: _FileRecord) -> str | None:
    problem = _outside_problem(dest, record.destination)
    if problem is not None:
        return problem
    source = Path(record.source)
    if not record.source or not source.is_absolute() or ".." in source.parts:
        return f"the original {record.source!r} is not a plain absolute path"
    if _real(source) == _real(Path(record.destination)):
        return f"{record.destination} is named as both the original and the exported file"
    return None


def _check_undo_source(source: _UndoSource, guard: _UndoGuard) -> None:
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


def _keep(result: UndoResult, path: Path, reason: str, unverified: bool = False) -> None:
    result.kept.append((os.fspath(path), reason))
    result.unverified += unverified


def _error_reason(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return (
        f"undo could not finish it: {exc.strerror or exc}{where}; it was left where it is, "
        "fix that and run the undo again"
    )


def _undo_record(record: _FileRecord, guard: _UndoGuard, result: UndoResult) -> None:
    source, destination = Path(record.source), Path(record.destination)
    _remove_quietly(_partial_path(destination))
    if record.mode == "move":
        if guard.library_root_of(source) is not None:  # left by a killed undo
            _remove_quietly(_partial_path(source))
        _undo_move(record, guard, result)
    elif record.mode in _STATES:
        _undo_link_or_copy(record, guard, result)


def _undo_move(record: _FileRecord, guard: _UndoGuard, result: UndoResult) -> None:
    source, destination = Path(record.source), Path(record.destination)
    at_source, at_destination = _lexists(source), _lexists(destination)
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
        if guard.library_root_of(destination) is None and _same_content(source, destination):
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
        _move_file(destination, source)
    except FileExistsError:
        _keep_appeared(source, destination, result)
        return
    result.restored += 1


def _move_refusal(record: _FileRecord, guard: _UndoGuard) -> str | None:
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
        return _identity_mismatch(destination, record.identity, record.kind == "verified")
    recorded = guard.catalog(Path(record.source)) if guard.catalog is not None else None
    if recorded is None:
        return (
            "moved by an older version that recorded no checksums, and no library's catalog "
            f"knows the photo {record.source}; move it back yourself if it is that photo"
        )
    size, mtime_ns = recorded
    mismatch = _identity_mismatch(destination, _Identity(size, mtime_ns), exact=False)
    if mismatch is None:
        return None
    return (
        f"it differs from the photo the library recorded at {record.source} (size or date); "
        "move it back yourself if it is that photo"
    )


def _keep_appeared(source: Path, destination: Path, result: UndoResult) -> None:
    reason = f"another file is now at the original path; the exported photo stays at {destination}"
    _keep(result, source, reason)


def _undo_link_or_copy(record: _FileRecord, guard: _UndoGuard, result: UndoResult) -> None:
    destination = Path(record.destination)
    if not _lexists(destination):
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


def _removal_refusal(record: _FileRecord, guard: _UndoGuard) -> str | None:
    """Why a copy or link with an identity may not be deleted (``None``: it may)."""
    source, destination = Path(record.source), Path(record.destination)
    identity = record.identity
    assert identity is not None
    root = guard.library_root_of(destination)
    if root is not None:
        return f"it lies inside the photo folder {root}; delete it yourself if you want it gone"
    if record.mode != "symlink":
        if not _lexists(source):
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
    mismatch = _identity_mismatch(destination, identity, exact=verified)
    if mismatch is None and record.mode == "copy" and not _copy_matches(record):
        return f"it no longer matches the original {source}"
    return mismatch


def _matches_original(mode: str, source: Path, destination: Path) -> bool:
    """Whether ``destination`` still is ``source`` exported in ``mode``: a symlink pointing
    at it, else a plain file that is (a hard link) or is not (a copy) the file ``source``
    leads to (symlinks followed, as the export did)."""
    if mode == "symlink":
        return _links_to(destination, source)
    try:
        original, created = os.stat(source), os.lstat(destination)
    except OSError:
        return False
    same = (original.st_dev, original.st_ino) == (created.st_dev, created.st_ino)
    return stat.S_ISREG(created.st_mode) and same == (mode == "hardlink")


def _copy_matches(record: _FileRecord) -> bool:
    """Whether a copy's original still has the bytes the export copied."""
    source, destination = Path(record.source), Path(record.destination)
    if record.identity is None or record.identity.sha256 is None:
        return _same_content(source, destination)
    try:
        return _sha256_of(source) == record.identity.sha256
    except OSError:
        return False


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
