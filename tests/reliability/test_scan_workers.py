"""The decoding processes of a real ``crlc scan``: they die with it, and ignore stop signals.

Before, a SIGKILLed scan left its workers behind for ever (re-parented to init, blocked on a
pipe, about 45 MB each), and Ctrl+C sent to the terminal's process group killed the workers
with a traceback each before the scan could cancel.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from crlc_engine.library import decode_pool
from crlc_engine.library.decode_pool import available_cores
from tests.engine.library_helpers import wait_for
from tests.reliability.conftest import REPO, crlc_command, crlc_env

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads processes from /proc"
)


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _decoding_children(pid: int) -> set[int]:
    """The decoding processes (spawned pool workers) whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry))[1]) != pid:
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if b"multiprocessing.spawn" in cmdline:
            found.add(int(entry))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an un-reaped zombie holds no memory and does nothing)."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def _photos(folder: Path, count: int) -> Path:
    """``count`` copies of one 1500 x 1500 PNG (about 15 ms to decode each)."""
    folder.mkdir(parents=True)
    first = folder / "0000.png"
    Image.new("RGB", (1500, 1500), (40, 90, 160)).save(first)
    for i in range(1, count):
        shutil.copyfile(first, folder / f"{i:04d}.png")
    return folder


def _start_scan(photos: Path, workspace: Path, log: Path) -> subprocess.Popen[bytes]:
    """``crlc scan --json``: stderr in ``log``, stdout in ``log`` + ``.json``."""
    args = ["scan", str(photos), "--workers", "2", "--workspace", str(workspace), "--json"]
    with open(log, "wb") as err, open(log.with_suffix(".json"), "wb") as out:
        return subprocess.Popen(
            crlc_command(*args),
            stdout=out,
            stderr=err,
            cwd=str(REPO),
            env=crlc_env(),
            start_new_session=True,  # its own process group, as in a terminal
        )


def _wait_for_workers(scan: subprocess.Popen[bytes], log: Path) -> set[int]:
    expected = min(2, available_cores())
    workers: set[int] = set()

    def started() -> bool:
        workers.update(_decoding_children(scan.pid))
        return len(workers) >= expected or scan.poll() is not None

    wait_for(started, 60, "the scan's decoding processes")
    assert scan.poll() is None, log.read_text()
    time.sleep(0.8)  # let them get to work (past start-up)
    assert scan.poll() is None, "the scan ended too soon to test; give it more images"
    return workers


def test_workers_exit_when_the_scan_is_killed(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 500)
    log = tmp_path / "scan.log"
    scan = _start_scan(photos, tmp_path / "ws", log)
    workers: set[int] = set()
    try:
        workers = _wait_for_workers(scan, log)
        os.kill(scan.pid, signal.SIGKILL)
        scan.wait(timeout=10)
        wait_for(
            lambda: not any(_running(pid) for pid in workers),
            5.0,
            f"decoding processes {sorted(workers)} to exit after their parent was killed",
        )
    finally:
        for pid in workers:  # leave nothing behind when the test fails
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        if scan.poll() is None:
            scan.kill()
            scan.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_to_the_process_group_cancels_without_breaking_the_workers(
    tmp_path: Path, signum: signal.Signals
) -> None:
    photos = _photos(tmp_path / "photos", 500)
    log = tmp_path / "scan.log"
    scan = _start_scan(photos, tmp_path / "ws", log)
    workers: set[int] = set()
    try:
        workers = _wait_for_workers(scan, log)
        os.killpg(scan.pid, signum)  # Ctrl+C in a terminal reaches every process of the group
        assert scan.wait(timeout=60) == 130, log.read_text()
        errors = log.read_text()
        assert "Traceback" not in errors, errors
        assert "KeyboardInterrupt" not in errors, errors
        result = json.loads(log.with_suffix(".json").read_text().strip().splitlines()[-1])
        assert result.get("state") == "cancelled", result  # a cancel, not an abort
        assert result["cancelled"] is True and result["decoded"] > 0, result
        wait_for(lambda: not any(_running(pid) for pid in workers), 10.0, "the workers to exit")
    finally:
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        if scan.poll() is None:
            scan.kill()
            scan.wait()


def test_the_watchdog_exits_the_worker_when_its_parent_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The portable half (PDEATHSIG is Linux-only): a re-parented worker exits by itself."""
    exits: list[int] = []

    class ExitCalledError(Exception):
        pass

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise ExitCalledError

    parents = iter([4242, 4242, 1])
    monkeypatch.setattr(decode_pool, "WATCHDOG_POLL_S", 0.01)
    monkeypatch.setattr(decode_pool.os, "getppid", lambda: next(parents))
    monkeypatch.setattr(decode_pool.os, "_exit", fake_exit)
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            decode_pool._watch_parent(4242)
        except ExitCalledError:
            pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=watch)
    thread.start()
    thread.join(5)
    assert not thread.is_alive() and errors == []
    assert exits == [1]
