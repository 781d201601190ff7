"""The crash-safe file operations of an export: copy through a partial file, move without
overwriting, link; each returns the identity of what it created.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from crlc_engine.results.export.file_checks import (
    HASH_CHUNK,
    device_of,
    identity_after,
    lexists,
    same_content,
    same_inode,
)
from crlc_engine.results.export.journal import FileIdentity


def partial_path(path: Path) -> Path:
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]
    return path.with_name(f".crlc-partial-{digest}")


def remove_quietly(path: Path) -> None:
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
        if lexists(destination):
            raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination)) from None
        os.rename(source, destination)
        return
    _unlink_or_take_back(source, destination)


def _unlink_or_take_back(source: Path, copy: Path) -> None:
    """Delete ``source`` now that ``copy`` holds it; if that fails, delete ``copy`` instead."""
    try:
        os.unlink(source)
    except OSError:
        remove_quietly(copy)
        raise


def move_file(source: Path, destination: Path) -> str | None:
    """Move without overwriting; a kill leaves the file complete at one place or both.

    Returns the sha256 of the bytes when they were copied (across file systems), else
    ``None``.
    """
    if device_of(source) == os.stat(destination.parent).st_dev:
        _rename_no_clobber(source, destination)
        return None
    if lexists(destination):
        raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination))
    digest = _copy_into_place(source, destination, follow_symlinks=False)
    _unlink_or_take_back(source, destination)
    return digest


def copy_contents(source: Path, partial: Path, follow_symlinks: bool) -> str | None:
    """Copy ``source`` to the new file ``partial`` with its metadata (as ``shutil.copy2``),
    hashing the bytes on the way; returns their sha256 (``None`` for a symlink copied as
    a symlink, when ``follow_symlinks`` is false)."""
    if not follow_symlinks and os.path.islink(source):
        os.symlink(os.readlink(source), partial)
        return None
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(partial, "xb") as writer:
        while chunk := reader.read(HASH_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    shutil.copystat(source, partial, follow_symlinks=follow_symlinks)
    return digest.hexdigest()


def _copy_into_place(source: Path, destination: Path, follow_symlinks: bool) -> str | None:
    """Copy to a partial file renamed into place once complete (no overwrite).

    Returns the sha256 of the bytes copied (``None``: a symlink copied as a symlink).
    """
    partial = partial_path(destination)
    remove_quietly(partial)
    try:
        digest = copy_contents(source, partial, follow_symlinks)
        _rename_no_clobber(partial, destination)
    except Exception:  # a failed copy leaves nothing (a kill leaves the partial file)
        remove_quietly(partial)
        raise
    return digest


def _copy_action(source: Path, destination: Path) -> FileIdentity | None:
    if lexists(destination):
        raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination))
    digest = _copy_into_place(source, destination, follow_symlinks=True)
    return identity_after(destination, digest)


def _hardlink_action(source: Path, destination: Path) -> FileIdentity | None:
    os.link(source, destination)
    return identity_after(destination)


def _symlink_action(source: Path, destination: Path) -> FileIdentity | None:
    os.symlink(os.fspath(source), destination)
    return identity_after(destination)


def _move_action(source: Path, destination: Path) -> FileIdentity | None:
    """Move; the identity: drive and inode on one drive, the bytes' hash across drives."""
    if lexists(destination):  # left by a killed attempt: finish it if it is the same file
        if not same_content(source, destination):
            raise FileExistsError(errno.EEXIST, "file exists", os.fspath(destination))
        linked = same_inode(source, destination)  # else a complete copy from another drive
        _unlink_or_take_back(source, destination)
        return identity_after(destination, read=not linked)
    return identity_after(destination, move_file(source, destination))


#: Mode -> ``action(source, destination)``, returning the identity of what it created.
ACTIONS: dict[str, Callable[[Path, Path], FileIdentity | None]] = {
    "copy": _copy_action,
    "hardlink": _hardlink_action,
    "symlink": _symlink_action,
    "move": _move_action,
}
