"""Garbage collection on the GUI thread: off for Python, on for the timer, given back."""

from __future__ import annotations

import gc
import threading
import weakref

from PySide6.QtCore import QObject
from pytestqt.qtbot import QtBot

from app.gc_guard import GuiGarbageCollector


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it
        self.qt = QObject()


def test_cycles_die_on_the_gui_thread_and_python_gets_the_collection_back(
    qtbot: QtBot,
) -> None:
    gc.collect()
    was_enabled = gc.isenabled()
    collector = GuiGarbageCollector(interval_ms=10)
    try:
        assert not gc.isenabled()
        collector.thresholds = (0, 0, 0)  # collect at the next check
        freed_on: list[str] = []

        def make_garbage() -> weakref.ref[Node]:
            node = Node()
            weakref.finalize(node, lambda: freed_on.append(threading.current_thread().name))
            return weakref.ref(node)

        dead = make_garbage()
        worker = threading.Thread(target=lambda: [object() for _ in range(100_000)], name="job")
        worker.start()  # allocates a lot: Python would collect there
        worker.join()
        assert dead() is not None  # nothing collected on the worker thread
        qtbot.waitUntil(lambda: dead() is None, timeout=2000)  # the timer on this thread
        assert freed_on == [threading.main_thread().name] and collector.collections >= 1
    finally:
        collector.stop()
    assert gc.isenabled() == was_enabled
