"""Whole jobs on a library, shared by the CLI and the GUI: scan, train (or resume), evaluate.

Each job takes a reporter and a :class:`~crlc_engine.control.JobControl`, writes its results
under the library's workspace and returns a result dataclass.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlc_engine import __version__
from crlc_engine.config import TrainConfig
from crlc_engine.control import JobControl
from crlc_engine.device import resolve_device
from crlc_engine.errors import (
    CheckpointError,
    CRLCError,
    InvalidSettingError,
    NoGroundTruthError,
    RunNotFoundError,
)
from crlc_engine.events import NullReporter, Reporter
from crlc_engine.fileio import atomic_write, atomic_write_json, atomic_write_text
from crlc_engine.groundtruth import class_indices, class_of
from crlc_engine.inference import predict
from crlc_engine.library import (  # scan_folders: the scan job, re-exported
    ImageLibrary,
    ImageRecord,
    ScanOptions,
    ScanSummary,
    scan_folders,
)
from crlc_engine.metrics import ClusteringScores, score_clustering
from crlc_engine.runs import RunDir, RunStore

__all__ = ["EvaluationResult", "TrainOutcome", "evaluate_folder", "scan_folders", "train_folder"]
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
    """

    run: RunDir
    workspace: Path
    state: str
    fit: FitResult
    config: TrainConfig
    device: str
    images: int
    scan: ScanSummary

    def summary(self) -> dict[str, Any]:
        """The CLI's ``--json`` object for ``crlc train``."""
        return {
            "run_id": self.run.run_id,
            "workspace": str(self.workspace),
            "run_dir": str(self.run.path),
            "state": self.state,
            "epochs": self.fit.epochs,
            "steps": self.fit.steps,
            "samples_per_s": round(self.fit.samples_per_s, 2),
            "clusters": self.config.clusters,
            "head": self.fit.chosen_head,
            "head_losses": [round(v, 6) for v in self.fit.head_losses],
            "elapsed_s": round(self.fit.elapsed_s, 2),
            "device": self.device,
            "images": self.images,
            "skipped": self.scan.images_skipped,
            "preset": self.config.preset,
        }


def _write_assignments(
    run: RunDir, records: list[ImageRecord], labels: np.ndarray, confidences: np.ndarray
) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "cluster", "confidence"])
    for record, cluster, conf in zip(records, labels.tolist(), confidences.tolist(), strict=True):
        writer.writerow([str(record.path), cluster, f"{conf:.6f}"])
    atomic_write_text(run.assignments_path, text.getvalue())


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


def train_folder(
    folders: str | Path | Sequence[str | Path],
    config: TrainConfig,
    workspace: str | Path | None = None,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    resume: str | None = None,
    scan_options: ScanOptions | None = None,
    workers: int | None = None,
) -> TrainOutcome:
    """Scan the library of ``folders``, train CRLC on its images and store the run.

    Args:
        folders: The photo folder(s) of the library (order does not matter).
        config: Settings; ignored when resuming (the run's saved settings are used).
        workspace: Workspace base (default: ``$CRLC_WORKSPACE`` or the user data folder).
        reporter: Progress and events.
        control: Cancel / pause token.
        resume: Id of an unfinished run to continue, or ``"latest"`` for the newest
            unfinished one.
        scan_options: What the scan looks at.
        workers: Decoding processes for the scan.

    Raises:
        CRLCError: a user-level problem (no images, bad settings, no GPU, workspace locked...).
    """
    reporter = reporter or NullReporter()
    control = control or JobControl()
    roots = [folders] if isinstance(folders, str | Path) else list(folders)
    with ImageLibrary.open(roots, workspace) as library:
        if resume is not None:
            run = _unfinished_run(library.runs, None if resume == "latest" else resume)
            config = TrainConfig.from_dict(run.read_config()["train"])
        device = resolve_device(config.device)
        reporter.status(f"Device: {device.device} ({device.reason})")
        scan = library.scan(config.image_size, scan_options, reporter, control, workers)
        if control.cancelled:
            raise InterruptedError("cancelled while scanning the images")
        with library.locked(f"training ({config.preset} preset)"):
            if resume is not None:
                records = _resume_records(library, run, config.image_size)
            else:
                records = library.cached_images(config.image_size)
            if config.clusters > len(records):
                raise InvalidSettingError(
                    f"{config.clusters} clusters requested but the folder(s) hold only "
                    f"{len(records)} usable images"
                )
            if resume is None:
                run = library.runs.create_run()
                atomic_write_json(
                    run.config_path,
                    {
                        "train": config.to_dict(),
                        "roots": [str(r) for r in library.roots],
                        "device": str(device.device),
                        "device_reason": device.reason,
                        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        "engine_version": __version__,
                        "torch_version": torch.__version__,
                        "parent": None,
                        "images": len(records),
                    },
                )
                np.save(run.path / "image_ids.npy", np.array([r.id for r in records]))
            pixels = library.pixels(config.image_size, records)
            fit = _train_run(
                run, config, device.device, pixels, records, reporter, control, resume is not None
            )
    return TrainOutcome(
        run, library.workspace, fit.state, fit, config, str(device.device), len(records), scan
    )


def _train_run(
    run: RunDir,
    config: TrainConfig,
    device: torch.device,
    pixels: np.ndarray,
    records: list[ImageRecord],
    reporter: Reporter,
    control: JobControl,
    resume: bool,
) -> FitResult:
    run.write_status("running", f"pid {os.getpid()}", images=len(records))
    try:
        trainer = CRLCTrainer(
            config, pixels, device, run.checkpoint_path, run.history_path, run.run_id
        )
        if resume:
            trainer.load()
            reporter.status(f"Resuming run {run.run_id} at epoch {trainer.epoch}")
        fit = trainer.fit(reporter, control)
        if fit.state == "completed":
            reporter.status("Computing assignments")
            preds = predict(trainer.model, trainer.data, trainer.augment_config, device)
            head = fit.chosen_head
            _write_assignments(run, records, preds.labels(head), preds.confidences(head))
            _write_predictions(run, records, preds.all_labels(), preds.probabilities[head], head)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, CRLCError) else f"{type(exc).__name__}: {exc}"
        state = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        run.write_status(state, message)
        raise
    run.write_status(
        fit.state,
        "",
        epochs=fit.epochs,
        head=fit.chosen_head,
        samples_per_s=fit.samples_per_s,
        elapsed_s=fit.elapsed_s,
    )
    return fit


def _resume_records(library: ImageLibrary, run: RunDir, side: int) -> list[ImageRecord]:
    ids = np.load(run.path / "image_ids.npy").tolist()
    available = {r.id: r for r in library.cached_images(side)}
    lost = [i for i in ids if i not in available]
    if lost:
        raise CheckpointError(
            f"run {run.run_id} cannot resume: {len(lost)} of its {len(ids)} images are no "
            "longer available (moved, deleted or changed); start a new run"
        )
    return [available[i] for i in ids]


def _unfinished_run(runs: RunStore, run_id: str | None) -> RunDir:
    if run_id is not None:
        run = runs.get(run_id, state=None)
        if run.state == "completed":
            raise InvalidSettingError(f"run {run_id} is already completed; nothing to resume")
    else:
        candidates = [r for r in runs.all() if r.state in ("cancelled", "running", "failed")]
        if not candidates:
            raise RunNotFoundError("no unfinished run to resume in this library")
        run = candidates[-1]
    if not run.checkpoint_path.exists():
        raise RunNotFoundError(f"run {run.run_id} has no checkpoint to resume from")
    return run


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
) -> EvaluationResult:
    """ACC / NMI / ARI of a completed run against the class sub-folders of ``folder``.

    Raises:
        RunNotFoundError: no completed run (or no run ``run_id``).
        NoGroundTruthError: no image lies in a class sub-folder.
    """
    roots = [folders] if isinstance(folders, str | Path) else list(folders)
    with ImageLibrary.open(roots, workspace) as library:
        run = library.runs.get(run_id, state="completed")
    if not run.predictions_path.exists():
        raise RunNotFoundError(f"run {run.run_id} has no predictions (state {run.state})")
    with np.load(run.predictions_path) as stored:
        paths = [str(p) for p in stored["paths"]]
        head_labels = stored["head_labels"]
        chosen_head = int(stored["chosen_head"])
    truth, names = class_indices([class_of(p) for p in paths])
    mask = truth >= 0
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
