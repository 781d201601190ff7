"""Real signals to a child ``crlc train``: SIGTERM and SIGHUP cancel like Ctrl+C, and a run
killed before its first checkpoint is marked interrupted and starts again on ``--resume``."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.engine.library_helpers import wait_for
from tests.reliability.conftest import REPO, crlc_command, crlc_env, run_crlc

#: A tiny pixel run whose epochs take a fraction of a second on the 48 generated images.
TINY = [
    "--preset", "cpu", "--backbone", "small", "--stem", "imagenet", "--size", "16",
    "--batch-size", "16", "--subheads", "2", "--device", "cpu",
]  # fmt: skip


def _only_run(workspace: Path) -> Path:
    runs = sorted(workspace.glob("libraries/*/runs/*"))
    return runs[-1] if runs else workspace / "none"


def _status(run: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads((run / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def _start_train(photos: Path, workspace: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        crlc_command(
            "train", str(photos), "-k", "3", "--workspace", str(workspace), *TINY, *flags, "--json"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
        env=crlc_env(),
    )


def _epochs_done(run: Path) -> int:
    try:
        return len((run / "history.jsonl").read_text().splitlines())
    except OSError:
        return 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_cancels_keeps_the_checkpoint_and_exits_130(
    trained_library: tuple[Path, Path], tmp_path: Path, signum: signal.Signals
) -> None:
    photos, _ = trained_library
    workspace = tmp_path / "ws"
    child = _start_train(photos, workspace, "--epochs", "2000", "--checkpoint-every", "1")
    try:
        wait_for(lambda: _epochs_done(_only_run(workspace)) >= 2, 60, "two epochs")
        child.send_signal(signum)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "Traceback" not in err
    run = _only_run(workspace)
    assert _status(run)["state"] == "cancelled"
    assert (run / "checkpoint.pt").is_file()
    if signum == signal.SIGTERM:  # after a hang-up nobody reads: the output is dropped
        assert json.loads(out.strip().splitlines()[-1])["state"] == "cancelled"


def test_a_run_killed_before_its_first_checkpoint_is_interrupted_and_starts_again(
    trained_library: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, _ = trained_library
    workspace = tmp_path / "ws"
    child = _start_train(photos, workspace, "--epochs", "40", "--checkpoint-every", "1000")
    try:
        wait_for(lambda: _status(_only_run(workspace)).get("state") == "running", 60, "start")
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    finally:
        child.kill()
    run = _only_run(workspace)
    assert not (run / "checkpoint.pt").exists(), "killed too late for this test"
    assert _status(run)["state"] == "running"  # what a kill leaves behind

    code, listed, err = run_crlc("runs", str(photos), "--workspace", str(workspace))
    assert code == 0, err
    assert [r["state"] for r in listed["runs"]] == ["interrupted"]

    code, resumed, err = run_crlc(
        "train", str(photos), "--workspace", str(workspace), "--resume", timeout=120
    )
    assert code == 0, err
    assert "starting it again from the beginning" in err
    assert resumed["run_id"] == run.name and resumed["state"] == "completed"
    assert resumed["epochs"] == 40


def test_a_hang_up_with_the_terminal_gone_still_cancels_cleanly(
    trained_library: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, _ = trained_library
    workspace = tmp_path / "ws"
    child = _start_train(photos, workspace, "--epochs", "2000", "--checkpoint-every", "1")
    try:
        wait_for(lambda: _epochs_done(_only_run(workspace)) >= 2, 60, "two epochs")
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()  # the terminal is gone: every write now fails
        child.stderr.close()
        child.send_signal(signal.SIGHUP)
        child.wait(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130
    run = _only_run(workspace)
    assert _status(run)["state"] == "cancelled" and (run / "checkpoint.pt").is_file()
