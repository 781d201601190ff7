"""One rank of the two-process training runs in ``test_data_parallel_runs.py``.

Run as ``python data_parallel_worker.py MODE CHECKPOINT RESULT`` with torchrun's variables
set. ``MODE``: ``cancel`` (train from scratch; rank 0 cancels at step 3, its checkpoint goes
to ``CHECKPOINT``), ``resume`` (continue ``CHECKPOINT`` to the end) or ``budget`` (a
2-second time budget with a cosine schedule). Each rank writes its
fit result and final weights to ``RESULT`` (``torch.save``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from crlc_engine.core.control import JobControl
from crlc_engine.core.events import NullReporter
from crlc_engine.training.distributed import DistributedContext, process_group
from crlc_engine.training.trainer import CRLCTrainer
from tests.conftest import small_train_config
from tests.engine.pipeline.test_estimate import CancelAtStep

CANCEL_AT_STEP = 3


def images() -> np.ndarray:
    """uint8 [32, 16, 16, 3] noise, the same in every process."""
    return np.random.default_rng(0).integers(0, 256, size=(32, 16, 16, 3), dtype=np.uint8)


def main(mode: str, checkpoint: Path, result: Path) -> None:
    context = DistributedContext.from_environment("cpu")
    with process_group(context):
        budget = {"epochs": None, "minutes": 2 / 60, "lr_schedule": "cosine"}
        trainer = CRLCTrainer(
            small_train_config(batch_size=8, **(budget if mode == "budget" else {"epochs": 3})),
            images(),
            context.device,
            checkpoint_path=checkpoint if context.is_main else None,
            distributed=context,
        )
        control = JobControl()
        reporter: NullReporter | CancelAtStep = NullReporter()
        if mode == "resume":
            trainer.load(checkpoint)
        elif context.is_main:
            reporter = CancelAtStep(control, CANCEL_AT_STEP)
        fit = trainer.fit(reporter, control)
        torch.save(
            {
                "state": fit.state,
                "steps": fit.steps,
                "epochs": fit.epochs,
                "weights": trainer.model.state_dict(),
                "model_type": type(trainer.model.backbone).__name__,
            },
            result,
        )


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
