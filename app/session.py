"""The app's model of one open library, with no Qt import (napari-style model layer).

A :class:`LibrarySession` holds the open :class:`~crlc_engine.library.ImageLibrary`, the
current run and its results, and turns user actions (rename, move, label, ignore, undo,
redo) into undoable engine calls. Views read from it; long jobs run in workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crlc_engine.annotations import Annotations, default_cluster_name
from crlc_engine.errors import RunNotFoundError
from crlc_engine.library import ImageLibrary, ImageRecord
from crlc_engine.results import ClusterSummary, ResultStore, RunAssignments


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
        """Re-read images and the given (default: newest completed) run's results."""
        self._records = {r.id: r for r in self.library.images(None)}
        self._index = None  # rebuilt from the (re)loaded features on first use
        try:
            run = self.library.runs.get(run_id, state="completed")
        except RunNotFoundError:
            self.run_id, self._assignments = None, None
            return
        self.run_id = run.run_id
        self._assignments = self.results.load(run.run_id)

    @property
    def has_results(self) -> bool:
        """Whether a completed run with assignments is loaded."""
        return self._assignments is not None and len(self._assignments.image_ids) > 0

    def runs(self) -> list[str]:
        """Ids of the completed runs, oldest first."""
        return [r.run_id for r in self.library.runs.all() if r.state == "completed"]

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

    def undo(self) -> str | None:
        """Undo the last correction; returns its description."""
        return self.annotations.undo()

    def redo(self) -> str | None:
        """Redo the last undone correction; returns its description."""
        return self.annotations.redo()

    # ------------------------------------------------------------------ helpers
    def _run(self) -> str:
        if self.run_id is None:
            raise RunNotFoundError("group the images first: there is no completed run")
        return self.run_id

    def _require(self) -> RunAssignments:
        if self._assignments is None:
            raise RunNotFoundError("group the images first: there is no completed run")
        return self._assignments
