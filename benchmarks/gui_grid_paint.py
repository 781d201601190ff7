"""Paint time and thumbnail decodes of the thumbnail grid while scrolling 50,000 images.

A ``QListView`` in IconMode (static movement, uniform item sizes, batched layout) shows a
:class:`app.itemmodels.ThumbnailGridModel` of ``--items`` images whose thumbnails come from a
:class:`app.itemmodels.ThumbnailCache`. ``--files`` distinct 256 x 192 JPEG thumbnails (smooth
gradients plus noise, quality 85, like the library's) are generated in a temporary folder and
the image ids are mapped onto them by the cache's thumbnail-path function, so every id is a
separate cache entry and a separate decode.

Phases (``QT_QPA_PLATFORM=offscreen`` unless set):

1. layout: ``setModel`` + ``show`` until the batched layout has placed every item.
2. steady scroll: top to bottom in steps of ``--step`` viewport heights. Each step sets the
   scroll bar, processes events (the view paints placeholders), waits until the cache has
   delivered every requested thumbnail (each arrival repaints one item), then times one
   synchronous ``viewport().repaint()`` with all visible thumbnails loaded.
3. flick: a fresh cache; jumps of ``--flick-pages`` pages with a single ``processEvents``
   between them and no waiting, as when the scroll bar is dragged fast; then waits once.

Every paint event of the viewport is timed (a ``paintEvent`` override). "Visible" items are
those whose ``visualRect`` meets the viewport after a step. Prints one JSON object on stdout.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_grid_paint.py --items 50000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import _gui_bench
import numpy as np
from _gui_bench import TimedListView, make_thumbnails, qt_machine
from PySide6.QtCore import QSize
from PySide6.QtWidgets import QApplication, QListView

from app.itemmodels import ThumbnailCache, ThumbnailGridModel

BENCHMARK = "gui_grid_paint"

stats = partial(_gui_bench.stats, mean=True)
pump = partial(_gui_bench.pump, timeout_s=30.0)


def make_view(args: argparse.Namespace, model: ThumbnailGridModel) -> TimedListView:
    view = TimedListView()
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setMovement(QListView.Movement.Static)
    view.setResizeMode(QListView.ResizeMode.Adjust)
    view.setUniformItemSizes(True)  # without it Qt sizes, and so decodes, every item
    view.setLayoutMode(QListView.LayoutMode.Batched)
    view.setBatchSize(args.batch_size)
    view.setIconSize(QSize(args.icon, args.icon))
    view.setGridSize(QSize(args.icon + 16, args.icon + 28))
    view.setWordWrap(False)
    view.resize(args.width, args.height)
    view.setModel(model)
    return view


def visible_rows(view: QListView, model: ThumbnailGridModel, columns: int) -> range:
    """Rows whose rectangles meet the viewport (the grid is uniform; edges checked exactly)."""
    area = view.viewport().rect()
    grid = view.gridSize()
    top_line = view.verticalScrollBar().value() // grid.height()
    lines = area.height() // grid.height() + 3
    lo = max(0, (top_line - 1) * columns)
    hi = min(model.rowCount(), (top_line + lines) * columns)
    rows = [r for r in range(lo, hi) if view.visualRect(model.index(r)).intersects(area)]
    return range(rows[0], rows[-1] + 1) if rows else range(0)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    started = time.perf_counter()
    files = make_thumbnails(workdir, args.files)
    generate_s = time.perf_counter() - started

    n = args.items
    rng = np.random.default_rng(1)
    ids = np.arange(1, n + 1, dtype=np.int64)
    confidences = rng.beta(5, 2, size=n).astype(np.float32)
    paths = [f"Trip {i % 7}/Day {i % 31}/IMG_{i:06d}.JPG" for i in ids.tolist()]
    labels = {int(i): "Beach" for i in rng.choice(ids, size=n // 100, replace=False)}

    def thumbnail_path(image_id: int) -> Path:
        return files[image_id % len(files)]

    def new_cache() -> ThumbnailCache:
        return ThumbnailCache(
            thumbnail_path,
            capacity=args.capacity,
            max_side=args.icon,
            max_pending=args.max_pending,
            threads=args.threads,
        )

    def open_view(model: ThumbnailGridModel) -> tuple[TimedListView, int, float]:
        """A shown view with its layout done: (view, columns, seconds to lay out)."""
        view = make_view(args, model)
        bar = view.verticalScrollBar()
        started = time.perf_counter()
        view.show()
        columns = max(1, view.viewport().width() // view.gridSize().width())
        content = -(-n // columns) * view.gridSize().height()
        pump(app, lambda: bar.maximum() >= content - view.viewport().height(), timeout_s=120)
        return view, columns, time.perf_counter() - started

    cache = new_cache()
    model = ThumbnailGridModel(cache)
    started = time.perf_counter()
    model.set_images(ids, confidences, paths, labels=labels)
    set_images_ms = (time.perf_counter() - started) * 1000.0
    view, columns, layout_s = open_view(model)
    bar = view.verticalScrollBar()
    pump(app, cache.is_idle)

    # ---------------------------------------------------------------- steady scroll
    view.reset_timings()
    seen: set[int] = set()
    full_paint_ms: list[float] = []
    wait_ms: list[float] = []
    page = max(1, int(view.viewport().height() * args.step))
    values = [*range(0, bar.maximum(), page), bar.maximum()]
    if args.max_steps:
        values = values[: args.max_steps]
    decodes_before = cache.decode_count
    started = time.perf_counter()
    for value in values:
        view.phase = "scroll"  # the paint right after the scroll: placeholders
        bar.setValue(value)
        app.processEvents()
        view.phase = "arrivals"  # one item repainted per arriving thumbnail
        wait_ms.append(pump(app, cache.is_idle) * 1000.0)
        view.phase = "full repaint"
        t0 = time.perf_counter()
        view.viewport().repaint()
        full_paint_ms.append((time.perf_counter() - t0) * 1000.0)
        seen.update(visible_rows(view, model, columns))
    scroll_s = time.perf_counter() - started
    event_paints = list(view.paint_ms)
    decodes = cache.decode_count - decodes_before
    phase_ms = view.by_phase()
    by_phase = {
        phase: stats(phase_ms.get(phase, [])) for phase in ("scroll", "arrivals", "full repaint")
    }
    steady = {
        "steps": len(values),
        "step_px": page,
        "seconds": round(scroll_s, 2),
        "items_ever_visible": len(seen),
        "decodes": decodes,
        "decodes_at_layout": decodes_before,
        "decodes_per_visible_item": round((decodes + decodes_before) / max(1, len(seen)), 5),
        "all_visible_cached_at_end": all(
            model.image_id(r) in cache for r in visible_rows(view, model, columns)
        ),
        "visible_per_step": len(visible_rows(view, model, columns)),
        "cache_size": cache.cached_count,
        "full_repaint_loaded_ms": stats(full_paint_ms),
        "every_paint_event_ms": stats(event_paints),
        "paint_events_by_phase_ms": by_phase,
        "paint_events_over_16ms": int(sum(v > 16.0 for v in event_paints)),
        "slowest_paint_events": view.slowest(),
        "wait_for_thumbnails_ms": stats(wait_ms),
        "decode_ms_per_thumbnail_wall": round(sum(wait_ms) / max(1, decodes), 3),
    }
    assert cache.shutdown()
    view.close()

    # ---------------------------------------------------------------- flicks (no waiting)
    def flick(cancel: bool) -> dict[str, Any]:
        cache = new_cache()
        flick_model = ThumbnailGridModel(cache)
        flick_model.set_images(ids, confidences, paths, labels=labels)
        view, columns, _ = open_view(flick_model)
        bar = view.verticalScrollBar()
        pump(app, cache.is_idle)
        view.reset_timings()
        view.phase = "flick"
        flick_seen: set[int] = set(visible_rows(view, flick_model, columns))
        decodes_before = cache.decode_count
        jump = int(view.viewport().height() * args.flick_pages)
        started = time.perf_counter()
        jumps = 0
        for value in range(jump, bar.maximum() + 1, jump):
            if cancel:
                cache.cancel_pending()
            bar.setValue(value)
            app.processEvents()
            flick_seen.update(visible_rows(view, flick_model, columns))
            jumps += 1
        flick_s = time.perf_counter() - started
        pump(app, cache.is_idle, timeout_s=300)
        idle_s = time.perf_counter() - started
        last = visible_rows(view, flick_model, columns)
        result = {
            "cancel_pending_per_jump": cancel,
            "jumps": jumps,
            "jump_px": jump,
            "flick_seconds": round(flick_s, 2),
            "seconds_until_idle": round(idle_s, 2),
            "items_ever_visible": len(flick_seen),
            "decodes": cache.decode_count - decodes_before,
            "last_screen_cached": all(flick_model.image_id(r) in cache for r in last),
            "every_paint_event_ms": stats(list(view.paint_ms)),
        }
        assert cache.shutdown()
        view.close()
        return result

    flicks = [flick(cancel=False), flick(cancel=True)]

    return {
        "benchmark": BENCHMARK,
        "date": dt.date.today().isoformat(),
        "machine": platform.node(),
        **qt_machine(),
        "settings": {
            "items": n,
            "files": args.files,
            "icon_px": args.icon,
            "viewport": [args.width, args.height],
            "columns": columns,
            "capacity": args.capacity,
            "max_pending": args.max_pending,
            "threads": cache._threads if args.threads is None else args.threads,
            "batch_size": args.batch_size,
        },
        "generate_thumbnails_s": round(generate_s, 2),
        "set_images_ms": round(set_images_ms, 2),
        "layout_s": round(layout_s, 3),
        "steady_scroll": steady,
        "flick": flicks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--files", type=int, default=300, help="distinct thumbnail files")
    parser.add_argument("--icon", type=int, default=128, help="icon size (px)")
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=700)
    parser.add_argument("--step", type=float, default=1.0, help="scroll step in pages")
    parser.add_argument("--max-steps", type=int, default=0, help="0: scroll to the bottom")
    parser.add_argument("--flick-pages", type=float, default=7.0)
    parser.add_argument("--capacity", type=int, default=2000)
    parser.add_argument("--max-pending", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gui-grid-") as workdir:
        result = run(args, Path(workdir))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
