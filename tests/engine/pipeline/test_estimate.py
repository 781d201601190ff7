"""Estimates that hold: checkpoint sizes from what a checkpoint holds, finished runs without
optimiser state (resume and refine still work), speeds calibrated from measured steps."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CheckpointError
from crlc_engine.core.events import RecordingReporter
from crlc_engine.library import ImageLibrary
from crlc_engine.library.synthetic import write_shapes_folder
from crlc_engine.pipeline.estimate import (
    BACKBONE_SHAPES,
    Calibration,
    SpeedCache,
    checkpoint_size,
    estimate_training,
    measure_speed,
    meta_backbone_shape,
    remember_run,
    run_calibration,
    speed_key,
)
from crlc_engine.pipeline.jobs import refine_folder, train_folder
from crlc_engine.pipeline.presets import resolve_train_config
from crlc_engine.results.annotations import Annotations
from crlc_engine.training.checkpoint import finished_state, load_checkpoint
from crlc_engine.training.feature_trainer import FeatureTrainer, QuickSettings
from crlc_engine.training.trainer import CRLCTrainer
from tests.engine.training.test_features import tiny_extractor

CPU = torch.device("cpu")


def saved_bytes(state: dict[str, Any]) -> int:
    """Bytes of ``state`` as :func:`crlc_engine.training.checkpoint.save_checkpoint` writes it."""
    buffer = io.BytesIO()
    torch.save({"format": 1, **state}, buffer)
    return buffer.tell()


def pixel_config(**changes: object) -> TrainConfig:
    base = resolve_train_config(4, "cpu", {"image_size": 16, "batch_size": 8, "epochs": 2})
    return base.replace(**changes)


class CancelAtStep(RecordingReporter):
    """Cancels the job when training reaches step ``at``."""

    def __init__(self, control: JobControl, at: int) -> None:
        super().__init__()
        self.control, self.at = control, at

    def progress(self, done: float, total: float | None) -> None:
        super().progress(done, total)
        if int(done) == self.at:
            self.control.cancel()


# ------------------------------------------------------------------------------ disk
@pytest.mark.parametrize("key", sorted(BACKBONE_SHAPES))
def test_the_backbone_table_is_what_the_networks_hold(key: tuple[str, str]) -> None:
    assert BACKBONE_SHAPES[key] == meta_backbone_shape(*key)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"optimizer": "adam", "lr": 1e-3, "lambda_fc": 0.0},
        {"framework": "memorybank", "momentum": 0.0},
        {"stage": "stage1"},
    ],
    ids=["sgd", "adam-no-z", "memorybank", "stage1"],
)
def test_pixel_checkpoint_size_is_the_saved_size(changes: dict[str, Any]) -> None:
    config = pixel_config(**changes)
    rng = np.random.default_rng(0)
    trainer = CRLCTrainer(config, rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), CPU)
    trainer.fit()
    state = trainer.state_dict()
    size = checkpoint_size(config, 40, trainer.epoch)
    assert size.training_bytes == pytest.approx(saved_bytes(state), rel=0.02)
    assert size.final_bytes == pytest.approx(saved_bytes(finished_state(state)), rel=0.02)
    if config.framework == "memorybank":
        assert size.resume_bytes > 0


def test_quick_checkpoint_size_is_the_saved_size() -> None:
    """The quick preset's heads on 1280-d features: about 15 MB kept, 44 MB while training."""
    config = resolve_train_config(10, "quick", {"epochs": 1})
    settings = QuickSettings.from_train_config(config, min_steps=2, batch_size=32)
    features = np.abs(np.random.default_rng(1).normal(size=(64, 1280))).astype(np.float32)
    trainer = FeatureTrainer(settings, features, extra_state={"config": config.to_dict()})
    trainer.fit()
    state = trainer.state_dict()
    size = checkpoint_size(config, 64, trainer.epoch)
    assert size.training_bytes == pytest.approx(saved_bytes(state), rel=0.02)
    assert size.final_bytes == pytest.approx(saved_bytes(finished_state(state)), rel=0.02)
    assert 13e6 < size.final_bytes < 16e6 and size.training_bytes > 40e6
    text = estimate_training(config, 64, "cpu").text()
    assert "15 MB checkpoint (44 MB while training)" in text, text


# ------------------------------------------------------------------ finished runs, resume
def test_a_cancelled_job_trainer_resumes_exactly_and_a_finished_one_drops_the_optimizer(
    tmp_path: Path,
) -> None:
    config = pixel_config(epochs=3, checkpoint_every=1)
    images = np.random.default_rng(2).integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    straight = CRLCTrainer(config, images, CPU)
    straight.fit()

    path = tmp_path / "checkpoint.pt"
    first = CRLCTrainer(config, images, CPU, path)
    first.keep_resume_state = False  # as a job trains
    control = JobControl()
    assert first.fit(CancelAtStep(control, 7), control).state == "cancelled"
    assert load_checkpoint(path)["optimizer"] is not None  # cancelled: it can continue

    resumed = CRLCTrainer(config, images, CPU, path)
    resumed.keep_resume_state = False
    resumed.load()
    assert resumed.fit().state == "completed"
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(value, resumed.model.state_dict()[name], msg=name)
    final = load_checkpoint(path)
    assert final["optimizer"] is None and final["finished"] is True

    again = CRLCTrainer(config, images, CPU, path)  # a finished run loads (nothing to train)
    again.load()
    assert again.fit().steps == resumed.total_steps
    longer = CRLCTrainer(config.replace(epochs=5), images, CPU, path)
    with pytest.raises(CheckpointError, match="finished run"):
        longer.load()


def test_a_finished_quick_trainer_drops_adam_and_refuses_to_train_on(tmp_path: Path) -> None:
    settings = QuickSettings(clusters=3, epochs=2, batch_size=16, hidden=16, subheads=2)
    settings = QuickSettings(**{**settings.as_dict(), "min_steps": 0, "neighbors": 4})
    features = np.abs(np.random.default_rng(3).normal(size=(48, 8))).astype(np.float32)
    path = tmp_path / "heads.pt"
    trainer = FeatureTrainer(settings, features, checkpoint_path=path)
    trainer.keep_resume_state = False
    trainer.fit()
    assert load_checkpoint(path)["optimizer"] is None
    same = FeatureTrainer(settings, features, checkpoint_path=path)
    same.load()
    assert same.epoch == 2
    more = FeatureTrainer(QuickSettings(**{**settings.as_dict(), "epochs": 4}), features)
    with pytest.raises(CheckpointError, match="finished run"):
        more.load(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    base = tmp_path_factory.mktemp("estimate-runs")
    folder = write_shapes_folder(base / "photos", per_class=8, size=16)
    config = pixel_config(epochs=2, device="cpu")
    outcome = train_folder(folder, config, workspace=base / "ws", workers=0)
    assert outcome.state == "completed"
    return folder, base / "ws", outcome.run.run_id


def test_a_completed_job_keeps_no_optimizer_and_refine_starts_from_it(
    trained: tuple[Path, Path, str],
) -> None:
    folder, ws, run_id = trained
    with ImageLibrary.open([folder], ws) as library:
        run = library.runs.get(run_id, state="completed")
        state = load_checkpoint(run.checkpoint_path)
        assert state["optimizer"] is None and state["finished"] is True
        config = TrainConfig.from_dict(state["config"])
        ids = [record.id for record in library.images()]
        kept = run.checkpoint_path.stat().st_size
        assert kept == pytest.approx(checkpoint_size(config, len(ids), 2).final_bytes, rel=0.02)
        Annotations(library.catalog).label(ids[:3], "first")
    outcome = refine_folder(folder, run_id, epochs=1, workspace=ws)
    assert outcome.state == "completed" and outcome.parent == run_id
    assert load_checkpoint(outcome.run.checkpoint_path)["optimizer"] is None


def test_a_completed_runs_speed_is_remembered_and_preferred(
    trained: tuple[Path, Path, str], tmp_path: Path
) -> None:
    folder, ws, run_id = trained
    with ImageLibrary.open([folder], ws) as library:
        run = library.runs.get(run_id, state="completed")
        status = json.loads(run.status_path.read_text())
        cache = SpeedCache(tmp_path / "speeds.json")
        config = TrainConfig.from_dict(run.read_config()["train"])
        measured = Calibration(speed_key(config, "cpu"), "cpu", 1.0, 8, created=cache.clock())
        cache.put(measured)
        assert cache.get(config, "cpu") == measured
        remembered = remember_run(run, cache)
    again = run_calibration(run)
    assert remembered is not None and again is not None
    assert (remembered.step_s, remembered.batch) == (again.step_s, again.batch)
    assert remembered.source == "run" and remembered.includes_overhead
    assert remembered.images_per_s == pytest.approx(status["samples_per_s"])
    assert cache.get(config, "cpu") == remembered  # a run's speed before a measurement
    assert cache.get(config.replace(batch_size=16), "cpu") is None  # other settings
    estimate = estimate_training(config, 32, "cpu", remembered)
    assert estimate.basis == "run" and "checkpoints" not in estimate.parts  # in its speed


# ------------------------------------------------------------------------------ speed
class StepClock:
    """Seconds that advance by ``step`` at every reading."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 100.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_measure_speed_times_real_steps_with_the_clock_given() -> None:
    config = pixel_config(batch_size=16)
    reporter = RecordingReporter()
    calibration = measure_speed(config, "cpu", clock=StepClock(0.01), reporter=reporter)
    # every timed step reads 0.01 s: the batch grew to the full 16 images
    assert calibration.step_s == pytest.approx(0.01)
    assert calibration.batch == 16 and calibration.source == "measured"
    assert calibration.key == speed_key(config, "cpu")
    assert calibration.save_bytes_per_s == pytest.approx(
        checkpoint_size(config, 16, 0).training_bytes / 0.01, rel=0.1
    )
    assert reporter.progresses[-1] == (1.0, 1.0)

    slow = measure_speed(config, "cpu", clock=StepClock(1.0), budget_s=3.0)
    assert slow.step_s == pytest.approx(1.0 * 16 / 4)  # 4-image steps, scaled per image

    control = JobControl()
    control.cancel()
    with pytest.raises(InterruptedError):
        measure_speed(config, "cpu", control)


def test_quick_speed_times_backbone_batches_and_head_steps() -> None:
    extractor, _ = tiny_extractor()
    config = resolve_train_config(
        3, "quick", {"image_size": extractor.spec.side, "batch_size": 32, "subheads": 2}
    )
    calibration = measure_speed(config, "cpu", clock=StepClock(0.02), extractor=extractor)
    assert calibration.feature_images_per_s == pytest.approx(extractor.batch_size / 0.02)
    assert calibration.step_s == pytest.approx(0.02) and calibration.batch == 32


def test_a_calibrated_estimate_adds_up_the_job() -> None:
    config = resolve_train_config(10, "cpu")  # 100 epochs, batch 64, 32 px
    calibration = Calibration("k", "cpu", step_s=0.05, batch=64, save_bytes_per_s=1e9)
    estimate = estimate_training(config, 400, "cpu", calibration)
    assert estimate.basis == "measured" and not estimate.rough
    assert estimate.parts["steps"] == pytest.approx(100 * 6 * 0.05)  # 6 steps per epoch
    assert estimate.seconds == pytest.approx(sum(estimate.parts.values()))
    assert 30 < estimate.seconds < 33
    assert "speed measured on this computer" in estimate.text()
    rough = estimate_training(config, 400, "cpu")
    assert rough.rough and "rough guess" in rough.text()

    quick = resolve_train_config(10, "quick")
    heads = Calibration("q", "cpu", 0.1, 256, feature_images_per_s=100.0, save_bytes_per_s=1e9)
    first = estimate_training(quick, 400, "cpu", heads, decode_images=400)
    assert first.head_steps == 300 and first.parts["steps"] == pytest.approx(30.0)
    assert first.parts["features"] == pytest.approx(4.0) and first.parts["decode"] > 0
    assert first.parts["checkpoints"] > 29 * 2 * 44e6 / 1e9  # 30 saves, the last one small
    refine = estimate_training(
        quick.replace(lambda_xent=1.0), 400, "cpu", heads, cached_features=400
    )
    assert refine.parts["features"] == 0.0 and refine.parts["steps"] > first.parts["steps"]


def test_the_speed_cache_expires_measurements_and_survives_a_bad_file(tmp_path: Path) -> None:
    now = [1000.0]
    cache = SpeedCache(tmp_path / "sub" / "speeds.json", clock=lambda: now[0])
    config = pixel_config()
    cache.put(Calibration(speed_key(config, "cpu"), "cpu", 0.5, 8, created=now[0]))
    assert cache.get(config, "cpu") is not None
    assert cache.get(config, "cuda") is None
    now[0] += 2 * 3600  # a measurement is an hour's
    assert cache.get(config, "cpu") is None
    cache.path.write_text("{not json", encoding="utf-8")
    assert cache.get(config, "cpu") is None
    cache.put(Calibration(speed_key(config, "cpu"), "cpu", 0.5, 8, created=now[0]))
    assert cache.get(config, "cpu") is not None


def test_a_refinement_of_a_quick_run_reuses_its_features_and_counts_labelled_rows() -> None:
    from crlc_engine.pipeline.jobs import refine_settings

    base = resolve_train_config(5, "quick")
    fresh = estimate_training(base, 400, "cpu")
    refine = refine_settings(base, 5, 5, None, None)
    cached = estimate_training(refine, 400, "cpu", cached_features=400)
    assert cached.parts["features"] == 0.0 and "computed already" in cached.text()
    assert "pretrained features of 400 photos" in fresh.text()
    plain = estimate_training(refine.replace(lambda_xent=0.0), 400, "cpu", cached_features=400)
    assert cached.parts["steps"] > plain.parts["steps"]  # the labelled images cost time too
