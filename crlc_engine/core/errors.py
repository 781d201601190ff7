"""Typed errors with messages a user can act on.

Every error the engine raises on purpose derives from :class:`CRLCError`; the CLI prints
``str(error)`` as one line and the GUI shows it in a dialog. Anything else is a bug.
"""

from __future__ import annotations

import errno
import os


class CRLCError(Exception):
    """Base class of the engine's user-facing errors."""

    #: Short machine-readable name used in ``--json`` error objects.
    kind: str = "error"


class InvalidSettingError(CRLCError, ValueError):
    """A setting is out of range or unknown (bad flag value, unknown preset or backbone)."""

    kind = "invalid_setting"


class NoImagesFoundError(CRLCError):
    """A folder holds no readable image."""

    kind = "no_images"


class FolderNotFoundError(CRLCError):
    """A folder given by the user does not exist or is not a directory."""

    kind = "folder_not_found"


class DeviceUnavailableError(CRLCError):
    """The requested compute device (e.g. CUDA) is not available on this machine."""

    kind = "device_unavailable"


class RunNotFoundError(CRLCError):
    """No run matches the request (unknown id, or no completed run yet)."""

    kind = "run_not_found"


class CheckpointError(CRLCError):
    """A checkpoint is missing, unreadable or does not match the run's settings."""

    kind = "checkpoint"


class OutOfDeviceMemoryError(CRLCError):
    """Training ran out of device memory even after halving its batch down to the smallest
    batch that still has negatives."""

    kind = "out_of_memory"


class TrainingDivergedError(CRLCError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    kind = "training_diverged"


class NoGroundTruthError(CRLCError):
    """Evaluation needs images inside class sub-folders; none were found."""

    kind = "no_ground_truth"


class WorkspaceLockedError(CRLCError):
    """Another process (the CLI or the app) is writing this workspace."""

    kind = "workspace_locked"


class ImageNotInLibraryError(CRLCError):
    """An image path given by the user is not a usable image of the library."""

    kind = "image_not_found"


class LibraryNotFoundError(CRLCError):
    """No library (workspace) exists for the given folders."""

    kind = "library_not_found"


class DiskFullError(CRLCError):
    """The disk (or quota) is full: a write of the workspace or an export failed."""

    kind = "disk_full"


class NoPermissionError(CRLCError):
    """A file or folder may not be read or written (permissions, a read-only drive)."""

    kind = "permission_denied"


class WorkspaceDamagedError(CRLCError):
    """A part of a library's workspace is damaged or missing; the message names the way out."""

    kind = "workspace_damaged"


class NewerVersionError(CRLCError):
    """A workspace file was written by a newer version of the program."""

    kind = "newer_version"


class RunDamagedError(RunNotFoundError):
    """A run's files are unreadable or belong to another catalog; it is skipped elsewhere."""

    kind = "run_damaged"


class TooManyFilesError(CRLCError):
    """A scan found more files than its limit (``--max-files``)."""

    kind = "too_many_files"


_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_NO_ACCESS_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_DAMAGED_SQLITE = ("file is not a database", "malformed", "database disk image")


def _named(error: OSError) -> str:
    name = error.filename
    return f" ({os.fsdecode(name)})" if name else ""


def as_user_error(error: BaseException) -> CRLCError | None:
    """A user-level error for a known system failure, else ``None`` (a bug).

    Recognised: a full disk or quota (``ENOSPC``, ``EDQUOT``; SQLite's "database or disk is
    full"), a file or folder that may not be written or read (``EACCES``, ``EPERM``,
    ``EROFS``; SQLite's "readonly database"), and a damaged catalog (SQLite's "file is not a
    database", "malformed"). The messages say what to do.
    """
    if isinstance(error, CRLCError):
        return error
    if isinstance(error, OSError):
        if error.errno in _NO_SPACE_ERRNOS:
            return DiskFullError(
                f"the disk is full{_named(error)}; free some space and try again (the work "
                "saved so far is kept)"
            )
        if error.errno in _NO_ACCESS_ERRNOS or isinstance(error, PermissionError):
            return NoPermissionError(
                f"no permission to read or write{_named(error)}; change the permissions of "
                "that folder, or choose another one (--workspace for the library's workspace)"
            )
        return None
    if type(error).__module__ != "sqlite3":
        return None
    text = str(error).lower()
    if "disk is full" in text:
        return DiskFullError(
            "the disk holding the library's catalog is full; free some space and try again"
        )
    if "readonly database" in text or "read-only" in text:
        return NoPermissionError(
            "the library's catalog may not be written (a read-only folder or drive); make "
            "the workspace writable, or use --workspace to choose another one"
        )
    if any(part in text for part in _DAMAGED_SQLITE):
        return WorkspaceDamagedError(
            f"the library's catalog is damaged ({error}); run `crlc forget FOLDER...` and "
            "scan the folders again (your photos are not touched)"
        )
    if "disk i/o error" in text or "unable to open database" in text:
        return DiskFullError(
            f"the library's catalog could not be written ({error}): the disk may be full or "
            "read-only; free some space or check the drive, then try again"
        )
    return None


def plain_message(error: BaseException) -> str:
    """The user-level message of ``error`` (:func:`as_user_error`), else its type and text."""
    known = as_user_error(error)
    return str(known) if known is not None else f"{type(error).__name__}: {error}"
