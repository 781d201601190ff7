"""The engine's long jobs as :class:`~app.workers.JobWorker` objects, for the window to run.

Each factory (:func:`scan_job`, :func:`train_job`, :func:`refine_job`, ...) takes the job's
arguments and returns a worker that calls the engine through :mod:`crlc_engine.api` when it
runs. The facade loads an engine module on first use, so the training stack (torch, FAISS)
is imported by the first job that needs it, on its worker thread, not when the window starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.workers import JobWorker
from crlc_engine import api as engine
from crlc_engine.api import Folders

if TYPE_CHECKING:
    from crlc_engine.api import (
        ExportItem,
        ImageLibrary,
        JobControl,
        Reporter,
        ScanOptions,
        TrainConfig,
    )

__all__ = [
    "Folders",
    "assign_job",
    "delete_run_job",
    "export_job",
    "refine_job",
    "relink_job",
    "resume_job",
    "scan_job",
    "train_job",
    "undo_export_job",
]


def scan_job(
    folders: Folders,
    side: int,
    workspace: str | Path | None,
    options: ScanOptions | None = None,
    workers: int | None = None,
) -> JobWorker:
    """Scan the library of ``folders`` at size ``side``; the result is a ``ScanSummary``."""

    def job(reporter: Reporter, control: JobControl) -> Any:
        return engine.scan_folders(folders, side, workspace, options, reporter, control, workers)

    return JobWorker(job, "scan")


def train_job(
    folders: Folders,
    config: TrainConfig,
    workspace: str | Path | None,
    resume: str | None = None,
    workers: int | None = None,
    names_from: str | None = None,
) -> JobWorker:
    """Scan and train (or resume run ``resume``); the result is a ``TrainOutcome``. The new
    run's clusters take their names from the groups of ``names_from`` (the run shown)."""

    def job(reporter: Reporter, control: JobControl) -> Any:
        return engine.train_folder(
            folders,
            config,
            workspace,
            reporter,
            control,
            resume=resume,
            workers=workers,
            names_from=names_from,
        )

    return JobWorker(job, "train")


def refine_job(
    folders: Folders,
    run_id: str | None,
    epochs: int | None,
    minutes: float | None,
    workspace: str | Path | None,
    device: str | None = None,
) -> JobWorker:
    """Refine run ``run_id`` with the user's labels; the result is a ``TrainOutcome``.
    ``device``: ``auto``, ``cpu``, ``cuda`` or ``mps`` (``None``: the run's)."""
    overrides = {"device": device} if device is not None else None

    def job(reporter: Reporter, control: JobControl) -> Any:
        return engine.refine_folder(
            folders, run_id, epochs, minutes, workspace, reporter, control, overrides
        )

    return JobWorker(job, "refine")


def assign_job(folders: Folders, run_id: str | None, workspace: str | Path | None) -> JobWorker:
    """Recompute run ``run_id``'s assignments; the result is its ``RunDir``.

    The engine job takes no cancel token: cancelling it has no effect.
    """

    def job(reporter: Reporter, control: JobControl) -> Any:
        return engine.assign_run(folders, run_id, workspace, reporter)

    return JobWorker(job, "assign")


def export_job(
    items: Sequence[ExportItem],
    dest: str | Path,
    mode: str,
    roots: Sequence[str | Path],
    min_confidence: float,
    keep_subfolders: bool,
    dry_run: bool,
    library: ImageLibrary | None = None,
) -> JobWorker:
    """Export photos into one folder per cluster; the result is an ``ExportResult``.

    A cancelled export emits ``cancelled()``; its partial ``ExportResult`` (with the
    manifest to resume or undo) is :attr:`JobWorker.result`. With ``library``, the export
    holds the library's ``export.lock`` (not for a dry run), so that a second export of the
    library fails with a ``WorkspaceLockedError`` naming this one; only the lock is used on
    the worker thread, never the library's catalog.
    """
    item_list = list(items)
    root_list = [Path(r) for r in roots]

    def job(reporter: Reporter, control: JobControl) -> Any:
        lock: AbstractContextManager[None] = nullcontext()
        if library is not None and not dry_run:
            lock = library.locked(f"exporting to {dest}", name="export.lock")
        with lock:
            return engine.export_images(
                item_list,
                Path(dest),
                mode,
                root_list,
                min_confidence,
                keep_subfolders,
                dry_run,
                reporter,
                control,
            )

    return JobWorker(job, "export")


def undo_export_job(manifest: str | Path, workspace: str | Path | None = None) -> JobWorker:
    """Undo an export; the result is an ``UndoResult``. Undo cannot be cancelled.

    It checks against the libraries under the workspace base ``workspace`` (their folders
    are protected, their catalogs vouch for moves of older exports), as ``crlc export
    --undo`` does.
    """

    def job(reporter: Reporter, control: JobControl) -> Any:
        with engine.export_undo_checks(workspace) as (roots, catalog):
            return engine.undo_export(Path(manifest), roots, reporter, catalog)

    return JobWorker(job, "undo export")


def resume_job(
    folders: Folders,
    run_id: str,
    workspace: str | Path | None,
    workers: int | None = None,
) -> JobWorker:
    """Continue the unfinished run ``run_id`` from its checkpoint, with its own settings.

    The library is scanned first (as for a new run); the result is a ``TrainOutcome``.
    """

    def job(reporter: Reporter, control: JobControl) -> Any:
        with engine.ImageLibrary.open(folders, workspace) as library:
            stored = library.runs.get(run_id, state=None).read_config()
        config = engine.TrainConfig.from_dict(stored["train"])  # the run's own settings are used
        return engine.train_folder(
            folders, config, workspace, reporter, control, resume=run_id, workers=workers
        )

    return JobWorker(job, "resume")


def delete_run_job(folders: Folders, run_id: str, workspace: str | Path | None) -> JobWorker:
    """Delete run ``run_id`` (its folder, assignments and names; labels stay).

    The result is the deleted run folder. Deleting cannot be cancelled.
    """

    def job(reporter: Reporter, control: JobControl) -> Any:
        return engine.delete_run(folders, run_id, workspace)

    return JobWorker(job, "delete run")


def relink_job(old: str | Path, new: str | Path, workspace: str | Path | None) -> JobWorker:
    """Point the libraries that have the (moved) root ``old`` at ``new``.

    The result is the list of the re-linked workspace folders. It cannot be cancelled.
    """

    def job(reporter: Reporter, control: JobControl) -> Any:
        reporter.status(f"Re-linking {old} to {new}")
        return engine.relink_root(old, new, workspace)

    return JobWorker(job, "relink")
