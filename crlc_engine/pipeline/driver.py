"""The run driver: one way from a request to stored, named results, for every kind of run.

Open the library, plan (:func:`~crlc_engine.pipeline.plan.plan_run`), scan, select the
images, create or resume the run folder, fit with the plan's training method, store the
results and attach the groups' names; a two-stage job then runs its stage 2 the same way.
The run's state goes ``running`` -> ``completed`` / ``cancelled`` (``failed`` with the
message on an error, re-raised), and a completed run's real speed is remembered for later
estimates.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlc_engine.core.config import TrainConfig, check_cluster_count
from crlc_engine.core.control import JobControl
from crlc_engine.core.device import resolve_device
from crlc_engine.core.errors import InvalidSettingError, plain_message
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.library import Folders, ImageLibrary, ImageRecord, ScanOptions, ScanSummary
from crlc_engine.library.disk_pixels import DiskPixels
from crlc_engine.library.runs import RunDir
from crlc_engine.pipeline.estimate import remember_run
from crlc_engine.pipeline.method_base import MethodJob, MethodResult, TrainingMethod
from crlc_engine.pipeline.plan import RunPlan, plan_run, stage2_plan
from crlc_engine.pipeline.request import RunRequest
from crlc_engine.pipeline.run_records import (
    create_run,
    newest_named,
    restart_if_never_saved,
    run_images,
    store_results,
    without_ignored,
)
from crlc_engine.results.groups import GroupStore
from crlc_engine.training.loop import FitResult


@dataclass(frozen=True)
class TrainOutcome:
    """What a training job did.

    Attributes:
        run: The run folder.
        workspace: The library's workspace folder.
        state: ``completed`` or ``cancelled``.
        fit: The trainer's result.
        config: The resolved settings.
        device: The device used (e.g. ``cuda``).
        images: Images trained on.
        scan: The library scan that preceded training.
        parent: The run this one started from (refine: the refined run; stage 2: the
            stage-1 run).
        kind: ``train``, ``refine``, ``stage1`` (a two-stage job stopped in stage 1) or
            ``stage2``.
        groups: A completed refine's report: ``labelled_in_group``, the share of labelled
            pictures the model put in a cluster of their group, and
            ``unlabelled_in_group``, the share of the other pictures of labelled groups
            still in their group (:meth:`crlc_engine.results.groups.GroupStore.refine_report`).
    """

    run: RunDir
    workspace: Path
    state: str
    fit: FitResult
    config: TrainConfig
    device: str
    images: int
    scan: ScanSummary
    parent: str | None = None
    kind: str = "train"
    groups: dict[str, float | None] | None = None

    def summary(self) -> dict[str, Any]:
        """The CLI's ``--json`` object for ``crlc train`` and ``crlc refine`` (a completed
        refine adds ``labelled_in_group`` and ``unlabelled_in_group``)."""
        return {
            **(self.groups or {}),
            "run_id": self.run.run_id,
            "parent": self.parent,
            "workspace": str(self.workspace),
            "run_dir": str(self.run.path),
            "state": self.state,
            "epochs": self.fit.epochs,
            "steps": self.fit.steps,
            "samples_per_s": round(self.fit.samples_per_s, 2),
            "batch_size": self.fit.batch_size,
            "batch_reductions": list(self.fit.batch_reductions),
            "clusters": self.config.clusters,
            "head": self.fit.chosen_head if self.kind != "stage1" else None,
            "head_losses": [round(v, 6) for v in self.fit.head_losses],
            "elapsed_s": round(self.fit.elapsed_s, 2),
            "device": self.device,
            "images": self.images,
            "skipped": self.scan.images_skipped,
            "preset": self.config.preset,
            "kind": self.kind,
            "framework": self.config.framework,
        }


@dataclass(frozen=True)
class JobSetup:
    """How a job runs: where, with what progress and cancel token, and how it scans."""

    workspace: str | Path | None = None
    reporter: Reporter | None = None
    control: JobControl | None = None
    scan_options: ScanOptions | None = None
    workers: int | None = None
    method: TrainingMethod | None = None


def run_job(folders: Folders, request: RunRequest, setup: JobSetup | None = None) -> TrainOutcome:
    """Carry ``request`` out on the library of ``folders`` (see the module docstring).

    ``setup.method`` replaces the registry's method (tests and benchmarks pass a feature
    method with a small backbone); it must accept the run's settings.

    Raises:
        CRLCError: a user-level problem (no images, bad settings, no GPU, workspace locked...).
        InterruptedError: cancelled while scanning.
    """
    setup = setup or JobSetup()
    reporter = setup.reporter or NullReporter()
    control = setup.control or JobControl()
    with ImageLibrary.open(folders, setup.workspace) as library:
        plan = _with_method(plan_run(request, library), setup.method)
        device = resolve_device(plan.config.device)
        reporter.status(f"Device: {device.device} ({device.reason})")
        refine = request.kind == "refine"  # a refine scans as the window's scans do
        scan_options = None if refine else setup.scan_options
        workers = None if refine else setup.workers
        sink = plan.method.scan_sink(library, plan.config, device.device, reporter)
        scan = library.scan(
            plan.config.image_size, scan_options, reporter, control, workers, sink=sink
        )
        if control.cancelled:
            raise InterruptedError("cancelled while scanning the images")
        with library.locked(plan.lock_reason):
            library.runs.mark_interrupted()  # we hold the lock: no other run is training
            stage = _RunStage(library, device.device, (str(device.device), device.reason))
            return stage.run(plan, scan, reporter, control)


def _with_method(plan: RunPlan, method: TrainingMethod | None) -> RunPlan:
    if method is None:
        return plan
    if not type(method).applies_to(plan.config):
        raise InvalidSettingError(
            f"run settings are not a {method.name} run (preset {plan.config.preset})"
        )
    method.check(plan.config)
    return dataclasses.replace(plan, method=method)


@dataclass
class _RunStage:
    """One run of a job, with the workspace lock held: select, create or resume, fit, store."""

    library: ImageLibrary
    device: torch.device
    device_words: tuple[str, str]

    def run(
        self,
        plan: RunPlan,
        scan: ScanSummary,
        reporter: Reporter,
        control: JobControl,
        follows: tuple[list[ImageRecord], np.ndarray | DiskPixels | None] | None = None,
    ) -> TrainOutcome:
        """Carry ``plan`` out; ``follows``: the images (and pixels, if read) of the stage-1
        run a stage-2 run follows in the same job, which it trains on too."""
        library = self.library
        continues = plan.resume is not None and restart_if_never_saved(plan.resume, reporter)
        records = self._images(plan) if follows is None else follows[0]
        reference = None
        if plan.kind == "refine" and plan.resume is None and plan.parent is not None:
            reference = GroupStore(library.catalog).reference(plan.parent)
        labelled = plan.labelled(records)
        run = plan.resume or self._create(plan, records, labelled)
        _say_start(plan, run, labelled, reporter)
        pixels = None if follows is None else follows[1]
        if pixels is None and plan.follow_up and plan.method.needs_pixels(plan.config):
            pixels = library.training_pixels(plan.config.image_size, records, reporter)
        job = MethodJob(
            library,
            run,
            plan.config,
            self.device,
            records,
            reporter,
            control,
            continues,
            labelled=labelled,
            parent_checkpoint=self._parent_checkpoint(plan, continues),
            pixels=pixels,
        )
        fit = fit_run(job, plan.method)
        groups = None
        if reference is not None and fit.state == "completed":
            groups = GroupStore(library.catalog).refine_report(run.run_id, reference)
        outcome = TrainOutcome(
            run,
            library.workspace,
            fit.state,
            fit,
            plan.config,
            str(self.device),
            len(records),
            scan,
            plan.parent,
            kind=run.kind,
            groups=groups,
        )
        if fit.state == "completed" and plan.follow_up is not None:
            follow_up = stage2_plan(run, plan.follow_up)
            return self.run(follow_up, scan, reporter, control, (records, pixels))
        return outcome

    def _images(self, plan: RunPlan) -> list[ImageRecord]:
        available = plan.method.available_images(self.library, plan.config)
        if plan.resume is not None:
            return run_images(self.library, plan.resume, plan.config.image_size, available)
        records = without_ignored(self.library, available)
        check_cluster_count(plan.config.clusters, len(records))
        return records

    def _create(
        self,
        plan: RunPlan,
        records: list[ImageRecord],
        labelled: tuple[np.ndarray, np.ndarray] | None,
    ) -> RunDir:
        extra = dict(plan.extra)
        if "names_from" in extra:
            extra["names_from"] = extra["names_from"] or newest_named(self.library)
        if labelled is not None:
            extra["labelled"] = len(labelled[0])
        run = create_run(
            self.library, plan.config, self.device_words, records, plan.parent, plan.kind, extra
        )
        if labelled is not None:
            np.savez(run.path / "labelled.npz", rows=labelled[0], allowed=labelled[1])
        return run

    def _parent_checkpoint(self, plan: RunPlan, continues: bool) -> Path | None:
        """The checkpoint a run starts from: its parent's (refine, stage 2), unless it
        continues its own."""
        if continues or plan.parent is None:
            return None
        return self.library.runs.get(plan.parent, state=None, clusters_only=False).checkpoint_path


def _say_start(
    plan: RunPlan,
    run: RunDir,
    labelled: tuple[np.ndarray, np.ndarray] | None,
    reporter: Reporter,
) -> None:
    config = plan.config
    if plan.kind == "stage1":
        reporter.status(
            f"Stage 1{' of 2' if plan.follow_up else ''} (run {run.run_id}): backbone and "
            "RL-head with the feature contrastive loss only"
        )
    elif plan.kind == "stage2" and plan.resume is None:
        frozen = "frozen" if config.freeze_backbone else "trained"
        reporter.status(
            f"Stage 2 (run {run.run_id}, from stage-1 run {plan.parent}): clustering with a "
            f"neighbour as the positive, backbone {frozen}"
        )
    elif plan.kind == "refine" and plan.resume is None and labelled is not None:
        reporter.status(
            f"Refining run {plan.parent} with {len(labelled[0])} labelled images in "
            f"{len(plan.targets)} groups ({config.clusters} clusters)"
        )


def fit_run(job: MethodJob, method: TrainingMethod) -> FitResult:
    """Train one run with ``method``, store its results and record its state.

    The run's status goes ``running`` -> ``completed`` / ``cancelled``; on an error it is
    ``failed`` (``cancelled`` for an interrupt) with the message, and the error is re-raised.
    """
    run = job.run
    run.write_status("running", f"pid {os.getpid()}", images=len(job.records))
    try:
        result = method.fit(job)
        if result.predictions is not None:
            store_results(job.library, run, job.records, result.predictions, result.fit.chosen_head)
    except BaseException as exc:
        message = plain_message(exc)
        state = "cancelled" if isinstance(exc, KeyboardInterrupt | InterruptedError) else "failed"
        run.record_stop(state, message)
        raise
    _write_final_status(run, result)
    if result.fit.state == "completed" and not result.fit.batch_reductions:
        remember_run(run)  # its real speed, for later estimates of these settings
    return result.fit


def _write_final_status(run: RunDir, result: MethodResult) -> None:
    fit = result.fit
    if fit.state != "completed" and result.message:
        run.write_status(fit.state, result.message)
        return
    run.write_status(
        fit.state,
        "",
        epochs=fit.epochs,
        head=fit.chosen_head if run.has_clusters else None,
        samples_per_s=fit.samples_per_s,
        elapsed_s=fit.elapsed_s,
        batch_size=fit.batch_size,
        batch_reductions=list(fit.batch_reductions),
        **result.status,
    )
