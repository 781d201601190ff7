"""Plain words for errors: a title, the message and what to do about it (no Qt).

Engine errors (:class:`~crlc_engine.core.errors.CRLCError`) already carry a message fit for a
dialog and a ``kind``. Some failures reach the app as ordinary exceptions (out of memory, a
full disk, a folder that may not be read or written); :func:`classify_exception` gives
those a kind and a message of their own, so that they too appear as plain messages.
:func:`explain` then adds a title and the advice the dialog shows under "What to do".
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import socket
from dataclasses import dataclass

from crlc_engine.api import as_user_error

__all__ = [
    "DISK_FULL",
    "INTERNAL",
    "OUT_OF_MEMORY",
    "PERMISSION_DENIED",
    "ErrorHelp",
    "LockHolder",
    "classify_exception",
    "explain",
    "parse_lock_holder",
]

#: Kinds given by :func:`classify_exception` (the engine's kinds are in crlc_engine.core.errors).
OUT_OF_MEMORY = "out_of_memory"
DISK_FULL = "disk_full"
PERMISSION_DENIED = "permission_denied"
INTERNAL = "internal"

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS}


@dataclass(frozen=True)
class ErrorHelp:
    """What the error dialog shows.

    Attributes:
        title: A short headline ("The library is in use").
        message: What happened (the engine's message, first letter capitalised).
        what_to_do: Advice in plain words; empty when there is nothing to add.
    """

    title: str
    message: str
    what_to_do: str


@dataclass(frozen=True)
class LockHolder:
    """The holder of a workspace lock, as named in ``WorkspaceLockedError``'s message."""

    pid: int
    host: str
    purpose: str
    since: str

    @property
    def on_this_computer(self) -> bool:
        """Whether the holder runs on this machine."""
        return self.host == socket.gethostname()

    @property
    def is_this_process(self) -> bool:
        """Whether this very program holds the lock (another of its jobs)."""
        return self.on_this_computer and self.pid == os.getpid()


_HOLDER = re.compile(
    r"pid (?P<pid>\d+) on (?P<host>[^:]+): (?P<purpose>.*), since (?P<since>[^\s);]+)"
)


def parse_lock_holder(message: str) -> LockHolder | None:
    """The holder named in a workspace-locked message, or ``None`` when it names none."""
    found = _HOLDER.search(message)
    if found is None:
        return None
    return LockHolder(
        int(found["pid"]), found["host"].strip(), found["purpose"].strip(), found["since"]
    )


_OOM_TEXTS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(t in text for t in _OOM_TEXTS)


def _where(error: OSError) -> str:
    name = error.filename
    return f" ({os.fsdecode(name)})" if name else ""


def classify_exception(error: BaseException) -> tuple[str, str] | None:
    """A kind and a plain message for a known non-engine failure, else ``None``.

    Recognised: running out of memory (host or GPU, e.g. ``torch.cuda.OutOfMemoryError``),
    a full disk or quota (``ENOSPC``/``EDQUOT``, also SQLite's "database or disk is
    full"), and a file or folder that may not be read or written (``EACCES``, ``EPERM``,
    ``EROFS``).
    """
    if _is_out_of_memory(error):
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        gpu = any(name in first for name in ("CUDA", "MPS", "GPU", "HIP"))
        detail = f" ({first[:200]})" if first else ""
        return OUT_OF_MEMORY, f"the {'GPU' if gpu else 'computer'} ran out of memory{detail}"
    if isinstance(error, OSError):
        if error.errno in _NO_SPACE:
            return DISK_FULL, f"the disk is full{_where(error)}"
        if error.errno in _NO_ACCESS or isinstance(error, PermissionError):
            return PERMISSION_DENIED, f"no permission to read or write{_where(error)}"
    known = as_user_error(error) if type(error).__module__ == "sqlite3" else None
    if known is not None:  # a full disk, a read-only or a damaged catalog
        return known.kind, str(known)
    return None


def _local_time(stamp: str) -> str:
    """An ISO time stamp as local "26 Nov 14:02" (unchanged when it is not one)."""
    try:
        moment = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return f"{moment.day} {moment:%b %H:%M}"


def _lock_advice(message: str) -> str:
    holder = parse_lock_holder(message)
    free = (
        "If that program has already ended, simply try again: the operating system "
        "releases the lock as soon as its holder ends, even after a crash, so there is "
        "no lock file to delete by hand."
    )
    if holder is None:
        return (
            "Another CRLC Organizer window or a crlc command is working on this library. "
            "Close that window or wait for the command to finish, then try again. " + free
        )
    if holder.is_this_process:
        return (
            f"This window is still busy with another job on this library ({holder.purpose}). "
            "Wait for it to finish (or cancel it in the job panel), then try again."
        )
    where = "on this computer" if holder.on_this_computer else f"on the computer {holder.host}"
    return (
        f"Process {holder.pid} {where} is {holder.purpose} (since {_local_time(holder.since)}). "
        "If it is "
        "another CRLC Organizer window, close it or wait until its job ends; if it is a crlc "
        "command in a terminal, wait for it to finish or stop it with Ctrl+C. Then try "
        "again. " + free
    )


_TITLES: dict[str, str] = {
    "no_images": "No usable images",
    "folder_not_found": "Folder not found",
    "workspace_locked": "The library is in use",
    "device_unavailable": "Device not available",
    "invalid_setting": "A setting needs a change",
    "run_not_found": "No groups yet",
    "checkpoint": "The run cannot continue",
    "training_diverged": "Training went wrong",
    "library_not_found": "Library not found",
    "image_not_found": "Image not in the library",
    "export": "Export not possible",
    "export_destination": "Choose another export folder",
    "not_enough_space": "Not enough free space",
    "cross_device_link": "Hard links are not possible here",
    "export_undo": "The export cannot be undone",
    "workspace_damaged": "The library's workspace is damaged",
    "run_damaged": "This grouping is damaged",
    "newer_version": "Made by a newer version",
    "too_many_files": "Too many files",
    "weights": "Pretrained weights not available",
    "weights_unavailable": "The download failed",
    "weights_checksum": "The download was damaged",
    "weights_invalid": "Unreadable weight file",
    OUT_OF_MEMORY: "Out of memory",
    DISK_FULL: "The disk is full",
    PERMISSION_DENIED: "No permission",
    INTERNAL: "Something went wrong",
}

_ADVICE: dict[str, str] = {
    "no_images": (
        "Open a folder that contains photos: JPEG, PNG, WebP, BMP, TIFF or GIF (HEIC needs "
        "the optional pillow-heif). Photos in sub-folders are found too; hidden files are "
        'skipped. Files that could not be read are listed under "files skipped" in the '
        "status bar."
    ),
    "folder_not_found": (
        "The folder may have been moved, renamed or be on a drive that is not connected. "
        'Connect the drive, or use "Locate folder…" to show the program where it is now.'
    ),
    "device_unavailable": (
        'Choose another device in Images > Group images ("auto" picks what this computer '
        "has), or check the GPU driver."
    ),
    "invalid_setting": "Change the setting named above and try again.",
    "run_not_found": "Group the images first: Images > Group images (Ctrl+G).",
    "checkpoint": "Start a new grouping with Images > Group images (Ctrl+G).",
    "training_diverged": (
        "Start a new grouping with a smaller learning rate (Group images > Advanced), or "
        "another preset. The last good checkpoint is kept."
    ),
    "library_not_found": "Open the folder again with File > Open folder (Ctrl+O).",
    "image_not_found": (
        "Choose an image inside the library's folders; a new one is found after scanning "
        "the folders again (Images > Scan the folders again, F5)."
    ),
    "export": "Check the export folder named above, then run the export again.",
    "export_destination": "Choose another export folder in File > Export (Ctrl+E).",
    "not_enough_space": (
        'Free some space on that drive, or export to another drive, or choose "Hard link" '
        'or "Symbolic link" which use almost no space. Running the same export again '
        "finishes it without duplicates."
    ),
    "cross_device_link": (
        "Choose an export folder on the same drive as the photos, or choose Copy or Symbolic link."
    ),
    "export_undo": (
        "Choose the crlc-export-….csv manifest that the export wrote into its export folder."
    ),
    "workspace_damaged": (
        "Your photos are safe: nothing of them is kept in the workspace. Do what the message "
        "says (usually: scan the folders again; for a damaged or lost catalog, remove the "
        "library with `crlc forget FOLDER` and open the folder again)."
    ),
    "run_damaged": (
        "Choose another grouping in the Runs menu, or group the images again (Ctrl+G). The "
        "damaged run can be deleted with `crlc runs FOLDER --delete RUN`."
    ),
    "newer_version": "Update CRLC Organizer to the version that made this library.",
    "too_many_files": (
        "Check that the folder is the photo folder you meant (a link to a big folder is "
        "followed too). If it is, raise the limit with `crlc scan FOLDER --max-files N`."
    ),
    "weights": (
        "Choose a preset without pretrained weights, or put the weight file where the "
        "message above says and try again."
    ),
    "weights_unavailable": (
        "Check the internet connection and try again, or download the file on another "
        "computer and put it where the message above says. Presets without pretrained "
        "weights work offline."
    ),
    "weights_checksum": "The damaged file was deleted: try again to download it anew.",
    "weights_invalid": "Delete the file named above and try again to download it anew.",
    OUT_OF_MEMORY: (
        "Start the grouping again with a smaller batch size or image size (Group images > "
        "Advanced), or the cpu preset, and close other programs that use much memory or "
        "the GPU. Nothing already saved is lost."
    ),
    DISK_FULL: (
        "Free some space on that drive and try again; the work done so far is kept. The "
        "library's cache (pixels, thumbnails, runs) lives in the user data folder, or in "
        "the folder named by the CRLC_WORKSPACE environment variable."
    ),
    PERMISSION_DENIED: (
        "Choose a folder you may write to (for an export, one in your home folder), or "
        "change the folder's permissions, then try again."
    ),
    INTERNAL: (
        'This is a bug in CRLC Organizer. Use "Copy details" and include the text in a '
        "bug report. Your photos and saved work are not affected."
    ),
}


def explain(kind: str, message: str) -> ErrorHelp:
    """The title, message and advice for an error of ``kind`` with ``message``."""
    text = message.strip()
    text = text[:1].upper() + text[1:]
    if text and text[-1] not in ".!?":
        text += "."
    advice = _lock_advice(message) if kind == "workspace_locked" else _ADVICE.get(kind, "")
    return ErrorHelp(_TITLES.get(kind, "Something went wrong"), text, advice)
