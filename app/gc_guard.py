"""Python's cyclic garbage collection on the GUI thread only.

Python collects reference cycles whenever allocations pass a threshold, in whichever thread
allocates at that moment: often a job's worker thread (training, export), which allocates
most. A cycle that holds the wrapper of a Qt object (a closed dialog and its widgets, their
signal connections) is then destroyed on that thread, and Qt aborts or crashes ("QBasicTimer
can only be used with threads started with QThread", a segmentation fault): seen with the
export dialog while the export ran. :class:`GuiGarbageCollector` turns the automatic
collection off and runs it from a timer on the GUI thread, with the same thresholds.
:func:`freeze_startup_heap` keeps those collections short.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

from app.pyside_sources import read_sources_uncached
from crlc_engine import api as engine

__all__ = ["GuiGarbageCollector", "freeze_startup_heap"]

_frozen = False


def freeze_startup_heap() -> None:
    """Import the training stack and FAISS once on the GUI thread, collect, then move every
    object alive now out of the collector's reach (once per process; the main window calls
    it when it is made).

    Importing torch/torchvision the first time inside a worker thread creates ~150k objects
    and triggers full garbage collections that hold the GIL for 110-190 ms, stalling the GUI
    (measured in benchmarks/gui_responsiveness.py). Imported up front and frozen
    (``gc.freeze()``), later collections stay short. PySide6 is kept from holding the
    sources of these modules first (:func:`app.pyside_sources.read_sources_uncached`).
    """
    global _frozen
    if _frozen:
        return
    read_sources_uncached()
    # the facade imports a name's module on first use: these two load the training jobs
    # (torch, the trainers) and the neighbour index (FAISS)
    _ = engine.train_folder, engine.NeighborIndex
    gc.collect()
    gc.freeze()
    _frozen = True


class GuiGarbageCollector(QObject):
    """Collects garbage on the thread it lives on (the GUI thread), every ``interval_ms``.

    Args:
        parent: Usually the application.
        interval_ms: How often the counts are checked.
    """

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500) -> None:
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.collections = 0
        self._was_enabled = gc.isenabled()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)

    def check(self) -> int:
        """Collect the generations whose counts passed their thresholds (as Python would);
        returns the oldest generation collected, or -1."""
        counts = gc.get_count()
        collected = -1
        for generation in range(3):
            if counts[generation] <= self.thresholds[generation]:
                break
            collected = generation
        if collected >= 0:
            gc.collect(collected)
            self.collections += 1
        return collected

    def stop(self) -> None:
        """Give the collection back to Python."""
        self.timer.stop()
        if self._was_enabled:
            gc.enable()
