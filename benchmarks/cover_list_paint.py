"""Paint time of the group list with covers: 200 groups, real decoded thumbnails.

A ``QListView`` (uniform item sizes, ``--width`` x ``--height``, default 300 x 900) shows a
:class:`app.itemmodels.GroupListModel` of ``--groups`` groups through
:class:`app.views.group_delegate.GroupDelegate`. Each group's cover is a 2x2 mosaic of four
of its own thumbnails (every ``--single-every``-th group has fewer than four top pictures and
shows one), so the list needs ``4 * groups`` distinct thumbnails: that many 256 x 192 JPEGs
(smooth gradients plus noise, quality 85, like the library's) are generated in a temporary
folder and decoded by a :class:`app.itemmodels.ThumbnailCache` (128 px, as the grid's).

Phases (``QT_QPA_PLATFORM=offscreen`` unless set):

1. cold: the list is shown; each page (top to bottom) is painted once with placeholders
   (timed: that paint requests the page's thumbnails), then the time until its covers are
   composed and repainted is measured. Every paint event is timed.
2. full repaint: ``--repeats`` synchronous ``viewport().repaint()`` with every cover
   composed, at the top, middle and bottom of the list; and as many ``viewport().grab()``.
3. page scroll: ``--repeats`` steps of one page (down to the end, then up again), each
   timed from setting the scroll bar to the end of a synchronous ``viewport().repaint()``.

Prints one JSON object on stdout. Goal: full repaint and page scroll within 16 ms.

    QT_QPA_PLATFORM=offscreen python benchmarks/cover_list_paint.py
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
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from _gui_bench import TimedListView, make_thumbnails, pump, qt_machine, stats
from PySide6.QtWidgets import QApplication, QListView

from app.itemmodels import GroupListModel, ThumbnailCache
from app.itemmodels.covers import COVER_SIDE
from app.views.group_delegate import GroupDelegate
from crlc_engine.results.groups import GroupSummary

BENCHMARK = "cover_list_paint"
GOAL_MS = 16.0


def make_groups(count: int, single_every: int) -> list[GroupSummary]:
    """Groups with their own four (or, every ``single_every``-th, two) top pictures."""
    rng = np.random.default_rng(1)
    groups = []
    for k in range(count):
        top = [4 * k + j for j in range(2 if single_every and k % single_every == 0 else 4)]
        groups.append(
            GroupSummary(
                key=f"cluster:{k}",
                name=None if k % 3 else f"Holiday {k} at the seaside, second week",
                clusters=(k,),
                size=int(rng.integers(5, 900)),
                mean_confidence=float(rng.uniform(0.4, 0.99)),
                top_image_ids=top,
                labelled=0,
                colour=k,
                flags=("changed",) if k % 17 == 0 else (),
            )
        )
    return groups


def visible_rows(view: QListView, model: GroupListModel) -> list[int]:
    area = view.viewport().rect()
    first = view.indexAt(area.topLeft()).row()
    rows = []
    for row in range(max(first, 0), model.rowCount()):
        if not view.visualRect(model.index(row)).intersects(area):
            break
        rows.append(row)
    return rows


def covers_ready(view: QListView, model: GroupListModel, dpr: float) -> bool:
    return all(model.cover(row, COVER_SIDE, dpr) is not None for row in visible_rows(view, model))


def run(args: argparse.Namespace) -> dict[str, Any]:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    with tempfile.TemporaryDirectory(prefix="crlc-covers-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        make_thumbnails(folder, 4 * args.groups)
        generate_s = time.perf_counter() - start
        cache = ThumbnailCache(lambda i: folder / f"{i}.jpg", max_side=128)
        model = GroupListModel()
        model.set_groups(make_groups(args.groups, args.single_every))
        model.set_thumbnail_source(cache)
        view = TimedListView()
        view.setUniformItemSizes(True)
        view.setModel(model)
        view.setItemDelegate(GroupDelegate(view))
        view.resize(args.width, args.height)
        view.show()
        app.processEvents()
        dpr = float(view.devicePixelRatioF())
        bar = view.verticalScrollBar()
        page = bar.pageStep()

        # 1. cold: each page painted with placeholders, then waited for
        view.phase = "cold"
        placeholder_ms, wait_ms, rows_seen = [], [], set()
        value = 0
        while True:
            bar.setValue(value)
            t0 = time.perf_counter()
            view.viewport().repaint()
            placeholder_ms.append((time.perf_counter() - t0) * 1e3)
            rows_seen.update(visible_rows(view, model))
            wait_ms.append(
                1e3 * pump(app, lambda: cache.is_idle() and covers_ready(view, model, dpr))
            )
            if value >= bar.maximum():
                break
            value = min(value + page, bar.maximum())
        view.phase = "idle"
        app.processEvents()
        decodes = cache.decode_count

        # 2. full repaint with every cover composed
        view.phase = "repaint"
        repaint_ms, grab_ms = [], []
        for k in range(args.repeats):
            bar.setValue((bar.maximum() * (k % 3)) // 2)
            app.processEvents()
            t0 = time.perf_counter()
            view.viewport().repaint()
            repaint_ms.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            view.viewport().grab()
            grab_ms.append((time.perf_counter() - t0) * 1e3)

        # 3. page scroll (covers composed): down to the end, then up again
        view.phase = "scroll"
        scroll_ms = []
        bar.setValue(0)
        app.processEvents()
        step = page
        for _ in range(args.repeats):
            target = bar.value() + step
            if not 0 <= target <= bar.maximum():
                step = -step
                target = bar.value() + step
            t0 = time.perf_counter()
            bar.setValue(target)
            view.viewport().repaint()
            scroll_ms.append((time.perf_counter() - t0) * 1e3)
            app.processEvents()  # anything still pending, untimed
        view.phase = "done"
        extra_decodes = cache.decode_count - decodes
        assert cache.shutdown(10_000)

    full = stats(repaint_ms)
    scroll = stats(scroll_ms)
    return {
        "benchmark": BENCHMARK,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": platform.node(),
        **qt_machine(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "device_pixel_ratio": dpr,
        "config": {
            "groups": args.groups,
            "thumbnails": 4 * args.groups,
            "window": [args.width, args.height],
            "cover_side": COVER_SIDE,
            "row_height": view.visualRect(model.index(0)).height(),
            "rows_per_page": len(visible_rows(view, model)),
            "repeats": args.repeats,
        },
        "generate_thumbnails_s": round(generate_s, 2),
        "full_repaint_ms": full,
        "grab_ms": stats(grab_ms),
        "page_scroll_ms": scroll,
        "cold_placeholder_paint_ms": stats(placeholder_ms),
        "cold_wait_for_page_covers_ms": stats(wait_ms),
        "paint_events_ms": {phase: stats(v) for phase, v in view.by_phase().items()},
        "decodes": decodes,
        "decodes_after_loading": extra_decodes,
        "covers_composed": model.cover_store.composed,
        "rows_ever_visible": len(rows_seen),
        "goal_ms": GOAL_MS,
        "within_goal": bool(full.get("p95", 1e9) <= GOAL_MS and scroll.get("p95", 1e9) <= GOAL_MS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--width", type=int, default=300)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--single-every", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
