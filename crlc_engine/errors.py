"""Typed errors with messages a user can act on.

Every error the engine raises on purpose derives from :class:`CRLCError`; the CLI prints
``str(error)`` as one line and the GUI shows it in a dialog. Anything else is a bug.
"""

from __future__ import annotations


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
