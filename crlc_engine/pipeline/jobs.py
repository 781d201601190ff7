"""Whole jobs on a library, shared by the CLI and the GUI: train, resume, stage 2, refine,
assign again.

Each is a request carried out by the one run driver (:func:`crlc_engine.pipeline.driver.run_job`):
training is end-to-end CRLC (one run, kind ``train``), CRLC-semi (``refine``) or two-stage
CRLC: a ``stage1`` run (representation learning, no clusters) followed by a ``stage2`` run
whose parent is the stage-1 run (see :mod:`crlc_engine.training.two_stage`); the quick preset
trains heads on cached features (:mod:`crlc_engine.pipeline.feature_method`).

Each job takes a reporter and a :class:`~crlc_engine.core.control.JobControl`, writes its
results under the library's workspace and returns a result dataclass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.library import Folders, ImageLibrary, ScanOptions, scan_folders
from crlc_engine.library.runs import RunDir
from crlc_engine.pipeline.driver import JobSetup, TrainOutcome, run_job
from crlc_engine.pipeline.evaluation import EvaluationResult, evaluate_folder
from crlc_engine.pipeline.method_base import TrainingMethod
from crlc_engine.pipeline.methods import method_for
from crlc_engine.pipeline.refine import group_targets, refine_settings
from crlc_engine.pipeline.request import RunRequest
from crlc_engine.pipeline.run_admin import RunInfo, delete_run, list_runs, mark_interrupted_runs
from crlc_engine.pipeline.run_records import store_results
from crlc_engine.results.groups import GroupStore
from crlc_engine.training.checkpoint import load_checkpoint

__all__ = [
    "EvaluationResult",
    "RunInfo",
    "TrainOutcome",
    "assign_run",
    "delete_run",
    "evaluate_folder",
    "group_targets",
    "list_runs",
    "mark_interrupted_runs",
    "refine_folder",
    "refine_settings",
    "scan_folders",
    "train_folder",
    "train_stage2_folder",
]


def train_folder(
    folders: Folders,
    config: TrainConfig,
    workspace: str | Path | None = None,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    resume: str | None = None,
    scan_options: ScanOptions | None = None,
    workers: int | None = None,
    names_from: str | None = None,
    method: TrainingMethod | None = None,
) -> TrainOutcome:
    """Scan the library of ``folders``, train CRLC on its images and store the run.

    Ignored images are left out. When the run completes, its assignments go to the catalog
    and its clusters take the names of the groups whose pictures they hold in the run
    ``names_from`` (the run the user was looking at; default: the newest completed run),
    see :mod:`crlc_engine.results.groups`.

    With ``config.stage == "two_stage"`` this is two runs: a ``stage1`` run (no
    assignments), then, if it completed, a ``stage2`` run whose parent it is; the outcome is
    the last run's. Resuming a cancelled stage-1 run of a two-stage job continues with
    stage 2 once stage 1 completes. ``config.stage == "stage1"`` trains stage 1 only.

    Args:
        folders: The photo folder(s) of the library (order does not matter).
        config: Settings; ignored when resuming (the run's saved settings are used).
        workspace: Workspace base (default: ``$CRLC_WORKSPACE`` or the user data folder).
        reporter: Progress and events.
        control: Cancel / pause token.
        resume: Id of an unfinished run (train, refine, stage1 or stage2) to continue, or
            ``"latest"``.
        scan_options: What the scan looks at.
        workers: Decoding processes for the scan.
        names_from: The run whose groups name the new run's clusters.
        method: The training method (default: the registry's for the settings).

    Raises:
        CRLCError: a user-level problem (no images, bad settings, no GPU, workspace locked...).
    """
    if resume is not None:
        request = RunRequest("resume", run_id=resume)
    else:
        request = RunRequest("train", config=config, names_from=names_from)
    setup = JobSetup(workspace, reporter, control, scan_options, workers, method)
    return run_job(folders, request, setup)


def train_stage2_folder(
    folders: Folders,
    stage1_run: str,
    overrides: dict[str, Any] | None = None,
    workspace: str | Path | None = None,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    scan_options: ScanOptions | None = None,
    workers: int | None = None,
) -> TrainOutcome:
    """Two-stage CRLC, stage 2 alone: a new ``stage2`` run from a completed stage-1 run.

    The settings are the stage-1 run's stage-2 settings (those of its two-stage job, else
    its own with ``stage="stage2"``) with ``overrides`` (``None`` values ignored) applied;
    the backbone, stem, image size and feature width must stay the stage-1 run's. The images
    are the library's current ones (ignored images left out); the neighbour table is re-used
    from an earlier stage-2 run of the same stage-1 run on the same images, else mined.

    Raises:
        RunNotFoundError: no run ``stage1_run``.
        InvalidSettingError: it is not a completed stage-1 run, or bad settings.
    """
    request = RunRequest("stage2", overrides=overrides or {}, run_id=stage1_run)
    setup = JobSetup(workspace, reporter, control, scan_options, workers)
    return run_job(folders, request, setup)


def refine_folder(
    folders: Folders,
    run_id: str | None = None,
    epochs: int | None = None,
    minutes: float | None = None,
    workspace: str | Path | None = None,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainOutcome:
    """CRLC-semi: continue a completed run with the user's labels as a new run.

    The new run starts from the parent's network weights, trains the CRLC loss plus
    ``lambda_xent`` x cross-entropy on labelled images (semi settings: lambda_ent 1,
    lambda_FC 5, lambda_xent 1, SGD with cosine decay to lr 0.001, 64 labelled images per
    step) and records the parent. A labelled group is one class over all its clusters
    (:func:`group_targets`); afterwards the clusters are named from the parent's group
    view, as after any run (:mod:`crlc_engine.results.groups`), and the outcome reports how
    many pictures of the labelled groups ended in them.

    Raises:
        RunNotFoundError: no completed run to refine.
        InvalidSettingError: no labels, or bad settings.
    """
    budget = {"epochs": epochs, "minutes": minutes}
    request = RunRequest("refine", overrides={**(overrides or {}), **budget}, run_id=run_id)
    return run_job(folders, request, JobSetup(workspace, reporter, control))


def assign_run(
    folders: Folders,
    run_id: str | None = None,
    workspace: str | Path | None = None,
    reporter: Reporter | None = None,
    method: TrainingMethod | None = None,
) -> RunDir:
    """(Re)compute a run's assignments from its checkpoint into the catalog; its clusters are
    named again from its own group view before (a split is not learned by the model).

    Raises:
        RunNotFoundError: no completed run ``run_id``.
        CheckpointError: the checkpoint cannot give assignments, or its images are gone.
    """
    reporter = reporter or NullReporter()
    with ImageLibrary.open(folders, workspace) as library:
        run = library.runs.get(run_id, state="completed")
        assign_in_library(library, run, reporter, JobControl(), method)
    return run


def assign_in_library(
    library: ImageLibrary,
    run: RunDir,
    reporter: Reporter,
    control: JobControl,
    method: TrainingMethod | None = None,
) -> None:
    """Store ``run``'s assignments again from its checkpoint, in an open library."""
    state = load_checkpoint(run.checkpoint_path)
    config = TrainConfig.from_dict(state["config"])
    method = method or method_for(config)
    with library.locked("assigning"):
        records, preds, head = method.assign(library, run, state, reporter, control)
        reference = GroupStore(library.catalog).reference(run.run_id)  # the view before
        store_results(library, run, records, preds, head, reference)
