"""CRLC trainer (SimCLR or MemoryBank framework; end-to-end or one stage of two-stage CRLC)
with checkpoints, cancel, pause and resume.

The data set lives on the training device as a uint8 tensor [N, S, S, 3]; each step draws
augmented views of a batch on that device
(:class:`~crlc_engine.augment.batch_augment.BatchAugmenter`),
runs the network once on all of them, computes the loss in float32 and takes an optimiser
step (SGD or Adam, ``config.optimizer``). Per-epoch statistics are summed on the device, so
the step loop never waits for the GPU; the host syncs once per epoch. Training time and speed
include the per-epoch work around the steps (:mod:`crlc_engine.training.pace`); pauses do not
count.

Frameworks (``config.framework``):

* ``simclr``: two views per image; the positive of a view is the other view, the negatives
  are the other rows of the batch (:func:`~crlc_engine.losses.crlc_loss`).
* ``memorybank``: one view per image; positive and negatives are rows of a
  :class:`~crlc_engine.losses.memory_bank.MemoryBank`, updated after every step.

Stages (``config.stage``): ``end_to_end`` trains everything with the CRLC loss; ``stage1``
trains the backbone and the RL-head with L_FC only (the C-head is not run); ``stage2``
trains L_cluster with a neighbour (from :meth:`CRLCTrainer.set_neighbors`) as the positive,
the backbone fine-tuned or frozen (``freeze_backbone``: kept in eval mode, so BatchNorm
statistics do not move either). Parts a stage does not train are left out of the optimiser.

How the network computes (:class:`~crlc_engine.training.compute_settings.ComputeSettings`,
each ``auto`` resolved for the device): ``config.precision`` (bf16 autocast of the network;
auto: on CUDA, float32 elsewhere), ``config.memory_format`` (the weights and the views
channels-last or contiguous; auto: channels-last on CUDA) and ``config.compile`` (the forward
through ``torch.compile``; auto: on CUDA). A forward that fails to compile, in its first step
or its backward, runs eagerly from then on; the failed step is undone and taken again
eagerly, and the reporter is told why (:mod:`crlc_engine.training.compiled_forward`). None of
them is structural: a checkpoint resumes under other values and records the values it was
saved with (``compute``).

Data order: one permutation per epoch from a CPU generator, ``floor(N / batch)`` steps, the
remainder dropped. Augmentation randomness comes from a generator on the training device.
Both generator states and the position inside the epoch are checkpointed, so a resumed run
continues exactly where it stopped (bit-identical on the CPU). The budget, pace, epoch
records, checkpoints, resume, cancel and pause are the shared loop's
(:class:`~crlc_engine.training.loop.TrainingLoop`); this module supplies the data, the
network and the step.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from crlc_engine.augment.batch_augment import BatchAugmenter
from crlc_engine.augment.config import AugmentConfig
from crlc_engine.augment.normalize import dataset_mean_std
from crlc_engine.core.config import LossSettings, TrainConfig
from crlc_engine.core.errors import CheckpointError, InvalidSettingError
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.library.disk_pixels import DiskPixels
from crlc_engine.losses import CRLCLossOutput, crlc_loss, feature_contrastive_loss
from crlc_engine.losses.group_cross_entropy import group_cross_entropy
from crlc_engine.losses.memory_bank import MemoryBank, memory_bank_crlc_loss, sample_feature_loss
from crlc_engine.models import CRLCModel
from crlc_engine.training.checkpoint import grow_cluster_columns, load_checkpoint
from crlc_engine.training.compiled_forward import CompiledForward
from crlc_engine.training.compute_settings import ComputeSettings
from crlc_engine.training.data_parallel import (
    DataParallel,
    GlobalViews,
    NetworkOutputs,
    network_outputs,
)
from crlc_engine.training.distributed import DistributedContext
from crlc_engine.training.epoch_stats import add_step_sums
from crlc_engine.training.labelled import uses_labelled
from crlc_engine.training.loop import FitResult, TrainingLoop
from crlc_engine.training.neighbor_positives import sample_neighbor_positives
from crlc_engine.training.optim import make_optimizer
from crlc_engine.training.two_stage import trainable_parts

__all__ = ["CRLCTrainer", "FitResult", "loss_settings_of"]

#: Settings a checkpoint must share with the trainer that continues it.
_STRUCTURAL = (
    "backbone",
    "stem",
    "image_size",
    "clusters",
    "subheads",
    "feature_dim",
    "framework",
    "stage",
    "freeze_backbone",
)


#: Images the view statistics are computed on (every ``ceil(N / this)``-th).
_STATS_IMAGES = 10000


def loss_settings_of(config: TrainConfig) -> LossSettings:
    """The loss settings of a training config (stage 2 has no L_FC term)."""
    return config.loss_settings(lambda_fc=0.0 if config.stage == "stage2" else config.lambda_fc)


def _feature_only(feature: Tensor, subheads: int) -> CRLCLossOutput:
    """Stage 1's loss parts: L_FC alone, the clustering parts zero ``[H]``."""
    zeros = torch.zeros(subheads, dtype=feature.dtype, device=feature.device)
    return CRLCLossOutput(feature, feature, zeros, zeros, zeros, zeros)


def _place_data(
    images: np.ndarray | Tensor | DiskPixels, device: torch.device
) -> Tensor | DiskPixels:
    """Put uint8 [N, S, S, 3] on ``device``; fall back to pinned host memory if it won't fit.
    Pixels left on disk stay there (each batch is read when drawn)."""
    if isinstance(images, DiskPixels):
        return images
    data = torch.as_tensor(images)
    if data.dtype != torch.uint8 or data.ndim != 4 or data.shape[-1] != 3:
        raise InvalidSettingError(f"images must be uint8 [N, S, S, 3], got {tuple(data.shape)}")
    if device.type == "cpu":
        return data.contiguous()
    try:
        return data.to(device)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return data.pin_memory()


class CRLCTrainer(TrainingLoop):
    """Trains a :class:`CRLCModel` on a uint8 image tensor.

    Args:
        config: Resolved settings (``config.image_size`` must equal the images' side).
        images: uint8 [N, S, S, 3] (numpy or torch), or pixels read a batch at a time from
            the cache on disk (:class:`~crlc_engine.library.disk_pixels.DiskPixels`, for data
            sets that do not fit in memory).
        device: Training device.
        checkpoint_path: Where checkpoints go (``None``: never written).
        history_path: Where one JSON line per epoch is appended (``None``: not written).
        run_id: Shown in events.
        labelled: CRLC-semi: (row indices into ``images`` [L], class targets [L] in
            0..C-1); each step adds ``lambda_xent`` x the cross-entropy of every sub-head on
            augmented views (as many per image as the framework uses) of
            ``labelled_batch`` labelled images drawn uniformly. End-to-end runs only.
        distributed: This process's place in a run over several processes (``torchrun``):
            every rank trains on its shard of each global batch of ``config.batch_size``
            images, with the global batch's negatives and statistics
            (:mod:`crlc_engine.training.data_parallel`); only rank 0 should be given a
            checkpoint and history path. ``None``: one process.

    Raises:
        InvalidSettingError: bad data or settings (``stage`` ``two_stage`` is two runs: see
            :func:`crlc_engine.pipeline.jobs.train_folder`).
    """

    lr_hint = "a lower learning rate (--lr)"
    network_key = "model"
    step_generator_key = "augment_generator"

    def __init__(
        self,
        config: TrainConfig,
        images: np.ndarray | Tensor | DiskPixels,
        device: torch.device,
        checkpoint_path: Path | None = None,
        history_path: Path | None = None,
        run_id: str = "",
        labelled: tuple[np.ndarray, np.ndarray] | None = None,
        distributed: DistributedContext | None = None,
    ) -> None:
        self.config = config
        self.parallel = DataParallel(distributed or DistributedContext(device=device))
        self.parallel.check(config)
        self.data = _place_data(images, device)
        n, height, width, _ = self.data.shape
        if height != config.image_size or width != config.image_size:
            raise InvalidSettingError(
                f"images are {height}x{width} but the config asks for {config.image_size} px"
            )
        super().__init__(config, n, device, checkpoint_path, history_path, run_id)
        self.parallel.check_batch(self.batch_size)  # fewer images than the batch
        if uses_labelled(labelled, config.lambda_xent) and config.stage != "end_to_end":
            raise InvalidSettingError("labelled images (CRLC-semi) need end-to-end training")
        self._use_labelled(labelled)
        self.parts = trainable_parts(config)
        self.compute = ComputeSettings.of(config, device)
        if self.parallel.active:  # one rank falling back to eager alone would stall the rest
            self.compute = dataclasses.replace(self.compute, compile=False)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.model = self._build_model()
        self.optimizer = make_optimizer(self.model, config)
        self.loss_config = loss_settings_of(config)
        # Pretrained weights expect their own input statistics; otherwise the data set's.
        preset_norm = self.model.backbone.input_normalization
        self._set_normalization(*(preset_norm or self._data_mean_std()))
        self.augment_generator = torch.Generator(device=device).manual_seed(
            self.parallel.augment_seed(config.seed)
        )
        self.bank: MemoryBank | None = None
        if config.framework == "memorybank":
            self.bank = MemoryBank(
                n, config.subheads, config.clusters, config.feature_dim, device, config.seed + 2
            )
        self.uses_z = config.stage == "stage1" or (
            config.stage == "end_to_end" and config.lambda_fc > 0
        )
        self.uses_logits = config.stage != "stage1"
        forward = self._network_outputs
        if self.parallel.active:
            trainable_rl_head = "rl_head" in self.parts
            outputs = NetworkOutputs(
                self.model, self.uses_z, self.uses_logits, config.freeze_backbone
            )
            forward = self.parallel.wrap(outputs, trainable_rl_head and not self.uses_z)
        self.network_forward = CompiledForward(forward, self.compute.compile)
        self._reporter: Reporter = NullReporter()
        self._fallback_reported = False

    def _build_model(self) -> CRLCModel:
        """The network (seeded with ``config.seed``), only the stage's parts trainable."""
        config = self.config
        torch.manual_seed(config.seed)
        model = CRLCModel.for_settings(config, pretrained=config.pretrained)
        model = self.parallel.prepare(model).to(self.device)
        model = model.to(memory_format=self.compute.torch_memory_format)
        for name, part in model.named_children():
            part.requires_grad_(name in self.parts)
        return model

    @property
    def network(self) -> nn.Module:
        return self.model

    @property
    def precision(self) -> str:
        """The network's compute precision: ``float32`` or ``bfloat16`` (autocast)."""
        return self.compute.precision

    @property
    def memory_format(self) -> str:
        """The layout of the weights and views: ``contiguous`` or ``channels_last``."""
        return self.compute.memory_format

    @property
    def compiled(self) -> bool:
        """Whether the forward runs compiled (``False`` once it fell back to eager)."""
        return self.network_forward.active

    @property
    def compile_fallback_reason(self) -> str:
        """Why the forward runs eagerly although compiling was asked for (``""`` if not)."""
        return self.network_forward.fallback_reason

    @property
    def step_generator(self) -> torch.Generator:
        return self.augment_generator

    def _set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use this per-channel mean/std for the views (and for later assignments)."""
        config = self.config
        self.augment_config = AugmentConfig(
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
            blur=config.blur,
            crop_scale=(config.crop_min_scale, 1.0),
        )
        self.augmenter = BatchAugmenter(self.augment_config, config.image_size)

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self.compute.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _data_mean_std(
        self,
    ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """The data set's per-channel mean and standard deviation (the views' statistics)."""
        if isinstance(self.data, DiskPixels):
            return dataset_mean_std(torch.from_numpy(self.data.subsample(_STATS_IMAGES)))
        return dataset_mean_std(self.data, max_images=_STATS_IMAGES)

    def _batch(self, indices: Tensor) -> Tensor:
        if isinstance(self.data, DiskPixels):
            rows = torch.from_numpy(self.data.take(indices.cpu().numpy()))
            return rows.to(self.device, non_blocking=True)
        if self.data.device == self.device:
            return self.data.index_select(0, indices)
        return self.data.index_select(0, indices.cpu()).to(self.device, non_blocking=True)

    def _network_outputs(self, views: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """z [V, D] (or ``None``) and logits [H, V, C] (or ``None``) of the normalised views
        [V, 3, S, S], eagerly (what :attr:`network_forward` compiles)."""
        return network_outputs(
            self.model, views, self.uses_z, self.uses_logits, self.config.freeze_backbone
        )

    def _forward(self, views: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """z [V, D] (or ``None``) and logits [H, V, C] (or ``None``) of the views [V, 3, S, S],
        in the run's precision (compiled where it is)."""
        with self._autocast():
            return self.network_forward(views)

    def _objective(self, views: GlobalViews, indices: Tensor, positives: Tensor) -> CRLCLossOutput:
        """The loss of the global batch's anchors (``views``: their outputs and, SimCLR,
        their positives'; ``indices``: this process's rows)."""
        config = self.config
        stage1 = config.stage == "stage1"
        z, logits = views.z_a, views.logits_a
        if self.bank is None:
            if stage1:
                assert z is not None and views.z_b is not None
                feature = feature_contrastive_loss(z, views.z_b, tau=config.tau).loss
                return _feature_only(feature, config.subheads)
            assert logits is not None and views.logits_b is not None
            return crlc_loss(z, views.z_b, logits, views.logits_b, self.loss_config)
        sample = self.bank.sample(indices, positives, config.bank_negatives, self.augment_generator)
        if stage1:
            assert z is not None
            feature = sample_feature_loss(z, sample, config.tau)
            return _feature_only(feature, config.subheads)
        assert logits is not None
        return memory_bank_crlc_loss(z, logits, sample, self.loss_config)

    def _positives(self, indices: Tensor) -> Tensor:
        """Rows of the positives: the images themselves, or (stage 2) drawn neighbours."""
        if self.config.stage != "stage2":
            return indices
        if self.neighbors is None:
            raise InvalidSettingError("stage 2 needs the neighbour table (set_neighbors)")
        return sample_neighbor_positives(self.neighbors, indices, self.augment_generator)

    def _step(self, indices: Tensor) -> None:
        """One step; while a compiled forward is on trial, a step that fails is undone and
        taken again eagerly (:meth:`CompiledForward.run_first_step`)."""
        fell_back = self.network_forward.run_first_step(
            lambda: self._train_step(indices), self._step_state, self._restore_step_state
        )
        if fell_back is not None:
            self._report_compile_fallback()

    def _step_state(self) -> tuple[Tensor, list[Tensor]]:
        """What a failed step may have changed: the step generator's state and the network's
        buffers (BatchNorm statistics). The weights change only once the step succeeded."""
        return self.augment_generator.get_state(), [b.clone() for b in self.model.buffers()]

    def _restore_step_state(self, saved: tuple[Tensor, list[Tensor]]) -> None:
        generator_state, buffers = saved
        self.augment_generator.set_state(generator_state)
        with torch.no_grad():
            for buffer, value in zip(self.model.buffers(), buffers, strict=True):
                buffer.copy_(value)

    def _report_compile_fallback(self) -> None:
        """Tell the reporter (once) that the forward runs eagerly because compiling failed."""
        reason = self.network_forward.fallback_reason
        if reason and not self._fallback_reported:
            self._reporter.status(f"Compiling the network failed ({reason}); running it eagerly")
            self._fallback_reported = True

    def _prepare_fit(self, reporter: Reporter) -> None:
        """Keep the reporter for a compile fallback, and tell it of one that happened before
        (``torch.compile`` itself failed)."""
        self._reporter = reporter
        self._report_compile_fallback()

    def _train_step(self, indices: Tensor) -> None:
        """The step itself: views of (this process's shard of) the batch, the objective, the
        optimiser step, the memory bank's update and the epoch's sums."""
        indices = self.parallel.shard(indices)
        images = self._batch(indices)
        b = images.shape[0]
        positives = self._positives(indices)
        parts = [images]
        if self.bank is None:  # SimCLR: a second view, of the image or of its neighbour
            parts.append(images if self.config.stage != "stage2" else self._batch(positives))
        views_per_image = len(parts)
        labelled = self._labelled_batch()
        if labelled is not None:
            parts += [self._batch(labelled[0])] * views_per_image
        views = torch.cat([self.augmenter(p, self.augment_generator) for p in parts])
        views = views.contiguous(memory_format=self.compute.torch_memory_format)
        z, logits = self._forward(views)
        outputs = self.parallel.global_views(z, logits, b, views_per_image)
        loss = self._objective(outputs, indices, positives)
        objective = loss.total
        if labelled is not None and logits is not None:
            labelled_logits = logits[:, b * views_per_image :].float()  # [H, L * views, C]
            allowed = labelled[1].repeat(views_per_image * labelled_logits.shape[0], 1)
            xent = group_cross_entropy(labelled_logits.flatten(0, 1), allowed)
            objective = objective + self.config.lambda_xent * xent
        self._optimizer_step(objective)
        with torch.no_grad():
            if self.bank is not None:  # paper Eq. 10 with this step's outputs
                anchors = outputs.logits_a
                self.bank.update(
                    indices,
                    self.config.bank_momentum,
                    probabilities=None if anchors is None else anchors.float().softmax(-1),
                    features=outputs.z_a,
                )
        add_step_sums(self._sums, loss, outputs.logits_a)

    def _agreed_stop(self, stop: bool) -> bool:
        """Rank 0's decision on every rank, and its training time (several processes stop
        at the same step and schedule the learning rate alike)."""
        stop, self.elapsed_s = self.parallel.agree(stop, self.elapsed_s)
        return stop

    @property
    def can_halve_batch(self) -> bool:
        return not self.parallel.active

    def _train_mode(self) -> None:
        """Training mode, except a frozen backbone (its BatchNorm statistics must not move)."""
        self.model.train()
        if self.config.freeze_backbone:
            self.model.backbone.eval()

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly (tensors may be on the device)."""
        return {
            "config": self.config.to_dict(),
            **self._loop_state(),
            "optimizer_kind": self.config.optimizer,
            "normalization": {"mean": self.augment_config.mean, "std": self.augment_config.std},
            "memory_bank": None if self.bank is None else self.bank.state_dict(),
            "compute": {  # how the network computed (resolved; not checked on resume)
                "precision": self.precision,
                "memory_format": self.memory_format,
                "compiled": self.compiled,
            },
        }

    def init_from_parent(
        self, path: Path, parts: Sequence[str] = ("backbone", "rl_head", "c_head")
    ) -> None:
        """Start from a parent run's network weights (not its optimiser or position).

        The C-head may have more clusters than the parent's (CRLC-semi with more classes than
        clusters): the parent's output columns are copied and the new ones keep their fresh
        initialisation.

        Args:
            path: The parent's checkpoint.
            parts: Which parts of the network to copy (stage 2 copies ``backbone`` and
                ``rl_head`` from stage 1; the C-head keeps its fresh initialisation).

        Raises:
            CheckpointError: unreadable, or a different backbone / feature width.
        """
        state = load_checkpoint(path, map_location=self.device)
        parent = TrainConfig.from_dict(state["config"])
        names = ["backbone", "stem", "feature_dim"] + (["subheads"] if "c_head" in parts else [])
        for name in names:
            if getattr(parent, name) != getattr(self.config, name):
                raise CheckpointError(f"parent checkpoint {path} has a different {name}")
        norm = state["normalization"]  # the parent's view statistics, not the new data's
        self._set_normalization(tuple(norm["mean"]), tuple(norm["std"]))
        own = self.model.state_dict()
        weights = {
            key: value for key, value in state["model"].items() if key.split(".", 1)[0] in parts
        }
        grow_cluster_columns(weights, own, ("c_head.weight2", "c_head.bias2"))
        self.model.load_state_dict({**own, **weights})

    def load(self, path: Path | None = None) -> None:
        """Restore a checkpoint to continue training (see :meth:`TrainingLoop.load`). The
        checkpoint holds rank 0's augmentation generator; another rank of a run over several
        processes (of the same count or not) draws on from a seed of its own."""
        super().load(path)
        self.parallel.check_batch(self.batch_size)  # a halved batch, in a checkpoint
        if self.parallel.context.rank > 0:
            seed = self.parallel.augment_seed(self.config.seed) + self.total_steps
            self.augment_generator.manual_seed(seed)

    def _read_for_resume(self, source: Path) -> dict[str, Any]:
        state = load_checkpoint(source, map_location=self.device)
        saved = TrainConfig.from_dict(state["config"])
        for name in _STRUCTURAL:
            if getattr(saved, name) != getattr(self.config, name):
                raise CheckpointError(
                    f"checkpoint {source} was trained with {name}={getattr(saved, name)!r}, "
                    f"not {getattr(self.config, name)!r}"
                )
        self._check_num_images(state, source)
        kind = str(state.get("optimizer_kind", saved.optimizer))  # older checkpoints: SGD
        if kind != self.config.optimizer:
            raise CheckpointError(
                f"checkpoint {source} was trained with the {kind} optimiser, these settings "
                f"use {self.config.optimizer}; resume it with its own settings"
            )
        return state

    def _restore_method_state(self, state: dict[str, Any], source: Path, resumable: bool) -> None:
        """The view statistics and (MemoryBank framework) the banks."""
        norm = state["normalization"]
        self._set_normalization(tuple(norm["mean"]), tuple(norm["std"]))
        if self.bank is not None and resumable:
            saved_bank = state.get("memory_bank")
            if saved_bank is None:
                raise CheckpointError(f"checkpoint {source} has no memory bank")
            try:
                self.bank.load_state_dict(saved_bank)
            except ValueError as exc:
                raise CheckpointError(f"checkpoint {source}: {exc}") from exc
