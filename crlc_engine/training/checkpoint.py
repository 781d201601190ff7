"""Atomic training checkpoints (model, optimiser, RNG states, data-order position, config)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from crlc_engine.errors import CheckpointError
from crlc_engine.fileio import atomic_write

CHECKPOINT_FORMAT = 1


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
