"""Repaint time of the photo viewer on a 24 MP photo: fit, 100 %, 50 %, 200 %; decode time.

A ``--photo-width`` x ``--photo-height`` JPEG (default 6000 x 4000, 24 MP: smooth gradients
plus noise, quality 90) is written to a temporary folder, with a copy as a second photo.
A :class:`app.views.viewer.PhotoViewer` of ``--width`` x ``--height`` (default 1600 x
1000) is shown (``QT_QPA_PLATFORM=offscreen`` unless set), given both photos, and waited
for until the first is decoded and the second prefetched. Then:

- fit: ``--repaints`` synchronous ``canvas.repaint()`` calls (the whole view) in fit mode;
- actual (100 %): the same, panning by a few pixels before each repaint (so each paint
  draws other pixels);
- zoom50 / zoom200: the same at 50 % (a smooth copy) and 200 % (nearest pixels);
- fit_rescale_ms: the smooth fit copy made on the GUI thread after a resize (once per
  size change; a fresh photo gets its fit copy from the decoding thread instead);
- step_prefetched_ms: Right to the prefetched second photo, shown and painted;
- baseline: the same repaints of a plain widget that copies one prepared pixmap of the
  view's size (what the machine and the platform cost whatever the viewer does);
- decode_s: :func:`app.itemmodels.full_image.decode_full_image` alone (median of 3, off the
  GUI thread in the app); open_s: ``set_sequence`` until the photo is shown (decode and
  fit copy in a worker, delivery to the GUI thread).

Prints one JSON object on stdout. The goal (issue 13) is a repaint within 16 ms.

    QT_QPA_PLATFORM=offscreen python benchmarks/viewer_paint.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import _gui_bench
import numpy as np
from _gui_bench import qt_machine
from PIL import Image
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QApplication, QWidget

from app.itemmodels.full_image import decode_full_image
from app.views.viewer import PhotoViewer

BENCHMARK = "viewer_paint"
TARGET_MS = 16.0

pump = partial(_gui_bench.pump, timeout_s=120.0)


def make_photo(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A JPEG that compresses like a photo: gradients, a few shapes, noise (quality 90)."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    for top in range(0, height, 500):  # in bands: keeps the peak memory low
        rows = np.arange(top, min(height, top + 500), dtype=np.float32)[:, None] / height
        band = np.stack(
            [
                40 + 170 * x[None, :] + 0 * rows,
                60 + 150 * rows + 0 * x[None, :],
                200 - 120 * (x[None, :] + rows) / 2,
            ],
            axis=-1,
        )
        band += rng.normal(0, 9, size=band.shape).astype(np.float32)
        pixels[top : top + band.shape[0]] = np.clip(band, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def summary(name: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        f"{name}_ms_median": round(statistics.median(ordered), 3),
        f"{name}_ms_p95": round(p95, 3),
        f"{name}_ms_max": round(ordered[-1], 3),
    }


def time_repaints(
    app: QApplication, viewer: PhotoViewer, count: int, before: Callable[[int], None] | None
) -> list[float]:
    canvas = viewer.canvas
    canvas.settle()
    app.processEvents()
    canvas.repaint()  # warm up
    times = []
    for k in range(count):
        if before is not None:
            before(k)
        start = time.perf_counter()
        canvas.repaint()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


class _Baseline(QWidget):
    """The cheapest possible paint of the same area: one prepared pixmap, copied."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.resize(width, height)
        self.pixmap = QPixmap(width, height)
        self.pixmap.fill(QColor(90, 120, 150))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.drawPixmap(0, 0, self.pixmap)
        painter.end()


def baseline_repaints(app: QApplication, width: int, height: int, count: int) -> list[float]:
    """Repaint times of :class:`_Baseline`: what the machine and platform cost anyway."""
    widget = _Baseline(width, height)
    widget.show()
    pump(app, widget.isVisible)
    app.processEvents()
    widget.repaint()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        widget.repaint()
        times.append((time.perf_counter() - start) * 1000.0)
    widget.close()
    return times


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    started = time.perf_counter()
    first = make_photo(folder / "photo_1.jpg", args.photo_width, args.photo_height)
    second = folder / "photo_2.jpg"
    shutil.copyfile(first, second)
    generate_s = time.perf_counter() - started

    decode_s = []
    for _ in range(3):
        started = time.perf_counter()
        decode_full_image(str(first))
        decode_s.append(time.perf_counter() - started)

    viewer = PhotoViewer()
    viewer.resize(args.width, args.height)
    viewer.show()
    pump(app, viewer.isVisible)
    app.processEvents()
    canvas = viewer.canvas
    started = time.perf_counter()
    viewer.set_sequence([1, 2], [str(first), str(second)], 0)
    open_s = pump(app, lambda: canvas.image() is not None)
    open_s = time.perf_counter() - started
    pump(app, viewer.loader.is_idle)  # the second photo is prefetched
    worker_fit_copy = canvas.is_settled() and canvas.rescale_count == 0

    result: dict[str, Any] = {"benchmark": BENCHMARK}
    fit = time_repaints(app, viewer, args.repaints, None)
    fit_zoom = viewer.zoom()

    viewer.zoom_actual()
    moves = [(37, 23), (-37, -23), (-29, 17), (29, -17)]
    actual = time_repaints(
        app, viewer, args.repaints, lambda k: canvas.pan_by(*moves[k % len(moves)])
    )
    canvas.set_zoom(0.5)
    started = time.perf_counter()
    canvas.settle()
    zoom50_rescale_ms = (time.perf_counter() - started) * 1000.0
    zoom50 = time_repaints(
        app, viewer, args.repaints, lambda k: canvas.pan_by(*moves[k % len(moves)])
    )
    canvas.set_zoom(2.0)
    zoom200 = time_repaints(
        app, viewer, args.repaints, lambda k: canvas.pan_by(*moves[k % len(moves)])
    )

    viewer.zoom_fit()
    viewer.resize(args.width - 100, args.height - 60)
    app.processEvents()
    started = time.perf_counter()
    canvas.settle()
    fit_rescale_ms = (time.perf_counter() - started) * 1000.0
    viewer.resize(args.width, args.height)
    app.processEvents()
    canvas.settle()

    started = time.perf_counter()
    viewer.step(1)
    canvas.repaint()
    step_ms = (time.perf_counter() - started) * 1000.0
    step_was_prefetched = canvas.image() is not None

    cached_mb = viewer.loader.cached_bytes / 2**20
    baseline = baseline_repaints(app, canvas.width(), canvas.height(), args.repaints)
    viewer.shutdown()
    result.update(summary("fit", fit))
    result.update(summary("actual", actual))
    result.update(summary("zoom50", zoom50))
    result.update(summary("zoom200", zoom200))
    result.update(summary("baseline", baseline))
    worst_p95 = max(result[f"{m}_ms_p95"] for m in ("fit", "actual", "zoom50", "zoom200"))
    result.update(
        {
            "target_ms": TARGET_MS,
            "within_target": worst_p95 <= TARGET_MS,
            "repaints": args.repaints,
            "photo": f"{args.photo_width}x{args.photo_height}",
            "megapixels": round(args.photo_width * args.photo_height / 1e6, 1),
            "widget": f"{args.width}x{args.height}",
            "canvas": f"{canvas.width()}x{canvas.height()}",
            "device_pixel_ratio": canvas.devicePixelRatioF(),
            "fit_zoom": round(fit_zoom, 4),
            "fit_copy_from_worker": worker_fit_copy,
            "fit_rescale_ms": round(fit_rescale_ms, 1),
            "zoom50_rescale_ms": round(zoom50_rescale_ms, 1),
            "step_prefetched_ms": round(step_ms, 1),
            "step_was_prefetched": step_was_prefetched,
            "decode_s": round(statistics.median(decode_s), 3),
            "open_s": round(open_s, 3),
            "cached_mb": round(cached_mb, 1),
            "generate_s": round(generate_s, 2),
            "machine": {
                **qt_machine(),
                "processor": platform.processor() or platform.machine(),
            },
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo-width", type=int, default=6000)
    parser.add_argument("--photo-height", type=int, default=4000)
    parser.add_argument("--width", type=int, default=1600, help="viewer width")
    parser.add_argument("--height", type=int, default=1000, help="viewer height")
    parser.add_argument("--repaints", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crlc-viewer-bench-") as folder:
        result = run(args, Path(folder))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
