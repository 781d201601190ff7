"""Workspaces, libraries and run folders on disk.

``<base>/libraries/<key>/runs/<id>/`` holds one run: ``config.json`` (resolved settings and
the library's folder), ``status.json`` (running, cancelled, completed, failed),
``checkpoint.pt``, ``history.jsonl`` (one line per epoch), ``image_ids.npy`` (the images
trained on) and ``predictions.npz`` (every sub-head's clusters, for evaluation); the
assignments themselves are in the library's catalog. ``<base>`` is ``--workspace``, else
``$CRLC_WORKSPACE``, else the platformdirs user data folder; ``<key>`` hashes the sorted
resolved library roots.

A stage-2 run of two-stage CRLC also holds ``neighbors.npy`` (the kNN table its positives
came from). A run's ``kind`` (in ``config.json``) is ``train``, ``refine``, ``stage1`` or
``stage2``; a ``stage1`` run (representation learning only) has a checkpoint but no clusters,
so the "newest completed run" look-ups used by assign, clusters, export and the app skip it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from crlc_engine.errors import RunNotFoundError
from crlc_engine.fileio import atomic_write_json

APP_NAME = "crlc-organizer"
RUN_STATES = ("running", "cancelled", "completed", "failed")
RUN_KINDS = ("train", "refine", "stage1", "stage2")
#: Run kinds that produce no cluster assignments.
KINDS_WITHOUT_CLUSTERS = ("stage1",)


def workspace_base(explicit: str | Path | None = None) -> Path:
    """The workspace base folder: explicit, else ``$CRLC_WORKSPACE``, else user data."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("CRLC_WORKSPACE")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_data_dir(APP_NAME))


def library_key(roots: Iterable[Path]) -> str:
    """A stable 16-hex-digit key of a set of root folders (order does not matter)."""
    resolved = sorted({str(Path(r).expanduser().resolve()) for r in roots})
    return hashlib.sha256("\n".join(resolved).encode("utf-8")).hexdigest()[:16]


def new_run_id(now: dt.datetime | None = None, after: Iterable[str] = ()) -> str:
    """A sortable run id: UTC ``YYYYmmdd-HHMMSS-xxxx``.

    ``xxxx`` is random hex below 8000 for the first run of a second; when ``after`` holds ids
    of the same second, it is the largest of their suffixes plus one, so ids keep sorting in
    creation order.
    """
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    same_second = [
        int(i.rsplit("-", 1)[1], 16)
        for i in after
        if i.startswith(stamp + "-") and len(i) == len(stamp) + 5
    ]
    suffix = max(same_second) + 1 if same_second else secrets.randbelow(0x8000)
    return f"{stamp}-{suffix:04x}"


@dataclass(frozen=True)
class RunDir:
    """One run's folder and accessors for its files."""

    path: Path

    @property
    def run_id(self) -> str:
        """The run's id (its folder name)."""
        return self.path.name

    @property
    def config_path(self) -> Path:
        """``config.json``."""
        return self.path / "config.json"

    @property
    def status_path(self) -> Path:
        """``status.json``."""
        return self.path / "status.json"

    @property
    def checkpoint_path(self) -> Path:
        """``checkpoint.pt``."""
        return self.path / "checkpoint.pt"

    @property
    def history_path(self) -> Path:
        """``history.jsonl``: one JSON object per finished epoch."""
        return self.path / "history.jsonl"

    @property
    def predictions_path(self) -> Path:
        """``predictions.npz``: per-sub-head cluster labels and probabilities."""
        return self.path / "predictions.npz"

    def read_config(self) -> dict[str, Any]:
        """The stored ``config.json``."""
        data: dict[str, Any] = json.loads(self.config_path.read_text(encoding="utf-8"))
        return data

    def write_status(self, state: str, message: str = "", **extra: Any) -> None:
        """Atomically record the run's state."""
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}")
        payload = {
            "state": state,
            "message": message,
            "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **extra,
        }
        atomic_write_json(self.status_path, payload)

    def read_status(self) -> dict[str, Any]:
        """The stored status, or ``{"state": "failed"}`` when unreadable."""
        try:
            data: dict[str, Any] = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"state": "failed", "message": "status.json missing or unreadable"}
        return data

    @property
    def state(self) -> str:
        """``running``, ``cancelled``, ``completed`` or ``failed``."""
        return str(self.read_status().get("state", "failed"))

    @property
    def kind(self) -> str:
        """``train``, ``refine``, ``stage1`` or ``stage2`` (``train`` when not recorded)."""
        try:
            return str(self.read_config().get("kind") or "train")
        except (OSError, ValueError):
            return "train"

    @property
    def has_clusters(self) -> bool:
        """Whether the run assigns clusters when completed (a ``stage1`` run does not)."""
        return self.kind not in KINDS_WITHOUT_CLUSTERS


class RunStore:
    """The ``runs/`` folder of a library workspace."""

    def __init__(self, runs_dir: Path, roots: Sequence[Path] = ()) -> None:
        self.runs_dir = runs_dir
        self.roots = tuple(roots)

    def create_run(self) -> RunDir:
        """Make a new, empty run folder with a fresh id."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        while True:
            existing = [p.name for p in self.runs_dir.iterdir()]
            path = self.runs_dir / new_run_id(after=existing)
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return RunDir(path)

    def all(self) -> list[RunDir]:
        """All runs, oldest first (ids sort by time)."""
        if not self.runs_dir.is_dir():
            return []
        return [RunDir(p) for p in sorted(self.runs_dir.iterdir()) if (p / "config.json").exists()]

    def get(
        self,
        run_id: str | None = None,
        state: str | None = "completed",
        clusters_only: bool = True,
    ) -> RunDir:
        """The run with ``run_id``, else the newest run in ``state``.

        Args:
            run_id: A run id, or ``None`` for the newest matching run.
            state: The state the run must be in (``None``: any).
            clusters_only: Only runs that assign clusters: the newest-run look-up skips
                stage-1 runs, and naming one raises.

        Raises:
            RunNotFoundError: no such run.
        """
        if run_id:
            run = RunDir(self.runs_dir / run_id)
            if "/" in run_id or not run.config_path.exists():
                raise RunNotFoundError(f"no run {run_id!r} in {self.runs_dir}")
            if clusters_only and not run.has_clusters:
                raise RunNotFoundError(
                    f"run {run_id} is stage 1 of two-stage training (representation learning "
                    "only) and has no clusters; use its stage-2 run"
                )
            if state is not None and run.state != state:
                raise RunNotFoundError(f"run {run_id} is {run.state}, not {state}")
            return run
        for run in reversed(self.all()):
            if (state is None or run.state == state) and (not clusters_only or run.has_clusters):
                return run
        wanted = f"{state} " if state else ""
        raise RunNotFoundError(
            f"no {wanted}run yet for {', '.join(map(str, self.roots)) or self.runs_dir} "
            "; run `crlc train` first"
        )
