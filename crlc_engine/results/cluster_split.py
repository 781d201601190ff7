"""Split one cluster of a run into several by k-means on the images' stored features.

The plan (:func:`plan_split`) is computed first and applied later
(:meth:`crlc_engine.results.annotations.Annotations.apply_split`), so a dialog can show the part
sizes
before anything changes. The k-means is spherical (cosine) on the L2-normalised 128-d
RL-head features of the cluster's images that are not ignored, seeded with k-means++ from a
fixed seed and restarted a few times; the run with the lowest inertia wins. Clusters of more
than :data:`FIT_MAX` images fit the centres on a seeded sample, then assign every image. It
is plain numpy/scipy in float64 without threads of its own: the same data and seed give the
same plan.

The largest part keeps the cluster's index; the others get new indices past every index the
run uses (the head's C, the assigned clusters and the named ones), in decreasing size.
Ignored images of the cluster stay where they are.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from crlc_engine.core.errors import InvalidSettingError, RunNotFoundError
from crlc_engine.results.assignments import ResultStore

#: Most parts one split can make.
MAX_PARTS = 50
#: k-means restarts (different k-means++ seeds); the lowest inertia wins.
N_INIT = 4
#: Lloyd iterations per restart at most.
MAX_ITER = 100
#: Lloyd stops when at most this fraction of the rows changed group in an iteration.
TOL = 1e-3
#: Larger clusters fit the centres on this many images drawn with the seed, then assign all.
FIT_MAX = 20_000


@dataclass(frozen=True)
class SplitPlan:
    """How one cluster of a run will be split.

    Attributes:
        run_id: The run.
        cluster: The cluster being split (kept by part 0).
        image_ids: int64 [M] per part (sorted), largest part first.
        clusters: The cluster index of each part: ``clusters[0] == cluster``, then new ones.
        seed: The k-means seed used.
    """

    run_id: str
    cluster: int
    image_ids: tuple[np.ndarray, ...]
    clusters: tuple[int, ...]
    seed: int

    @property
    def sizes(self) -> list[int]:
        """Images per part, in part order (largest first)."""
        return [int(ids.size) for ids in self.image_ids]

    @property
    def new_clusters(self) -> tuple[int, ...]:
        """The indices of the parts that leave the cluster."""
        return self.clusters[1:]

    def moves(self) -> dict[int, int]:
        """image id -> new cluster, for the images that leave the cluster."""
        return {
            int(i): cluster
            for ids, cluster in zip(self.image_ids[1:], self.clusters[1:], strict=True)
            for i in ids.tolist()
        }


def normalize_rows(features: np.ndarray) -> np.ndarray:
    """float64 [M, D] rows scaled to unit L2 norm (all-zero rows stay zero)."""
    x = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out = np.zeros_like(x)
    np.divide(x, norms, out=out, where=norms > 0)
    return out


def spherical_kmeans(
    features: np.ndarray,
    k: int,
    seed: int = 0,
    n_init: int = N_INIT,
    max_iter: int = MAX_ITER,
    fit_max: int = FIT_MAX,
) -> np.ndarray:
    """Cosine k-means of unit vectors with k-means++ seeding; every group non-empty.

    Args:
        features: [M, D] rows (normalised here).
        k: Number of groups, ``2 <= k <= number of distinct rows``.
        seed: Seed of the k-means++ draws (restart r uses ``seed + r``).
        n_init: Restarts; the one with the lowest inertia (sum of squared distances of the
            unit rows to their unit centroids) wins, the first on ties.
        max_iter: Lloyd iterations per restart at most.
        fit_max: With more rows, the centres are fitted on ``fit_max`` rows drawn with
            ``seed`` and every row then goes to its nearest centre.

    Returns:
        int64 [M] group of each row, groups numbered 0..k-1.

    Raises:
        InvalidSettingError: ``k`` < 2, or fewer distinct rows than ``k``.
    """
    x = normalize_rows(features)
    if k < 2:
        raise InvalidSettingError(f"a split needs at least 2 parts (got {k})")
    distinct = _distinct_rows(x)
    if distinct < k:
        raise InvalidSettingError(
            f"these {x.shape[0]} images have only {distinct} different feature vectors: "
            f"too few for {k} parts"
        )
    fit = x
    if x.shape[0] > fit_max:
        rows = np.sort(np.random.default_rng(seed).choice(x.shape[0], fit_max, replace=False))
        fit = x[rows]
        if _distinct_rows(fit) < k:  # a sample of duplicates only: use every row
            fit = x
    best_centers: np.ndarray | None = None
    best_labels = np.zeros(0, dtype=np.int64)
    best_inertia = np.inf
    for restart in range(max(1, n_init)):
        rng = np.random.default_rng(seed + restart)
        labels, centers, inertia = _lloyd(fit, _kmeans_pp(fit, k, rng), max_iter)
        if inertia < best_inertia - 1e-12:
            best_labels, best_centers, best_inertia = labels, centers, inertia
    assert best_centers is not None
    if fit is x:
        return best_labels
    nearest: np.ndarray = np.argmax(x @ best_centers.T, axis=1).astype(np.int64)
    _fill_empty(x, nearest, best_centers.copy(), k)
    return nearest


def _distinct_rows(x: np.ndarray) -> int:
    """How many different rows ``x`` [M, D] holds (compared bit for bit)."""
    if x.size == 0:
        return 0
    rows = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1])))
    return int(np.unique(rows.ravel()).size)


def _sq_dist(x: np.ndarray, center: np.ndarray) -> np.ndarray:
    """float64 [M] squared Euclidean distances of the rows of ``x`` [M, D] to ``center`` [D]."""
    diff = x - center
    dist: np.ndarray = np.einsum("ij,ij->i", diff, diff)
    return dist


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ centres: [k, D] rows of ``x``, each drawn with probability ~ squared distance.

    ``x`` must hold at least ``k`` distinct rows, so the distances never all vanish.
    """
    m = x.shape[0]
    centers = [x[int(rng.integers(m))]]
    dist = _sq_dist(x, centers[0])
    for _ in range(1, k):
        pick = int(rng.choice(m, p=dist / dist.sum()))
        centers.append(x[pick])
        dist = np.minimum(dist, _sq_dist(x, x[pick]))
    return np.stack(centers)


def _centroids(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    m = labels.size
    members = sparse.csr_matrix((np.ones(m), (labels, np.arange(m))), shape=(k, m))
    return normalize_rows(np.asarray(members @ x))


def _fill_empty(x: np.ndarray, labels: np.ndarray, centers: np.ndarray, k: int) -> None:
    """Give every empty group the row farthest from its centre among groups of 2 or more."""
    for group in range(k):
        counts = np.bincount(labels, minlength=k)
        if counts[group] > 0:
            continue
        diff = x - centers[labels]
        dist = np.einsum("ij,ij->i", diff, diff)
        dist[counts[labels] < 2] = -np.inf
        row = int(np.argmax(dist))
        labels[row] = group
        centers[group] = x[row]


def _lloyd(
    x: np.ndarray, centers: np.ndarray, max_iter: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd iterations from ``centers`` [k, D]; returns (labels [M], centres [k, D], inertia)."""
    k = centers.shape[0]
    labels = np.full(x.shape[0], -1, dtype=np.int64)
    for _ in range(max_iter):
        new = np.argmax(x @ centers.T, axis=1).astype(np.int64)
        _fill_empty(x, new, centers, k)
        centers = _centroids(x, new, k)
        changed = int(np.count_nonzero(new != labels))
        labels = new
        if changed <= TOL * labels.size:
            break
    diff = x - centers[labels]
    inertia = float(np.einsum("ij,ij->", diff, diff))
    return labels, centers, inertia


def next_cluster_ids(store: ResultStore, run_id: str, count: int) -> list[int]:
    """``count`` unused cluster indices of a run: past its C, its assignments and its names."""
    used = [store.head_size(run_id) - 1, *store.cluster_ids(run_id), *store.names(run_id)]
    start = max(used) + 1
    return list(range(start, start + count))


def plan_split(
    store: ResultStore,
    run_id: str,
    cluster: int,
    parts: int = 2,
    exclude: Collection[int] = (),
    seed: int = 0,
) -> SplitPlan:
    """Divide the images of one cluster (less ``exclude``) into ``parts`` groups by k-means.

    Args:
        store: The library's result store.
        run_id: The run.
        cluster: The cluster to split.
        parts: Groups to make, 2..:data:`MAX_PARTS`.
        exclude: Image ids to leave where they are (the ignored images).
        seed: k-means seed (the same seed gives the same plan).

    Returns:
        The plan; nothing is changed yet.

    Raises:
        RunNotFoundError: the run has no assignments.
        InvalidSettingError: unknown cluster, ``parts`` out of range, fewer (distinct)
            images than parts.
    """
    if not isinstance(parts, int) or not 2 <= parts <= MAX_PARTS:
        raise InvalidSettingError(f"a split makes 2..{MAX_PARTS} parts (got {parts})")
    data = store.load(run_id)
    if data.image_ids.size == 0:
        raise RunNotFoundError(f"run {run_id!r} has no assignments in this library")
    present = set(data.clusters.tolist())
    if cluster not in present:
        listed = ", ".join(str(c) for c in sorted(present))
        raise InvalidSettingError(f"run {run_id} has no images in cluster {cluster} ({listed})")
    skip = np.isin(data.image_ids, np.fromiter(exclude, dtype=np.int64))
    rows = np.flatnonzero((data.clusters == cluster) & ~skip)
    if rows.size < parts:
        raise InvalidSettingError(
            f"cluster {cluster} has {rows.size} image(s) that are not ignored: "
            f"too few to split into {parts} parts"
        )
    labels = spherical_kmeans(data.features[rows], parts, seed)
    groups = [np.sort(data.image_ids[rows][labels == g]) for g in range(parts)]
    groups.sort(key=lambda ids: (-ids.size, int(ids[0])))
    new = next_cluster_ids(store, run_id, parts - 1)
    return SplitPlan(run_id, cluster, tuple(groups), (cluster, *new), seed)
