"""The app's model of one open library, with no Qt import (napari-style model layer).

A :class:`LibrarySession` holds the open :class:`~crlc_engine.library.ImageLibrary`, the
current run and its results, and turns user actions (rename, move, label, ignore, split,
undo, redo) into undoable engine calls. Views read from it; long jobs run in workers.

Names, labels and ignores are read from the catalog on every call; the run's assignments
(clusters, confidences, probabilities, features) are cached and re-read by :meth:`reload`.
The only corrections that change assignments, :meth:`LibrarySession.split` and
:meth:`~LibrarySession.undo` / :meth:`~LibrarySession.redo` (which may undo a split),
reload them themselves, so after any correction the session is current.

It also remembers, per library, which run and cluster the user was looking at
(``<workspace>/app-view.json``, so it follows the library through a re-link), lists the
files a scan could not use and the runs that can be resumed, and :func:`scanned_images`
reads the images a running scan has finished so far (from any thread).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.state_file import read_state, write_state
from crlc_engine.annotations import Annotations, default_cluster_name
from crlc_engine.errors import RunNotFoundError
from crlc_engine.library import Catalog, ImageLibrary, ImageRecord, SkippedFile
from crlc_engine.results import ClusterSummary, ResultStore, RunAssignments
from crlc_engine.runs import RunDir
from crlc_engine.split import SplitPlan

#: The per-library file with the run and cluster shown last.
VIEW_FILE = "app-view.json"
#: Catalog reason of a file found but not decoded yet (not a skipped file).
NOT_DECODED = "not decoded yet"


@dataclass(frozen=True)
class ClusterImages:
    """The images of one cluster, sorted for the grid.

    Attributes:
        image_ids: int64 [M].
        confidences: float32 [M].
        paths: Absolute paths, length M.
        labels: Class name per image or ``None``.
    """

    image_ids: np.ndarray
    confidences: np.ndarray
    paths: list[Path]
    labels: list[str | None]


@dataclass(frozen=True)
class ImageDetail:
    """What the detail panel shows for one image."""

    image_id: int
    path: Path
    width: int | None
    height: int | None
    cluster: int
    cluster_name: str
    confidence: float
    probabilities: np.ndarray
    label: str | None
    ignored: bool


@dataclass(frozen=True)
class ClusterProbability:
    """One line of the detail panel's probabilities.

    Attributes:
        cluster: The cluster index.
        name: Its name (or ``Cluster n``).
        probability: The model's probability, or ``None`` for a cluster made by a split
            (the model has no output for it: see :mod:`crlc_engine.split`).
    """

    cluster: int
    name: str
    probability: float | None


@dataclass(frozen=True)
class ScannedImages:
    """The usable images of a library, by id (what the "All images" grid shows).

    Attributes:
        image_ids: int64 [M], ascending.
        paths: Absolute path of each image, length M.
    """

    image_ids: np.ndarray
    paths: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def scanned_images(workspace: Path, known: int = -1) -> ScannedImages | None:
    """The images a scan has made usable so far (status ``ok``), read with a new connection.

    Safe on any thread while another connection writes (SQLite WAL). The rows a scan
    commits are complete: pixels and thumbnail are written before the row.

    Args:
        workspace: The library's workspace folder.
        known: How many usable images the caller already has; when the count is the
            same, nothing more is read and ``None`` is returned.
    """
    catalog = Catalog(workspace / "catalog.sqlite")
    try:
        if known >= 0 and catalog.counts().get("ok", 0) == known:
            return None
        records = catalog.images("ok")
    finally:
        catalog.close()
    return ScannedImages(
        np.array([r.id for r in records], dtype=np.int64), [str(r.path) for r in records]
    )


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


def _same_features(a: RunAssignments, b: RunAssignments) -> bool:
    """Whether two loads hold the same images with the same features (corrections such as a
    split move images between clusters but never change features: the neighbour index
    stays valid)."""
    return bool(np.array_equal(a.image_ids, b.image_ids) and np.array_equal(a.features, b.features))


class LibrarySession:
    """One open library and its current run."""

    def __init__(self, folders: Sequence[str | Path], workspace: str | Path | None = None) -> None:
        self.library = ImageLibrary.open(folders, workspace)
        self.workspace_base = workspace
        self.annotations = Annotations(self.library.catalog)
        self.results = ResultStore(self.library.catalog)
        self.run_id: str | None = None
        self._assignments: RunAssignments | None = None
        self._records: dict[int, ImageRecord] = {}
        self._index: Any = None  # the current run's NeighborIndex, built on first use
        self.reload()

    def close(self) -> None:
        """Close the catalog."""
        self.library.close()

    @property
    def folders(self) -> tuple[Path, ...]:
        """The library's root folders."""
        return self.library.roots

    def reload(self, run_id: str | None = None) -> None:
        """Re-read images and a completed run's results.

        Args:
            run_id: The run to show. ``None`` (or a run that is not completed) keeps the
                current run if it is still completed, else the run shown last in this
                library (see :meth:`remembered_view`), else the newest completed run.
        """
        self._records = {r.id: r for r in self.library.images(None)}
        run = self._pick_run(run_id)
        if run is None:
            self.run_id, self._assignments, self._index = None, None, None
            return
        previous, self.run_id = self._assignments, run.run_id
        self._assignments = self.results.load(run.run_id)
        if previous is None or not _same_features(previous, self._assignments):
            self._index = None  # rebuilt from the (re)loaded features on first use
        if self.remembered_view().get("run_id") != run.run_id:
            self.remember_view()

    def _pick_run(self, run_id: str | None) -> RunDir | None:
        runs = self.library.runs
        wanted = [run_id, self.run_id, self.remembered_view().get("run_id")]
        for candidate in wanted:
            if candidate:
                with contextlib.suppress(RunNotFoundError):
                    return runs.get(str(candidate), state="completed")
        try:
            return runs.get(None, state="completed")
        except RunNotFoundError:
            return None

    # ------------------------------------------------------------------ view state
    @property
    def _view_path(self) -> Path:
        return self.library.workspace / VIEW_FILE

    def remembered_view(self) -> dict[str, Any]:
        """``{"run_id": ..., "cluster": ...}`` shown last in this library (may be empty)."""
        data = read_state(self._view_path)
        return data if isinstance(data, dict) else {}

    def remember_view(self, cluster: int | None = None) -> None:
        """Record the current run (and the selected cluster) for the next opening."""
        data: dict[str, Any] = {"run_id": self.run_id}
        if cluster is not None:
            data["cluster"] = int(cluster)
        with contextlib.suppress(OSError):  # a read-only workspace: not worth an error
            write_state(self._view_path, data)

    def remembered_cluster(self) -> int | None:
        """The cluster selected last, if it belongs to the current run."""
        view = self.remembered_view()
        cluster = view.get("cluster")
        if view.get("run_id") != self.run_id or not isinstance(cluster, int):
            return None
        return cluster

    # ------------------------------------------------------------------ library state
    def all_images(self) -> ScannedImages:
        """The usable images (status ``ok``) by id."""
        ok = [r for r in self._records.values() if r.status == "ok"]
        ok.sort(key=lambda r: r.id)
        return ScannedImages(
            np.array([r.id for r in ok], dtype=np.int64), [str(r.path) for r in ok]
        )

    def record(self, image_id: int) -> ImageRecord | None:
        """The catalog row of an image as of the last :meth:`reload`, if known."""
        return self._records.get(image_id)

    def skipped_files(self) -> list[SkippedFile]:
        """Files the scans could not use, with the reason (as of the last :meth:`reload`)."""
        return [
            SkippedFile(str(r.path), r.error or r.status)
            for r in sorted(self._records.values(), key=lambda r: str(r.path))
            if r.status in ("error", "unsupported") and r.error != NOT_DECODED
        ]

    def unfinished_runs(self) -> list[UnfinishedRun]:
        """Runs that stopped before completing, oldest first.

        Runs without a checkpoint are listed only when interrupted (killed before their first
        one): they can start again from the beginning; a failed or cancelled one cannot.
        """
        out = []
        lock_file = self.library.workspace / "lock"
        for run in self.library.runs.all():
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

    @property
    def has_results(self) -> bool:
        """Whether a completed run with assignments is loaded."""
        return self._assignments is not None and len(self._assignments.image_ids) > 0

    def runs(self) -> list[str]:
        """Ids of the completed runs with clusters, oldest first (stage-1 runs have none)."""
        return [
            r.run_id for r in self.library.runs.all() if r.state == "completed" and r.has_clusters
        ]

    # ------------------------------------------------------------------ reading
    def clusters(self) -> list[ClusterSummary]:
        """Cluster summaries of the current run (ignored images left out)."""
        if self.run_id is None:
            return []
        return self.results.summaries(self.run_id, top=5, exclude=self.annotations.ignored())

    def cluster_name(self, cluster: int) -> str:
        """A cluster's name, or its default ``Cluster n``."""
        if self.run_id is None:
            return default_cluster_name(cluster)
        return self.annotations.names(self.run_id).get(cluster, default_cluster_name(cluster))

    def images_of(self, cluster: int, low_confidence_first: bool = False) -> ClusterImages:
        """One cluster's images sorted by confidence (highest first unless asked)."""
        data = self._require()
        ignored = self.annotations.ignored()
        mask = (data.clusters == cluster) & ~np.isin(data.image_ids, list(ignored))
        ids, conf = data.image_ids[mask], data.confidences[mask]
        order = np.lexsort((ids, conf if low_confidence_first else -conf))
        ids, conf = ids[order], conf[order]
        labels = self.annotations.labels()
        return ClusterImages(
            image_ids=ids,
            confidences=conf,
            paths=[self._records[i].path for i in ids.tolist()],
            labels=[labels.get(i) for i in ids.tolist()],
        )

    def detail(self, image_id: int) -> ImageDetail:
        """Everything the detail panel shows about one image."""
        data = self._require()
        row = data.row_of(image_id)
        record = self._records[image_id]
        cluster = int(data.clusters[row])
        return ImageDetail(
            image_id=image_id,
            path=record.path,
            width=record.width,
            height=record.height,
            cluster=cluster,
            cluster_name=self.cluster_name(cluster),
            confidence=float(data.confidences[row]),
            probabilities=data.probabilities[row].copy(),
            label=self.annotations.labels().get(image_id),
            ignored=image_id in self.annotations.ignored(),
        )

    def top_probabilities(self, detail: ImageDetail, top: int = 5) -> list[ClusterProbability]:
        """The ``top`` most probable clusters of an image, most probable first.

        An image in a cluster made by a split (an index past the model's outputs) gets its
        own cluster first, with no probability, then the model's ``top`` clusters.
        """
        probabilities = detail.probabilities
        lines = []
        if not 0 <= detail.cluster < probabilities.size:
            lines.append(ClusterProbability(detail.cluster, detail.cluster_name, None))
        order = np.argsort(-probabilities, kind="stable")[:top]
        lines += [
            ClusterProbability(int(c), self.cluster_name(int(c)), float(probabilities[c]))
            for c in order.tolist()
        ]
        return lines

    def neighbors(self, image_id: int, k: int = 10) -> list[tuple[int, float]]:
        """The k most similar images (id, cosine similarity) by the run's features."""
        from crlc_engine.neighbors import NeighborIndex

        data = self._require()
        if self._index is None:  # features change only with the run
            self._index = NeighborIndex.build(data.features, ids=data.image_ids)
        found = self._index.neighbors_of([data.row_of(image_id)], k=k)
        return list(zip(found.ids[0].tolist(), found.similarities[0].tolist(), strict=True))

    def thumbnail_path(self, image_id: int) -> Path:
        """The thumbnail file of an image."""
        return self.library.thumbnail_path(image_id)

    # ------------------------------------------------------------------ corrections
    def rename(self, cluster: int, name: str) -> None:
        """Name a cluster (undoable); the same name on two clusters merges them."""
        self.annotations.name_cluster(self._run(), cluster, name)

    def move(self, image_ids: Sequence[int], cluster: int) -> str:
        """Move images to a cluster, i.e. label them with its name (undoable)."""
        return self.annotations.move_to_cluster(self._run(), image_ids, cluster)

    def label(self, image_ids: Sequence[int], name: str) -> None:
        """Label images as a class (undoable)."""
        self.annotations.label(image_ids, name)

    def ignore(self, image_ids: Sequence[int], ignored: bool = True) -> None:
        """Leave images out of training and export, or take them back (undoable)."""
        self.annotations.set_ignored(image_ids, ignored)

    def plan_split(self, cluster: int, parts: int = 2) -> SplitPlan:
        """How :meth:`split` would divide a cluster of the current run (changes nothing).

        Raises:
            RunNotFoundError: no completed run is shown.
            InvalidSettingError: unknown cluster, bad ``parts``, too few images.
        """
        return self.annotations.plan_split(self._run(), cluster, parts)

    def split(
        self, plan: SplitPlan, names: Sequence[str | None] | None = None, label: bool = False
    ) -> None:
        """Apply a split planned by :meth:`plan_split` (undoable), then reload the run.

        Args:
            plan: The plan (refused when the cluster changed since it was made).
            names: One name per part, largest first (``None``: keep / leave unnamed).
            label: Also label the parts' unlabelled images with the part's name.

        Raises:
            InvalidSettingError: a stale plan, bad or duplicate names.
        """
        self.annotations.apply_split(plan, names, label)
        self.reload(self.run_id)

    def undo(self) -> str | None:
        """Undo the last correction; returns its description.

        The run is reloaded: undoing a split changes the cached assignments.
        """
        done = self.annotations.undo()
        if done is not None:
            self.reload(self.run_id)
        return done

    def redo(self) -> str | None:
        """Redo the last undone correction; returns its description (the run is reloaded)."""
        done = self.annotations.redo()
        if done is not None:
            self.reload(self.run_id)
        return done

    # ------------------------------------------------------------------ helpers
    def _run(self) -> str:
        if self.run_id is None:
            raise RunNotFoundError("group the images first: there is no completed run")
        return self.run_id

    def _require(self) -> RunAssignments:
        if self._assignments is None:
            raise RunNotFoundError("group the images first: there is no completed run")
        return self._assignments
