"""Small JSON files of the app's own state (recent libraries, the view shown last).

Written atomically (a temporary file, then ``os.replace``) so a reader never sees half a
file, but without ``fsync``: these writes happen on the GUI thread, where an fsync can take
tens of milliseconds, and losing the very last change to a power cut is harmless here.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["read_state", "write_state"]


def write_state(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON (parent folders are created).

    Raises:
        OSError: the folder cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
