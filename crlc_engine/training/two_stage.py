"""Two-stage CRLC (paper Sec. 5.1.2 and Appdx. A.7): stage settings and neighbour mining.

Stage 1 trains the backbone and the RL-head with L_FC only, unweighted (``lambda_fc`` does
not apply; the C-head is neither run nor changed). After it, every image gets its K nearest
neighbours by cosine similarity, and stage 2 trains L_cluster (L_PC - lambda_ent H + guard;
no L_FC, the RL-head is not trained) where the positive of image i is a view of a neighbour
drawn uniformly from i's K, either fine-tuning the backbone with the C-head (the paper's
CIFAR/STL setting) or with the backbone frozen (its ImageNet setting).

Optimisers (``stage_optim``): with ``paper`` (the default) each stage gets the paper's
optimiser (Appdx. A.7, :data:`~crlc_engine.core.config.PAPER_STAGE_OPTIMIZERS`): stage 1 SGD lr
0.4 with cosine decay, momentum 0.9, wd 1e-4; stage 2 fine-tuned Adam lr 1e-4, wd 1e-4;
stage 2 frozen SGD lr 5.0, momentum 0.9, wd 0 (C-head only). With ``run`` both stages use the
request's own optimiser, learning rate, schedule, momentum and weight decay. Either way the
values a stage uses are written into its config (``config.json`` of the stage's run).

Neighbours are mined on the RL-head output z of the un-augmented, normalised images (unit
128-d vectors), not on the backbone features: L_FC trains exactly the cosine similarity of
z, the paper says the neighbours come from "the feature vectors produced by the pretrained
network" and uses the settings of SCAN, which mines on the contrastive head's output; z is
also 2-16x narrower than the backbone features, so the kNN search is cheaper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlc_engine.augment.config import AugmentConfig
from crlc_engine.core.config import PAPER_STAGE_OPTIMIZERS, TrainConfig
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.core.events import Reporter
from crlc_engine.core.fileio import atomic_write
from crlc_engine.core.neighbors import all_pairs_knn
from crlc_engine.library.disk_pixels import DiskPixels
from crlc_engine.models import CRLCModel
from crlc_engine.training.inference import predict

__all__ = [
    "NEIGHBORS_FILE",
    "load_neighbor_table",
    "mine_neighbors",
    "paper_stage_optimizer",
    "save_neighbor_table",
    "stage_configs",
    "trainable_parts",
    "with_stage_optimizer",
]

#: Name of the neighbour table in a stage-2 run folder: int64 [N, K] rows into the run's
#: ``image_ids.npy``.
NEIGHBORS_FILE = "neighbors.npy"

_ALL_PARTS = ("backbone", "rl_head", "c_head")


def trainable_parts(config: TrainConfig) -> tuple[str, ...]:
    """The parts of :class:`CRLCModel` whose parameters a run of ``config`` trains.

    Raises:
        InvalidSettingError: ``config.stage`` is ``two_stage`` (that is two runs).
    """
    if config.stage == "end_to_end":
        return _ALL_PARTS
    if config.stage == "stage1":
        return ("backbone", "rl_head")
    if config.stage == "stage2":
        return ("c_head",) if config.freeze_backbone else ("backbone", "c_head")
    raise InvalidSettingError(
        "a two-stage request trains two runs (stage1, then stage2); start it with "
        "crlc_engine.pipeline.jobs.train_folder"
    )


def paper_stage_optimizer(stage: str, freeze_backbone: bool) -> dict[str, Any]:
    """The paper's optimiser settings (``TrainConfig`` fields) for one stage.

    Args:
        stage: ``stage1`` or ``stage2``.
        freeze_backbone: Stage 2 only: the frozen-backbone (C-head only) setting.

    Raises:
        InvalidSettingError: ``stage`` is neither ``stage1`` nor ``stage2``.
    """
    if stage == "stage1":
        return dict(PAPER_STAGE_OPTIMIZERS["stage1"])
    if stage == "stage2":
        return dict(PAPER_STAGE_OPTIMIZERS["stage2_frozen" if freeze_backbone else "stage2"])
    raise InvalidSettingError(f"the paper's stage optimisers are for stage1/stage2, not {stage!r}")


def with_stage_optimizer(config: TrainConfig) -> TrainConfig:
    """``config`` with the paper's optimiser of its stage when ``stage_optim`` is ``paper``.

    A ``stage1`` or ``stage2`` config with ``stage_optim="paper"`` gets the values of
    :func:`paper_stage_optimizer` (stage 2: frozen or fine-tuned as ``freeze_backbone``
    says); any other config is returned unchanged.
    """
    if config.stage_optim != "paper" or config.stage not in ("stage1", "stage2"):
        return config
    return config.replace(**paper_stage_optimizer(config.stage, config.freeze_backbone))


def stage_configs(request: TrainConfig) -> tuple[TrainConfig, TrainConfig]:
    """The stage-1 and stage-2 settings of a ``two_stage`` request.

    Stage 1 gets ``stage1_epochs`` epochs when set, else the request's own budget (epochs or
    minutes); stage 2 gets the request's budget. Stage 1 never freezes anything and always
    uses the SimCLR framework (a MemoryBank request applies to stage 2). The
    optimiser settings follow ``request.stage_optim`` (see :func:`with_stage_optimizer`;
    ``run``: the request's own for both stages).

    Raises:
        InvalidSettingError: ``request.stage`` is not ``two_stage``.
    """
    if request.stage != "two_stage":
        raise InvalidSettingError(f"expected a two-stage request, got stage {request.stage!r}")
    budget: dict[str, Any] = {}
    if request.stage1_epochs is not None:
        budget = {"epochs": request.stage1_epochs, "minutes": None}
    # stage 1 is SimCLR pre-training in the paper; with MemoryBank its unweighted L_FC at
    # lr 0.1-0.4 collapses the features (docs/benchmarks.md), so the bank is stage 2's only
    stage1 = request.replace(stage="stage1", freeze_backbone=False, framework="simclr", **budget)
    stage2 = request.replace(stage="stage2")
    return with_stage_optimizer(stage1), with_stage_optimizer(stage2)


def mine_neighbors(
    model: CRLCModel,
    images: np.ndarray | torch.Tensor | DiskPixels,
    augment_config: AugmentConfig,
    device: torch.device,
    k: int,
    reporter: Reporter | None = None,
) -> np.ndarray:
    """K nearest neighbours of every image by cosine similarity of the RL-head output.

    Args:
        model: The stage-1 network (on ``device``; left in eval mode).
        images: uint8 ``[N, S, S, 3]``, un-augmented.
        augment_config: Supplies the normalisation the network was trained with.
        device: Where the network runs.
        k: Neighbours per image; capped at ``N - 1``.
        reporter: Receives progress of the feature pass.

    Returns:
        int64 ``[N, K']`` row indices, nearest first, each image itself excluded
        (``K' = min(k, N - 1)``).
    """
    features = predict(model, images, augment_config, device, reporter=reporter).features
    table = all_pairs_knn(features, k=min(k, features.shape[0] - 1)).ids
    return _fill_padding(table)


def _fill_padding(table: np.ndarray) -> np.ndarray:
    """Replace padding (-1, possible with the approximate index) by the row's first id."""
    if table.size == 0 or table.min() >= 0:
        return table
    own = np.arange(table.shape[0], dtype=np.int64)
    first = np.where(table[:, 0] >= 0, table[:, 0], own)
    return np.where(table >= 0, table, first[:, None]).astype(np.int64)


def save_neighbor_table(path: Path, table: np.ndarray) -> None:
    """Write an int64 ``[N, K]`` table atomically as ``.npy``."""
    data = np.ascontiguousarray(table, dtype=np.int64)
    atomic_write(path, lambda handle: np.save(handle, data))


def load_neighbor_table(path: Path, num_items: int) -> np.ndarray:
    """Read a table written by :func:`save_neighbor_table` for ``num_items`` images.

    Raises:
        InvalidSettingError: missing, unreadable, or not ``[num_items, K >= 1]`` rows into
            ``num_items`` items.
    """
    try:
        table = np.load(path)
    except (OSError, ValueError) as exc:
        raise InvalidSettingError(f"cannot read the neighbour table {path}: {exc}") from exc
    if (
        table.ndim != 2
        or table.shape[0] != num_items
        or table.shape[1] < 1
        or not np.issubdtype(table.dtype, np.integer)
        or int(table.min()) < 0
        or int(table.max()) >= num_items
    ):
        raise InvalidSettingError(
            f"the neighbour table {path} does not fit {num_items} images ({table.shape})"
        )
    result: np.ndarray = table.astype(np.int64, copy=False)
    return result
