"""What is at a path: the checks an export and its undo make on files (same inode, same
content, a symlink's target, a drive) and the identity of what an export created.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import stat
from pathlib import Path

from crlc_engine.results.export.journal import FileIdentity

#: mtime difference still taken as "the same" copy (FAT stores mtimes in 2 s steps).
MTIME_TOLERANCE_S = 2.0
#: Why undo keeps a file whose identity no longer matches its record.
CHANGED_REASON = (
    "it changed after the export (its size, date or content differ from what the export "
    "wrote), so undo leaves it alone"
)
HASH_CHUNK = 1024 * 1024


def lexists(path: Path) -> bool:
    return os.path.lexists(path)


def same_inode(a: Path, b: Path) -> bool:
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


def links_to(link: Path, source: Path) -> bool:
    try:
        return link.is_symlink() and os.readlink(link) == os.fspath(source)
    except OSError:
        return False


def _hardlinked(source: Path, link: Path) -> bool:
    try:
        return not link.is_symlink() and os.path.samefile(source, link)
    except OSError:
        return False


def same_content(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file, equal symlinks or byte-identical files."""
    if same_inode(a, b):
        return True
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    try:
        return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def device_of(path: Path, follow: bool = False) -> int:
    """Device id of ``path`` (-1 when it cannot be read: the write will report it)."""
    try:
        return (os.stat(path) if follow else os.lstat(path)).st_dev
    except OSError:
        return -1


def source_stat(source: Path, follow: bool) -> FileIdentity | None:
    """Size and mtime of a source, for a journal's start line (``None``: unreadable)."""
    try:
        info = os.stat(source) if follow else os.lstat(source)
    except OSError:
        return None
    return FileIdentity(info.st_size, info.st_mtime_ns)


def identity_after(
    path: Path, digest: str | None = None, read: bool = False
) -> FileIdentity | None:
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
            return FileIdentity(size, mtime_ns, target=os.readlink(path))
        if digest is not None or read:
            return FileIdentity(size, mtime_ns, sha256=digest or sha256_of(path))
        return FileIdentity(size, mtime_ns, device=info.st_dev, inode=info.st_ino)
    except OSError:
        return None


def identity_mismatch(path: Path, identity: FileIdentity, exact: bool) -> str | None:
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
            same = stat.S_ISREG(info.st_mode) and sha256_of(path) == identity.sha256
        elif same and identity.inode is not None:
            same = stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) == (
                identity.device,
                identity.inode,
            )
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc}), so undo cannot tell it is unchanged"
    return None if same else CHANGED_REASON


def matches_foreign(mode: str, source: Path, destination: Path) -> bool:
    """Whether an existing ``destination`` already is ``source`` exported in ``mode``."""
    if mode == "copy":
        return _same_size_mtime(source, destination)
    if mode == "hardlink":
        return _hardlinked(source, destination)
    if mode == "symlink":
        return links_to(destination, source)
    return False


def owned_state(mode: str, source: Path, destination: Path) -> str | None:
    """State of an existing destination recorded by this export's journal.

    Returns ``done``, ``planned`` (an interrupted move to finish) or ``None`` (not ours).
    """
    if mode == "move":
        if not lexists(source):
            return "done"
        return "planned" if same_content(source, destination) else None
    if mode == "copy" and not lexists(source):
        return "done"  # the original went away; the copy is ours
    return "done" if matches_foreign(mode, source, destination) else None
