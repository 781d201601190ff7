"""A training method: what a run trains on and how one run's model is fitted and applied.

The run driver (:mod:`crlc_engine.pipeline.driver`) does everything that is the same for
every method: it opens the library, scans it, selects the images, creates or resumes the run
folder, records the run's state, stores the assignments and names the groups. A method
supplies only what differs:

- :meth:`TrainingMethod.applies_to`: which settings it trains (the registry in
  :mod:`crlc_engine.pipeline.methods` asks each method in turn);
- :meth:`TrainingMethod.check`: settings that have no meaning for it;
- :meth:`TrainingMethod.fit`: its data source and trainer (a
  :class:`~crlc_engine.training.loop` subclass shares pace, budget, checkpoints, resume,
  cancel/pause and events), returning the fit and the predictions of a completed run;
- :meth:`TrainingMethod.assign`: the predictions of a finished run from its checkpoint.

A new variant is one subclass and one line in :data:`crlc_engine.pipeline.methods.METHODS`
(``tests/engine/pipeline/test_methods.py`` adds a tiny one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.events import Reporter
from crlc_engine.library import ImageLibrary, ImageRecord
from crlc_engine.library.decoded_sink import DecodedSink
from crlc_engine.library.disk_pixels import DiskPixels
from crlc_engine.library.runs import RunDir
from crlc_engine.training.inference import Predictions
from crlc_engine.training.loop import FitResult, TrainingLoop


@dataclass
class MethodJob:
    """One run for a method to train (the workspace lock is held).

    Attributes:
        library: The open library.
        run: The run folder (``config.json`` and ``image_ids.npy`` written).
        config: The run's settings.
        device: Where it trains.
        records: Its images, in ``image_ids.npy`` order.
        reporter: Progress and events.
        control: Cancel / pause.
        resume: Continue the run's own checkpoint.
        labelled: CRLC-semi: rows into ``records`` and the clusters each may take
            (bool [L, C]).
        parent_checkpoint: Start from this run's weights (refine, stage 2).
        pixels: uint8 [N, S, S, 3] when the caller already read them (or left them on disk:
            :class:`~crlc_engine.library.disk_pixels.DiskPixels`).
    """

    library: ImageLibrary
    run: RunDir
    config: TrainConfig
    device: torch.device
    records: list[ImageRecord]
    reporter: Reporter
    control: JobControl
    resume: bool
    labelled: tuple[np.ndarray, np.ndarray] | None = None
    parent_checkpoint: Path | None = None
    pixels: np.ndarray | DiskPixels | None = None

    def trainer_files(self) -> tuple[Path, Path, str]:
        """(checkpoint path, history path, run id): where a trainer of this run writes."""
        return self.run.checkpoint_path, self.run.history_path, self.run.run_id


@dataclass
class MethodResult:
    """What a method's fit gives the driver.

    Attributes:
        fit: The trainer's result (``completed`` or ``cancelled``).
        predictions: Every image's predictions when the run completed with clusters.
        status: More entries for the run's ``status.json`` (e.g. feature timings).
        message: Why it stopped, for a cancelled run's status.
    """

    fit: FitResult
    predictions: Predictions | None = None
    status: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""


class TrainingMethod(ABC):
    """How runs of some settings are trained and applied (see the module docstring)."""

    #: Name used in messages and the registry.
    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def applies_to(cls, config: TrainConfig) -> bool:
        """Whether this method trains runs with ``config``."""

    def check(self, config: TrainConfig) -> None:
        """Refuse settings this method cannot honour (default: all are fine).

        Raises:
            InvalidSettingError: a setting has no meaning for this method.
        """
        return None

    def scan_sink(
        self, library: ImageLibrary, config: TrainConfig, device: torch.device, reporter: Reporter
    ) -> DecodedSink | None:
        """Where the scan before a run puts the squares it decodes (default ``None``: the
        pixel cache at the run's image size)."""
        return None

    def available_images(self, library: ImageLibrary, config: TrainConfig) -> list[ImageRecord]:
        """The images a run of ``config`` can train on or assign (default: those whose pixels
        are cached at its image size), ignored ones included."""
        return library.cached_images(config.image_size)

    def needs_pixels(self, config: TrainConfig) -> bool:
        """Whether :meth:`fit` reads ``job.pixels`` (the driver reads them once for stage 2
        following stage 1)."""
        return False

    @abstractmethod
    def fit(self, job: MethodJob) -> MethodResult:
        """Train ``job.run`` (new, resumed or from a parent) and predict when completed."""

    @abstractmethod
    def assign(
        self,
        library: ImageLibrary,
        run: RunDir,
        state: dict[str, Any],
        reporter: Reporter,
        control: JobControl,
    ) -> tuple[list[ImageRecord], Predictions, int]:
        """(images, predictions, chosen head) of a finished run from its checkpoint ``state``."""


def resume_if_asked(trainer: TrainingLoop, job: MethodJob, resume: bool) -> bool:
    """Load the run's own checkpoint into ``trainer`` when ``resume``; returns ``resume``.

    Either way, the checkpoint written when the training is done keeps no optimiser state:
    a completed run is never resumed.
    """
    trainer.keep_resume_state = False
    if resume:
        trainer.load()
        job.reporter.status(f"Resuming run {job.run.run_id} at epoch {trainer.epoch}")
    return resume
