"""Helpers shared by the GUI paint benchmarks (cover_list_paint, gui_grid_paint, viewer_paint).

Imported as ``_gui_bench``: the benchmarks run as scripts (``python benchmarks/x.py``), which
puts this folder first on ``sys.path``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PySide6
from PIL import Image
from PySide6.QtCore import QEventLoop, qVersion
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QApplication, QListView


class TimedListView(QListView):
    """A QListView that records how long each of its paint events takes, and in which phase."""

    def __init__(self) -> None:
        super().__init__()
        self.phase = "layout"
        self.paint_ms: list[float] = []
        self.phases: list[str] = []

    def paintEvent(self, event: QPaintEvent) -> None:
        start = time.perf_counter()
        super().paintEvent(event)
        self.paint_ms.append((time.perf_counter() - start) * 1000.0)
        self.phases.append(self.phase)

    def reset_timings(self) -> None:
        self.paint_ms.clear()
        self.phases.clear()

    def by_phase(self) -> dict[str, list[float]]:
        """The paint times of each phase (phases in the order they first painted)."""
        result: dict[str, list[float]] = {}
        for ms, phase in zip(self.paint_ms, self.phases, strict=True):
            result.setdefault(phase, []).append(ms)
        return result

    def slowest(self, count: int = 5) -> list[tuple[str, float]]:
        """The slowest paint events: (phase, ms)."""
        order = np.argsort(self.paint_ms)[::-1][:count]
        return [(self.phases[i], round(self.paint_ms[i], 2)) for i in order.tolist()]


def make_thumbnails(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` distinct 256 x 192 JPEGs (quality 85) that compress like photos."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:192, 0:256].astype(np.float32)
    paths = []
    for k in range(count):
        base = rng.uniform(30, 220, size=3)
        slope = rng.uniform(-0.5, 0.5, size=(3, 2))
        pixels = np.stack([base[c] + slope[c, 0] * x + slope[c, 1] * y for c in range(3)], axis=-1)
        pixels += rng.normal(0, 12, size=pixels.shape)
        path = folder / f"{k}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=85)
        paths.append(path)
    return paths


def stats(values: list[float], *, mean: bool = False) -> dict[str, float | int]:
    """count, (mean,) p50 (median), p95, max (ms, rounded)."""
    if not values:
        return {"count": 0}
    array = np.asarray(values)
    result: dict[str, float | int] = {"count": int(array.size)}
    if mean:
        result["mean"] = round(float(array.mean()), 3)
    result["p50"] = round(float(np.percentile(array, 50)), 3)
    result["p95"] = round(float(np.percentile(array, 95)), 3)
    result["max"] = round(float(array.max()), 3)
    return result


def pump(app: QApplication, until: Callable[[], bool], timeout_s: float = 60.0) -> float:
    """Process events until ``until()`` is true; returns the seconds it took."""
    start = time.perf_counter()
    while not until():
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError("gave up waiting")
        if not until():
            time.sleep(0.0005)
    return time.perf_counter() - start


def qt_machine() -> dict[str, Any]:
    """The platform, CPUs and Python/Qt versions a result was measured with."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "qt": qVersion(),
        "pyside6": PySide6.__version__,
        "qpa": os.environ.get("QT_QPA_PLATFORM", ""),
    }
