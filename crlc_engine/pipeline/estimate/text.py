"""Durations, sizes, devices and speed sources in the words an estimate shows."""

from __future__ import annotations

import math

#: A device kind in a sentence ("... photos/s on the GPU").
DEVICE_WORDS = {"cpu": "the CPU", "cuda": "the GPU", "mps": "the Apple GPU"}
#: Where an estimate's speed comes from (:attr:`~.calibration.Calibration.source`, or rough).
BASIS_TEXT = {
    "rough": "a rough guess from typical speeds",
    "measured": "speed measured on this computer",
    "run": "speed of an earlier run on this computer",
}


def format_duration(seconds: float, device_kind: str = "cpu") -> str:
    """A duration in words; GPU runs are counted in minutes."""
    if device_kind != "cpu":
        minutes = seconds / 60.0
        if minutes < 1.0:
            return "under a minute"
        text = f"{math.ceil(minutes):,} minute{'s' if math.ceil(minutes) != 1 else ''}"
        if minutes >= 180.0:
            text += f" ({minutes / 60.0:,.0f} hours)"
        return text
    if seconds < 10.0:
        return "a few seconds"
    if seconds < 90.0:
        return f"{seconds:.0f} seconds"
    if seconds < 90 * 60.0:
        return f"{seconds / 60.0:.0f} minutes"
    hours = seconds / 3600.0
    if hours < 48.0:
        return f"{hours:.1f} hours" if hours < 10.0 else f"{hours:.0f} hours"
    return f"{hours / 24.0:,.0f} days"


def format_bytes(size: float) -> str:
    """A byte count in decimal units (kB, MB, GB)."""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= factor:
            value = size / factor
            return f"{value:.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    return f"{size:.0f} bytes"
