"""Our trainer's step: :class:`~crlc_engine.training.trainer.CRLCTrainer` on a uint8 image
tensor, augmentation on the device included.

The trainer is built as a run builds it (the data on the device, the network, the optimiser,
the view statistics, its precision, memory format and compilation), prepared and put in
training mode as ``fit`` does, and its step (``CRLCTrainer._step``: views, forward, losses,
backward, SGD step, the epoch sums on the device) is called on batches of row indices in a
shuffled order. ``fit`` is not used: its per-epoch work (one host sync, the epoch record,
events) and its epoch boundaries would fall among the few timed steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from crlc_engine.bench.settings import BenchPlan
from crlc_engine.bench.timing import StepLoop, Timing
from crlc_engine.training.trainer import CRLCTrainer

#: How the trainer's figure is measured (reported with it).
TRAINER_METHOD = "CRLCTrainer._step in a loop after construction (fit's per-epoch work left out)"


@dataclass(frozen=True)
class TrainerResult:
    """The trainer's timing and the speed settings it resolved for the device.

    Attributes:
        timing: The timed steps.
        precision: ``bfloat16`` or ``float32``.
        memory_format: ``channels_last`` or ``contiguous``.
        compiled: Whether the trainer's network ran compiled.
        compile_fallback: Why it ran eagerly although compiling was asked for (``None``
            when it was not asked for, or compiled).
    """

    timing: Timing
    precision: str
    memory_format: str
    compiled: bool
    compile_fallback: str | None = None


def _batches(rows: int, batch: int, device: torch.device, seed: int) -> Iterator[Tensor]:
    """Endless batches of row indices on ``device``: a fresh shuffled order per pass over the
    rows, ``rows // batch`` batches each (the remainder dropped, as the trainer does)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(rows, generator=generator).to(device)
        for start in range(0, rows - batch + 1, batch):
            yield order[start : start + batch]


def _resolved_speed_settings(trainer: CRLCTrainer, timing: Timing) -> TrainerResult:
    """The trainer's timing with the speed settings it resolved for the device."""
    return TrainerResult(
        timing=timing,
        precision=trainer.precision,
        memory_format=trainer.memory_format,
        compiled=trainer.compiled,
        compile_fallback=trainer.compile_fallback_reason or None,
    )


def measure_trainer(plan: BenchPlan, images: np.ndarray, loop: StepLoop) -> TrainerResult:
    """Time the trainer's step on ``images`` (uint8 [N, S, S, 3], N >= the batch).

    Raises:
        InterruptedError: cancelled.
        InvalidSettingError: images that do not fit the plan.
    """
    config = plan.train_config()
    trainer = CRLCTrainer(config, images, loop.device)
    trainer._prepare_fit(loop.reporter)
    trainer._train_mode()
    batches = _batches(trainer.num_images, trainer.batch_size, loop.device, config.seed)
    timing = loop.time("trainer step", lambda: trainer._step(next(batches)))
    return _resolved_speed_settings(trainer, timing)
