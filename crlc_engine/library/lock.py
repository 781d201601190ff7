"""An exclusive, advisory lock on a workspace, naming its holder when taken.

Uses ``fcntl.flock`` (POSIX) or ``msvcrt.locking`` (Windows) on ``<workspace>/lock``; the OS
releases it when the process dies, so a crash never leaves a stale lock. The file holds a
line describing the holder (pid, host, what it does, since when) for the error message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from pathlib import Path
from types import TracebackType

from crlc_engine.core.errors import NoPermissionError, WorkspaceDamagedError, WorkspaceLockedError
from crlc_engine.core.file_lock import try_lock, unlock


class WorkspaceLock:
    """Context manager holding ``<workspace>/<name>`` (default ``lock``) exclusively.

    Exports take their own ``export.lock``, so that two exports of one library never run
    at once while training (which holds ``lock``) may go on beside an export.
    """

    def __init__(self, workspace: Path, purpose: str, name: str = "lock") -> None:
        self.path = workspace / name
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`WorkspaceLockedError` naming the holder.

        Raises:
            WorkspaceLockedError: another process holds it.
            WorkspaceDamagedError: the lock's path is a folder (or another non-file).
        """
        fd = self._open()
        try:
            try_lock(fd)
        except OSError:
            holder = Path(self.path).read_text(encoding="utf-8", errors="replace").strip()
            os.close(fd)
            raise WorkspaceLockedError(
                f"the workspace {self.path.parent} is in use by another process "
                f"({holder or 'unknown holder'}); wait for it to finish or close it"
            ) from None
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        info = f"pid {os.getpid()} on {socket.gethostname()}: {self.purpose}, since {stamp}\n"
        with contextlib.suppress(OSError):  # a full disk or a read-only file: no description
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, info.encode("utf-8"))
        self._fd = fd

    def _open(self) -> int:
        """The lock file, created when missing; read-only when it may not be written (a
        lock on a read-only descriptor still excludes the others)."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError:
            raise WorkspaceDamagedError(
                f"{self.path} should be the workspace's lock file but is a folder; remove it "
                f"(rmdir '{self.path}') and try again"
            ) from None
        except OSError as exc:
            main = self.path.with_name("lock")
            if not self.path.is_file() and main.is_file():
                # a read-only workspace made before this lock existed: the workspace lock
                # itself, read-only (nothing can train there meanwhile anyway)
                self.path = main
            elif not self.path.is_file():
                raise NoPermissionError(
                    f"cannot create the lock file {self.path} ({exc.strerror or exc}); make "
                    "the workspace writable or choose another one with --workspace"
                ) from None
        return os.open(self.path, os.O_RDONLY)

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
