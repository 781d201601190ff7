"""Training time and speed on a fake clock: :class:`TrainingClock` and the feature trainer
(the pixel trainer's check is in ``test_trainer.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import Tensor

from crlc_engine.core.events import EpochEnded, RecordingReporter
from crlc_engine.training.feature_trainer import FeatureTrainer, QuickSettings
from crlc_engine.training.pace import TrainingClock


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_training_clock_laps_count_work_between_closes_and_leave_out_pauses() -> None:
    clock = FakeClock()
    pace = TrainingClock(elapsed_s=7.0, clock=clock)
    assert pace.steps_per_s() == 0.0 and pace.lap() == (0, 0.0)
    for _ in range(4):
        clock.now += 0.5
        pace.step()

    def pause() -> bool:
        clock.now += 30.0
        return True

    assert pace.paused(pause) is True
    steps, seconds = pace.lap()
    assert (steps, seconds) == (4, 2.0)
    clock.now += 3.0  # per-epoch work: counts in the next lap
    pace.step()
    clock.now += 1.0
    steps, seconds = pace.lap()
    assert steps == 1 and seconds == pytest.approx(4.0)
    assert pace.steps == 5 and pace.seconds == pytest.approx(6.0)
    assert pace.elapsed_s == pytest.approx(13.0)  # 7 s before this call
    assert pace.steps_per_s() == pytest.approx(5 / 6.0)


def test_feature_trainer_speed_and_eta_include_checkpoints(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 6)).astype(np.float32)
    settings = QuickSettings(
        clusters=2,
        epochs=3,
        batch_size=10,
        hidden=8,
        subheads=2,
        feature_dim=4,
        neighbors=3,
        min_steps=0,
        precision="float32",
        checkpoint_every=1,
    )
    trainer = FeatureTrainer(settings, features, checkpoint_path=tmp_path / "c.pt")
    clock = FakeClock()
    trainer.clock = clock
    step, save = trainer._step, trainer.save

    def slow_step(indices: Tensor, knn: Tensor | None = None) -> None:
        step(indices, knn)
        clock.now += 0.1

    def slow_save(reporter: object = None) -> None:
        save(reporter)  # type: ignore[arg-type]
        clock.now += 2.0

    trainer._step = slow_step  # type: ignore[method-assign]
    trainer.save = slow_save  # type: ignore[method-assign]
    reporter = RecordingReporter()
    fit = trainer.fit(reporter)
    epochs = [e for e in reporter.events if isinstance(e, EpochEnded)]
    assert trainer.steps_per_epoch == 4
    assert [e.samples_per_s for e in epochs] == pytest.approx([40 / 0.4, 40 / 2.4, 40 / 2.4])
    assert [e.eta_s for e in epochs] == pytest.approx([0.8, 4 / (8 / 2.8), 0.0])
    assert fit.elapsed_s == pytest.approx(5.2)
    assert fit.samples_per_s == pytest.approx(120 / 5.2)
