"""Decoding stays bounded: memory per big image, big images one at a time, dying workers.

Module-level imports stay light (no torch): spawned decoding processes import this module to
find :func:`dying_decode`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CRLCError
from crlc_engine.library import decode_pool
from crlc_engine.library.decode import DecodeResult, decode_file
from crlc_engine.library.decode_pool import Job, run_decoders

REPO = Path(__file__).resolve().parents[2]

#: Peak memory of one decode of the 6000 x 6000 PNG above the interpreter's own, in MiB: the
#: full-size image (4 bytes a pixel, 137 MiB) once, and little else. Before the decode was
#: bounded it peaked at about 550 MiB (RGB copies and a full-size thumbnail copy).
PEAK_ABOVE_IMPORTS_MIB = 200

#: Linux's ru_maxrss of a child starts at its parent's peak (kept across fork and exec):
#: VmHWM, this process's own high-water mark, is read where it exists.
_MEASURE = """
import json, resource, sys
from crlc_engine.library.decode import decode_file
def peak_mib():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
before = peak_mib()
result = decode_file(sys.argv[1], 32, sys.argv[2])
print(json.dumps({"status": result.status, "before": before, "after": peak_mib()}))
"""


def test_a_big_png_decodes_in_bounded_memory(tmp_path: Path) -> None:
    pytest.importorskip("resource")
    big = tmp_path / "big.png"
    Image.new("RGB", (6000, 6000), (30, 140, 200)).save(big)
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(big), str(tmp_path / "thumb.jpg")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )
    assert out.returncode == 0, out.stderr
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    assert measured["status"] == "ok"
    used = measured["after"] - measured["before"]
    assert used < PEAK_ABOVE_IMPORTS_MIB, f"decoding took {used:.0f} MiB"
    with Image.open(tmp_path / "thumb.jpg") as thumb:
        assert thumb.size == (256, 256)


def _consume(results: Iterator[tuple[int, DecodeResult]], into: queue.Queue[object]) -> None:
    try:
        for item in results:
            into.put(item)
        into.put("done")
    except BaseException as exc:  # handed to the test thread
        into.put(exc)


def test_big_images_wait_for_the_lock_shared_by_all_workers(tmp_path: Path) -> None:
    """Worker A holds a big image until the shared lock is free; worker B goes on."""
    big = tmp_path / "big.png"
    Image.new("RGB", (400, 400), (200, 10, 10)).save(big)  # 160,000 px: big below
    jobs: list[Job] = [(1, str(big), None)]
    for i in range(2, 5):
        small = tmp_path / f"small{i}.png"
        Image.new("RGB", (100, 100), (10, 10, 20 * i)).save(small)
        jobs.append((i, str(small), None))
    lock = multiprocessing.get_context("spawn").Lock()
    lock.acquire()  # the test holds the big-image turn
    results: queue.Queue[object] = queue.Queue()
    decoding = run_decoders(
        iter(jobs), 32, 2, JobControl(), big_image_lock=lock, big_image_pixels=100_000
    )
    consumer = threading.Thread(target=_consume, args=(decoding, results), daemon=True)
    consumer.start()
    try:
        first = [results.get(timeout=60) for _ in range(3)]
        assert sorted(item[0] for item in first) == [2, 3, 4]  # type: ignore[index]
        with pytest.raises(queue.Empty):
            results.get(timeout=1.0)  # the big image waits for the lock
    finally:
        lock.release()
    last = results.get(timeout=60)
    assert isinstance(last, tuple) and last[0] == 1 and last[1].status == "ok"
    assert results.get(timeout=60) == "done"
    consumer.join(timeout=10)


def dying_decode(path: str, side: int, thumb: str | None) -> DecodeResult:
    """decode_file, except that a file named ``die*`` kills the worker (out of memory)."""
    if Path(path).name.startswith("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    return decode_file(path, side, thumb)


def _jobs(folder: Path, names: list[str]) -> list[Job]:
    folder.mkdir(parents=True, exist_ok=True)
    jobs: list[Job] = []
    for image_id, name in enumerate(names, start=1):
        Image.new("RGB", (60, 40), (image_id * 7 % 256, 90, 30)).save(folder / name)
        jobs.append((image_id, str(folder / name), None))
    return jobs


def _run_with_deadline(jobs: list[Job], timeout: float = 60) -> object:
    results: queue.Queue[object] = queue.Queue()
    decoding = run_decoders(iter(jobs), 32, 2, JobControl(), decode=dying_decode)
    thread = threading.Thread(target=_consume, args=(decoding, results), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "decoding hung after a worker died"
    items = []
    while not results.empty():
        items.append(results.get())
    return items


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_worker_that_dies_does_not_stop_the_scan(tmp_path: Path) -> None:
    names = [f"{i:02d}.png" for i in range(12)]
    names[5] = "die.png"
    items = _run_with_deadline(_jobs(tmp_path, names))
    assert isinstance(items, list) and items[-1] == "done", items
    results = dict(items[:-1])
    assert sorted(results) == list(range(1, 13))  # every job comes back once
    assert results[6].status == "error"
    assert results[6].reason is not None and results[6].reason.startswith("not decoded yet")
    assert "stopped unexpectedly" in results[6].reason
    assert (
        sum(r.status == "ok" for r in results.values()) >= 12 - decode_pool.IN_FLIGHT_PER_WORKER * 2
    )
    assert all(r.status == "ok" or r.reason == decode_pool.BROKEN_REASON for r in results.values())
    died = results[6]
    assert (died.size, died.mtime_ns) == (
        os.stat(tmp_path / "die.png").st_size,
        os.stat(tmp_path / "die.png").st_mtime_ns,
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_workers_that_keep_dying_stop_the_scan_with_a_plain_error(tmp_path: Path) -> None:
    names = [f"die{i:02d}.png" for i in range(40)]
    items = _run_with_deadline(_jobs(tmp_path, names))
    assert isinstance(items, list) and items, items
    error = items[-1]
    assert isinstance(error, CRLCError), items
    assert "stopped unexpectedly 3 times" in str(error)
    assert all(r.reason == decode_pool.BROKEN_REASON for _, r in items[:-1])  # type: ignore[misc]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_scan_whose_worker_dies_reports_the_file_and_the_next_scan_decodes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crlc_engine.library import ImageLibrary
    from crlc_engine.library import scan as library_mod

    photos = tmp_path / "photos"
    _jobs(photos, ["a.png", "b.png", "die.png", "c.png"])
    monkeypatch.setattr(library_mod, "decode_file", dying_decode)
    with ImageLibrary.open([photos], tmp_path / "ws") as library:
        first = library.scan(32, workers=2)
    monkeypatch.undo()
    assert first.skipped and first.skipped[0].reason == decode_pool.BROKEN_REASON
    assert str(photos / "die.png") in {s.path for s in first.skipped}
    assert first.images_ok + first.images_skipped == 4
    with ImageLibrary.open([photos], tmp_path / "ws") as library:
        again = library.scan(32, workers=2)
    assert (again.images_ok, again.skipped, again.changed) == (4, [], 0)
