"""Trainer: cancel from another thread, pause/resume, checkpoints and exact resume on CPU
(SGD and Adam), the optimiser set-up, and speed/ETA measured with a fake clock."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CheckpointError, InvalidSettingError
from crlc_engine.core.events import (
    CheckpointSaved,
    EpochEnded,
    RecordingReporter,
    TrainingFinished,
    TrainingStarted,
)
from crlc_engine.training.checkpoint import load_checkpoint
from crlc_engine.training.optim import decay_split, make_optimizer
from crlc_engine.training.trainer import CRLCTrainer
from tests.conftest import small_train_config

CPU = torch.device("cpu")


def tiny_config(**changes: object) -> TrainConfig:
    return small_train_config(**{"seed": 7, **changes})


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(50, 16, 16, 3), dtype=np.uint8)


class BlockAtStep(RecordingReporter):
    """Blocks the training thread at step ``at`` until the test has cancelled or paused."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.reached = threading.Event()
        self.release = threading.Event()

    def progress(self, done: float, total: float | None) -> None:
        super().progress(done, total)
        if int(done) == self.at:
            self.reached.set()
            assert self.release.wait(10)


def run_in_thread(
    trainer: CRLCTrainer, reporter: RecordingReporter, control: JobControl
) -> tuple[threading.Thread, dict[str, object]]:
    result: dict[str, object] = {}

    def work() -> None:
        result["fit"] = trainer.fit(reporter, control)

    thread = threading.Thread(target=work)
    thread.start()
    return thread, result


def test_epoch_arithmetic_and_events(images: np.ndarray, tmp_path: Path) -> None:
    trainer = CRLCTrainer(
        tiny_config(epochs=2), images, CPU, tmp_path / "c.pt", tmp_path / "h.jsonl"
    )
    assert trainer.batch_size == 8 and trainer.steps_per_epoch == 6  # floor(50 / 8)
    reporter = RecordingReporter()
    fit = trainer.fit(reporter)
    assert fit.state == "completed" and fit.epochs == 2 and fit.steps == 12
    epochs = [e for e in reporter.events if isinstance(e, EpochEnded)]
    assert [e.epoch for e in epochs] == [1, 2]
    assert all(len(e.head_losses) == 2 and sum(e.cluster_sizes) == 6 * 8 for e in epochs)
    assert epochs[-1].eta_s == 0.0
    assert fit.chosen_head == int(np.argmin(epochs[-1].head_losses))
    assert isinstance(reporter.events[0], TrainingStarted)
    assert isinstance(reporter.events[-1], TrainingFinished)
    assert any(isinstance(e, CheckpointSaved) for e in reporter.events)
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 2


def test_batch_is_capped_at_dataset_size(images: np.ndarray) -> None:
    trainer = CRLCTrainer(tiny_config(batch_size=512, epochs=1), images[:10], CPU)
    assert trainer.batch_size == 10 and trainer.steps_per_epoch == 1


def test_too_many_clusters_and_wrong_size_are_rejected(images: np.ndarray) -> None:
    with pytest.raises(InvalidSettingError, match="only 4 usable images"):
        CRLCTrainer(tiny_config(clusters=5), images[:4], CPU)
    with pytest.raises(InvalidSettingError, match="16x16"):
        CRLCTrainer(tiny_config(image_size=32), images, CPU)


def test_cancel_from_another_thread_stops_within_one_step(
    images: np.ndarray, tmp_path: Path
) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    trainer = CRLCTrainer(tiny_config(), images, CPU, ckpt)
    reporter = BlockAtStep(at=9)  # mid-epoch 2 (6 steps per epoch)
    control = JobControl()
    thread, result = run_in_thread(trainer, reporter, control)
    assert reporter.reached.wait(60)
    control.cancel()
    reporter.release.set()
    thread.join(60)
    fit = result["fit"]
    assert fit.state == "cancelled"  # type: ignore[attr-defined]
    assert trainer.total_steps == 9  # no further step after the cancel
    state = load_checkpoint(ckpt)
    assert (state["epoch"], state["step_in_epoch"], state["total_steps"]) == (1, 3, 9)


def test_pause_blocks_steps_until_resumed(images: np.ndarray) -> None:
    trainer = CRLCTrainer(tiny_config(epochs=1), images, CPU)
    reporter = BlockAtStep(at=2)
    control = JobControl()
    thread, _ = run_in_thread(trainer, reporter, control)
    assert reporter.reached.wait(60)
    control.pause()
    reporter.release.set()
    time.sleep(0.4)
    assert trainer.total_steps == 2 and control.paused
    control.resume()
    thread.join(60)
    assert trainer.total_steps == 6


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cancelled_then_resumed_equals_uninterrupted(
    images: np.ndarray, tmp_path: Path, optimizer: str
) -> None:
    config = tiny_config(optimizer=optimizer, lr=0.1 if optimizer == "sgd" else 1e-3)
    straight = CRLCTrainer(config, images, CPU)
    straight.fit()

    ckpt = tmp_path / "checkpoint.pt"
    first = CRLCTrainer(config, images, CPU, ckpt)
    control = JobControl()
    reporter = BlockAtStep(at=8)
    thread, _ = run_in_thread(first, reporter, control)
    assert reporter.reached.wait(60)
    control.cancel()
    reporter.release.set()
    thread.join(60)
    assert first.total_steps == 8

    resumed = CRLCTrainer(config, images, CPU, ckpt)
    resumed.load()
    assert type(resumed.optimizer) is type(straight.optimizer)
    assert load_checkpoint(ckpt)["optimizer_kind"] == optimizer
    fit = resumed.fit()
    assert fit.state == "completed" and fit.epochs == 3 and fit.steps == 18
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    np.testing.assert_allclose(
        [r["head_losses"] for r in straight.history],
        [r["head_losses"] for r in resumed.history],
        atol=1e-5,
    )


def test_time_budget_stops_training(images: np.ndarray) -> None:
    trainer = CRLCTrainer(tiny_config(epochs=None, minutes=0.01), images, CPU)
    start = time.monotonic()
    fit = trainer.fit()
    assert fit.state == "completed"
    assert fit.elapsed_s >= 0.6 and time.monotonic() - start < 30
    assert trainer.history  # a (possibly partial) epoch record exists for the head choice


def test_checkpoint_for_other_settings_is_refused(images: np.ndarray, tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    CRLCTrainer(tiny_config(epochs=1), images, CPU, ckpt).fit()
    other = CRLCTrainer(tiny_config(clusters=4), images, CPU, ckpt)
    with pytest.raises(CheckpointError, match="clusters"):
        other.load()
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        other.load(tmp_path / "bad.pt")


def test_pretrained_backbone_statistics_replace_the_data_sets(
    images: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crlc_engine.models import CRLCModel
    from crlc_engine.training import trainer as trainer_module

    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

    class PretrainedModel(CRLCModel):
        """A network whose backbone says it expects ImageNet's statistics."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.backbone.input_normalization = imagenet

    plain = CRLCTrainer(tiny_config(epochs=1), images, CPU)
    assert plain.augment_config.mean != imagenet[0]  # the data set's own statistics
    monkeypatch.setattr(trainer_module, "CRLCModel", PretrainedModel)
    ckpt = tmp_path / "c.pt"
    trainer = CRLCTrainer(tiny_config(epochs=1), images, CPU, ckpt)
    assert (trainer.augment_config.mean, trainer.augment_config.std) == imagenet
    trainer.fit()
    saved = load_checkpoint(ckpt)["normalization"]
    assert (tuple(saved["mean"]), tuple(saved["std"])) == imagenet
    monkeypatch.undo()
    restored = CRLCTrainer(tiny_config(epochs=1), images, CPU, ckpt)
    restored.load()  # a resumed run (and its assignments) keep the saved statistics
    assert (restored.augment_config.mean, restored.augment_config.std) == imagenet


# ----------------------------------------------------------------------------- optimiser
class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(4, 2)


def test_config_validates_the_optimizer_settings() -> None:
    assert tiny_config().optimizer == "sgd"  # the default
    assert tiny_config(optimizer="adam").optimizer == "adam"
    with pytest.raises(InvalidSettingError, match="unknown optimizer 'rmsprop'; choose one of"):
        tiny_config(optimizer="rmsprop")
    with pytest.raises(InvalidSettingError, match="stage optimiser"):
        tiny_config(stage_optim="both")


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_make_optimizer_groups_decay_and_learning_rate(kind: str) -> None:
    model = TwoLayers()
    config = tiny_config(optimizer=kind, lr=0.03, momentum=0.7, weight_decay=2e-3)
    optimizer = make_optimizer(model, config)
    assert type(optimizer) is (torch.optim.SGD if kind == "sgd" else torch.optim.Adam)
    decayed, plain = optimizer.param_groups
    assert [id(p) for p in decayed["params"]] == [id(model.conv.weight), id(model.head.weight)]
    assert {id(p) for p in plain["params"]} == {
        id(model.conv.bias),
        id(model.norm.weight),
        id(model.norm.bias),
        id(model.head.bias),
    }  # the frozen layer is left out, BatchNorm scales are not decayed
    assert (decayed["weight_decay"], plain["weight_decay"]) == (2e-3, 0.0)
    assert decayed["lr"] == plain["lr"] == 0.03
    if kind == "sgd":
        assert decayed["momentum"] == 0.7 and decayed["nesterov"] is False
    else:
        assert decayed["betas"] == (0.9, 0.999)
    assert [id(p) for p in decayed["params"]] == [id(p) for p in decay_split(model)[0]]


def test_adam_weight_decay_is_l2_added_to_the_gradient() -> None:
    """Plain-loop reference of one Adam step with L2 decay (not AdamW's decoupled decay)."""
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    start = layer.weight.detach().clone()
    lr, wd, eps = 0.01, 0.5, 1e-8
    optimizer = make_optimizer(layer, tiny_config(optimizer="adam", lr=lr, weight_decay=wd))
    x = torch.randn(5, 3)
    loss = layer(x).pow(2).sum()
    loss.backward()
    assert layer.weight.grad is not None
    grad = layer.weight.grad.detach().clone() + wd * start  # L2: decay joins the gradient
    m_hat = grad  # after one step: m = (1 - b1) g, bias-corrected by 1 - b1
    v_hat = grad * grad
    expected = start - lr * m_hat / (v_hat.sqrt() + eps)
    optimizer.step()
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=1e-6, atol=1e-7)
    adamw = start - lr * wd * start - lr * layer.weight.grad / (layer.weight.grad.abs() + eps)
    assert not torch.allclose(layer.weight.detach(), adamw, atol=1e-4)


def test_resume_with_another_optimizer_is_refused(images: np.ndarray, tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    CRLCTrainer(tiny_config(epochs=1, optimizer="adam", lr=1e-3), images, CPU, ckpt).fit()
    other = CRLCTrainer(tiny_config(epochs=2), images, CPU, ckpt)
    with pytest.raises(CheckpointError, match="adam optimiser, these settings use sgd"):
        other.load()
    same = CRLCTrainer(tiny_config(epochs=2, optimizer="adam", lr=1e-3), images, CPU, ckpt)
    same.load()
    assert same.epoch == 1 and isinstance(same.optimizer, torch.optim.Adam)
    assert same.optimizer.state  # the moment estimates came back


# ----------------------------------------------------------------------------- speed and ETA
class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_speed_and_eta_include_per_epoch_work_and_exclude_pauses(
    images: np.ndarray, tmp_path: Path
) -> None:
    """Steps take 0.01 s, each checkpoint 1 s and one pause 5 s on a fake clock: the speed
    runs from one epoch close to the next, so a checkpoint slows the epoch after it; the
    pause counts nowhere."""
    trainer = CRLCTrainer(tiny_config(epochs=3), images, CPU, tmp_path / "c.pt")
    clock = FakeClock()
    trainer.clock = clock
    step, save = trainer._step, trainer.save

    def slow_step(indices: Tensor) -> None:
        step(indices)
        clock.now += 0.01

    def slow_save(reporter: object = None) -> None:
        save(reporter)  # type: ignore[arg-type]
        clock.now += 1.0

    trainer._step = slow_step  # type: ignore[method-assign]
    trainer.save = slow_save  # type: ignore[method-assign]
    control = JobControl()
    waits = [0]

    def wait_once(poll_s: float = 0.1) -> bool:
        waits[0] += 1
        if waits[0] == 9:  # a 5 s pause before step 9, in epoch 2
            clock.now += 5.0
        return False

    control.checkpoint_wait = wait_once  # type: ignore[method-assign]
    reporter = RecordingReporter()
    fit = trainer.fit(reporter, control)
    epochs = [e for e in reporter.events if isinstance(e, EpochEnded)]
    batch = 8 * 6  # images per epoch
    # Epoch 1: six steps. Epochs 2, 3: the previous checkpoint plus six steps.
    assert [e.samples_per_s for e in epochs] == pytest.approx(
        [batch / 0.06, batch / 1.06, batch / 1.06]
    )
    # ETA: remaining steps at the speed of the whole call so far (checkpoints included).
    assert [e.eta_s for e in epochs] == pytest.approx([12 / (6 / 0.06), 6 / (12 / 1.12), 0.0])
    assert [e.elapsed_s for e in epochs] == pytest.approx([0.06, 1.12, 2.18])
    assert fit.elapsed_s == pytest.approx(2.18)  # the final checkpoint is after the clock
    assert fit.samples_per_s == pytest.approx(3 * batch / 2.18)
