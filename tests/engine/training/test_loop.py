"""The shared training loop: a new training method is one subclass of :class:`TrainingLoop`.

The toy method below (a linear C-head on random vectors, noisy views) supplies only its data,
network, optimiser and step; budget, epochs, events, checkpoints and an exact resume come
from the loop.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from crlc_engine.core.config import LossSettings
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CheckpointError, InvalidSettingError
from crlc_engine.core.events import (
    CheckpointSaved,
    EpochEnded,
    RecordingReporter,
    TrainingFinished,
    TrainingStarted,
)
from crlc_engine.losses import crlc_loss
from crlc_engine.training.checkpoint import grow_cluster_columns, load_checkpoint
from crlc_engine.training.epoch_stats import add_step_sums
from crlc_engine.training.loop import TrainingLoop
from crlc_engine.training.quick_settings import QuickSettings


class ToyMethod(TrainingLoop):
    """A linear C-head on vectors; views are the vectors plus noise."""

    network_key = "net"
    step_generator_key = "noise_generator"

    def __init__(
        self, settings: QuickSettings, data: Tensor, checkpoint_path: Path | None = None
    ) -> None:
        super().__init__(settings, data.shape[0], torch.device("cpu"), checkpoint_path, None, "toy")
        torch.manual_seed(settings.seed)
        self.data = data
        self.net = nn.Linear(data.shape[1], settings.clusters * settings.subheads)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=settings.lr)
        self.noise_generator = torch.Generator().manual_seed(settings.seed + 1)
        self.loss = LossSettings(lambda_fc=0.0)
        self.steps_seen = 0

    @property
    def network(self) -> nn.Module:
        return self.net

    @property
    def step_generator(self) -> torch.Generator:
        return self.noise_generator

    def _view(self, indices: Tensor) -> Tensor:
        x = self.data[indices]
        noise = torch.randn(x.shape, generator=self.noise_generator)
        heads = self.net(x + 0.1 * noise).unflatten(-1, (self.loop_settings.subheads, -1))
        return heads.transpose(0, 1)  # [H, B, C]

    def _step(self, indices: Tensor) -> None:
        a, b = self._view(indices), self._view(indices)
        loss = crlc_loss(None, None, a, b, self.loss)
        self._optimizer_step(loss.total)
        self.steps_seen += 1
        add_step_sums(self._sums, loss, a)

    def _train_mode(self) -> None:
        self.net.train()

    def state_dict(self) -> dict[str, Any]:
        return {"method": "toy", **self._loop_state()}

    def _read_for_resume(self, source: Path) -> dict[str, Any]:
        state = load_checkpoint(source)
        self._check_num_images(state, source)
        return state

    def _restore_method_state(self, state: dict[str, Any], source: Path, resumable: bool) -> None:
        assert state["method"] == "toy"


def settings(**changes: Any) -> QuickSettings:
    values: dict[str, Any] = {
        "clusters": 3,
        "epochs": 4,
        "batch_size": 8,
        "subheads": 2,
        "lr": 0.5,
        "lr_schedule": "cosine",
        "lr_min": 0.05,
        "min_steps": 0,
        "checkpoint_every": 2,
        "precision": "float32",
    }
    return QuickSettings(**{**values, **changes})


def data(rows: int = 30) -> Tensor:
    return torch.randn(rows, 5, generator=torch.Generator().manual_seed(7))


def test_a_new_method_is_one_subclass(tmp_path: Path) -> None:
    method = ToyMethod(settings(), data(), tmp_path / "toy.pt")
    reporter = RecordingReporter()
    fit = method.fit(reporter)
    assert method.batch_size == 8 and method.steps_per_epoch == 3  # 30 rows: remainder dropped
    assert (fit.state, fit.epochs, fit.steps) == ("completed", 4, 12)
    assert method.steps_seen == 12 and len(method.history) == 4
    kinds = [type(event) for event in reporter.events]
    assert kinds[0] is TrainingStarted and kinds[-1] is TrainingFinished
    assert kinds.count(EpochEnded) == 4
    assert kinds.count(CheckpointSaved) == 2  # after epoch 2, and the final one
    started = reporter.events[0]
    assert isinstance(started, TrainingStarted) and started.total_epochs == 4
    state = load_checkpoint(tmp_path / "toy.pt")
    assert state["method"] == "toy" and state["epoch"] == 4
    assert {"net", "optimizer", "noise_generator", "order_generator", "sums"} <= set(state)
    last_lr = 0.05 + 0.5 * (0.5 - 0.05) * (1 + math.cos(math.pi * 11 / 12))  # cosine, step 12
    assert method.optimizer.param_groups[0]["lr"] == pytest.approx(last_lr)


def test_cancel_and_resume_equal_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = ToyMethod(settings(), data())
    whole.fit()

    control = JobControl()
    first = ToyMethod(settings(), data(), tmp_path / "toy.pt")
    step = first._step

    def cancel_after_five(indices: Tensor) -> None:
        step(indices)
        if first.total_steps == 4:  # counted after the step: the fifth step cancels
            control.cancel()

    first._step = cancel_after_five  # type: ignore[method-assign]
    assert first.fit(control=control).state == "cancelled"
    assert (first.epoch, first.step_in_epoch) == (1, 2)

    second = ToyMethod(settings(), data(), tmp_path / "toy.pt")
    second.load()
    assert second.fit().state == "completed"
    for name, value in whole.net.state_dict().items():
        assert torch.equal(value, second.net.state_dict()[name]), name
    assert [r["losses"] for r in whole.history] == [r["losses"] for r in second.history]


def test_time_budget_and_checks(tmp_path: Path) -> None:
    method = ToyMethod(settings(epochs=None, minutes=1.0), data())
    now = [0.0]

    def clock() -> float:
        now[0] += 2.0  # every reading moves two seconds on
        return now[0]

    method.clock = clock
    fit = method.fit()
    assert fit.state == "completed" and fit.epochs < 1000
    assert method.elapsed_s >= 60.0
    with pytest.raises(InvalidSettingError, match="only 2 usable images"):
        ToyMethod(settings(), data(rows=2))
    other = ToyMethod(settings(), data(rows=31), tmp_path / "toy.pt")
    ToyMethod(settings(), data(), tmp_path / "toy.pt").save()
    with pytest.raises(CheckpointError, match="30 images"):
        other.load()


def test_grow_cluster_columns_keeps_the_parents_columns() -> None:
    own = {"w": torch.zeros(2, 4), "b": torch.zeros(4)}
    weights = {"w": torch.ones(2, 3)}
    grow_cluster_columns(weights, own, ("w", "b"))
    assert weights["w"].tolist() == [[1.0, 1.0, 1.0, 0.0]] * 2 and "b" not in weights
    with pytest.raises(CheckpointError, match="more clusters"):
        grow_cluster_columns({"w": torch.ones(2, 5)}, own, ("w",))
