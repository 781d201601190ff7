"""Checks before an export writes anything: free space on DEST's drive, and hard links
only within one drive.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from crlc_engine.results.export.file_checks import device_of
from crlc_engine.results.export.model import CrossDeviceLinkError, NotEnoughSpaceError
from crlc_engine.results.export.plan import ExportPlan

#: Free space kept on top of the bytes to write: this many bytes, plus
#: :data:`FREE_SPACE_PER_FILE` per file written, plus 1 % of the bytes
#: (see :func:`free_space_margin`).
FREE_SPACE_BASE = 1024 * 1024
#: Margin per file written: its journal lines and manifest row, and the rounding of its size
#: up to the file system's blocks.
FREE_SPACE_PER_FILE = 8 * 1024


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _bytes_to_write(plan: ExportPlan) -> tuple[int, int]:
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
        elif device_of(entry.source) != dest_device:
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


def check_free_space(plan: ExportPlan) -> None:
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


def cross_device_message(source: Path, dest: Path) -> str:
    return (
        f"hard links cannot cross drives: {source} and the export folder {dest} are on "
        "different file systems; use the copy (or symlink) mode instead"
    )


def check_link_devices(plan: ExportPlan) -> None:
    if plan.mode != "hardlink":
        return
    dest_device = os.stat(_existing_ancestor(plan.dest)).st_dev
    for entry in plan.entries:
        if entry.status == "planned" and device_of(entry.source, follow=True) != dest_device:
            raise CrossDeviceLinkError(cross_device_message(entry.source, plan.dest))
