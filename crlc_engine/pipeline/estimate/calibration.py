"""How fast a configuration trains on this computer: the speed key and the calibration."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass
from typing import Any

from crlc_engine.core.config import TrainConfig
from crlc_engine.pipeline.estimate.costs import is_quick


def machine() -> dict[str, Any]:
    """This computer: its name, architecture and the CPU cores this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"host": platform.node(), "arch": platform.machine(), "cores": cores}


def speed_key(config: TrainConfig, device_kind: str) -> str:
    """What the speed of ``config`` on ``device_kind`` depends on, on this computer, as text
    (the settings that change a step's cost; not its length, stage or labels, which the
    estimate accounts for)."""
    if is_quick(config):
        parts: dict[str, Any] = {
            "mode": "quick",
            "size": config.image_size,
            "batch": config.batch_size,
            "subheads": config.subheads,
            "clusters": config.clusters,
            "feature_dim": config.feature_dim,
            "z": config.lambda_fc > 0,
            "hidden": getattr(config, "head_hidden", None),
            "precision": getattr(config, "feature_precision", "auto"),
        }
    else:
        parts = {
            "mode": "pixels",
            "backbone": config.backbone,
            "stem": config.resolved_stem(),
            "size": config.image_size,
            "batch": config.batch_size,
            "framework": config.framework,
            "negatives": config.bank_negatives if config.framework == "memorybank" else None,
            "subheads": config.subheads,
            "clusters": config.clusters,
            "feature_dim": config.feature_dim,
            "z": config.lambda_fc > 0,
            "optimizer": config.optimizer,
        }
        # Only an explicit choice joins the key: speeds measured before these settings
        # existed were measured as ``auto``. ``compile`` never does: calibration runs eagerly.
        for name in ("precision", "memory_format"):
            if getattr(config, name) != "auto":
                parts[name] = getattr(config, name)
    parts["device"] = device_kind
    parts["machine"] = machine()
    return json.dumps(parts, sort_keys=True)


@dataclass(frozen=True)
class Calibration:
    """How fast a configuration trains on this computer.

    Attributes:
        key: :func:`speed_key` of the configuration and device.
        device_kind: ``cpu``, ``cuda`` or ``mps``.
        step_s: Seconds per training step of ``batch`` images.
        batch: Images per step ``step_s`` was measured (or scaled) for.
        feature_images_per_s: Quick preset: backbone features per second (``None``: unknown).
        save_bytes_per_s: Checkpoint serialisation speed (``None``: unknown).
        source: ``measured`` (:func:`measure_speed`) or ``run`` (:func:`remember_run`).
        created: When, in seconds since the epoch.
        includes_overhead: ``step_s`` includes the per-epoch work and checkpoints (a run's).
    """

    key: str
    device_kind: str
    step_s: float
    batch: int
    feature_images_per_s: float | None = None
    save_bytes_per_s: float | None = None
    source: str = "measured"
    created: float = 0.0
    includes_overhead: bool = False

    @property
    def images_per_s(self) -> float:
        """Training images per second."""
        return self.batch / self.step_s if self.step_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`as_dict` (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
