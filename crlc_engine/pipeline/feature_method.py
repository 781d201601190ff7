"""CRLC heads on cached pretrained features: the ``quick`` mode, for machines without a GPU.

A quick run is a normal run of the library (``crlc runs``, ``crlc clusters``, export and the
app see it like any other): the frozen EfficientNet-Lite0 (ImageNet weights) computes each
image's pooled 1280-d features once into the workspace
(:mod:`crlc_engine.training.frozen_features`: incremental, resumable) straight from the
scan's decoding, without a pixel cache (:class:`~crlc_engine.training.feature_sink.FeatureSink`:
the scan before a quick run decodes only the images without features), then the RL-head and
the C-sub-heads are trained on the standardised features with kNN positives
(:class:`~crlc_engine.training.feature_trainer.FeatureTrainer`: seconds to minutes on a CPU).
The backbone is never trained: it is not in any optimiser and runs only in eval mode under
``torch.inference_mode``.

The run's ``checkpoint.pt`` stores the heads, the standardisation statistics, the neighbour
table and settings, and the feature spec, so assignments can be recomputed from the cached
features (:meth:`FeatureHeadsMethod.assign`) and CRLC-semi can continue from it. Until the
backbone has run, the checkpoint only records that the run is at the feature stage
(``phase: features``), so a run cancelled there resumes like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.device import resolve_device
from crlc_engine.core.errors import CheckpointError, InvalidSettingError
from crlc_engine.core.events import Reporter
from crlc_engine.core.memory import return_freed_memory
from crlc_engine.library import ImageLibrary, ImageRecord
from crlc_engine.library.runs import RunDir
from crlc_engine.pipeline.method_base import (
    MethodJob,
    MethodResult,
    TrainingMethod,
    resume_if_asked,
)
from crlc_engine.pipeline.presets import QUICK_BACKBONE, check_quick_settings
from crlc_engine.pipeline.run_records import run_images
from crlc_engine.training.checkpoint import save_checkpoint
from crlc_engine.training.distributed import current_context
from crlc_engine.training.feature_cache import FeatureCache, compute_features
from crlc_engine.training.feature_sink import FeatureSink
from crlc_engine.training.feature_trainer import CHECKPOINT_KIND, FeatureTrainer, QuickSettings
from crlc_engine.training.frozen_features import (
    FeatureExtractor,
    FeatureSpec,
    lite0_extractor,
)
from crlc_engine.training.inference import Predictions
from crlc_engine.training.loop import FitResult


def is_quick(config: TrainConfig) -> bool:
    """Whether a run trains heads on cached features (the ``quick`` preset)."""
    return bool(getattr(config, "cached_features", False)) or config.preset == "quick"


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


class FeatureHeadsMethod(TrainingMethod):
    """Heads on frozen features (the quick preset).

    Args:
        extractor: The frozen backbone (default: :func:`quick_extractor`; tests pass a
            small one).
        head_settings: :class:`QuickSettings` fields to override for a new run (those a
            ``TrainConfig`` cannot express); a resumed run keeps its checkpoint's settings.
    """

    name: ClassVar[str] = "feature_heads"

    def __init__(
        self,
        extractor: FeatureExtractor | None = None,
        head_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.extractor = extractor
        self.head_settings = dict(head_settings or {})
        self.sink: FeatureSink | None = None
        self._built_extractor = False

    @classmethod
    def applies_to(cls, config: TrainConfig) -> bool:
        return is_quick(config)

    def check(self, config: TrainConfig) -> None:
        check_quick_settings(config)

    def _extractor(self, config: TrainConfig, device: torch.device) -> FeatureExtractor:
        """The backbone (built once per method object: the scan and the fit share it)."""
        if self.extractor is None:
            self.extractor = quick_extractor(config, device)
            self._built_extractor = True
        return self.extractor

    def _release_backbone(self) -> None:
        """The heads need only the features: let go of the backbone this method built and
        hand the freed memory back (its graph and activation pools: about 300 MB less
        resident during the heads; a later assignment builds it again)."""
        if self.sink is not None:
            self.sink.close()
        if self._built_extractor:
            self.extractor, self._built_extractor = None, False
        return_freed_memory()

    def scan_sink(
        self, library: ImageLibrary, config: TrainConfig, device: torch.device, reporter: Reporter
    ) -> FeatureSink:
        self.sink = FeatureSink(library.workspace, self._extractor(config, device), reporter)
        return self.sink

    def available_images(self, library: ImageLibrary, config: TrainConfig) -> list[ImageRecord]:
        """Every ``ok`` image: features come from the scan, the cache, or a new decoding."""
        return library.images()

    def fit(self, job: MethodJob) -> MethodResult:
        if current_context().distributed:
            job.reporter.status("The quick preset trains in process 0 alone; the others wait")
        settings, stored = self._settings(job)
        phase = str(stored.get("phase", "heads")) if stored else "features"
        parent_checkpoint = job.parent_checkpoint
        if phase == "features" and parent_checkpoint is None:
            parent = job.run.read_config().get("parent")  # a refine run that stopped early
            if parent:
                parent_checkpoint = job.library.runs.get(str(parent), state=None).checkpoint_path
        extractor = self._extractor(job.config, job.device)
        if phase == "heads" and FeatureSpec.from_dict(stored["features"]) != extractor.spec:
            raise CheckpointError(
                f"run {job.run.run_id} was trained on other features (backbone weights, size "
                "or precision changed since); train a new run"
            )
        try:
            features = compute_features(
                job.library, job.records, extractor, job.reporter, job.control
            )
        except InterruptedError as stop:
            return MethodResult(FitResult("cancelled", 0, 0, 0, [], 0.0, 0.0), message=str(stop))
        del extractor  # the last reference outside this method object
        self._release_backbone()
        if features.computed:
            job.reporter.status(
                f"Features of {len(job.records)} images ready ({features.computed} computed at "
                f"{features.images_per_s:.1f} images/s, {features.reused} cached)"
            )
        trainer = FeatureTrainer(
            settings,
            features.features,
            job.device,
            *job.trainer_files(),
            labelled=job.labelled,
            extra_state={
                "config": job.config.to_dict(),
                "features": features.spec.as_dict(),
                "phase": "heads",
            },
        )
        resumed = resume_if_asked(trainer, job, phase == "heads")
        if not resumed and parent_checkpoint is not None:
            trainer.init_from_parent(parent_checkpoint)
        fit = trainer.fit(job.reporter, job.control)
        preds = None
        if fit.state == "completed":
            job.reporter.status("Computing assignments")
            preds = trainer.predict()
        computed, seconds = features.computed, features.seconds
        if self.sink is not None:  # computed by the scan that came before
            computed, seconds = computed + self.sink.computed, seconds + self.sink.seconds
        status = {"features_computed": computed, "features_s": seconds}
        return MethodResult(fit, preds, status)

    def _settings(self, job: MethodJob) -> tuple[QuickSettings, dict[str, Any]]:
        """The head settings (a resumed run's stored ones) and the stored checkpoint (a new
        run: marked as being at the feature stage, what ``--resume`` needs to continue)."""
        if job.resume:
            stored = FeatureTrainer.read(job.run.checkpoint_path)
            return QuickSettings.stored(stored["settings"]), stored
        settings = QuickSettings.from_train_config(job.config, **self.head_settings)
        save_checkpoint(
            job.run.checkpoint_path,
            {
                "kind": CHECKPOINT_KIND,
                "phase": "features",
                "config": job.config.to_dict(),
                "settings": settings.as_dict(),
            },
        )
        return settings, {}

    def assign(
        self,
        library: ImageLibrary,
        run: RunDir,
        state: dict[str, Any],
        reporter: Reporter,
        control: JobControl,
    ) -> tuple[list[ImageRecord], Predictions, int]:
        if state.get("phase") != "heads":
            raise CheckpointError(f"run {run.run_id} has no trained heads yet")
        config = TrainConfig.from_dict(state["config"])
        spec = FeatureSpec.from_dict(state["features"])
        records = run_images(
            library, run, config.image_size, self.available_images(library, config)
        )
        features = self._run_features(library, records, spec, config, reporter, control)
        trainer = FeatureTrainer(QuickSettings.stored(state["settings"]), features)
        trainer.load_heads(run.checkpoint_path)
        reporter.status(f"Assigning {len(records)} images with run {run.run_id}")
        return records, trainer.predict(), int(state["chosen_head"])

    def _run_features(
        self,
        library: ImageLibrary,
        records: list[ImageRecord],
        spec: FeatureSpec,
        config: TrainConfig,
        reporter: Reporter,
        control: JobControl,
    ) -> np.ndarray:
        """The features a run was trained on (recomputed where the cache lost them)."""
        cache = FeatureCache(library.workspace, spec)
        if cache.valid(records).all():
            return cache.read(records)
        device = resolve_device(config.device if config.device != "cuda" else "auto").device
        extractor = self.extractor or quick_extractor(config, device, spec.precision)
        if extractor.spec != spec:
            raise CheckpointError(
                "the backbone weights or settings changed since this run was trained, and some "
                "of its images have no cached features; train a new run"
            )
        return compute_features(library, records, extractor, reporter, control).features
