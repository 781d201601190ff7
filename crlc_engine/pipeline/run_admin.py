"""Listing, deleting and tidying a library's runs."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crlc_engine.core.errors import CRLCError
from crlc_engine.library import ImageLibrary
from crlc_engine.library.runs import RunDir
from crlc_engine.results.assignments import ResultStore


def mark_interrupted_runs(library: ImageLibrary) -> list[str]:
    """Mark the library's ``running`` runs that no process is training ``interrupted``.

    Takes the workspace lock for a moment; when another process holds it (it may be training
    one of them) or the lock cannot be taken at all, nothing is marked. Returns the ids.
    """
    try:
        with library.locked("checking for interrupted runs"):
            return library.runs.mark_interrupted()
    except CRLCError:  # held by another process, or no usable lock file here: mark nothing
        return []


@dataclass(frozen=True)
class RunInfo:
    """One line of ``crlc runs``.

    ``state`` is ``damaged`` for a run that cannot be used; ``problem`` then says why.
    """

    run_id: str
    parent: str | None
    kind: str
    preset: str
    epochs: int | None
    state: str
    clusters: int
    head: int | None
    duration_s: float | None
    created: str
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dataclasses.asdict(self)


def list_runs(
    folders: str | Path | Sequence[str | Path], workspace: str | Path | None = None
) -> list[RunInfo]:
    """Every run of the library, oldest first, damaged ones included (state ``damaged``).

    ``running`` runs that no process is training are marked ``interrupted`` first.
    """
    with ImageLibrary.open(folders, workspace, read_only=True) as library:
        mark_interrupted_runs(library)
        runs = [(run, None) for run in library.runs.all()] + library.runs.damaged()
    return [_run_info(run, problem) for run, problem in sorted(runs, key=lambda r: r[0].run_id)]


def _run_info(run: RunDir, problem: str | None) -> RunInfo:
    if problem is not None:
        return RunInfo(run.run_id, None, "?", "", None, "damaged", 0, None, None, "", problem)
    config = run.read_config()
    status = run.read_status()
    train = config.get("train", {})
    return RunInfo(
        run_id=run.run_id,
        parent=config.get("parent"),
        kind=config.get("kind", "train"),
        preset=str(train.get("preset", "")),
        epochs=status.get("epochs"),
        state=str(status.get("state", "failed")),
        clusters=int(train.get("clusters", 0)),
        head=status.get("head"),
        duration_s=status.get("elapsed_s"),
        created=str(config.get("created", "")),
    )


def delete_run(
    folders: str | Path | Sequence[str | Path], run_id: str, workspace: str | Path | None = None
) -> Path:
    """Delete a run's folder and its assignments and names (labels stay)."""
    with ImageLibrary.open(folders, workspace) as library:
        run = library.runs.get(run_id, state=None, clusters_only=False, allow_damaged=True)
        with library.locked(f"deleting run {run_id}"):
            store = ResultStore(library.catalog)
            store.db.execute("BEGIN IMMEDIATE")
            store.delete_run(run.run_id)
            store.db.execute("COMMIT")
            shutil.rmtree(run.path)
    return run.path
