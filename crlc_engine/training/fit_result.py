"""What a training call returns (:class:`FitResult`) and what the training loop needs of an
optimiser (:class:`StepOptimizer`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["FitResult", "StepOptimizer"]


@dataclass(frozen=True)
class FitResult:
    """How a call to :meth:`TrainingLoop.fit` ended.

    Attributes:
        state: ``completed`` or ``cancelled``.
        epochs: Completed epochs in total (including before a resume).
        steps: Optimiser steps in total.
        chosen_head: Sub-head with the lowest mean L_cluster over the last epoch (0-based).
        head_losses: That epoch's mean L_cluster per sub-head.
        elapsed_s: Training time in total: wall time of the ``fit`` calls, pauses excluded,
            per-epoch work (history, events, checkpoints) included.
        samples_per_s: Images (one or two views each, see the framework) per second over
            this call's training time (per-epoch work included).
        batch_size: The batch of the last step (smaller than the settings' after running out
            of device memory; ``0``: unknown).
        batch_reductions: Each halving of the batch for lack of device memory, in order:
            ``{"epoch", "step", "from", "to"}`` (0-based epoch, step in that epoch).
    """

    state: str
    epochs: int
    steps: int
    chosen_head: int
    head_losses: list[float]
    elapsed_s: float
    samples_per_s: float
    batch_size: int = 0
    batch_reductions: tuple[dict[str, int], ...] = ()


class StepOptimizer(Protocol):
    """What the loop needs of an optimiser: ``torch.optim`` optimisers and
    :class:`~crlc_engine.training.heads_adam.HeadsAdam`."""

    param_groups: list[dict[str, Any]]

    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def step(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...
