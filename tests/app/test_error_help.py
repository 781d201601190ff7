"""app.core.error_help: plain kinds for non-engine failures, titles and what-to-do advice."""

from __future__ import annotations

import datetime as dt
import errno
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.error_help import (
    DISK_FULL,
    OUT_OF_MEMORY,
    PERMISSION_DENIED,
    classify_exception,
    explain,
    parse_lock_holder,
)
from crlc_engine.core.errors import CRLCError, WorkspaceLockedError
from crlc_engine.library.lock import WorkspaceLock


class OutOfMemoryError(RuntimeError):
    """Named like ``torch.cuda.OutOfMemoryError`` (torch is not needed for the test)."""


def test_torch_out_of_memory_errors_are_recognised() -> None:
    torch = pytest.importorskip("torch")
    found = classify_exception(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried 2 GiB"))
    assert found is not None and found[0] == OUT_OF_MEMORY and "GPU" in found[1]
    with pytest.raises(RuntimeError) as caught:  # a real failed CPU allocation
        torch.empty(1 << 60, dtype=torch.uint8)
    found = classify_exception(caught.value)
    assert found is not None and found[0] == OUT_OF_MEMORY and "computer" in found[1]


@pytest.mark.parametrize(
    ("error", "kind", "needle"),
    [
        (MemoryError(), OUT_OF_MEMORY, "ran out of memory"),
        (OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), OUT_OF_MEMORY, "GPU"),
        (RuntimeError("MPS backend out of memory"), OUT_OF_MEMORY, "the GPU ran out"),
        (
            RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 1 TB"),
            OUT_OF_MEMORY,
            "the computer ran out of memory (DefaultCPUAllocator",
        ),
        (OSError(errno.ENOSPC, "No space left on device", "/d/x.jpg"), DISK_FULL, "/d/x.jpg"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), DISK_FULL, "disk is full"),
        (sqlite3.OperationalError("database or disk is full"), DISK_FULL, "catalog is full"),
        (PermissionError(errno.EACCES, "Permission denied", "/dest"), PERMISSION_DENIED, "/dest"),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/cd"), PERMISSION_DENIED, "/mnt/cd"),
    ],
)
def test_known_failures_get_a_kind_and_a_plain_message(
    error: BaseException, kind: str, needle: str
) -> None:
    found = classify_exception(error)
    assert found is not None
    assert found[0] == kind and needle in found[1]
    assert "Traceback" not in found[1] and "Errno" not in found[1]


@pytest.mark.parametrize(
    "error",
    [ValueError("bad"), RuntimeError("shape mismatch"), OSError(errno.ENOENT, "x"), KeyError(1)],
)
def test_other_failures_stay_unclassified(error: BaseException) -> None:
    assert classify_exception(error) is None


def _kinds(cls: type[CRLCError]) -> set[str]:
    """Kinds of the engine's error classes (not those that tests define)."""
    out = {cls.kind} if cls.__module__.startswith("crlc_engine") else set()
    for sub in cls.__subclasses__():
        out |= _kinds(sub)
    return out


def test_every_engine_error_and_the_issue_list_have_a_title_and_advice() -> None:
    listed = {"no_images", OUT_OF_MEMORY, DISK_FULL, PERMISSION_DENIED, "workspace_locked"}
    listed |= {"not_enough_space", "export_destination"}  # an unusable export folder
    evaluation_only = {"error", "usage", "no_ground_truth"}  # CLI-only errors
    for kind in (_kinds(CRLCError) - evaluation_only) | listed:
        help_ = explain(kind, "something happened")
        assert help_.title != "Something went wrong", kind
        assert len(help_.what_to_do) > 20, kind


def test_message_is_capitalised_and_ends_with_a_full_stop() -> None:
    help_ = explain("no_images", "no image files (jpg, png) in /photos")
    assert help_.message == "No image files (jpg, png) in /photos."
    assert help_.title == "No usable images" and "JPEG" in help_.what_to_do


def test_locked_by_this_process_says_to_wait_for_the_job(tmp_path: Path) -> None:
    with (
        WorkspaceLock(tmp_path, "scanning at 32 px"),
        pytest.raises(WorkspaceLockedError) as caught,
    ):
        WorkspaceLock(tmp_path, "training").acquire()
    holder = parse_lock_holder(str(caught.value))
    assert holder is not None and holder.pid == os.getpid() and holder.is_this_process
    assert holder.purpose == "scanning at 32 px"
    advice = explain("workspace_locked", str(caught.value)).what_to_do
    assert "This window is still busy" in advice and "scanning at 32 px" in advice


def test_locked_by_another_program_names_it_and_tells_the_truth_about_stale_locks() -> None:
    host = socket.gethostname()
    message = (
        f"the workspace /ws is in use by another process (pid 4242 on {host}: training "
        "(cpu preset), since 2024-03-12T14:02:00+00:00); wait for it to finish or close it"
    )
    holder = parse_lock_holder(message)
    assert holder is not None and holder.since == "2024-03-12T14:02:00+00:00"
    advice = explain("workspace_locked", message).what_to_do
    local = dt.datetime(2024, 3, 12, 14, 2, tzinfo=dt.UTC).astimezone()
    assert f"is training (cpu preset) (since 12 Mar {local:%H:%M})." in advice
    assert "Process 4242 on this computer is training (cpu preset)" in advice
    assert "close it" in advice and "Ctrl+C" in advice
    assert "no lock file to delete" in advice
    remote = explain("workspace_locked", message.replace(host, "nas-box")).what_to_do
    assert "on the computer nas-box" in remote


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    """What the advice promises: the OS frees the lock when its holder dies."""
    script = (
        "import sys, pathlib, time\n"
        "from crlc_engine.library.lock import WorkspaceLock\n"
        "WorkspaceLock(pathlib.Path(sys.argv[1]), 'training').acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkspaceLockedError, match=f"pid {holder.pid} "):
            WorkspaceLock(tmp_path, "scanning").acquire()
        holder.kill()  # a crash: no release, the lock file still names the holder
        holder.wait(timeout=10)
        assert f"pid {holder.pid}" in (tmp_path / "lock").read_text()
        with WorkspaceLock(tmp_path, "scanning"):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
