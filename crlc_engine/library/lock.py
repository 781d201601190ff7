"""An exclusive, advisory lock on a workspace, naming its holder when taken.

Uses ``fcntl.flock`` (POSIX) or ``msvcrt.locking`` (Windows) on ``<workspace>/lock``; the OS
releases it when the process dies, so a crash never leaves a stale lock. The file holds a
line describing the holder (pid, host, what it does, since when) for the error message.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

from crlc_engine.errors import WorkspaceLockedError


class WorkspaceLock:
    """Context manager holding ``<workspace>/lock`` exclusively."""

    def __init__(self, workspace: Path, purpose: str) -> None:
        self.path = workspace / "lock"
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`WorkspaceLockedError` naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            holder = Path(self.path).read_text(encoding="utf-8", errors="replace").strip()
            os.close(fd)
            raise WorkspaceLockedError(
                f"the workspace {self.path.parent} is in use by another process "
                f"({holder or 'unknown holder'}); wait for it to finish or close it"
            ) from None
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        info = f"pid {os.getpid()} on {socket.gethostname()}: {self.purpose}, since {stamp}\n"
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, info.encode("utf-8"))
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            _unlock(fd)
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


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
