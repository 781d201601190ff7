"""Per-epoch loss bookkeeping shared by the pixel trainer and the feature (quick) trainer.

The sums live on the training device and are added to every step without a host sync; they
are read once when an epoch closes, turned into a history record and an
:class:`~crlc_engine.core.events.EpochEnded` event. The sums dict is part of both trainers'
checkpoints (a partial epoch resumes with its sums).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crlc_engine.core.errors import TrainingDivergedError
from crlc_engine.core.events import EpochEnded
from crlc_engine.losses import CRLCLossOutput

#: Loss parts summed per epoch (means of the sub-heads for the per-head parts).
LOSS_PARTS = ("total", "feature", "cluster", "probability_contrastive", "entropy", "guard")


def zero_epoch_sums(
    subheads: int, clusters: int, device: torch.device, extra: Sequence[str] = ()
) -> dict[str, Tensor]:
    """Fresh sums: scalars for :data:`LOSS_PARTS` and ``extra``, ``head_cluster`` [H] and
    ``head_counts`` [H, C] (images per cluster of each sub-head)."""
    sums = {name: torch.zeros((), device=device) for name in (*LOSS_PARTS, *extra)}
    sums["head_cluster"] = torch.zeros(subheads, device=device)
    sums["head_counts"] = torch.zeros(subheads, clusters, device=device)
    return sums


def add_step_sums(
    sums: dict[str, Tensor],
    loss: CRLCLossOutput,
    first_view_logits: Tensor | None,
    extra: dict[str, Tensor] | None = None,
) -> None:
    """Add one step's loss parts (and the first view's argmax per sub-head) to ``sums``.

    Args:
        sums: From :func:`zero_epoch_sums`, updated in place.
        loss: The step's loss; per-head parts are [H].
        first_view_logits: Logits [H, b, C] of the batch's first view, or ``None`` when the
            step ran no C-head (stage 1).
        extra: More scalar parts (e.g. ``xent``), each already in ``sums``.
    """
    with torch.no_grad():
        sums["total"] += loss.total.detach()
        sums["feature"] += loss.feature.detach()
        sums["cluster"] += loss.cluster.detach().mean()
        sums["probability_contrastive"] += loss.probability_contrastive.detach().mean()
        sums["entropy"] += loss.entropy.detach().mean()
        sums["guard"] += loss.guard.detach().mean()
        sums["head_cluster"] += loss.cluster.detach().float()
        for name, value in (extra or {}).items():
            sums[name] += value.detach()
        if first_view_logits is not None:
            assigned = first_view_logits.detach().argmax(dim=-1)  # [H, b]
            counts = sums["head_counts"]
            counts.scatter_add_(1, assigned, torch.ones_like(assigned, dtype=counts.dtype))


def chosen_head_of(history: Sequence[dict[str, Any]]) -> int:
    """Sub-head with the lowest mean L_cluster over the last full epoch of ``history``.

    A partial epoch (the end of a time budget) counts only when no full epoch exists.
    Returns 0 before any record.
    """
    if not history:
        return 0
    full = [r for r in history if not r.get("partial")]
    losses = (full or history)[-1]["head_losses"]
    return int(np.nanargmin(np.asarray(losses, dtype=np.float64)))


def epoch_record(
    sums: dict[str, Tensor],
    sum_steps: int,
    parts: Sequence[str],
    epoch: int,
    partial: bool,
    samples_per_s: float,
    elapsed_s: float,
    lr_hint: str = "a lower learning rate",
) -> dict[str, Any]:
    """The history record of a closing epoch (the one host sync of the epoch).

    Args:
        sums: The epoch's sums.
        sum_steps: Steps summed.
        parts: Scalar parts to report (:data:`LOSS_PARTS` plus any extra).
        epoch: The record's epoch number (1-based; a partial epoch gets the next number).
        partial: Whether the epoch was cut short by a time budget.
        samples_per_s: Training speed over the epoch's steps.
        elapsed_s: Training time so far.
        lr_hint: How the divergence message names the learning-rate setting.

    Raises:
        TrainingDivergedError: a summed loss is NaN or infinite.
    """
    host = {k: v.detach().cpu() for k, v in sums.items()}
    denominator = max(sum_steps, 1)
    losses = {name: float(host[name]) / denominator for name in parts}
    head_losses = (host["head_cluster"] / denominator).tolist()
    if not all(math.isfinite(v) for v in [*losses.values(), *head_losses]):
        raise TrainingDivergedError(
            f"the loss became NaN/inf in epoch {epoch}; try {lr_hint} or a larger gamma; "
            "the last good checkpoint was kept"
        )
    return {
        "epoch": epoch,
        "partial": partial,
        "steps": sum_steps,
        "losses": losses,
        "head_losses": head_losses,
        "head_counts": host["head_counts"].long().tolist(),
        "samples_per_s": samples_per_s,
        "elapsed_s": elapsed_s,
    }


def log_epoch(
    record: dict[str, Any],
    history: list[dict[str, Any]],
    history_path: Path | None,
    eta_s: float | None,
) -> EpochEnded:
    """Append ``record`` to ``history`` (and ``history.jsonl``) and make its event."""
    history.append(record)
    if history_path is not None:
        with history_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    chosen = chosen_head_of(history)
    return EpochEnded(
        epoch=int(record["epoch"]),
        losses=record["losses"],
        head_losses=record["head_losses"],
        chosen_head=chosen,
        cluster_sizes=record["head_counts"][chosen],
        samples_per_s=float(record["samples_per_s"]),
        elapsed_s=float(record["elapsed_s"]),
        eta_s=eta_s,
        steps=int(record["steps"]),
    )


__all__ = [
    "LOSS_PARTS",
    "add_step_sums",
    "chosen_head_of",
    "epoch_record",
    "log_epoch",
    "zero_epoch_sums",
]
