"""Fixtures of the reliability suite: real full disks, real signals, real child processes.

Every test below ``tests/reliability/`` carries the ``reliability`` marker, so the suite runs
alone with ``pytest -m reliability``. Conditions are made real where the machine allows: a
small tmpfs for a full disk (needs root, as CI runs), another uid for permissions, signals
sent to a child ``crlc`` process. Where the machine does not allow one, the test is skipped
with the reason.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_TRAIN_FLAGS

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of this folder ``reliability``."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.reliability)


def crlc_env(**extra: str) -> dict[str, str]:
    """The environment of a child ``crlc``: this one, unbuffered, plus ``extra``."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}


def crlc_command(*args: str) -> list[str]:
    """The argv of a child ``crlc`` (this interpreter, the checkout's engine)."""
    return [sys.executable, "-m", "crlc_engine.cli.main", *args]


def run_crlc(*args: str, timeout: float = 120.0, **popen: Any) -> tuple[int, dict[str, Any], str]:
    """Run ``crlc ARGS --json`` in a child process: (exit status, last stdout JSON, stderr).

    The JSON is ``{}`` when stdout has no line (the test then sees the stderr).
    """
    out = subprocess.run(
        crlc_command(*args, "--json"),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
        env=crlc_env(),
        **popen,
    )
    lines = out.stdout.strip().splitlines()
    payload: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return out.returncode, payload, out.stderr


def crlc_here(*args: str) -> tuple[int, dict[str, Any], str]:
    """``crlc ARGS --json`` in this process (no interpreter start-up): like :func:`run_crlc`.

    For conditions that live in the file system (a full disk, damaged files); signals and
    killed processes need :func:`run_crlc`'s child.
    """
    from crlc_engine.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--json"])
    lines = out.getvalue().strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else {}), err.getvalue()


def reading_commands(photos: Path, out: Path) -> list[list[str]]:
    """Commands that only read a library: they must work on a full or read-only workspace."""
    return [
        ["clusters", str(photos)],
        ["runs", str(photos)],
        ["libraries"],
        ["evaluate", str(photos)],
        ["export", str(photos), str(out), "--dry-run"],
    ]


def writing_commands(photos: Path) -> list[list[str]]:
    """Commands that write the workspace: on a full or read-only one, a plain error."""
    disc = sorted((photos / "disc").iterdir())[0]
    return [
        ["name", str(photos), "0", "Discs"],
        ["label", str(photos), str(disc), "--as", "Disc"],
        ["scan", str(photos)],
        ["train", str(photos), "-k", "3", *TINY_TRAIN_FLAGS],
    ]


def assert_plain_error(code: int, payload: dict[str, Any], stderr: str) -> None:
    """A failure reported as one plain line: non-zero exit, no traceback, a JSON error."""
    assert code != 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "error" in payload and payload["error"]["type"] != "internal", (payload, stderr)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """A factory of small, real file systems: ``tmpfs(size_bytes) -> mount point``.

    Skips the test when this machine may not mount one (mounting needs root).
    """
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        point = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` until at most ``leave`` bytes are free."""
    filler = folder / "filler.bin"
    chunk = b"\0" * (64 * 1024)
    with open(filler, "ab") as handle:
        while shutil.disk_usage(folder).free > leave + len(chunk):
            try:
                handle.write(chunk)
                handle.flush()
            except OSError:
                break
        with contextlib.suppress(OSError):
            while shutil.disk_usage(folder).free > leave:
                handle.write(b"\0" * 512)
                handle.flush()
    return filler


@pytest.fixture(scope="session")
def trained_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(photo folder, workspace base) of a library of 48 generated images with one tiny run.

    Shared by the suite: tests that change the library must work on a copy.
    """
    from crlc_engine.library.synthetic import write_shapes_folder

    base = tmp_path_factory.mktemp("trained")
    photos = write_shapes_folder(base / "photos", per_class=12, size=32)
    workspace = base / "ws"
    code, _, err = run_crlc(
        "train", str(photos), "-k", "3", "--workspace", str(workspace), *TINY_TRAIN_FLAGS
    )
    assert code == 0, err
    return photos, workspace
