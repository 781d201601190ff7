"""Measuring this computer's speed: a few real training steps on synthetic tensors.

:func:`measure_speed` times a few real steps of the configuration on synthetic tensors of its
size (and, for the quick preset, a few backbone batches): 1-4 s on 2 CPU cores, cancellable.
Its :class:`~.calibration.Calibration` makes an estimate this computer's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.pipeline.estimate.calibration import Calibration, speed_key
from crlc_engine.pipeline.estimate.costs import is_quick

if TYPE_CHECKING:
    import torch

    from crlc_engine.training.frozen_features import FeatureExtractor


def _calibration_config(config: TrainConfig, batch: int) -> TrainConfig:
    """``config`` as one end-to-end run of ``batch``-image steps on synthetic images (no
    pretrained weights to fetch: the same tensors and the same speed), never compiled: a few
    seconds of timing cannot include tens of seconds of compiling, nor a recompile per batch
    size (a compiled run's estimate is therefore its eager speed, pessimistic)."""
    pretrained = config.backbone == "efficientnet_lite0"  # always pretrained, installed
    return config.replace(
        batch_size=batch,
        epochs=1,
        minutes=None,
        stage="end_to_end",
        freeze_backbone=False,
        lambda_xent=0.0,
        pretrained=pretrained,
        lr_schedule="constant",
        compile="off",
    )


class _Timer:
    """Times calls of ``step(batch)`` until a share of the budget is spent."""

    def __init__(
        self,
        clock: Callable[[], float],
        control: JobControl,
        sync: Callable[[], None],
    ) -> None:
        self.clock = clock
        self.control = control
        self.sync = sync

    def once(self, step: Callable[[int], object], batch: int) -> float:
        if self.control.cancelled:
            raise InterruptedError("speed measurement cancelled")
        started = self.clock()
        step(batch)
        self.sync()
        return max(self.clock() - started, 1e-9)

    def per_item(
        self, step: Callable[[int], object], full: int, budget_s: float, first: int = 4
    ) -> tuple[float, int]:
        """Seconds per step of ``full`` items, from steps of up to ``full`` items that fit in
        ``budget_s``.

        Steps start at ``first`` items (twice: the first step builds kernels and optimiser
        state) and double while a step stays under a sixth of the budget, up to ``full``;
        one more step warms the final size up, then up to 8 steps are timed (at least 2)
        until half the budget is spent. The time is the mean of the faster half (a burst of
        another program does not count twice), scaled to ``full`` items per item when the
        steps stayed smaller. Returns (seconds per step of ``full`` items, items per step).
        """
        target = budget_s / 6
        batch = max(1, min(full, first))
        self.once(step, batch)
        last = self.once(step, batch)
        while batch < full and last * min(full, 2 * batch) / batch <= target:
            bigger = min(full, 2 * batch)
            last = self.once(step, bigger)
            batch = bigger
        self.once(step, batch)
        spent, times = 0.0, list[float]()
        while len(times) < 8 and (len(times) < 2 or spent < budget_s / 2):
            times.append(self.once(step, batch))
            spent += times[-1]
        times.sort()
        fast = times[: max(1, len(times) // 2)]
        return sum(fast) / len(fast) * full / batch, batch


def measure_speed(
    config: TrainConfig,
    device: str | torch.device = "cpu",
    control: JobControl | None = None,
    *,
    budget_s: float = 3.0,
    clock: Callable[[], float] = time.perf_counter,
    reporter: Reporter | None = None,
    extractor: FeatureExtractor | None = None,
) -> Calibration:
    """Time a few real training steps of ``config`` on synthetic tensors of its size.

    Pixel training: steps of :class:`~crlc_engine.training.trainer.CRLCTrainer` (end to end,
    the config's network, image size and framework) on random images, the batch lowered
    where a full step would not fit in the budget (the time is scaled back up per image).
    The quick preset: a few batches of the frozen backbone (loaded from the installed
    weights), then steps of the heads on random features. Both also time serialising the
    trainer's checkpoint. Takes about ``budget_s`` (more on a slow GPU start); nothing is
    written to disk.

    Args:
        config: The run's settings.
        device: Where to measure.
        control: Cancel token, checked between steps.
        budget_s: Seconds to spend, roughly.
        clock: Monotonic seconds (tests pass a fake clock).
        reporter: Told the progress (0..1) and what is being timed.
        extractor: Quick preset: the backbone (default: EfficientNet-Lite0; tests pass a
            small one).

    Raises:
        InterruptedError: cancelled.
        CRLCError: the settings cannot run here (e.g. the quick preset's weights are
            missing).
    """
    import torch

    control = control or JobControl()
    reporter = reporter or NullReporter()
    dev = torch.device(device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    timer = _Timer(clock, control, sync)
    generator = torch.Generator().manual_seed(0)
    if is_quick(config):
        return _measure_quick(config, dev, timer, budget_s, reporter, extractor, generator)
    return _measure_pixels(config, dev, timer, budget_s, reporter, generator)


def _save_rate(state: dict[str, Any], timer: _Timer) -> float:
    import io

    import torch

    buffer = io.BytesIO()

    def save(_: int) -> None:
        buffer.seek(0)
        torch.save(state, buffer)

    seconds = timer.once(save, 1)
    return buffer.tell() / seconds


def _measure_pixels(
    config: TrainConfig,
    dev: torch.device,
    timer: _Timer,
    budget_s: float,
    reporter: Reporter,
    generator: torch.Generator,
) -> Calibration:
    import torch

    from crlc_engine.training.trainer import CRLCTrainer

    full = config.batch_size
    size = config.image_size
    reporter.status(f"Measuring training steps of {config.backbone} at {size} px")
    rows = max(full, config.clusters, 2)
    if config.framework == "memorybank" and size <= 64:  # the bank's negatives
        rows = max(rows, min(config.bank_negatives + 1, 4097))
    shape = (rows, size, size, 3)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    trainer = CRLCTrainer(_calibration_config(config, full), images, dev)
    reporter.progress(0.1, 1.0)

    def step(batch: int) -> None:  # a step of any batch size: its images are the first rows
        trainer._step(torch.arange(batch, device=dev))

    step_s, _ = timer.per_item(step, full, budget_s * 0.85)
    reporter.progress(0.9, 1.0)
    return _measured(config, dev, trainer.state_dict(), timer, reporter, step_s, full)


def _measure_quick(
    config: TrainConfig,
    dev: torch.device,
    timer: _Timer,
    budget_s: float,
    reporter: Reporter,
    extractor: FeatureExtractor | None,
    generator: torch.Generator,
) -> Calibration:
    import numpy as np
    import torch

    from crlc_engine.training.feature_trainer import FeatureTrainer, QuickSettings

    reporter.status("Loading the pretrained backbone")
    if extractor is None:
        from crlc_engine.pipeline.feature_method import quick_extractor

        extractor = quick_extractor(config, dev)
    side = extractor.spec.side
    images = torch.randint(0, 256, (32, side, side, 3), dtype=torch.uint8, generator=generator)
    reporter.progress(0.2, 1.0)
    reporter.status(f"Measuring the backbone's features at {side} px")
    per_image, _ = timer.per_item(
        lambda batch: extractor(images[:batch]), extractor.batch_size, budget_s * 0.4, first=2
    )
    feature_rate = extractor.batch_size / per_image
    reporter.progress(0.6, 1.0)
    reporter.status("Measuring steps of the grouping heads")
    settings = QuickSettings.from_train_config(config)
    rows = max(settings.batch_size, settings.clusters, 2)
    rng = np.random.default_rng(0)
    features = np.abs(rng.normal(size=(rows, extractor.spec.dim))).astype(np.float32)
    k = min(settings.neighbors, rows - 1)
    table = (np.arange(rows)[:, None] + 1 + np.arange(k)[None, :]) % rows
    trainer = FeatureTrainer(settings, features, dev, neighbors=table)
    knn = trainer.neighbors
    assert knn is not None

    def step(batch: int) -> None:  # a step of any batch size: its anchors are the first rows
        trainer._step(torch.arange(batch, device=dev), knn)

    step_s, _ = timer.per_item(step, settings.batch_size, budget_s * 0.5, first=16)
    reporter.progress(0.95, 1.0)
    return _measured(
        config,
        dev,
        trainer.state_dict(),
        timer,
        reporter,
        step_s,
        settings.batch_size,
        feature_rate,
    )


def _measured(
    config: TrainConfig,
    dev: torch.device,
    state: dict[str, Any],
    timer: _Timer,
    reporter: Reporter,
    step_s: float,
    batch: int,
    feature_rate: float | None = None,
) -> Calibration:
    """The calibration of a measurement: its step time, and how fast a checkpoint of
    ``state`` is saved (timed now)."""
    save_rate = _save_rate(state, timer)
    reporter.progress(1.0, 1.0)
    return Calibration(
        key=speed_key(config, dev.type),
        device_kind=dev.type,
        step_s=step_s,
        batch=batch,
        feature_images_per_s=feature_rate,
        save_bytes_per_s=save_rate,
        source="measured",
        created=time.time(),
    )
