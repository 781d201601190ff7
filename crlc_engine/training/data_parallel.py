"""One process's part of a data-parallel CRLC run (``torchrun``): :class:`DataParallel`.

The pixel trainer (:class:`~crlc_engine.training.trainer.CRLCTrainer`) asks it, at every
step, for this rank's shard of the global batch, and for the global batch's outputs once its
own views went through the network; with one process every answer is the trainer's own
(the shard is the batch, the outputs are the local ones), so the single-process path is the
same code. With several (:mod:`crlc_engine.training.distributed` for the reasoning):

* the network's BatchNorm layers are synced (global statistics) and its forward runs through
  DistributedDataParallel (:class:`NetworkOutputs`), which averages the gradients;
* every rank takes the same global batch from the shared data order and keeps its shard;
* the two views' RL-head features and C-head logits are gathered from every rank with their
  gradients, so the contrastive negatives and the marginal entropy are the global batch's;
* each rank augments its own shard with its own generator;
* rank 0 decides for all when to stop (cancel, time budget, end of training), and its
  training time is everyone's (the learning-rate schedule of a time budget follows it):
  :meth:`DataParallel.agree`.

Not with several processes: the MemoryBank framework (its bank would need the gathered
rows), compiling the forward (a rank that fell back to eager alone would stall the others)
and halving the batch on running out of memory (one rank cannot change the global batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.models import CRLCModel
from crlc_engine.training.distributed import (
    DistributedContext,
    gather_with_grad,
    main_rank_values,
    shard_of,
    wrap_ddp,
)
from crlc_engine.training.synced_batch_norm import convert_batch_norms

__all__ = ["DataParallel", "GlobalViews", "NetworkOutputs", "network_outputs"]

#: How far apart the ranks' augmentation seeds are (rank 0 keeps the single-process seed).
RANK_SEED_STRIDE = 1_000_003


def network_outputs(
    model: CRLCModel, views: Tensor, uses_z: bool, uses_logits: bool, frozen_backbone: bool
) -> tuple[Tensor | None, Tensor | None]:
    """z [V, D] (or ``None``) and logits [H, V, C] (or ``None``) of normalised views
    [V, 3, S, S]; a frozen backbone runs without gradients."""
    if frozen_backbone:
        with torch.no_grad():
            features = model.backbone(views)
    else:
        features = model.backbone(views)
    z = model.rl_head(features) if uses_z else None
    logits = model.c_head(features) if uses_logits else None
    return z, logits


class NetworkOutputs(nn.Module):
    """:func:`network_outputs` as a module: what DistributedDataParallel wraps (it syncs
    gradients only for calls of its own forward)."""

    def __init__(
        self, model: CRLCModel, uses_z: bool, uses_logits: bool, frozen_backbone: bool
    ) -> None:
        super().__init__()
        self.model = model
        self.uses_z, self.uses_logits, self.frozen_backbone = uses_z, uses_logits, frozen_backbone

    def forward(self, views: Tensor) -> tuple[Tensor | None, Tensor | None]:
        return network_outputs(
            self.model, views, self.uses_z, self.uses_logits, self.frozen_backbone
        )


@dataclass(frozen=True)
class GlobalViews:
    """The global batch's outputs of the two views (anchors ``a``, positives ``b``).

    Attributes:
        z_a: ``[B, D]`` or ``None``.
        z_b: ``[B, D]`` or ``None`` (one view per image: ``None``).
        logits_a: ``[H, B, C]`` or ``None``.
        logits_b: ``[H, B, C]`` or ``None`` (one view per image: ``None``).
    """

    z_a: Tensor | None
    z_b: Tensor | None
    logits_a: Tensor | None
    logits_b: Tensor | None


class DataParallel:
    """This process's part of a run over ``context.world_size`` processes (one: alone)."""

    def __init__(self, context: DistributedContext) -> None:
        self.context = context

    @property
    def active(self) -> bool:
        """Whether there is more than one process."""
        return self.context.distributed

    def check(self, config: TrainConfig) -> None:
        """Refuse settings a run over several processes cannot take.

        Raises:
            InvalidSettingError: the MemoryBank framework, or a batch that does not split
                evenly over the processes.
        """
        if not self.active:
            return
        if config.framework != "simclr":
            raise InvalidSettingError(
                f"the {config.framework} framework trains in one process; use --framework "
                "simclr to train on several"
            )
        self.check_batch(config.batch_size)

    def check_batch(self, batch_size: int) -> None:
        """Refuse a batch that does not split evenly over the processes (the settings', or
        the one a checkpoint halved to, or the images' count when there are fewer).

        Raises:
            InvalidSettingError: it does not.
        """
        world = self.context.world_size
        if self.active and batch_size % world:
            raise InvalidSettingError(
                f"the batch size {batch_size} must split evenly over the {world} processes "
                f"(a multiple of {world})"
            )

    def augment_seed(self, seed: int) -> int:
        """The seed of this rank's augmentation generator (rank 0: the single-process one)."""
        return seed + 1 + RANK_SEED_STRIDE * self.context.rank

    def prepare(self, model: CRLCModel) -> CRLCModel:
        """The model with synced BatchNorm layers (same weights and state-dict keys)."""
        if self.active:
            convert_batch_norms(model)
        return model

    def wrap(self, forward: NetworkOutputs, find_unused_parameters: bool) -> nn.Module:
        """``forward`` in DistributedDataParallel (itself for one process)."""
        return wrap_ddp(forward, self.context, find_unused_parameters=find_unused_parameters)

    def shard(self, indices: Tensor) -> Tensor:
        """This rank's rows of the global batch ``indices`` [B] (all of them alone)."""
        if not self.active:
            return indices
        return shard_of(indices, self.context.rank, self.context.world_size)

    def global_views(
        self, z: Tensor | None, logits: Tensor | None, shard: int, views_per_image: int
    ) -> GlobalViews:
        """The global batch's outputs from this rank's: z [V, D] and logits [H, V, C] whose
        first ``shard`` rows are the anchors' views (the next ``shard`` the positives', with
        two views per image), gathered from every rank with their gradients."""
        second = slice(shard, 2 * shard) if views_per_image == 2 else None

        def rows(x: Tensor | None, dim: int, part: slice | None) -> Tensor | None:
            if x is None or part is None:
                return None
            mine = x.narrow(dim, part.start, part.stop - part.start)
            return gather_with_grad(mine, dim) if self.active else mine

        first = slice(0, shard)
        return GlobalViews(
            rows(z, 0, first), rows(z, 0, second), rows(logits, 1, first), rows(logits, 1, second)
        )

    def agree(self, stop: bool, elapsed_s: float) -> tuple[bool, float]:
        """Rank 0's decision to stop and its training time, on every rank (this process's
        own, alone)."""
        if not self.active:
            return stop, elapsed_s
        flag, seconds = main_rank_values([float(stop), elapsed_s], self.context)
        return flag != 0.0, seconds
