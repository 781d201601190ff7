"""Running out of device memory (``torch.OutOfMemoryError``, injected here on the CPU): the
loop drops the step, halves the batch, says so and goes on from the same position; the
batch really used is checkpointed, kept on resume and reported by the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from crlc_engine.cli.main import main
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import OutOfDeviceMemoryError
from crlc_engine.core.events import BatchReduced, RecordingReporter, TrainingStarted
from crlc_engine.training.compiled_forward import CompiledForward
from crlc_engine.training.trainer import CRLCTrainer
from tests.conftest import TINY_TRAIN_FLAGS, small_train_config
from tests.engine.pipeline.test_estimate import CancelAtStep

CPU = torch.device("cpu")


def images(n: int = 32) -> np.ndarray:
    """uint8 [n, 16, 16, 3] noise."""
    return np.random.default_rng(0).integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)


def failing_step(
    trainer: CRLCTrainer, fails_at: Callable[[int, int], bool], seen: list[list[int]]
) -> None:
    """Make the trainer's step raise ``torch.OutOfMemoryError`` where ``fails_at(call,
    batch)`` says (before any work, like an allocation in the forward), after drawing some
    augmentation randomness; every successful step's rows go to ``seen``."""
    real_step = trainer._train_step
    calls = [0]

    def step(indices: Tensor) -> None:
        calls[0] += 1
        if fails_at(calls[0], int(indices.shape[0])):
            torch.rand(5, generator=trainer.augment_generator)  # a view drawn, then the error
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        real_step(indices)
        seen.append(indices.tolist())

    trainer._train_step = step  # type: ignore[method-assign]


def test_halves_the_batch_and_goes_on_from_the_same_rows() -> None:
    trainer = CRLCTrainer(small_train_config(batch_size=8, epochs=2), images(), CPU)
    seen: list[list[int]] = []
    failing_step(trainer, lambda call, batch: call == 3 and batch == 8, seen)
    reporter = RecordingReporter()
    result = trainer.fit(reporter)

    assert result.state == "completed" and result.epochs == 2
    assert result.batch_size == 4
    assert result.batch_reductions == ({"epoch": 0, "step": 2, "from": 8, "to": 4},)
    reduced = [e for e in reporter.events if isinstance(e, BatchReduced)]
    assert reduced == [BatchReduced(8, 4, 0, 2, "cpu")]
    assert reduced[0].message == (
        "Out of CPU memory at a batch of 8 images: continuing from the same step at a batch of 4"
    )
    # Epoch 1: two batches of 8, then the failed batch's rows in two halves, then the rest.
    first_epoch = [row for batch in seen[: 2 + 4] for row in batch]
    assert [len(b) for b in seen[:6]] == [8, 8, 4, 4, 4, 4]
    assert sorted(first_epoch) == list(range(32))  # every row once, none lost or repeated
    assert [len(b) for b in seen[6:]] == [4] * 8  # epoch 2 at the smaller batch
    assert result.steps == 14
    assert trainer.history[0]["samples_per_s"] > 0


def test_the_failed_step_draws_its_randomness_again() -> None:
    """After the halving, the run continues exactly as one started at the smaller batch
    from the same position would: the failed step's draws are undone."""
    config = small_train_config(batch_size=8, epochs=1)
    failed = CRLCTrainer(config, images(), CPU)
    failing_step(failed, lambda call, batch: call == 1, [])
    failed.fit()

    plain = CRLCTrainer(config.replace(batch_size=4), images(), CPU)
    plain.fit()
    weights = zip(
        failed.model.state_dict().values(), plain.model.state_dict().values(), strict=True
    )
    assert all(torch.equal(a, b) for a, b in weights)


def test_the_batch_really_used_is_checkpointed_and_kept_on_resume(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt.pt"
    config = small_train_config(batch_size=8, epochs=3)
    trainer = CRLCTrainer(config, images(), CPU, checkpoint_path=checkpoint)
    failing_step(trainer, lambda call, batch: call == 2, [])
    control = JobControl()
    assert trainer.fit(CancelAtStep(control, 10), control).state == "cancelled"

    resumed = CRLCTrainer(config, images(), CPU, checkpoint_path=checkpoint)
    resumed.load()
    assert resumed.batch_size == 4 and resumed.steps_per_epoch == 8
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 2)  # cancelled at position 8 + 2
    reporter = RecordingReporter()
    result = resumed.fit(reporter)
    started = [e for e in reporter.events if isinstance(e, TrainingStarted)]
    assert started[0].batch_size == 4
    assert result.batch_size == 4 and len(result.batch_reductions) == 1
    assert result.steps == 7 + 8 + 8 and result.epochs == 3


def test_a_step_that_failed_after_its_update_counts() -> None:
    """Out of memory after the optimiser's update (e.g. in the epoch's sums): the step is
    not taken again; the epoch goes on after it at half the batch."""
    trainer = CRLCTrainer(small_train_config(batch_size=8, epochs=1), images(), CPU)
    real_update = trainer._optimizer_step
    seen: list[int] = []

    def update(objective: Tensor) -> None:
        real_update(objective)
        seen.append(trainer.batch_size)
        if len(seen) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory.")

    trainer._optimizer_step = update  # type: ignore[method-assign]
    reporter = RecordingReporter()
    result = trainer.fit(reporter)
    assert seen == [8, 8, 4, 4, 4, 4]  # 2 steps of 8 (the second failed late), then 16 rows
    assert result.steps == 6 and result.batch_reductions == (
        {"epoch": 0, "step": 2, "from": 8, "to": 4},
    )
    assert reporter.progresses[-1] == (8.0, 8.0)  # the bar by position: full at the end


def test_out_of_memory_in_a_compiled_first_step_keeps_the_compiled_forward() -> None:
    forward = CompiledForward(lambda views: views, enabled=False)
    forward._compiled = forward.function  # on trial, as after torch.compile
    restored: list[str] = []

    def step() -> None:
        raise torch.OutOfMemoryError("CUDA out of memory.")

    with pytest.raises(torch.OutOfMemoryError):
        forward.run_first_step(step, lambda: "saved", restored.append)
    assert restored == ["saved"] and forward.active and forward.fallback_reason == ""


def test_out_of_memory_at_the_smallest_batch_is_a_plain_error() -> None:
    trainer = CRLCTrainer(small_train_config(batch_size=8, epochs=1), images(), CPU)
    failing_step(trainer, lambda call, batch: True, [])
    reporter = RecordingReporter()
    with pytest.raises(OutOfDeviceMemoryError, match="memory with a batch of 2 images"):
        trainer.fit(reporter)
    halvings = [(e.old, e.new) for e in reporter.events if isinstance(e, BatchReduced)]
    assert halvings == [(8, 4), (4, 2)]  # then the error


def test_command_line_reports_the_batch_it_used(
    shapes_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_step = CRLCTrainer._train_step
    failed: list[bool] = []

    def step(self: CRLCTrainer, indices: Tensor) -> None:
        if not failed:
            failed.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory.")
        real_step(self, indices)

    monkeypatch.setattr(CRLCTrainer, "_train_step", step)
    workspace = tmp_path / "ws"
    args = ["train", str(shapes_folder), "-k", "4", "--workspace", str(workspace), "--json"]
    assert main([*args, *TINY_TRAIN_FLAGS]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out.strip().splitlines()[-1])
    assert payload["batch_size"] == 8
    assert payload["batch_reductions"] == [{"epoch": 0, "step": 0, "from": 16, "to": 8}]
    assert "batch of 16 images: continuing from the same step at a batch of 8" in captured.err
    status = json.loads((Path(payload["run_dir"]) / "status.json").read_text())
    assert status["batch_size"] == 8 and status["batch_reductions"] == payload["batch_reductions"]
