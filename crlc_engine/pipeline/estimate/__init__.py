"""What a run will cost before it starts: its time, calibrated on this computer, and its disk.

**Disk.** :func:`checkpoint_size` (:mod:`.checkpoints`) counts what a checkpoint of a
configuration holds: the one a finished run keeps, and the larger one (with the optimiser
state) while it trains. No torch import, microseconds.

**Time.** :func:`estimate_training` (:mod:`.training_estimate`) adds up the parts of the job
a user waits for, from the typical speeds and job-part costs of :mod:`.costs` (a rough
guess) or from a :class:`Calibration` of this computer (:mod:`.calibration`).
:func:`measure_speed` (:mod:`.measure`) times a few real steps of the configuration on
synthetic tensors of its size: 1-4 s on 2 CPU cores, cancellable. :class:`SpeedCache`
(:mod:`.speed_cache`) keeps calibrations per computer and configuration in the user cache
folder, and the speed a finished run really had (:func:`remember_run`), which is preferred
for later estimates of the same configuration. :mod:`.text` puts durations and sizes in words.

The API another dialog uses::

    speeds = SpeedCache()
    calibration = speeds.get(config, "cpu")            # instant; None when never measured
    estimate = estimate_training(config, images, "cpu", calibration)
    # off the GUI thread, when calibration is None:
    calibration = speeds.measure(config, "cpu", control)   # measure_speed + store
"""

from __future__ import annotations

from crlc_engine.core.config import QUICK_MIN_STEPS
from crlc_engine.pipeline.estimate.calibration import Calibration, speed_key
from crlc_engine.pipeline.estimate.checkpoints import (
    BACKBONE_SHAPES,
    QUICK_FEATURE_DIM,
    BackboneShape,
    CheckpointSize,
    backbone_shape,
    checkpoint_size,
    meta_backbone_shape,
)
from crlc_engine.pipeline.estimate.costs import (
    CPU_IMAGES_PER_S,
    MODEL_PARAMETERS,
    images_per_second,
)
from crlc_engine.pipeline.estimate.measure import measure_speed
from crlc_engine.pipeline.estimate.speed_cache import SpeedCache, remember_run, run_calibration
from crlc_engine.pipeline.estimate.text import format_bytes, format_duration
from crlc_engine.pipeline.estimate.training_estimate import TrainingEstimate, estimate_training

__all__ = [
    "BACKBONE_SHAPES",
    "CPU_IMAGES_PER_S",
    "MODEL_PARAMETERS",
    "QUICK_FEATURE_DIM",
    "QUICK_MIN_STEPS",
    "BackboneShape",
    "Calibration",
    "CheckpointSize",
    "SpeedCache",
    "TrainingEstimate",
    "backbone_shape",
    "checkpoint_size",
    "estimate_training",
    "format_bytes",
    "format_duration",
    "images_per_second",
    "measure_speed",
    "meta_backbone_shape",
    "remember_run",
    "run_calibration",
    "speed_key",
]
