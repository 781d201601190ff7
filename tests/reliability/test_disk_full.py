"""A real full disk (a small tmpfs) under the workspace: commands that only read still work,
commands that write say "the disk is full" in plain words, and a run that fills the disk
fails cleanly and starts again once there is space."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import TINY_TRAIN_FLAGS
from tests.reliability.conftest import (
    assert_plain_error,
    crlc_here,
    fill_disk,
    reading_commands,
    writing_commands,
)

MB = 1024 * 1024


def _library_on(mount: Path, photos: Path, epochs: str = "2") -> Path:
    workspace = mount / "ws"
    flags = [f if f != "2" else epochs for f in TINY_TRAIN_FLAGS]
    code, _, err = crlc_here("train", str(photos), "-k", "3", "--workspace", str(workspace), *flags)
    assert code == 0, err
    return workspace


def test_reading_works_and_writing_says_disk_full_on_a_full_disk(
    trained_library: tuple[Path, Path], tmpfs: Callable[[int], Path], tmp_path: Path
) -> None:
    photos, _ = trained_library
    mount = tmpfs(40 * MB)
    workspace = _library_on(mount, photos)
    fill_disk(mount)
    ws = ["--workspace", str(workspace)]
    for read in reading_commands(photos, tmp_path / "out"):
        code, payload, err = crlc_here(*read, *ws)
        assert code == 0, (read, err)
        assert "error" not in payload
    for write in writing_commands(photos):
        code, payload, err = crlc_here(*write, *ws)
        assert_plain_error(code, payload, err)
        assert payload["error"]["type"] == "disk_full", (write, payload)
        assert "full" in payload["error"]["message"]


def test_a_run_that_fills_the_disk_fails_plainly_and_starts_again_later(
    trained_library: tuple[Path, Path], tmpfs: Callable[[int], Path]
) -> None:
    photos, _ = trained_library
    mount = tmpfs(40 * MB)
    workspace = _library_on(mount, photos)
    filler = fill_disk(mount, leave=2 * MB)  # room for the scan, not for a checkpoint
    ws = ["--workspace", str(workspace)]
    code, payload, err = crlc_here(
        "train", str(photos), "-k", "3", *TINY_TRAIN_FLAGS, "--checkpoint-every", "1", *ws
    )
    assert_plain_error(code, payload, err)
    assert payload["error"]["type"] == "disk_full"
    run = sorted(workspace.glob("libraries/*/runs/*"))[-1]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "full" in status["message"]

    filler.unlink()
    code, resumed, err = crlc_here("train", str(photos), "--resume", *ws)
    assert code == 0, err
    assert resumed["run_id"] == run.name and resumed["state"] == "completed"
