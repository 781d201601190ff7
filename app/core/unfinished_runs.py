"""The runs of a library that stopped before they completed and can be resumed (or started
again): what the notice bar and the Runs menu offer.

A run counts as busy when a live process other than this one is training it (its status
and the workspace lock's holder say so).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from crlc_engine.api import ImageLibrary, RunDir

__all__ = ["UnfinishedRun", "unfinished_runs"]


@dataclass(frozen=True)
class UnfinishedRun:
    """A run that stopped before it completed and can continue from its checkpoint.

    Attributes:
        run_id: The run's id.
        state: ``running`` (left so by a crash), ``cancelled``, ``failed``, ...
        kind: ``train`` or ``refine``.
        created: When it started (local time), if recorded.
        epochs_done: Epochs finished before it stopped.
        epochs_total: Epochs asked for (``None`` for a time budget).
        clusters: Number of groups asked for.
        busy_pid: A live process that seems to be training it right now, else ``None``.
        has_checkpoint: Whether it saved a checkpoint; without one (interrupted before its
            first) it can only start again from the beginning, with its settings.
    """

    run_id: str
    state: str
    kind: str
    created: dt.datetime | None
    epochs_done: int
    epochs_total: int | None
    clusters: int
    busy_pid: int | None
    has_checkpoint: bool = True

    def describe(self) -> str:
        """E.g. "grouping into 8 groups started 12 Mar 2024 14:02, stopped after epoch 31
        of 100"."""
        what = "refinement" if self.kind == "refine" else f"grouping into {self.clusters} groups"
        when = f" started {_when(self.created)}" if self.created is not None else ""
        of = f" of {self.epochs_total}" if self.epochs_total else ""
        stop = "stopped" if self.busy_pid is None else f"running in process {self.busy_pid}"
        where = f"after epoch {self.epochs_done}{of}" if self.epochs_done else "in epoch 1"
        return f"{what}{when}, {stop} {where}"


def _when(moment: dt.datetime) -> str:
    return f"{moment.day} {moment:%b %Y %H:%M}"


def _local(stamp: object) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    return moment.astimezone() if moment.tzinfo else moment


def _epochs_done(run: RunDir) -> int:
    try:
        lines = run.history_path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    done = 0
    for line in lines:
        with contextlib.suppress(ValueError):
            if line.strip() and not json.loads(line).get("partial"):
                done += 1
    return done


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (unknown on Windows: False)."""
    if pid <= 0 or sys.platform == "win32":  # os.kill would terminate it there
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _busy_pid(run: RunDir, lock_file: Path) -> int | None:
    """The live process training ``run`` now, judged by its status and the lock's holder."""
    status = run.read_status()
    found = re.fullmatch(r"pid (\d+)", str(status.get("message", "")))
    if status.get("state") != "running" or found is None:
        return None
    pid = int(found[1])
    if pid == os.getpid():
        return None  # this program: a job of its own, or a leftover of this very process
    try:
        holder = lock_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return pid if f"pid {pid} " in holder and _process_alive(pid) else None


def unfinished_runs(library: ImageLibrary) -> list[UnfinishedRun]:
    """Runs of ``library`` that stopped before completing, oldest first.

    Runs without a checkpoint are listed only when interrupted (killed before their first
    one): they can start again from the beginning; a failed or cancelled one cannot.
    """
    out = []
    lock_file = library.workspace / "lock"
    for run in library.runs.all():
        state = run.state
        saved = run.checkpoint_path.exists()
        if state == "completed" or not (saved or state in ("interrupted", "running")):
            continue
        try:
            config = run.read_config()
        except (OSError, ValueError):
            continue
        train = config.get("train", {})
        epochs = train.get("epochs")
        out.append(
            UnfinishedRun(
                run_id=run.run_id,
                state=state,
                kind=str(config.get("kind", "train")),
                created=_local(config.get("created", "")),
                epochs_done=_epochs_done(run),
                epochs_total=int(epochs) if isinstance(epochs, int) else None,
                clusters=int(train.get("clusters", 0)),
                busy_pid=_busy_pid(run, lock_file),
                has_checkpoint=saved,
            )
        )
    return out
