"""Hand the heap's freed pages back to the operating system when the window's work ends.

A job (a scan, a training) or the Group dialog's speed measurement allocates hundreds of
megabytes on its own thread and frees them when it ends; glibc's allocator keeps those pages
mapped for reuse (in that thread's arena), so the window stays at the job's high-water mark
until the next job (measured: 1,160 MB after a quick run of 2,000 photos, 985 MB after
:func:`release_freed_memory`). The window calls :func:`release_freed_memory` when a job is
done and :func:`trim_heap` when a speed measurement ends; neither frees anything still
referenced.

Two functions, because of :mod:`app.gc_guard`: a garbage collection may destroy Qt objects,
so it runs on the GUI thread only (:func:`release_freed_memory`, the engine's
``return_freed_memory``); trimming the heap touches no Python object and may run on any
thread (:func:`trim_heap`).
"""

from __future__ import annotations

from crlc_engine import api

__all__ = ["release_freed_memory", "trim_heap"]


def trim_heap() -> bool:
    """Give the free pages of every malloc arena back to the OS (safe on any thread).

    Returns:
        Whether the C library could do it (glibc on Linux).
    """
    return bool(api.trim_heap())


def release_freed_memory() -> bool:
    """Collect garbage, then :func:`trim_heap` (on the GUI thread: see the module's notes).

    Returns:
        Whether the heap could be trimmed.
    """
    return bool(api.return_freed_memory())
