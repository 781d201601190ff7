"""Atomic training checkpoints (model, optimiser, RNG states, data-order position, config).

While a run trains, its checkpoint holds everything needed to continue it exactly, the
optimiser state included (SGD momentum: one more copy of the weights; Adam: two). When the
run finishes, its final checkpoint can leave out what only continuing the training needs
(:data:`RESUME_ONLY_KEYS`, see :func:`finished_state`): a finished run is never resumed, and
what starts from it (refine, stage 2, assigning again) reads only the network weights and
the input statistics. For the quick preset's heads that is 29 MB instead of 88 MB.
:func:`grow_cluster_columns` fits a parent's C-head weights to a run with more clusters.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from crlc_engine.core.errors import CheckpointError
from crlc_engine.core.fileio import atomic_write

CHECKPOINT_FORMAT = 1

#: Entries only continuing a run's training reads: the optimiser state and the MemoryBank
#: framework's banks. A finished run's final checkpoint stores ``None`` for them and
#: ``finished: True`` (:func:`finished_state`).
RESUME_ONLY_KEYS = ("optimizer", "memory_bank")

#: Why a finished run's checkpoint cannot continue training, for error messages.
FINISHED_NOTE = (
    "is the final checkpoint of a finished run, saved without the optimiser state, so its "
    "training cannot continue; start a new run, or refine this one"
)


def finished_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without the entries only continuing the training needs (set to ``None``),
    marked ``finished``."""
    return {**state, **{key: None for key in RESUME_ONLY_KEYS if key in state}, "finished": True}


def has_resume_state(state: dict[str, Any]) -> bool:
    """Whether a checkpoint can continue training (it was not stripped by
    :func:`finished_state`)."""
    return state.get("optimizer") is not None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors on any device) atomically with :func:`torch.save`."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing, unreadable, or of an unknown format.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} has unknown checkpoint format {state.get('format')!r}")
    return state


def restore_generator(
    generator: torch.Generator, saved: torch.Tensor, source: object, device: torch.device
) -> None:
    """Set ``generator`` to a checkpoint's saved RNG state.

    Raises:
        CheckpointError: the state was saved by a generator on another kind of device.
    """
    try:
        generator.set_state(saved.cpu())
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {source} was written on another kind of device than "
            f"{device.type}; resume it with the same device ({exc})"
        ) from exc


def grow_cluster_columns(
    weights: dict[str, Tensor], own: dict[str, Tensor], keys: Iterable[str]
) -> None:
    """Fit a parent's C-head ``weights`` (in place) to this run's ``own`` shapes.

    The C-head may have more clusters than the parent's (CRLC-semi with more classes than
    clusters): the parent's output columns are copied and the new ones keep their fresh
    initialisation. Keys missing from ``weights`` are skipped.

    Raises:
        CheckpointError: the parent has more clusters than this run.
    """
    for key in keys:
        if key not in weights:
            continue
        old, new = weights[key], own[key]
        if old.shape != new.shape:
            if old.shape[-1] > new.shape[-1]:
                raise CheckpointError("the parent has more clusters than this run")
            grown = new.clone()
            grown[..., : old.shape[-1]] = old
            weights[key] = grown
