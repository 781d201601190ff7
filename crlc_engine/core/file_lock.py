"""Advisory, non-blocking locks on an open file: the workspace lock and the weights cache's.

An exclusive lock on the whole file (``flock``; on Windows, ``msvcrt.locking`` of its first
byte). :func:`try_lock` raises :class:`OSError` at once when another process holds it.
"""

from __future__ import annotations

import os
import sys

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def try_lock(fd: int) -> None:
        """Lock ``fd`` or raise OSError when another process holds the lock."""
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def unlock(fd: int) -> None:
        """Release the lock of ``fd``."""
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def try_lock(fd: int) -> None:
        """Lock ``fd`` or raise OSError when another process holds the lock."""
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def unlock(fd: int) -> None:
        """Release the lock of ``fd``."""
        fcntl.flock(fd, fcntl.LOCK_UN)
