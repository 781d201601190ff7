"""The ``quick`` mode: CRLC heads on cached pretrained features, for machines without a GPU.

A quick run is a normal run of the library (``crlc runs``, ``crlc clusters``, export and the
app see it like any other): the library is scanned at size S, the frozen EfficientNet-Lite0
(ImageNet weights) computes each image's pooled 1280-d features once into the workspace
(:mod:`crlc_engine.training.frozen_features`: incremental, resumable), then the RL-head and the
C-sub-heads
are trained on the standardised features with kNN positives
(:class:`~crlc_engine.training.feature_trainer.FeatureTrainer`: seconds to minutes on a CPU).
The backbone is never trained: it is not in any optimiser and runs only in eval mode under
``torch.inference_mode``.

The run folder holds what an end-to-end run holds; its ``checkpoint.pt`` stores the heads,
the standardisation statistics, the neighbour table and settings, and the feature spec, so
assignments can be recomputed from the cached features (:func:`assign_quick`) and CRLC-semi
(labelled cross-entropy) can continue from it (``parent_checkpoint`` of :func:`run_quick`).
Until the backbone has run, the checkpoint only records that the run is at the feature stage
(``phase: features``), so a run cancelled there resumes like any other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.device import resolve_device
from crlc_engine.core.errors import CheckpointError, InvalidSettingError, plain_message
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.library import ImageLibrary, ImageRecord, ScanOptions
from crlc_engine.library.runs import RunDir
from crlc_engine.pipeline.estimate import remember_run
from crlc_engine.pipeline.presets import QUICK_BACKBONE, check_quick_settings
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.groups import GroupStore
from crlc_engine.training.checkpoint import save_checkpoint
from crlc_engine.training.feature_trainer import (
    CHECKPOINT_KIND,
    FeatureTrainer,
    QuickSettings,
)
from crlc_engine.training.frozen_features import (
    FeatureCache,
    FeatureExtractor,
    FeatureSpec,
    compute_features,
    lite0_extractor,
)
from crlc_engine.training.trainer import FitResult

if TYPE_CHECKING:  # jobs imports this module lazily (dispatch); import it lazily here too
    from crlc_engine.pipeline.jobs import TrainOutcome

__all__ = [
    "QUICK_BACKBONE",
    "assign_quick",
    "check_quick_config",
    "is_quick",
    "quick_extractor",
    "run_quick",
    "train_quick_folder",
]


def is_quick(config: TrainConfig) -> bool:
    """Whether a run trains heads on cached features (the ``quick`` preset)."""
    return bool(getattr(config, "cached_features", False)) or config.preset == "quick"


def check_quick_config(config: TrainConfig) -> None:
    """Refuse settings that have no meaning for heads on fixed features.

    Raises:
        InvalidSettingError: see :func:`crlc_engine.pipeline.presets.check_quick_settings`.
    """
    check_quick_settings(config)


def quick_extractor(
    config: TrainConfig, device: torch.device, precision: str = "auto"
) -> FeatureExtractor:
    """The frozen backbone of a quick run (EfficientNet-Lite0 at the config's image size).

    Raises:
        InvalidSettingError: another backbone was asked for, or the weights are missing.
    """
    if config.backbone != QUICK_BACKBONE:
        raise InvalidSettingError(
            f"the quick mode uses {QUICK_BACKBONE} features (got backbone {config.backbone!r})"
        )
    return lite0_extractor(
        config.image_size, device, getattr(config, "feature_precision", precision)
    )


def _features_checkpoint(run: RunDir, config: TrainConfig, settings: QuickSettings) -> None:
    """Mark a new run as being at the feature stage (what ``--resume`` needs to continue)."""
    save_checkpoint(
        run.checkpoint_path,
        {
            "kind": CHECKPOINT_KIND,
            "phase": "features",
            "config": config.to_dict(),
            "settings": settings.as_dict(),
        },
    )


def run_quick(
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
    extractor: FeatureExtractor | None = None,
    head_settings: dict[str, Any] | None = None,
) -> FitResult:
    """Features, heads and assignments of one quick run (the quick ``jobs._train_run``).

    Call it with the workspace lock held. The run's status goes ``running`` ->
    ``completed`` / ``cancelled`` (``failed`` with the message on an error, re-raised).

    Args:
        library: The open library.
        run: The run folder (config.json and image_ids.npy written).
        config: The run's settings (``is_quick``).
        device: Where the backbone and the heads run.
        records: The images of the run, in ``image_ids.npy`` order.
        reporter: Progress and events.
        control: Cancel / pause (a cancel during the features keeps the finished batches).
        resume: Continue the run from its checkpoint.
        labelled: CRLC-semi (rows into ``records``, cluster targets).
        parent_checkpoint: Start the heads from this quick run's checkpoint (refine); by
            default a refine run (``parent`` in its config.json) that had not started its
            heads yet starts them from its parent's.
        extractor: The backbone (default: :func:`quick_extractor`; tests pass a small one).
        head_settings: :class:`QuickSettings` fields to override for a new run (those a
            ``TrainConfig`` cannot express); a resumed run keeps its checkpoint's settings.
    """
    from crlc_engine.pipeline.jobs import _store_results

    check_quick_config(config)
    run.write_status("running", f"pid {os.getpid()}", images=len(records))
    stored: dict[str, Any] = {}
    try:
        if resume:
            stored = FeatureTrainer.read(run.checkpoint_path)
            phase = str(stored.get("phase", "heads"))
            settings = QuickSettings(**stored["settings"])
        else:
            phase = "features"
            settings = QuickSettings.from_train_config(config, **(head_settings or {}))
            _features_checkpoint(run, config, settings)
        if phase == "features" and parent_checkpoint is None:
            parent = run.read_config().get("parent")  # a refine run that stopped early
            if parent:
                parent_checkpoint = library.runs.get(str(parent), state=None).checkpoint_path
        extractor = extractor or quick_extractor(config, device)
        if phase == "heads" and FeatureSpec.from_dict(stored["features"]) != extractor.spec:
            raise CheckpointError(
                f"run {run.run_id} was trained on other features (backbone weights, size or "
                "precision changed since); train a new run"
            )
        try:
            features = compute_features(library, records, extractor, reporter, control)
        except InterruptedError as stop:
            run.write_status("cancelled", str(stop))
            return FitResult("cancelled", 0, 0, 0, [], 0.0, 0.0)
        reporter.status(
            f"Features of {len(records)} images ready ({features.computed} computed at "
            f"{features.images_per_s:.1f} images/s, {features.reused} cached)"
        )
        trainer = FeatureTrainer(
            settings,
            features.features,
            device,
            run.checkpoint_path,
            run.history_path,
            run.run_id,
            labelled=labelled,
            extra_state={
                "config": config.to_dict(),
                "features": features.spec.as_dict(),
                "phase": "heads",
            },
        )
        trainer.keep_resume_state = False  # a completed run is never resumed: no Adam state
        if phase == "heads":
            trainer.load()
            reporter.status(f"Resuming run {run.run_id} at epoch {trainer.epoch}")
        elif parent_checkpoint is not None:
            trainer.init_from_parent(parent_checkpoint)
        fit = trainer.fit(reporter, control)
        if fit.state == "completed":
            reporter.status("Computing assignments")
            preds = trainer.predict()
            _store_results(library, run, records, preds, fit.chosen_head)
    except BaseException as exc:
        message = plain_message(exc)
        state = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        run.record_stop(state, message)
        raise
    run.write_status(
        fit.state,
        "",
        epochs=fit.epochs,
        head=fit.chosen_head,
        samples_per_s=fit.samples_per_s,
        elapsed_s=fit.elapsed_s,
        features_computed=features.computed,
        features_s=features.seconds,
    )
    if fit.state == "completed":
        remember_run(run)  # its real speed, for later estimates of these settings
    return fit


def train_quick_folder(
    folders: str | Path | Sequence[str | Path],
    config: TrainConfig,
    workspace: str | Path | None = None,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    resume: str | None = None,
    scan_options: ScanOptions | None = None,
    workers: int | None = None,
    extractor: FeatureExtractor | None = None,
    head_settings: dict[str, Any] | None = None,
) -> TrainOutcome:
    """The whole quick job (scan, features, heads, assignments): ``jobs.train_folder`` for
    a quick config, with the same arguments and result (a ``jobs.TrainOutcome``).

    Raises:
        CRLCError: a user-level problem (no images, bad settings, workspace locked...).
        InterruptedError: cancelled while scanning.
    """
    from crlc_engine.pipeline import jobs

    reporter = reporter or NullReporter()
    control = control or JobControl()
    with ImageLibrary.open(jobs._roots(folders), workspace) as library:
        parent: str | None = None
        if resume is not None:
            run = jobs._unfinished_run(library.runs, None if resume == "latest" else resume)
            stored = run.read_config()
            config = TrainConfig.from_dict(stored["train"])
            parent = stored.get("parent")
        if not is_quick(config):
            raise InvalidSettingError(f"run settings are not a quick run (preset {config.preset})")
        check_quick_config(config)
        device = resolve_device(config.device)
        reporter.status(f"Device: {device.device} ({device.reason})")
        scan = library.scan(config.image_size, scan_options, reporter, control, workers)
        if control.cancelled:
            raise InterruptedError("cancelled while scanning the images")
        with library.locked(f"training ({config.preset} preset)"):
            library.runs.mark_interrupted()
            continues = False
            if resume is not None:
                continues = jobs._restart_if_never_saved(run, reporter)
                records = jobs._resume_records(library, run, config.image_size)
                labelled = jobs._load_labelled(run)
            else:
                ignored = Annotations(library.catalog).ignored()
                records = [
                    r for r in library.cached_images(config.image_size) if r.id not in ignored
                ]
                jobs._check_cluster_count(config.clusters, len(records))
                run = jobs._create_run(
                    library, config, device.reason, str(device.device), records, parent=None
                )
                labelled = None
            fit = run_quick(
                library,
                run,
                config,
                device.device,
                records,
                reporter,
                control,
                continues,
                labelled=labelled,
                extractor=extractor,
                head_settings=head_settings,
            )
    return jobs.TrainOutcome(
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


def _run_features(
    library: ImageLibrary,
    records: list[ImageRecord],
    spec: FeatureSpec,
    config: TrainConfig,
    reporter: Reporter,
    control: JobControl,
    extractor: FeatureExtractor | None,
) -> np.ndarray:
    """The features a run was trained on (recomputed where the cache lost them)."""
    cache = FeatureCache(library.workspace, spec)
    if cache.valid(records).all():
        return cache.read(records)
    device = resolve_device(config.device if config.device != "cuda" else "auto").device
    extractor = extractor or quick_extractor(config, device, spec.precision)
    if extractor.spec != spec:
        raise CheckpointError(
            "the backbone weights or settings changed since this run was trained, and some of "
            "its images have no cached features; train a new run"
        )
    return compute_features(library, records, extractor, reporter, control).features


def assign_quick(
    library: ImageLibrary,
    run: RunDir,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    extractor: FeatureExtractor | None = None,
) -> RunDir:
    """(Re)compute a completed quick run's assignments from its checkpoint and cached features.

    Features missing from the cache (e.g. a deleted ``features`` folder) are computed again
    with the same backbone; the run's own cluster names are kept.

    Raises:
        CheckpointError: not a quick run's trained checkpoint, or its features cannot be
            recomputed (other backbone weights).
        RunNotFoundError / CheckpointError: images of the run are gone (from ``jobs``).
    """
    from crlc_engine.pipeline import jobs

    reporter = reporter or NullReporter()
    control = control or JobControl()
    state = FeatureTrainer.read(run.checkpoint_path)
    if state.get("phase") != "heads":
        raise CheckpointError(f"run {run.run_id} has no trained heads yet")
    config = TrainConfig.from_dict(state["config"])
    spec = FeatureSpec.from_dict(state["features"])
    with library.locked("assigning"):
        records = jobs._resume_records(library, run, config.image_size)
        features = _run_features(library, records, spec, config, reporter, control, extractor)
        trainer = FeatureTrainer(QuickSettings(**state["settings"]), features)
        trainer.load_heads(run.checkpoint_path)
        reporter.status(f"Assigning {len(records)} images with run {run.run_id}")
        preds = trainer.predict()
        reference = GroupStore(library.catalog).reference(run.run_id)  # the view before
        jobs._store_results(library, run, records, preds, int(state["chosen_head"]), reference)
    return run
