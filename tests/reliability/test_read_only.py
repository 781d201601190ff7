"""A read-only workspace and a read-only export folder (real read-only mounts, which root
cannot write either): reading works, writing says so in plain words."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN_FLAGS
from tests.reliability.conftest import (
    assert_plain_error,
    crlc_here,
    reading_commands,
    writing_commands,
)

MB = 1024 * 1024


def _read_only(point: Path) -> None:
    done = subprocess.run(["mount", "-o", "remount,ro", str(point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")


def test_a_read_only_workspace_reads_and_refuses_writes_plainly(
    trained_library: tuple[Path, Path], tmpfs: Callable[[int], Path], tmp_path: Path
) -> None:
    photos, _ = trained_library
    mount = tmpfs(40 * MB)
    workspace = mount / "ws"
    code, _, err = crlc_here(
        "train", str(photos), "-k", "3", "--workspace", str(workspace), *TINY_TRAIN_FLAGS
    )
    assert code == 0, err
    for lock in workspace.glob("libraries/*/export.lock"):  # as made before exports locked
        lock.unlink()
    _read_only(mount)
    ws = ["--workspace", str(workspace)]
    code, payload, err = crlc_here("export", str(photos), str(tmp_path / "copied"), *ws)
    assert code == 0 and payload["done"] == 48, err  # an export only reads the library
    for read in reading_commands(photos, tmp_path / "out"):
        code, payload, err = crlc_here(*read, *ws)
        assert code == 0, (read, err)
        assert "error" not in payload
    for write in writing_commands(photos):
        code, payload, err = crlc_here(*write, *ws)
        assert_plain_error(code, payload, err)
        assert payload["error"]["type"] == "permission_denied", (write, payload)


def test_an_export_into_a_read_only_folder_is_refused_plainly(
    trained_library: tuple[Path, Path], tmpfs: Callable[[int], Path]
) -> None:
    photos, workspace = trained_library
    dest = tmpfs(4 * MB)
    _read_only(dest)
    code, payload, err = crlc_here("export", str(photos), str(dest), "--workspace", str(workspace))
    assert_plain_error(code, payload, err)
    assert payload["error"]["type"] == "permission_denied"
    assert str(dest) in payload["error"]["message"]
