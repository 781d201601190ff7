"""The app's model of one open library, with no Qt import (napari-style model layer).

A :class:`LibrarySession` holds the open :class:`~crlc_engine.library.ImageLibrary`, the
current run and its results, and turns user actions (rename, move, label, ignore, split,
undo, redo) into undoable engine calls. Views read from it; long jobs run in workers.

Names, labels and ignores are read from the catalog on every call; the run's assignments
(clusters, confidences, probabilities, features) are cached and re-read by :meth:`reload`.
The only corrections that change assignments, :meth:`LibrarySession.split` and
:meth:`~LibrarySession.undo` / :meth:`~LibrarySession.redo` (which may undo a split),
reload them themselves, so after any correction the session is current.

The window shows groups, not clusters: :meth:`LibrarySession.view` is the run's group view
(:mod:`crlc_engine.results.groups`), made again after every correction, and groups are named
by their key (``group:<name>``, ``cluster:<n>`` for an unnamed cluster).

It also remembers, per library, which run and group the user was looking at
(``<workspace>/app-view.json``, so it follows the library through a re-link), lists the
files a scan could not use and the runs that can be resumed
(:mod:`app.core.unfinished_runs`). The images of a library before it is grouped are
:class:`~app.core.scanned_images.ScannedImages`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.scanned_images import ScannedImages
from app.core.state_file import read_state, write_state
from app.core.unfinished_runs import UnfinishedRun, unfinished_runs
from crlc_engine import api as engine
from crlc_engine.api import (
    NAMED_KEY,
    UNNAMED_KEY,
    Annotations,
    GroupStore,
    GroupSummary,
    GroupView,
    ImageLibrary,
    ImageRecord,
    InvalidSettingError,
    ResultStore,
    RunAssignments,
    RunDir,
    RunNotFoundError,
    SkippedFile,
    SplitPlan,
    TrainConfig,
    named_key,
)

#: The per-library file with the run and cluster shown last.
VIEW_FILE = "app-view.json"
#: Catalog reason of a file found but not decoded yet (not a skipped file).
NOT_DECODED = "not decoded yet"


@dataclass(frozen=True)
class GroupImages:
    """The pictures of one group, sorted for the grid.

    Attributes:
        image_ids: int64 [M].
        confidences: float32 [M], each picture's probability of the group.
        paths: Absolute paths, length M.
        labels: Label per picture (it was labelled or moved into the group) or ``None``.
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
    group: str | None
    group_name: str
    confidence: float
    label: str | None
    ignored: bool


@dataclass(frozen=True)
class RefineSetup:
    """What a refinement of a run starts from.

    Attributes:
        base: The run's training settings.
        labels: Image id -> group name of the labelled and moved pictures (not ignored).
        images: Pictures the refinement trains on (ignored ones left out).
        groups: Groups the run shows.
    """

    base: TrainConfig
    labels: dict[int, str]
    images: int
    groups: int

    @property
    def default_epochs(self) -> int:
        """The engine's default length: a quarter of the run's epochs."""
        return max(1, (self.base.epochs or 50) // 4)

    def config(self, epochs: int | None, minutes: float | None) -> TrainConfig:
        """The settings the refinement trains with (CRLC-semi's, labelled images included)."""
        return engine.refine_settings(self.base, self.base.clusters, epochs, minutes, None)


@dataclass(frozen=True)
class GroupProbability:
    """One line of the detail panel's probabilities.

    Attributes:
        key: The group's key.
        name: Its name (or ``Cluster n``).
        probability: The model's probability of the group (its clusters' sum), or ``None``
            for a cluster made by a split (the model has no output for it).
    """

    key: str
    name: str
    probability: float | None


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
        self.groups_store = GroupStore(self.library.catalog)
        self.run_id: str | None = None
        self._assignments: RunAssignments | None = None
        self._view: GroupView | None = None
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
        self._view = None
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
        """``{"run_id": ..., "group": ...}`` shown last in this library (may be empty)."""
        data = read_state(self._view_path)
        return data if isinstance(data, dict) else {}

    def remember_view(self, group: str | None = None) -> None:
        """Record the current run (and the selected group's key) for the next opening."""
        data: dict[str, Any] = {"run_id": self.run_id}
        if group is not None:
            data["group"] = str(group)
        with contextlib.suppress(OSError):  # a read-only workspace: not worth an error
            write_state(self._view_path, data)

    def remembered_group(self) -> str | None:
        """The key of the group selected last, if it is a group of the current run."""
        view = self.remembered_view()
        key = view.get("group")
        if view.get("run_id") != self.run_id or not isinstance(key, str):
            return None
        return key if self.group(key) is not None else None

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
        return unfinished_runs(self.library)

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
    def view(self) -> GroupView:
        """The group view of the current run (see :mod:`crlc_engine.results.groups`), kept until the
        next correction or reload."""
        if self._view is None:
            self._view = self.groups_store.view(self._run(), data=self._require())
        return self._view

    def groups(self) -> list[GroupSummary]:
        """The groups of the current run (ignored images left out); empty without a run."""
        return [] if self.run_id is None else list(self.view().groups)

    def group(self, key: str) -> GroupSummary | None:
        """A group of the current run, or ``None``."""
        view = self.view() if self.run_id is not None else None
        return view.group(key) if view is not None and view.has(key) else None

    def group_name(self, key: str) -> str:
        """A group's name, or ``Cluster n`` for an unnamed cluster."""
        group = self.group(key)
        return group.title if group is not None else key

    def images_of(self, key: str, low_confidence_first: bool = False) -> GroupImages:
        """One group's pictures sorted by their probability of it (highest first unless
        asked); pictures labelled or moved into it included, ignored ones left out."""
        view = self.view()
        if not view.has(key):
            return GroupImages(np.zeros(0, np.int64), np.zeros(0, np.float32), [], [])
        ids, conf = view.members(key, low_confidence_first)
        labels = self.annotations.labels()
        return GroupImages(
            image_ids=ids,
            confidences=conf,
            paths=[self._records[i].path for i in ids.tolist()],
            labels=[labels.get(i) for i in ids.tolist()],
        )

    def refine_setup(self) -> RefineSetup:
        """What a refinement of the shown run starts from (for the Refine dialog)."""
        run = self.library.runs.get(self._run(), state="completed")
        base = TrainConfig.from_dict(run.read_config()["train"])
        ignored = self.annotations.ignored()
        labels = {i: c for i, c in self.annotations.labels().items() if i not in ignored}
        images = sum(1 for record in self.library.images() if record.id not in ignored)
        return RefineSetup(base, labels, images, len(self.groups()))

    def detail(self, image_id: int) -> ImageDetail:
        """Everything the detail panel shows about one image."""
        view = self.view()
        record = self._records[image_id]
        key = view.key_of(image_id)
        ranked = dict((g.key, p) for g, p in view.ranked(image_id, top=len(view.groups)))
        return ImageDetail(
            image_id=image_id,
            path=record.path,
            width=record.width,
            height=record.height,
            group=key,
            group_name=self.group_name(key) if key is not None else "ignored",
            confidence=float(ranked.get(key, 0.0)) if key is not None else 0.0,
            label=self.annotations.labels().get(image_id),
            ignored=image_id in self.annotations.ignored(),
        )

    def top_groups(self, detail: ImageDetail, top: int = 5) -> list[GroupProbability]:
        """The ``top`` most probable groups of an image (a merge is one line, with the sum
        of its clusters' probabilities), most probable first.

        An image in a cluster made by a split gets that group first, with no probability
        when it has no model output.
        """
        view = self.view()
        data = self._require()
        lines: list[GroupProbability] = []
        row = data.row_of(detail.image_id)
        cluster = int(data.clusters[row])
        if detail.group is not None and not 0 <= cluster < data.probabilities.shape[1]:
            own = view.group(detail.group)
            if cluster in own.clusters:
                lines.append(GroupProbability(own.key, own.title, None))
        head = data.probabilities.shape[1]
        lines += [
            GroupProbability(g.key, g.title, p)
            for g, p in view.ranked(detail.image_id, len(view.groups))
            if (not lines or g.key != lines[0].key) and (p > 0 or any(c < head for c in g.clusters))
        ][:top]
        return lines

    def neighbors(self, image_id: int, k: int = 10) -> list[tuple[int, float]]:
        """The k most similar images (id, cosine similarity) by the run's features."""
        data = self._require()
        if self._index is None:  # features change only with the run
            self._index = engine.NeighborIndex.build(data.features, ids=data.image_ids)
        found = self._index.neighbors_of([data.row_of(image_id)], k=k)
        return list(zip(found.ids[0].tolist(), found.similarities[0].tolist(), strict=True))

    def thumbnail_path(self, image_id: int) -> Path:
        """The thumbnail file of an image."""
        return self.library.thumbnail_path(image_id)

    # ------------------------------------------------------------------ corrections
    def rename(self, key: str, name: str) -> str:
        """Name a group (undoable): an unnamed cluster gets the name (the same name as
        another group merges them), a named group is renamed everywhere. Returns the key of
        the group afterwards."""
        if key.startswith(UNNAMED_KEY):
            self.annotations.name_cluster(self._run(), int(key[len(UNNAMED_KEY) :]), name)
        else:
            self.annotations.rename_group(key[len(NAMED_KEY) :], name)
        self._changed()
        return named_key(" ".join(name.split()))

    def move(self, image_ids: Sequence[int], key: str) -> str:
        """Move images into a group, i.e. label them with its name (undoable)."""
        name = self.annotations.move_to_group(self._run(), image_ids, key)
        self._changed()
        return name

    def label(self, image_ids: Sequence[int], name: str) -> None:
        """Label images as a group (undoable)."""
        self.annotations.label(image_ids, name)
        self._changed()

    def ignore(self, image_ids: Sequence[int], ignored: bool = True) -> None:
        """Leave images out of training and export, or take them back (undoable)."""
        self.annotations.set_ignored(image_ids, ignored)
        self._changed()

    def separate(self, key: str) -> list[str]:
        """Give every cluster of a merged group its own group (undoable): the first keeps
        the name, the others get ``<name> 2``, ``<name> 3``... Returns their names."""
        group = self.group(key)
        if group is None or group.name is None or len(group.clusters) < 2:
            raise InvalidSettingError("only a group of several clusters can be separated")
        names = self.annotations.separate_clusters(self._run(), group.name, group.clusters)
        self._changed()
        return names

    def plan_split(self, key: str, parts: int = 2) -> SplitPlan:
        """How :meth:`split` would divide a group of one cluster (changes nothing).

        Raises:
            RunNotFoundError: no completed run is shown.
            InvalidSettingError: a group of several clusters (separate them first), unknown
                group, bad ``parts``, too few images.
        """
        group = self.group(key)
        if group is None or len(group.clusters) != 1:
            raise InvalidSettingError(
                "this group is several clusters under one name: separate them first "
                "(Edit > Separate merged clusters), then split one"
            )
        return self.annotations.plan_split(self._run(), group.clusters[0], parts)

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

    def _changed(self) -> None:
        self._view = None  # names, labels or ignores changed: the group view is re-made

    # ------------------------------------------------------------------ helpers
    def _run(self) -> str:
        if self.run_id is None:
            raise RunNotFoundError("group the images first: there is no completed run")
        return self.run_id

    def _require(self) -> RunAssignments:
        if self._assignments is None:
            raise RunNotFoundError("group the images first: there is no completed run")
        return self._assignments
