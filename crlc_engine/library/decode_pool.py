"""Decoding images in worker processes that never outlive the scan that started them.

:func:`run_decoders` feeds :func:`~crlc_engine.library.decode.decode_file` jobs to a pool of
``spawn``-ed processes (``workers=0``: decodes in the calling process), a bounded number in
flight, until the jobs run out or the scan is cancelled. Every worker process:

* exits when its parent dies: on Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (best effort),
  and everywhere a daemon watchdog thread that calls ``os._exit`` within about
  :data:`WATCHDOG_POLL_S` of its parent's pid changing, so a killed ``crlc scan`` leaves no
  worker behind;
* ignores SIGINT, SIGTERM and SIGHUP: Ctrl+C, a closed terminal or a ``kill`` of the whole
  process group reach the parent too, which cancels the job and shuts the pool down after
  the files being decoded (the pool's own shutdown does not use signals);
* decodes big images only while holding one lock shared by the whole pool
  (:func:`~crlc_engine.library.decode.share_big_image_lock`), so that at most one full-size
  big image is in memory at a time.

A worker that dies anyway (killed, out of memory) breaks the pool: the files in flight come
back as ``not decoded yet`` (the next scan retries them), the other workers are killed and a
new pool decodes the rest; after :data:`MAX_BROKEN_POOLS` broken pools the scan stops with a
plain error. PDEATHSIG fires when the *thread* that started a worker ends, so a pool lives and
dies within one call of :func:`run_decoders`, in the calling thread.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import SpawnContext

from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CRLCError
from crlc_engine.library.decode import (
    BIG_IMAGE_PIXELS,
    DecodeResult,
    SharedLock,
    decode_file,
    share_big_image_lock,
)

#: One decode job: (image id, file path, thumbnail path or ``None``).
Job = tuple[int, str, str | None]
#: What decodes one job: :func:`~crlc_engine.library.decode.decode_file`'s signature.
Decoder = Callable[[str, int, str | None], DecodeResult]
#: How often a worker checks that its parent is still alive, in seconds.
WATCHDOG_POLL_S = 0.5
#: Broken pools (a worker died) after which the scan stops instead of starting another.
MAX_BROKEN_POOLS = 3
#: Jobs in flight per worker.
IN_FLIGHT_PER_WORKER = 4
_PR_SET_PDEATHSIG = 1
#: The reason of a file whose decoding process died (``not decoded yet``: retried next scan).
BROKEN_REASON = (
    "not decoded yet: a decoding process stopped unexpectedly (out of memory?); the next "
    "scan tries again"
)


def broken_result(path: str) -> DecodeResult:
    """The result of a file whose decoding process died, with the file's size and mtime."""
    try:
        st = os.stat(path)
    except OSError:
        return DecodeResult("error", BROKEN_REASON)
    return DecodeResult("error", BROKEN_REASON, st.st_size, st.st_mtime_ns)


def available_cores() -> int:
    """CPU cores this process may run on (its CPU affinity where known, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------- in the worker
def _init_worker(parent: int, lock: SharedLock | None, big_pixels: int) -> None:
    """Pool initializer: signals, dying with the parent, the shared big-image lock."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):  # best effort: the watchdog covers the rest
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the worker could watch it
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent,), name="crlc-parent-watchdog", daemon=True
    ).start()
    share_big_image_lock(lock, big_pixels)


def _watch_parent(parent: int) -> None:
    """Exit this worker at once when its parent is gone (it was re-parented)."""
    while True:
        time.sleep(WATCHDOG_POLL_S)
        if os.getppid() != parent:
            os._exit(1)


# ---------------------------------------------------------------------------- in the parent
def run_decoders(
    jobs: Iterable[Job],
    side: int,
    workers: int,
    control: JobControl,
    big_image_lock: SharedLock | None = None,
    big_image_pixels: int = BIG_IMAGE_PIXELS,
    decode: Decoder = decode_file,
    ahead: int = 0,
) -> Iterator[tuple[int, DecodeResult]]:
    """Decode ``jobs`` in ``workers`` processes (0: here); yields (image id, result).

    Stops taking jobs once ``control`` is cancelled and yields the ones already running.
    ``big_image_lock`` (default: a new one) is handed to every worker; images over
    ``big_image_pixels`` decoded pixels are decoded only while holding it. ``decode``: what
    decodes a file (a module-level function when ``workers`` > 0: it is sent to them).
    ``ahead``: files in flight at least (default :data:`IN_FLIGHT_PER_WORKER` per worker), so
    that workers keep decoding while the caller spends time on a batch of results.

    Raises:
        CRLCError: workers kept dying (:data:`MAX_BROKEN_POOLS` pools broke).
    """
    if workers == 0:
        for image_id, path, thumb in jobs:
            if control.cancelled:
                return
            yield image_id, decode(path, side, thumb)
        return
    context = multiprocessing.get_context("spawn")
    lock = big_image_lock if big_image_lock is not None else context.Lock()
    pending = iter(jobs)
    for _ in range(MAX_BROKEN_POOLS):
        pool = _Pool(context, workers, lock, big_image_pixels, decode, ahead)
        broken = yield from pool.decode(pending, side, control)
        if not broken:
            return
    raise CRLCError(
        f"decoding processes stopped unexpectedly {MAX_BROKEN_POOLS} times (out of memory?); "
        "the images decoded so far are kept. Try again with fewer processes (--workers 1)"
    )


class _Pool:
    """One process pool; :meth:`decode` reports whether it broke."""

    def __init__(
        self,
        context: SpawnContext,
        workers: int,
        lock: SharedLock,
        big_pixels: int,
        decode: Decoder,
        ahead: int = 0,
    ) -> None:
        self.executor = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(os.getpid(), lock, big_pixels),
        )
        self.decode_file = decode
        self.limit = max(workers * IN_FLIGHT_PER_WORKER, ahead)
        self.in_flight: dict[cf.Future[DecodeResult], tuple[int, str]] = {}
        self.broken = False

    def decode(
        self, jobs: Iterator[Job], side: int, control: JobControl
    ) -> Generator[tuple[int, DecodeResult], None, bool]:
        """Yield results until ``jobs`` run out, the job is cancelled or the pool breaks."""
        finished = False
        try:
            exhausted = False
            while True:
                while not (exhausted or self.broken or control.cancelled):
                    if len(self.in_flight) >= self.limit:
                        break
                    job = next(jobs, None)
                    if job is None:
                        exhausted = True
                    else:
                        yield from self._submit(job, side)
                if not self.in_flight:
                    break
                if control.cancelled or self.broken:
                    for future in self.in_flight:
                        future.cancel()
                    yield from self._collect(cf.as_completed(list(self.in_flight)))
                    break
                done, _ = cf.wait(self.in_flight, return_when=cf.FIRST_COMPLETED)
                yield from self._collect(done)
            finished = True
            return self.broken
        finally:
            if self.broken or not finished:  # nothing left to wait for: stop at once
                self._kill_workers()
            self.executor.shutdown(wait=True, cancel_futures=True)

    def _submit(self, job: Job, side: int) -> Iterator[tuple[int, DecodeResult]]:
        image_id, path, thumb = job
        try:
            future = self.executor.submit(self.decode_file, path, side, thumb)
        except BrokenProcessPool:
            self.broken = True
            yield image_id, broken_result(path)
        else:
            self.in_flight[future] = (image_id, path)

    def _collect(
        self, futures: Iterable[cf.Future[DecodeResult]]
    ) -> Iterator[tuple[int, DecodeResult]]:
        for future in futures:
            image_id, path = self.in_flight.pop(future)
            if future.cancelled():
                if self.broken:  # taken from the jobs but never decoded: say so
                    yield image_id, broken_result(path)
                continue
            try:
                result = future.result()
            except BrokenProcessPool:
                self.broken = True
                result = broken_result(path)
            yield image_id, result

    def _kill_workers(self) -> None:
        """SIGKILL the workers (they ignore SIGTERM, which the pool uses when it breaks)."""
        processes = getattr(self.executor, "_processes", None) or {}
        for process in list(processes.values()):
            with contextlib.suppress(Exception):
                process.kill()
