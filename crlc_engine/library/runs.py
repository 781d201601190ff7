"""Workspaces, libraries and run folders on disk.

``<base>/libraries/<key>/runs/<id>/`` holds one run: ``config.json`` (resolved settings and
the library's folder), ``status.json`` (running, cancelled, completed, failed),
``checkpoint.pt``, ``history.jsonl`` (one line per epoch), ``image_ids.npy`` (the images
trained on) and ``predictions.npz`` (every sub-head's clusters, for evaluation); the
assignments themselves are in the library's catalog. ``<base>`` is ``--workspace``, else
``$CRLC_WORKSPACE``, else the platformdirs user data folder; ``<key>`` hashes the sorted
resolved library roots.

Every run records the ``catalog_id`` of the library's catalog it was made with (its image
ids mean something only in that catalog). :class:`RunStore` checks each run when listing it:
a run whose ``config.json`` or ``status.json`` cannot be read, or that was made with another
catalog, is *damaged*: listed by :meth:`RunStore.damaged` with the reason, skipped by
:meth:`RunStore.all` and refused by :meth:`RunStore.get`, never fatal for the other runs. Runs
made before catalog ids existed are checked once by the image paths they stored (their
``predictions.npz``, else an ``image_paths.json`` written at that first check) and then
adopt the catalog's id.

A run's ``state`` is ``running``, ``cancelled``, ``completed``, ``failed`` or ``interrupted``:
a ``running`` run found while nobody holds the workspace lock was killed or crashed
(:meth:`RunStore.mark_interrupted`), and a run without ``status.json`` never started.

A stage-2 run of two-stage CRLC also holds ``neighbors.npy`` (the kNN table its positives
came from). A run's ``kind`` (in ``config.json``) is ``train``, ``refine``, ``stage1`` or
``stage2``; a ``stage1`` run (representation learning only) has a checkpoint but no clusters,
so the "newest completed run" look-ups used by assign, clusters, export and the app skip it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import platformdirs

from crlc_engine.core.errors import RunDamagedError, RunNotFoundError
from crlc_engine.core.fileio import atomic_write_json

APP_NAME = "crlc-organizer"
RUN_STATES = ("running", "cancelled", "completed", "failed", "interrupted")
#: States of runs that stopped before completing (``--resume`` continues them).
UNFINISHED_STATES = ("running", "cancelled", "failed", "interrupted")
#: The file where a run made before catalog ids existed keeps the paths it was checked with.
IMAGE_PATHS_FILE = "image_paths.json"
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

    def record_stop(self, state: str, message: str) -> None:
        """Record why a run stopped early, best effort: on a full disk the status stays
        ``running`` and the next look marks the run ``interrupted``; the error that stopped
        it is what the caller reports."""
        with contextlib.suppress(OSError):
            self.write_status(state, message)

    def status_problem(self) -> str | None:
        """Why ``status.json`` cannot be used, or ``None`` (also when there is none yet)."""
        try:
            data = json.loads(self.status_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return f"its status.json is unreadable ({exc})"
        if not isinstance(data, dict) or data.get("state") not in RUN_STATES:
            return "its status.json does not hold a run state"
        return None

    def read_status(self) -> dict[str, Any]:
        """The stored status; ``interrupted`` when there is none (the run never started),
        ``failed`` when it is unusable (such a run is damaged: see :func:`run_problem`)."""
        try:
            data = json.loads(self.status_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"state": "interrupted", "message": "stopped before training started"}
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict) or data.get("state") not in RUN_STATES:
            return {"state": "failed", "message": "status.json unreadable"}
        return data

    @property
    def state(self) -> str:
        """``running``, ``cancelled``, ``completed``, ``failed`` or ``interrupted``."""
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


class CatalogView(Protocol):
    """What a run check needs of the library's catalog (``library.catalog.Catalog``)."""

    @property
    def catalog_id(self) -> str | None:
        """The catalog's random id."""

    def rel_paths(self, image_ids: Iterable[int]) -> dict[int, str]:
        """image id -> root-relative POSIX path, for the ids the catalog knows."""


def run_problem(run: RunDir, catalog: CatalogView | None = None) -> str | None:
    """Why a run cannot be used (damaged), or ``None`` when it is sound.

    Checks that ``config.json`` holds a run's settings (their shape: values a later version
    refuses are reported where they are used), that ``status.json`` (when present) is
    readable, and, given the library's catalog, that the run was made with it: by the
    ``catalog_id`` it recorded, else (a run made before ids existed) by its image paths. A
    run that passes the path check adopts the catalog's id (best effort; not when the
    catalog has no id yet, as in a read-only open of a catalog made before ids existed).
    """
    try:
        config = run.read_config()
    except (OSError, ValueError) as exc:
        return f"its config.json is unreadable ({exc})"
    train = config.get("train") if isinstance(config, dict) else None
    if not isinstance(train, dict) or not isinstance(train.get("clusters"), int):
        return "its config.json does not hold a run's settings"
    status = run.status_problem()
    if status is not None:
        return status
    if catalog is None:
        return None
    made_with, current = config.get("catalog_id"), catalog.catalog_id
    if made_with is None:
        return _check_legacy_paths(run, config, catalog)
    if made_with == current:
        return None
    return (
        "it was made with another catalog of this library (the catalog was deleted or "
        "replaced since), so its image numbers no longer name the same photos"
    )


def _stored_paths(run: RunDir) -> dict[int, str] | None:
    """image id -> path as the run stored them (``None`` when it stored none)."""
    try:
        if run.predictions_path.exists():
            with np.load(run.predictions_path) as stored:
                ids = stored["image_ids"].tolist()
                paths = [str(p) for p in stored["paths"]]
            return dict(zip(ids, paths, strict=True))
        path = run.path / IMAGE_PATHS_FILE
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            return {int(k): str(v) for k, v in data.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return None


def _check_legacy_paths(run: RunDir, config: dict[str, Any], catalog: CatalogView) -> str | None:
    stored = _stored_paths(run)
    if stored == {}:
        return "its stored image paths are unreadable"
    ids_file = run.path / "image_ids.npy"
    ids = list(stored) if stored is not None else _image_ids(ids_file)
    current = catalog.rel_paths(ids)
    if stored is not None and any(current.get(i) != p for i, p in stored.items()):
        return (
            "its images no longer match the library's catalog (the catalog was deleted or "
            "replaced since), so its results would name the wrong photos"
        )
    if catalog.catalog_id is None:  # nothing to adopt yet: checked by paths each time
        return None
    with contextlib.suppress(OSError):  # best effort: a read-only or full disk checks again
        if stored is None and ids:
            atomic_write_json(run.path / IMAGE_PATHS_FILE, {str(i): current[i] for i in current})
        atomic_write_json(run.config_path, {**config, "catalog_id": catalog.catalog_id})
    return None


def _image_ids(path: Path) -> list[int]:
    try:
        return [int(i) for i in np.load(path).tolist()]
    except (OSError, ValueError):
        return []


class RunStore:
    """The ``runs/`` folder of a library workspace.

    Args:
        runs_dir: The folder.
        roots: The library's root folders (for messages).
        catalog: The library's catalog; given, runs made with another catalog are damaged.
    """

    def __init__(
        self, runs_dir: Path, roots: Sequence[Path] = (), catalog: CatalogView | None = None
    ) -> None:
        self.runs_dir = runs_dir
        self.roots = tuple(roots)
        self.catalog = catalog
        self._checked: dict[str, tuple[float, str | None]] = {}

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

    def _folders(self) -> list[RunDir]:
        if not self.runs_dir.is_dir():
            return []
        return [RunDir(p) for p in sorted(self.runs_dir.iterdir()) if (p / "config.json").exists()]

    def problem(self, run: RunDir) -> str | None:
        """Why ``run`` is damaged, else ``None`` (cached until its config or status changes)."""
        try:
            stamp = max(
                os.stat(p).st_mtime_ns for p in (run.config_path, run.status_path) if p.exists()
            )
        except (OSError, ValueError):
            stamp = -1
        cached = self._checked.get(run.run_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        found = run_problem(run, self.catalog)
        self._checked[run.run_id] = (stamp, found)
        return found

    def all(self) -> list[RunDir]:
        """All sound runs, oldest first (ids sort by time); damaged ones are left out."""
        return [run for run in self._folders() if self.problem(run) is None]

    def damaged(self) -> list[tuple[RunDir, str]]:
        """Runs that cannot be used, with the reason, oldest first."""
        found = [(run, self.problem(run)) for run in self._folders()]
        return [(run, reason) for run, reason in found if reason is not None]

    def mark_interrupted(self) -> list[str]:
        """Mark every ``running`` run ``interrupted``; returns their ids.

        Call it only while holding the workspace lock: a run really training holds that lock
        for its whole training, so any other ``running`` run was killed or crashed.
        """
        marked = []
        for run in self.all():
            status = run.read_status()
            if status.get("state") != "running":
                continue
            extra = {k: v for k, v in status.items() if k not in ("state", "message", "updated")}
            with contextlib.suppress(OSError):
                run.write_status(
                    "interrupted",
                    "stopped without finishing (the program was killed, crashed or the "
                    "computer shut down)",
                    **extra,
                )
                marked.append(run.run_id)
        return marked

    def get(
        self,
        run_id: str | None = None,
        state: str | None = "completed",
        clusters_only: bool = True,
        allow_damaged: bool = False,
    ) -> RunDir:
        """The run with ``run_id``, else the newest sound run in ``state``.

        Args:
            run_id: A run id, or ``None`` for the newest matching run.
            state: The state the run must be in (``None``: any).
            clusters_only: Only runs that assign clusters: the newest-run look-up skips
                stage-1 runs, and naming one raises.
            allow_damaged: Return the run named by ``run_id`` even when it is damaged (to
                delete it).

        Raises:
            RunNotFoundError: no such run.
            RunDamagedError: the named run is damaged (see :func:`run_problem`).
        """
        if run_id:
            run = RunDir(self.runs_dir / run_id)
            if "/" in run_id or not run.config_path.exists():
                raise RunNotFoundError(f"no run {run_id!r} in {self.runs_dir}")
            if not allow_damaged and (problem := self.problem(run)) is not None:
                raise RunDamagedError(
                    f"run {run_id} is damaged: {problem}. Delete it with `crlc runs "
                    f"FOLDER... --delete {run_id}` (the other runs are not affected)"
                )
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
