"""Speeds kept per computer and configuration: measurements and the speed of finished runs.

:class:`SpeedCache` keeps calibrations in the user cache folder, and the speed a finished run
really had (:func:`remember_run`), which is preferred for later estimates of the same
configuration.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CRLCError
from crlc_engine.pipeline.estimate.calibration import Calibration, speed_key
from crlc_engine.pipeline.estimate.costs import is_quick, labelled_factor, quick_plan
from crlc_engine.pipeline.estimate.measure import measure_speed

if TYPE_CHECKING:
    from crlc_engine.library.runs import RunDir

#: How long a measured calibration stays valid: the load of a computer changes.
MEASURED_MAX_AGE_S = 3600.0
#: How long the speed of a finished run stays valid.
RUN_MAX_AGE_S = 30 * 86400.0


def default_cache_path() -> Path:
    """``<user cache folder>/speeds.json``."""
    import platformdirs

    from crlc_engine.library.runs import APP_NAME

    return Path(platformdirs.user_cache_dir(APP_NAME)) / "speeds.json"


class SpeedCache:
    """Calibrations per computer and configuration, in a small JSON file.

    Each configuration keeps its newest measurement and the speed of its newest finished
    run; :meth:`get` prefers the run's (:data:`RUN_MAX_AGE_S`) over a measurement
    (:data:`MEASURED_MAX_AGE_S`). Reads and writes never raise: an unreadable or unwritable
    file means no cached speeds.

    Args:
        path: The file (default: :func:`default_cache_path`).
        clock: Seconds since the epoch (tests pass a fake clock).
    """

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path if path is not None else default_cache_path()
        self.clock = clock

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, config: TrainConfig, device_kind: str) -> Calibration | None:
        """The speed to estimate ``config`` on ``device_kind`` with, or ``None``."""
        entry = self._read().get(speed_key(config, device_kind))
        if not isinstance(entry, dict):
            return None
        now = self.clock()
        for source, max_age in (("run", RUN_MAX_AGE_S), ("measured", MEASURED_MAX_AGE_S)):
            data = entry.get(source)
            if not isinstance(data, dict):
                continue
            try:
                calibration = Calibration.from_dict(data)
            except (TypeError, ValueError):
                continue
            if calibration.step_s > 0 and now - calibration.created <= max_age:
                return calibration
        return None

    def put(self, calibration: Calibration) -> None:
        """Keep ``calibration`` (replacing the older one of its source and key)."""
        from crlc_engine.core.fileio import atomic_write_json

        data = self._read()
        entry = data.get(calibration.key)
        entry = entry if isinstance(entry, dict) else {}
        entry[calibration.source] = calibration.as_dict()
        data[calibration.key] = entry
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, data)
        except OSError:
            pass

    def measure(
        self,
        config: TrainConfig,
        device_kind: str,
        control: JobControl | None = None,
        **options: Any,
    ) -> Calibration:
        """:func:`measure_speed` on ``device_kind``, kept in the cache (call it off the GUI
        thread). ``options`` go to :func:`measure_speed`."""
        calibration = measure_speed(config, device_kind, control, **options)
        self.put(calibration)
        return calibration


def run_calibration(run: RunDir) -> Calibration | None:
    """The speed a completed end-to-end run really had (its ``status.json``: training
    images per second, per-epoch work and checkpoints included; the quick preset's feature
    speed), or ``None``. A refine run's speed is given without its labelled images."""
    try:
        stored = run.read_config()
        config = TrainConfig.from_dict(stored["train"])
    except (OSError, ValueError, KeyError, TypeError, CRLCError):
        return None
    status = run.read_status()
    rate = status.get("samples_per_s")
    images = int(stored.get("images") or 0)
    if status.get("state") != "completed" or not rate or rate <= 0 or images < 2:
        return None
    if config.stage != "end_to_end":  # a stage's steps cost another share of a step
        return None
    kind = str(stored.get("device") or "cpu").split(":", 1)[0]
    if is_quick(config):
        batch = quick_plan(config, images)[0]
    else:
        batch = max(1, min(config.batch_size, images))
    computed = int(status.get("features_computed") or 0)
    feature_seconds = float(status.get("features_s") or 0.0)
    feature_rate = computed / feature_seconds if computed >= 32 and feature_seconds > 0 else None
    return Calibration(
        key=speed_key(config, kind),
        device_kind=kind,
        step_s=batch / float(rate) / labelled_factor(config),  # a refine's labelled rows out
        batch=batch,
        feature_images_per_s=feature_rate,
        source="run",
        created=time.time(),
        includes_overhead=True,
    )


def remember_run(run: RunDir, cache: SpeedCache | None = None) -> Calibration | None:
    """Keep the speed of a completed run for later estimates of its configuration (best
    effort: never raises). A quick run that reused cached features keeps the feature speed
    measured before."""
    try:
        calibration = run_calibration(run)
        if calibration is None:
            return None
        cache = cache or SpeedCache()
        if calibration.feature_images_per_s is None:
            before = cache.get(
                TrainConfig.from_dict(run.read_config()["train"]), calibration.device_kind
            )
            if before is not None and before.feature_images_per_s:
                calibration = dataclasses.replace(
                    calibration, feature_images_per_s=before.feature_images_per_s
                )
        cache.put(calibration)
        return calibration
    except Exception:  # an estimate's bookkeeping must never fail a run
        return None
