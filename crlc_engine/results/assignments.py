"""Per-run results in the catalog: assignments, cluster summaries, cluster names.

For every run and image: the cluster of the run's chosen sub-head, its confidence (max
probability), the full probability vector [C] and the RL-head feature z [D], both float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crlc_engine.library.catalog import Catalog


@dataclass(frozen=True)
class RunAssignments:
    """All assignments of one run, ordered by image id.

    Attributes:
        image_ids: int64 [N].
        clusters: int64 [N].
        confidences: float32 [N].
        probabilities: float32 [N, C].
        features: float32 [N, D].
    """

    image_ids: np.ndarray
    clusters: np.ndarray
    confidences: np.ndarray
    probabilities: np.ndarray
    features: np.ndarray

    def cluster_of(self) -> dict[int, int]:
        """image id -> cluster."""
        return dict(zip(self.image_ids.tolist(), self.clusters.tolist(), strict=True))

    def row_of(self, image_id: int) -> int:
        """Row of an image in these arrays (KeyError if the run did not assign it)."""
        rows = np.flatnonzero(self.image_ids == image_id)
        if rows.size == 0:
            raise KeyError(image_id)
        return int(rows[0])


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster of a run: size, mean confidence, most confident images."""

    cluster: int
    name: str | None
    size: int
    mean_confidence: float
    top_image_ids: list[int]


class ResultStore:
    """Reads and writes the ``assignments`` and ``cluster_names`` tables."""

    def __init__(self, catalog: Catalog) -> None:
        self.db = catalog.db

    def write(
        self, run_id: str, image_ids: np.ndarray, probabilities: np.ndarray, features: np.ndarray
    ) -> None:
        """Replace the run's assignments (cluster = argmax, confidence = max probability)."""
        probs = np.ascontiguousarray(probabilities, dtype=np.float32)
        feats = np.ascontiguousarray(features, dtype=np.float32)
        clusters = probs.argmax(axis=1)
        confidences = probs.max(axis=1)
        rows = [
            (run_id, int(i), int(c), float(p), probs[k].tobytes(), feats[k].tobytes())
            for k, (i, c, p) in enumerate(
                zip(image_ids.tolist(), clusters, confidences, strict=True)
            )
        ]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("DELETE FROM assignments WHERE run_id=?", (run_id,))
            self.db.executemany("INSERT INTO assignments VALUES (?,?,?,?,?,?)", rows)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def has(self, run_id: str) -> bool:
        """Whether the run has assignments."""
        row = self.db.execute("SELECT 1 FROM assignments WHERE run_id=? LIMIT 1", (run_id,))
        return row.fetchone() is not None

    def load(self, run_id: str) -> RunAssignments:
        """All assignments of a run (empty arrays if none)."""
        rows = self.db.execute(
            "SELECT image_id, cluster, confidence, probabilities, feature FROM assignments "
            "WHERE run_id=? ORDER BY image_id",
            (run_id,),
        ).fetchall()
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return RunAssignments(
                empty,
                empty,
                np.zeros(0, np.float32),
                np.zeros((0, 0), np.float32),
                np.zeros((0, 0), np.float32),
            )
        return RunAssignments(
            image_ids=np.array([r[0] for r in rows], dtype=np.int64),
            clusters=np.array([r[1] for r in rows], dtype=np.int64),
            confidences=np.array([r[2] for r in rows], dtype=np.float32),
            probabilities=np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows]),
            features=np.stack([np.frombuffer(r[4], dtype=np.float32) for r in rows]),
        )

    def cluster_ids(self, run_id: str) -> list[int]:
        """The cluster indices that hold at least one image of a run, ascending."""
        rows = self.db.execute(
            "SELECT DISTINCT cluster FROM assignments WHERE run_id=? ORDER BY cluster", (run_id,)
        )
        return [int(c) for (c,) in rows]

    def head_size(self, run_id: str) -> int:
        """C of a run: the length of its stored probability vectors (0 without assignments).

        Split clusters (:mod:`crlc_engine.results.cluster_split`) have indices >= C: no probability
        column.
        """
        row = self.db.execute(
            "SELECT length(probabilities) FROM assignments WHERE run_id=? LIMIT 1", (run_id,)
        ).fetchone()
        return 0 if row is None else int(row[0]) // np.dtype(np.float32).itemsize

    def set_clusters(self, run_id: str, clusters: dict[int, int]) -> None:
        """Move images of a run to other clusters (image id -> cluster).

        Confidences, probabilities and features stay as the model computed them. Runs inside
        the caller's transaction and records no history: see
        :meth:`crlc_engine.results.annotations.Annotations.apply_split`.
        """
        self.db.executemany(
            "UPDATE assignments SET cluster=? WHERE run_id=? AND image_id=?",
            [(int(c), run_id, int(i)) for i, c in sorted(clusters.items())],
        )

    def delete_run(self, run_id: str) -> None:
        """Remove a run's assignments and names."""
        self.db.execute("DELETE FROM assignments WHERE run_id=?", (run_id,))
        self.db.execute("DELETE FROM cluster_names WHERE run_id=?", (run_id,))

    def summaries(
        self, run_id: str, top: int = 5, exclude: set[int] | None = None
    ) -> list[ClusterSummary]:
        """Per cluster: size, mean confidence and the ``top`` most confident images."""
        names = self.names(run_id)
        rows = self.db.execute(
            "SELECT cluster, image_id, confidence FROM assignments WHERE run_id=? "
            "ORDER BY cluster, confidence DESC, image_id",
            (run_id,),
        ).fetchall()
        by_cluster: dict[int, list[tuple[int, float]]] = {}
        for cluster, image_id, conf in rows:
            if exclude and image_id in exclude:
                continue
            by_cluster.setdefault(int(cluster), []).append((int(image_id), float(conf)))
        clusters = sorted(set(by_cluster) | set(names))
        return [
            ClusterSummary(
                cluster=c,
                name=names.get(c),
                size=len(by_cluster.get(c, [])),
                mean_confidence=float(np.mean([v for _, v in by_cluster[c]]))
                if by_cluster.get(c)
                else 0.0,
                top_image_ids=[i for i, _ in by_cluster.get(c, [])[:top]],
            )
            for c in clusters
        ]

    # ------------------------------------------------------------------ names
    def names(self, run_id: str) -> dict[int, str]:
        """cluster -> name for a run."""
        rows = self.db.execute("SELECT cluster, name FROM cluster_names WHERE run_id=?", (run_id,))
        return {int(c): str(n) for c, n in rows}

    def set_name(self, run_id: str, cluster: int, name: str | None) -> None:
        """Set or clear (``None``) a cluster's name (no history: see Annotations)."""
        if name is None:
            self.db.execute(
                "DELETE FROM cluster_names WHERE run_id=? AND cluster=?", (run_id, cluster)
            )
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO cluster_names VALUES (?,?,?)", (run_id, cluster, name)
            )
