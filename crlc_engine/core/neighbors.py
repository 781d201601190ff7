"""Nearest neighbours over image features with faiss (cosine similarity as inner product).

Features are ``D``-dimensional float32 rows (128-d in CRLC), L2-normalised so that the inner
product is the cosine similarity. Up to :data:`EXACT_MAX` vectors the index is exact
(``faiss.IndexFlatIP``, brute force); above it, an HNSW graph (``faiss.IndexHNSWFlat`` with the
inner-product metric) answers approximately. ``benchmarks/neighbors_index.py`` measured both
on clustered unit vectors (the shape of real CRLC features) and a uniform-random control; the
numbers and the reasons for the threshold and the parameters are in ``docs/benchmarks.md``.
HNSW was preferred to IVF: on clustered features it needs no training and one parameter set
holds recall@10 >= 0.979 from 1k to 150k vectors (M 32, efConstruction 80, efSearch 128),
where IVF (nlist = 4 sqrt(N)) needed nprobe to grow with N (recall@10 0.92 at nprobe 32 for
100k) and collapsed on the uniform control (0.43 vs 0.73 for HNSW at 100k). Recall does fall
on unclustered features (uniform control: 0.94 at 20k, 0.70 at 100k); trained CRLC features
are clustered.

Conventions shared by every search in this module:

* Similarities are float32 inner products of the (normalised) vectors, descending per row.
  Equal similarities are ordered by ascending row index of the indexed item; which of several
  items tied at the k-th place is returned is not specified.
* ``k`` is clipped to what exists: to ``N`` for a plain search and to ``N - 1`` when one item
  per query is left out (``exclude_self_ids``, :meth:`NeighborIndex.neighbors_of`,
  :func:`all_pairs_knn`). Every row of a result has the same width; ``N == 0`` (or ``N == 1``
  with self excluded) gives results of width 0.
* Should the approximate index find fewer than ``k`` items for a query (it does not with the
  parameters here, since ``efSearch`` is at least twice the number fetched), the row is padded
  with id ``-1`` and similarity ``-inf``. Caller ids must therefore be non-negative.
* ``threads=None`` leaves the faiss (OpenMP) thread count as it is (by default one thread per
  core), except that a search of a single query runs on one thread (faster: see
  ``docs/benchmarks.md``); an integer sets it with ``faiss.omp_set_num_threads`` for the
  duration of the call and restores the previous value afterwards (OpenMP keeps it per
  calling thread).

The module imports numpy and faiss only (no torch), so library and CLI code can use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import faiss
import numpy as np
from numpy.typing import NDArray

from crlc_engine.core.fileio import atomic_write

__all__ = [
    "EXACT_MAX",
    "HNSW_EF_CONSTRUCTION",
    "HNSW_EF_SEARCH",
    "HNSW_M",
    "NeighborIndex",
    "Neighbors",
    "all_pairs_knn",
    "recall_at_k",
]

EXACT_MAX: Final[int] = 100_000
"""Largest number of indexed vectors searched exactly (``IndexFlatIP``); above it HNSW is used.

Criterion: exact search while (1) one query takes < 5 ms with room to spare and (2) the exact
all-pairs k = 50 graph is no slower than HNSW build + all pairs. Measured on clustered 128-d
features, 2-core development VM (``docs/benchmarks.md``, 2026-11-26): one exact query takes
0.9 ms at 50k, 2.6 ms at 100k and 4-5 ms at 150k vectors; the exact all-pairs graph takes
5-10 s at 50k, 18-30 s at 100k and 48 s at 150k, against 7.5-11 s, 31-52 s and 49 s for HNSW,
whose recall@10 is 0.98-0.99 there. So up to 100k exact is as fast or faster and lossless;
at 150k both limits are reached. The all-pairs graph fits "a few seconds" only up to ~20k
(about 1-2.6 s) with either method on this machine.
"""

HNSW_M: Final[int] = 32
"""Graph degree of the HNSW index (links per node on the upper levels, twice on level 0)."""

HNSW_EF_CONSTRUCTION: Final[int] = 80
"""Candidate list size while inserting into the HNSW graph."""

HNSW_EF_SEARCH: Final[int] = 128
"""Minimum candidate list size at search time; raised to twice the number of items fetched."""

_FORMAT_VERSION: Final[int] = 1
_UNIT_TOLERANCE: Final[float] = 1e-4
_QUERY_BATCH: Final[int] = 4_096
_KINDS: Final[tuple[str, ...]] = ("exact", "hnsw")

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Neighbors:
    """Result of a nearest-neighbour search.

    Attributes:
        ids: int64 ``[Q, k]``: ids of the neighbours of each query, nearest first: row indices
            into the indexed features, or the caller's ids when the index was built with ids.
            ``-1`` marks padding (see the module docstring).
        similarities: float32 ``[Q, k]``: cosine similarities (inner products of unit vectors),
            descending per row; ``-inf`` for padding.
    """

    ids: IntArray
    similarities: FloatArray


@contextlib.contextmanager
def _faiss_threads(threads: int | None) -> Iterator[None]:
    """Set the faiss OpenMP thread count for a block and restore it after.

    Args:
        threads: Number of threads, or ``None`` to leave the current setting alone.

    Raises:
        ValueError: If ``threads`` is not positive.
    """
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _as_unit_rows(array: np.ndarray, name: str, dim: int | None = None) -> FloatArray:
    """Validate a matrix of vectors and return float32, C-contiguous, unit-length rows.

    The input is never modified: rows that are not unit length are normalised in a copy.

    Args:
        array: ``[N, D]`` real-valued vectors.
        name: Name used in error messages.
        dim: Required ``D``, or ``None`` to accept any positive dimension.

    Returns:
        float32 ``[N, D]``, unit-length rows (the input itself when it already qualifies).

    Raises:
        ValueError: If the array is not 2-D, has the wrong dimension, is not real-valued,
            contains NaN or infinity, or has a zero row.
    """
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} have dimension {arr.shape[1]}, the index has {dim}")
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contain NaN or infinite values (or overflow float32)")
    if out.shape[0] == 0:
        return out
    # Norms in float64: squares of large float32 values would overflow.
    norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64))
    if (norms == 0.0).any():
        bad = int(np.flatnonzero(norms == 0.0)[0])
        raise ValueError(f"{name} row {bad} is all zeros; cosine similarity is undefined")
    if np.abs(norms - 1.0).max() > _UNIT_TOLERANCE:
        # A new array (input untouched), in float32: float64 norms made an [N, D] float64 copy.
        out = out / norms.astype(np.float32)[:, None]
    return out


def _check_k(k: int) -> int:
    """Return ``k`` as an int after checking that it is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _as_int_vector(values: Sequence[int] | np.ndarray, name: str) -> IntArray:
    """Validate a 1-D sequence of integers and return it as int64.

    Raises:
        ValueError: If it is not 1-D or holds non-integer values.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _empty(rows: int, width: int = 0) -> Neighbors:
    """A result of shape ``[rows, width]`` where ``rows * width == 0``."""
    return Neighbors(
        ids=np.zeros((rows, width), dtype=np.int64),
        similarities=np.zeros((rows, width), dtype=np.float32),
    )


class NeighborIndex:
    """A cosine-similarity nearest-neighbour index over ``N`` feature vectors.

    Build it with :meth:`build` (or :meth:`load`); the constructor is internal.

    Attributes:
        dim: Feature dimension ``D``.
        size: Number of indexed vectors ``N``.
    """

    def __init__(
        self,
        index: faiss.Index,
        kind: str,
        ids: IntArray | None,
        ef_search: int = HNSW_EF_SEARCH,
        threads: int | None = None,
    ) -> None:
        """Wrap a filled faiss index (internal; use :meth:`build` or :meth:`load`).

        Args:
            index: A faiss index holding ``N`` unit vectors of dimension ``D``.
            kind: ``"exact"`` or ``"hnsw"``.
            ids: int64 ``[N]`` unique non-negative caller ids, or ``None`` for row indices.
            ef_search: Minimum HNSW ``efSearch`` (ignored for the exact index).
            threads: faiss thread count for searches, or ``None`` for the faiss default.
        """
        if kind not in _KINDS:
            raise ValueError(f"unknown index kind {kind!r}; expected one of {_KINDS}")
        self._index = index
        self._kind = kind
        self._ids = ids
        self._sorted_ids: IntArray | None = None
        self._sorted_rows: IntArray | None = None
        if ids is not None:
            order = np.argsort(ids, kind="stable")
            self._sorted_ids = ids[order]
            self._sorted_rows = order.astype(np.int64)
        self._ef_search = int(ef_search)
        self._threads = threads
        self.dim = int(index.d)
        self.size = int(index.ntotal)

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(
        cls,
        features: np.ndarray,
        ids: np.ndarray | None = None,
        exact_max: int = EXACT_MAX,
        seed: int = 0,
        threads: int | None = None,
        *,
        hnsw_m: int = HNSW_M,
        ef_construction: int = HNSW_EF_CONSTRUCTION,
        ef_search: int = HNSW_EF_SEARCH,
    ) -> NeighborIndex:
        """Index feature vectors: exact up to ``exact_max`` vectors, HNSW above.

        Args:
            features: ``[N, D]`` real features. Rows that are not unit length are normalised
                in a copy; the caller's array is never modified. ``N`` may be 0.
            ids: Optional int ``[N]`` unique non-negative ids returned instead of row indices.
            exact_max: Largest ``N`` indexed exactly (``IndexFlatIP``).
            seed: Seed of the HNSW level assignment. With more than one thread the graph can
                still differ slightly from run to run (parallel insertion).
            threads: faiss thread count for building and later searches; ``None`` leaves the
                faiss default (all cores).
            hnsw_m: HNSW graph degree.
            ef_construction: HNSW candidate list size during insertion.
            ef_search: Minimum HNSW candidate list size during search.

        Returns:
            The filled index.

        Raises:
            ValueError: On a malformed or non-finite feature matrix, zero rows, or ids that
                are not unique non-negative integers of length ``N``.
        """
        x = _as_unit_rows(features, "features")
        n, d = x.shape
        id_array: IntArray | None = None
        if ids is not None:
            id_array = _as_int_vector(ids, "ids")
            if id_array.shape[0] != n:
                raise ValueError(f"ids has {id_array.shape[0]} entries for {n} features")
            if n and id_array.min() < 0:
                raise ValueError("ids must be non-negative (-1 marks padding)")
            if np.unique(id_array).shape[0] != n:
                raise ValueError("ids must be unique")
            id_array = id_array.copy()
        if exact_max < 0:
            raise ValueError(f"exact_max must be >= 0, got {exact_max}")
        index: faiss.Index
        with _faiss_threads(threads):
            if n <= exact_max:
                kind = "exact"
                index = faiss.IndexFlatIP(d)
            else:
                kind = "hnsw"
                hnsw = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
                hnsw.hnsw.efConstruction = int(ef_construction)
                hnsw.hnsw.efSearch = int(ef_search)
                # faiss' bundled type stubs lack RandomGenerator and HNSW.rng.
                hnsw.hnsw.rng = faiss.RandomGenerator(int(seed))  # type: ignore[attr-defined]
                index = hnsw
            if n:
                index.add(x)
        return cls(index, kind, id_array, ef_search=ef_search, threads=threads)

    # ------------------------------------------------------------------ properties

    @property
    def kind(self) -> str:
        """``"exact"`` (``IndexFlatIP``) or ``"hnsw"`` (approximate ``IndexHNSWFlat``)."""
        return self._kind

    @property
    def ids(self) -> IntArray | None:
        """int64 ``[N]`` caller ids (a copy), or ``None`` when results are row indices."""
        return None if self._ids is None else self._ids.copy()

    def __len__(self) -> int:
        """Number of indexed vectors ``N``."""
        return self.size

    def __repr__(self) -> str:
        return f"NeighborIndex(kind={self._kind!r}, size={self.size}, dim={self.dim})"

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        exclude_self_ids: np.ndarray | None = None,
    ) -> Neighbors:
        """Find the ``k`` most similar indexed items of each query.

        Args:
            queries: ``[Q, D]`` real query features, normalised like the indexed ones.
            k: Neighbours per query; clipped to ``N`` (or to ``N - 1`` with
                ``exclude_self_ids``).
            exclude_self_ids: Optional int ``[Q]``: for each query an id (caller id, or row
                index when the index has no ids) to leave out of its results, typically the
                query image itself. An id that is not in the index leaves nothing out.

        Returns:
            :class:`Neighbors` with ``ids`` int64 ``[Q, k']`` and ``similarities`` float32
            ``[Q, k']``, ``k'`` the clipped ``k``.

        Raises:
            ValueError: On bad ``k``, a dimension mismatch, non-finite or zero queries, or
                ``exclude_self_ids`` of the wrong length.
        """
        k = _check_k(k)
        q = _as_unit_rows(queries, "queries", self.dim)
        exclude_rows: IntArray | None = None
        if exclude_self_ids is not None:
            excl = _as_int_vector(exclude_self_ids, "exclude_self_ids")
            if excl.shape[0] != q.shape[0]:
                raise ValueError(
                    f"exclude_self_ids has {excl.shape[0]} entries for {q.shape[0]} queries"
                )
            exclude_rows = self._rows_of_ids(excl)
        return self._search_rows(q, k, exclude_rows)

    def neighbors_of(self, row_ids: Sequence[int] | np.ndarray, k: int = 10) -> Neighbors:
        """The ``k`` nearest other indexed items of indexed items (each item itself excluded).

        Args:
            row_ids: int ``[Q]`` row indices ``0 <= r < N`` into the indexed features (row
                positions, not caller ids).
            k: Neighbours per item; clipped to ``N - 1``.

        Returns:
            :class:`Neighbors` with ``[Q, k']`` ids (caller ids if the index has them) and
            similarities.

        Raises:
            ValueError: On bad ``k`` or row indices outside ``[0, N)``.
        """
        k = _check_k(k)
        rows = _as_int_vector(row_ids, "row_ids")
        if rows.size and (rows.min() < 0 or rows.max() >= self.size):
            raise ValueError(
                f"row_ids must lie in [0, {self.size}), got {rows.min()}..{rows.max()}"
            )
        if rows.size == 0 or self.size <= 1:
            return _empty(rows.shape[0], max(0, min(k, self.size - 1)))
        parts: list[Neighbors] = []
        for start in range(0, rows.shape[0], _QUERY_BATCH):
            chunk = rows[start : start + _QUERY_BATCH]
            vectors = np.ascontiguousarray(self._index.reconstruct_batch(chunk), dtype=np.float32)
            parts.append(self._search_rows(vectors, k, chunk))
        if len(parts) == 1:
            return parts[0]
        return Neighbors(
            ids=np.concatenate([p.ids for p in parts]),
            similarities=np.concatenate([p.similarities for p in parts]),
        )

    def _rows_of_ids(self, ids: IntArray) -> IntArray:
        """Map caller ids to row indices; ids not in the index map to ``-2`` (matches nothing)."""
        if self._sorted_ids is None or self._sorted_rows is None:
            return np.where((ids >= 0) & (ids < self.size), ids, -2).astype(np.int64)
        if self.size == 0:
            return np.full(ids.shape, -2, dtype=np.int64)
        pos = np.searchsorted(self._sorted_ids, ids)
        pos_clipped = np.minimum(pos, self.size - 1)
        found = self._sorted_ids[pos_clipped] == ids
        return np.where(found, self._sorted_rows[pos_clipped], -2).astype(np.int64)

    def _search_rows(self, q: FloatArray, k: int, exclude_rows: IntArray | None) -> Neighbors:
        """Search unit queries; drop one row per query when ``exclude_rows`` is given.

        Args:
            q: float32 ``[Q, D]`` unit queries.
            k: Requested neighbours (positive).
            exclude_rows: int64 ``[Q]`` row index to leave out per query (``-2``: none).

        Returns:
            Neighbors ``[Q, k']`` mapped to caller ids.
        """
        n_q = q.shape[0]
        available = self.size - (1 if exclude_rows is not None else 0)
        k_out = min(k, available)
        if n_q == 0 or k_out <= 0:
            return _empty(n_q, max(0, k_out))
        fetch = min(k_out + (1 if exclude_rows is not None else 0), self.size)
        # One query gains nothing from more threads, and on a busy machine waiting for the
        # OpenMP team costs more than the search (measured: 0.7 ms with one thread, 1.6-2.2 ms
        # with two, for one query against 50k vectors on 2 cores).
        threads = self._threads if self._threads is not None or n_q > 1 else 1
        with _faiss_threads(threads):
            if self._kind == "hnsw":
                ef = max(self._ef_search, 2 * fetch)
                params = faiss.SearchParametersHNSW(efSearch=ef)  # type: ignore[attr-defined]
                sims, labels = self._index.search(q, fetch, params=params)
            else:
                sims, labels = self._index.search(q, fetch)
        labels = labels.astype(np.int64, copy=False)
        sims = np.where(labels < 0, np.float32(-np.inf), sims).astype(np.float32, copy=False)
        # Deterministic order: descending similarity, then ascending row index.
        order = np.lexsort((labels, -sims), axis=-1)
        labels = np.take_along_axis(labels, order, axis=1)
        sims = np.take_along_axis(sims, order, axis=1)
        if exclude_rows is not None:
            drop = labels == exclude_rows[:, None]
            missing = ~drop.any(axis=1)
            # fetch == k_out + 1 here. Where the excluded item was not among those fetched
            # (ties with duplicates, approximate search, an id not in the index), drop the
            # last one instead, so that every row keeps exactly k_out items.
            drop[missing, -1] = True
            keep = ~drop
            labels = labels[keep].reshape(n_q, k_out)
            sims = sims[keep].reshape(n_q, k_out)
        labels = labels[:, :k_out]
        sims = sims[:, :k_out]
        if self._ids is not None:
            labels = np.where(labels >= 0, self._ids[np.maximum(labels, 0)], -1)
        return Neighbors(
            ids=np.ascontiguousarray(labels, dtype=np.int64),
            similarities=np.ascontiguousarray(sims, dtype=np.float32),
        )

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write the index, its kind and ids to one ``.npz`` file, atomically.

        The file holds ``faiss.serialize_index`` bytes next to the ids; readers see either the
        previous file or the complete new one (temporary file + ``os.replace``).

        Args:
            path: Destination file (any name; no extension is added). Its folder must exist.
        """
        blob = faiss.serialize_index(self._index)
        arrays: dict[str, np.ndarray] = {
            "format_version": np.array(_FORMAT_VERSION, dtype=np.int64),
            "kind": np.array(self._kind),
            "index": np.asarray(blob, dtype=np.uint8),
            "has_ids": np.array(self._ids is not None),
            "ids": self._ids if self._ids is not None else np.zeros(0, dtype=np.int64),
            "ef_search": np.array(self._ef_search, dtype=np.int64),
        }

        def write(handle: IO[bytes]) -> None:
            np.savez(handle, **arrays)  # type: ignore[arg-type]

        atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: Path, threads: int | None = None) -> NeighborIndex:
        """Read an index written by :meth:`save`.

        Args:
            path: File written by :meth:`save`.
            threads: faiss thread count for searches, or ``None`` for the faiss default.

        Returns:
            The index, with the kind and ids it was saved with.

        Raises:
            ValueError: If the file is not a saved index of a known format or is inconsistent.
        """
        with np.load(Path(path), allow_pickle=False) as data:
            try:
                version = int(data["format_version"])
                kind = str(data["kind"])
                blob = np.array(data["index"], dtype=np.uint8)
                has_ids = bool(data["has_ids"])
                ids = np.array(data["ids"], dtype=np.int64)
                ef_search = int(data["ef_search"])
            except KeyError as exc:
                raise ValueError(f"{path} is not a saved NeighborIndex: missing {exc}") from exc
        if version != _FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported NeighborIndex format version {version}")
        if kind not in _KINDS:
            raise ValueError(f"{path}: unknown index kind {kind!r}")
        index = faiss.deserialize_index(blob)
        if has_ids and ids.shape[0] != index.ntotal:
            raise ValueError(f"{path}: {ids.shape[0]} ids for {index.ntotal} vectors")
        return cls(index, kind, ids if has_ids else None, ef_search=ef_search, threads=threads)


def all_pairs_knn(
    features: np.ndarray,
    k: int = 50,
    exact_max: int = EXACT_MAX,
    threads: int | None = None,
    seed: int = 0,
) -> Neighbors:
    """For every row its ``k`` nearest other rows (self excluded): the kNN graph.

    Exact up to ``exact_max`` rows, HNSW above (see :meth:`NeighborIndex.build`).

    Args:
        features: ``[N, D]`` real features (normalised in a copy if not unit length).
        k: Neighbours per row; clipped to ``N - 1``.
        exact_max: Largest ``N`` searched exactly.
        threads: faiss thread count, or ``None`` for the faiss default.
        seed: Seed of the HNSW level assignment.

    Returns:
        :class:`Neighbors` with row indices ``ids`` int64 ``[N, k']`` and ``similarities``
        float32 ``[N, k']``.

    Raises:
        ValueError: On bad ``k`` or a malformed or non-finite feature matrix.
    """
    k = _check_k(k)
    index = NeighborIndex.build(features, exact_max=exact_max, seed=seed, threads=threads)
    return index.neighbors_of(np.arange(index.size, dtype=np.int64), k=k)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact neighbours that the approximate search found.

    ``k`` is the width of ``exact_ids``; the approximate rows may be wider or narrower (order
    does not matter). Padding (``-1``) never counts as found.

    Args:
        approx_ids: int ``[Q, k_a]`` neighbour ids from the approximate search.
        exact_ids: int ``[Q, k]`` neighbour ids from exact search.

    Returns:
        Found exact neighbours over all exact neighbours (padding ``-1`` in ``exact_ids``
        excluded), in ``[0, 1]``; 1.0 when there is nothing to find (``Q == 0`` or ``k == 0``).

    Raises:
        ValueError: If the arrays are not 2-D with the same number of rows.
    """
    approx = np.asarray(approx_ids)
    exact = np.asarray(exact_ids)
    if approx.ndim != 2 or exact.ndim != 2 or approx.shape[0] != exact.shape[0]:
        raise ValueError(
            f"expected [Q, k] arrays with equal Q, got {approx.shape} and {exact.shape}"
        )
    valid = int((exact >= 0).sum())
    if valid == 0:
        return 1.0
    found = 0
    # Chunks of rows bound the [rows, k, k_a] comparison tensor to ~16 M entries.
    step = max(1, 16_000_000 // max(1, exact.shape[1] * max(1, approx.shape[1])))
    for start in range(0, exact.shape[0], step):
        e = exact[start : start + step]
        a = approx[start : start + step]
        hits = (e[:, :, None] == a[:, None, :]).any(axis=2) & (e >= 0)
        found += int(hits.sum())
    return found / valid
