"""The time and disk of a run before it starts: :func:`estimate_training`.

The time adds up the parts of the job a user waits for: reading the photos at the training
size (when the pixel cache lacks it), the quick preset's backbone features, the training
steps, the per-epoch work and checkpoints, the assignments. Without a
:class:`~.calibration.Calibration` it uses fixed typical speeds (a rough guess: 25-40 % off on
a busy 2-core computer).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from crlc_engine.core.config import TrainConfig
from crlc_engine.pipeline.estimate.calibration import Calibration, machine
from crlc_engine.pipeline.estimate.checkpoints import (
    QUICK_FEATURE_DIM,
    CheckpointSize,
    checkpoint_size,
)
from crlc_engine.pipeline.estimate.costs import (
    ASSIGN_SPEEDUP,
    DECODE_PER_S,
    DECODE_START_S,
    DISK_WRITE_FACTOR,
    EPOCH_OVERHEAD_S,
    FROZEN_STAGE2_FACTOR,
    JOB_OVERHEAD_S,
    JOB_PER_IMAGE_S,
    MEMORYBANK_TIME_FACTOR,
    QUICK_CPU_FEATURES_PER_S,
    QUICK_CPU_STEP_S,
    QUICK_GPU_FACTOR,
    QUICK_SETUP_S,
    TYPICAL_SAVE_BYTES_PER_S,
    images_per_second,
    is_quick,
    labelled_factor,
    quick_plan,
)
from crlc_engine.pipeline.estimate.text import (
    BASIS_TEXT,
    DEVICE_WORDS,
    format_bytes,
    format_duration,
)

#: A CPU run longer than this gets a hint to pick a lighter setting.
SLOW_CPU_S = 3 * 3600


@dataclass(frozen=True)
class TrainingEstimate:
    """The cost of a run, before it starts.

    Attributes:
        seconds: Time of the whole job (the budget itself for a time-budget run).
        images_per_s: Training speed (quick preset: the backbone's feature speed).
        epochs: Planned epochs, or the epochs that fit in the time budget.
        budget: Whether the time is a budget (``minutes``) rather than a prediction.
        cache_bytes: What the library keeps to train from: the pixel cache at the training
            size, or (quick) the feature cache.
        cache_kind: ``pixel cache`` or ``feature cache``.
        checkpoint_bytes: The checkpoint each run keeps once finished (no optimiser state).
        device_kind: ``cpu``, ``cuda`` or ``mps``.
        images: Number of photos.
        download_bytes: Weights to download first (0: none).
        head_steps: Quick preset: training steps of the heads after the features (``None``
            for training on the pixels, where ``images_per_s`` is the training speed).
        training_checkpoint_bytes: A checkpoint while the run trains (with the optimiser).
        runs: Runs the job makes, each keeping one checkpoint (two-stage: 2).
        basis: ``rough`` (typical speeds), ``measured`` or ``run`` (see :class:`Calibration`).
        parts: Seconds per part of the job (``decode``, ``features``, ``steps``,
            ``epochs``, ``checkpoints``, ``assign``, ``overhead``).
    """

    seconds: float
    images_per_s: float
    epochs: float
    budget: bool
    cache_bytes: int
    checkpoint_bytes: int
    device_kind: str
    images: int
    download_bytes: int = 0
    head_steps: int | None = None
    training_checkpoint_bytes: int = 0
    runs: int = 1
    basis: str = "rough"
    cache_kind: str = "pixel cache"
    parts: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def rough(self) -> bool:
        """Whether the time comes from typical speeds, not this computer's."""
        return self.basis == "rough"

    def text(self) -> str:
        """Two lines for a dialog: time, then disk."""
        where = DEVICE_WORDS.get(self.device_kind, self.device_kind)
        rate = f"~{self.images_per_s:,.0f} photos/s on {where}"
        duration = format_duration(self.seconds, self.device_kind)
        basis = BASIS_TEXT.get(self.basis, self.basis)
        if self.head_steps is not None and self.parts.get("features", 1.0) <= 0.0:
            head = (
                f"About {duration}: the features of the {self.images:,} photos are computed "
                f"already, then {self.head_steps:,} quick steps of the grouping heads ({basis})."
            )
        elif self.head_steps is not None:
            head = (
                f"About {duration}: pretrained features of {self.images:,} photos, once, at "
                f"{rate}, then {self.head_steps:,} quick steps of the grouping heads ({basis})."
            )
        elif self.budget:
            head = (
                f"Time budget {duration}: about {self.epochs:,.0f} epochs of "
                f"{self.images:,} photos at {rate} ({basis})."
            )
        else:
            head = (
                f"About {duration} of training ({self.images:,} photos × "
                f"{self.epochs:,.0f} epochs at {rate}; {basis})."
            )
        kept = format_bytes(self.checkpoint_bytes)
        training = format_bytes(max(self.training_checkpoint_bytes, self.checkpoint_bytes))
        if self.runs > 1:
            checkpoint = f"{self.runs} checkpoints of {kept}"
        else:
            checkpoint = f"a {kept} checkpoint"
        disk = f"\nDisk: {format_bytes(self.cache_bytes)} {self.cache_kind} + {checkpoint}"
        if self.training_checkpoint_bytes > self.checkpoint_bytes:
            disk += f" ({training} while training)"
        disk += "."
        if self.download_bytes:
            disk += f" First a {format_bytes(self.download_bytes)} download of ImageNet weights."
        hint = ""
        if self.device_kind == "cpu" and not self.budget and self.seconds > SLOW_CPU_S:
            hint = " That is slow: try the cpu preset, fewer epochs or a time budget."
        return head + hint + disk


def _decode_seconds(count: int) -> float:
    if count <= 0:
        return 0.0
    cores = machine()["cores"] or 1
    return DECODE_START_S + count / (DECODE_PER_S * max(1, int(cores) - 1))


def _save_seconds(bytes_: int, calibration: Calibration | None) -> float:
    rate = (calibration.save_bytes_per_s if calibration else None) or TYPICAL_SAVE_BYTES_PER_S
    return DISK_WRITE_FACTOR * bytes_ / rate


def _saves(epochs: float, every: int) -> int:
    """Checkpoints a run of ``epochs`` writes: every ``every`` epochs before the end, then one."""
    whole = max(0, math.ceil(epochs))
    return max(0, (whole - 1) // max(1, every)) + 1


def _estimate_quick(
    config: TrainConfig,
    count: int,
    device_kind: str,
    calibration: Calibration | None,
    cached_features: int,
    decode_images: int,
) -> TrainingEstimate:
    """The quick preset: features once per photo, then the heads' steps."""
    batch, per_epoch, planned = quick_plan(config, max(2, count))
    epochs = float(config.epochs or 20)
    new_features = max(0, count - max(0, cached_features))
    size = checkpoint_size(config, max(2, count), planned)
    parts: dict[str, float] = {"decode": _decode_seconds(decode_images)}
    if calibration is None:  # typical speeds (docs/benchmarks.md)
        speed = 1.0 if device_kind == "cpu" else QUICK_GPU_FACTOR
        feature_rate = QUICK_CPU_FEATURES_PER_S * speed * (224.0 / config.image_size) ** 2
        steps = planned * per_epoch
        parts["features"] = new_features / feature_rate
        parts["steps"] = steps * QUICK_CPU_STEP_S / speed * labelled_factor(config)
        basis = "rough"
    else:
        steps = planned * per_epoch
        feature_rate = calibration.feature_images_per_s or (
            QUICK_CPU_FEATURES_PER_S * (1.0 if device_kind == "cpu" else QUICK_GPU_FACTOR)
        )
        step_s = calibration.step_s * batch / max(1, calibration.batch) * labelled_factor(config)
        parts["features"] = new_features / feature_rate
        parts["steps"] = steps * step_s
        if not calibration.includes_overhead:
            parts["epochs"] = planned * EPOCH_OVERHEAD_S
            saves = _saves(planned, config.checkpoint_every)
            parts["checkpoints"] = (saves - 1) * _save_seconds(
                size.training_bytes, calibration
            ) + _save_seconds(size.final_bytes, calibration)
        parts["overhead"] = JOB_OVERHEAD_S + QUICK_SETUP_S + count * JOB_PER_IMAGE_S
        basis = calibration.source
    return TrainingEstimate(
        seconds=sum(parts.values()),
        images_per_s=feature_rate,
        epochs=epochs,
        budget=False,
        cache_bytes=count * QUICK_FEATURE_DIM * 2,  # no pixel cache: features from decoding
        cache_kind="feature cache",
        checkpoint_bytes=size.final_bytes,
        training_checkpoint_bytes=size.training_bytes,
        device_kind=device_kind,
        images=count,
        head_steps=int(steps),
        basis=basis,
        parts=parts,
    )


def estimate_training(
    config: TrainConfig,
    images: int,
    device_kind: str,
    calibration: Calibration | None = None,
    *,
    cached_features: int = 0,
    decode_images: int = 0,
) -> TrainingEstimate:
    """Time and disk a run of ``config`` over ``images`` photos needs on ``device_kind``.

    Args:
        config: The run's settings (a two-stage request counts both runs).
        images: Photos the run trains on.
        device_kind: ``cpu``, ``cuda`` or ``mps``.
        calibration: This computer's speed for ``config`` (:meth:`SpeedCache.get`,
            :func:`measure_speed`); ``None``: typical speeds, marked ``rough``.
        cached_features: Quick preset: photos whose backbone features are cached already
            (a refine of a quick run: all of them).
        decode_images: Photos to read at the training size first (not in the pixel cache).
    """
    count = max(0, int(images))
    if is_quick(config):
        return _estimate_quick(
            config, count, device_kind, calibration, cached_features, decode_images
        )
    return _estimate_pixels(config, count, device_kind, calibration, decode_images)


def _pixel_rate(config: TrainConfig, device_kind: str, calibration: Calibration | None) -> float:
    """Training images per second: measured, else typical."""
    if calibration is not None:
        return calibration.batch / calibration.step_s / labelled_factor(config)
    rate = images_per_second(
        config.backbone, config.resolved_stem(), config.image_size, device_kind
    )
    if config.framework == "memorybank":
        rate /= MEMORYBANK_TIME_FACTOR
    return rate


def _estimate_pixels(
    config: TrainConfig,
    count: int,
    device_kind: str,
    calibration: Calibration | None,
    decode_images: int,
) -> TrainingEstimate:
    """Training on the pixels: the steps (both stages of a two-stage request), then, with a
    calibration, the per-epoch work, checkpoints, assignments and the job's overhead."""
    size = config.image_size
    batch = max(1, min(config.batch_size, max(1, count)))
    per_epoch = max(1, count // batch)
    rate = _pixel_rate(config, device_kind, calibration)
    parts: dict[str, float] = {"decode": _decode_seconds(decode_images)}
    stage1 = float(config.stage1_epochs or config.epochs or 0)
    stage2_cost = FROZEN_STAGE2_FACTOR if config.freeze_backbone else 1.0
    if config.epochs is None and config.minutes is not None:
        seconds = config.minutes * 60.0
        epochs = seconds * rate / max(1, count)
        budget = True
        parts["steps"] = seconds
    else:
        epochs = float(config.epochs or 0)
        work = epochs
        if config.stage == "two_stage":  # stage 1 (features only), then stage 2
            work = stage1 + epochs * stage2_cost
        if calibration is None:
            parts["steps"] = count * work / rate
        else:
            parts["steps"] = work * per_epoch * batch / rate
        if config.stage == "two_stage":
            epochs += stage1
        budget = False
    runs = 2 if config.stage == "two_stage" else 1
    checkpoint = checkpoint_size(config, max(2, count), epochs / runs)
    if calibration is not None and not budget:
        lengths = (stage1, epochs - stage1) if runs == 2 else (epochs,)
        parts.update(
            _calibrated_parts(config, count, rate, epochs, lengths, checkpoint, calibration)
        )
    return TrainingEstimate(
        seconds=sum(parts.values()),
        images_per_s=rate,
        epochs=epochs,
        budget=budget,
        cache_bytes=count * size * size * 3,
        checkpoint_bytes=checkpoint.final_bytes,
        training_checkpoint_bytes=checkpoint.training_bytes,
        device_kind=device_kind,
        images=count,
        download_bytes=_download_bytes(config),
        runs=runs,
        basis="rough" if calibration is None else calibration.source,
        parts=parts,
    )


def _calibrated_parts(
    config: TrainConfig,
    count: int,
    rate: float,
    epochs: float,
    lengths: tuple[float, ...],
    checkpoint: CheckpointSize,
    calibration: Calibration,
) -> dict[str, float]:
    """The job's parts besides the steps, for a measured speed: the per-epoch work and
    checkpoints (unless the speed is a run's, which includes them), the assignments and the
    job's overhead. ``epochs``: all runs' epochs; ``lengths``: each run's (two-stage: stage 1,
    stage 2)."""
    parts: dict[str, float] = {}
    runs = len(lengths)
    if not calibration.includes_overhead:
        parts["epochs"] = epochs * EPOCH_OVERHEAD_S
        saves = sum(_saves(length, config.checkpoint_every) for length in lengths)
        parts["checkpoints"] = (saves - runs) * _save_seconds(
            checkpoint.training_bytes, calibration
        ) + runs * _save_seconds(checkpoint.final_bytes, calibration)
    parts["assign"] = count / max(1e-9, rate * ASSIGN_SPEEDUP)
    parts["overhead"] = JOB_OVERHEAD_S + count * JOB_PER_IMAGE_S
    return parts


def _download_bytes(config: TrainConfig) -> int:
    """Bytes of pretrained weights the run must download first (0 when cached or none)."""
    if not config.pretrained:
        return 0
    from crlc_engine.models.weights import WEIGHTS, weights_cached

    spec = WEIGHTS.get(config.backbone)
    if spec is None or weights_cached(config.backbone):
        return 0
    return int(spec.size or 0)
