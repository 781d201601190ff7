"""Nearest-neighbour index: exact results against a numpy reference, HNSW recall, persistence,
edge cases and errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crlc_engine.core.neighbors import (
    EXACT_MAX,
    NeighborIndex,
    Neighbors,
    all_pairs_knn,
    recall_at_k,
)

# One faiss thread: the suite shares two cores with torch tests; results do not depend on it.
THREADS = 1
DIM = 128


def unit_rows(n: int, d: int = DIM, seed: int = 0) -> np.ndarray:
    """Uniform random unit vectors, float32 [n, d]."""
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def clustered_rows(n: int, clusters: int = 40, d: int = DIM, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres with per-cluster noise, float32 [n, d]."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.choice(clusters, size=n, p=rng.dirichlet(np.ones(clusters)))
    spread = rng.uniform(0.05, 0.15, clusters).astype(np.float32)
    x = centres[labels] + rng.standard_normal((n, d)).astype(np.float32) * spread[labels, None]
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def reference_knn(
    x: np.ndarray, q: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by inner product in float64; ``exclude[i]`` is left out of row i."""
    sims = q.astype(np.float64) @ x.astype(np.float64).T
    if exclude is not None:
        sims[np.arange(q.shape[0]), exclude] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def assert_matches(result: Neighbors, ids: np.ndarray, sims: np.ndarray) -> None:
    assert result.ids.dtype == np.int64
    assert result.similarities.dtype == np.float32
    assert result.ids.shape == ids.shape
    np.testing.assert_array_equal(result.ids, ids)
    np.testing.assert_allclose(result.similarities, sims, atol=1e-5)


# ----------------------------------------------------------------------------- exact index


def test_exact_search_matches_numpy() -> None:
    x = unit_rows(500, seed=1)
    q = unit_rows(40, seed=2)
    index = NeighborIndex.build(x, threads=THREADS)
    assert index.kind == "exact"
    assert len(index) == 500 and index.dim == DIM
    result = index.search(q, k=7)
    assert_matches(result, *reference_knn(x, q, 7))
    assert (np.diff(result.similarities, axis=1) <= 0).all()


def test_single_query_matches_numpy() -> None:
    # faiss takes a different code path for fewer than 20 queries than for batches.
    x = unit_rows(300, seed=3)
    q = unit_rows(1, seed=4)
    result = NeighborIndex.build(x, threads=THREADS).search(q, k=5)
    assert_matches(result, *reference_knn(x, q, 5))


def test_neighbors_of_excludes_self() -> None:
    x = unit_rows(400, seed=5)
    index = NeighborIndex.build(x, threads=THREADS)
    rows = np.array([0, 17, 399, 17])
    result = index.neighbors_of(rows, k=6)
    assert_matches(result, *reference_knn(x, x[rows], 6, exclude=rows))
    assert not (result.ids == rows[:, None]).any()


def test_search_with_exclude_self_ids() -> None:
    x = unit_rows(200, seed=6)
    index = NeighborIndex.build(x, threads=THREADS)
    rows = np.arange(0, 200, 9)
    result = index.search(x[rows], k=4, exclude_self_ids=rows)
    assert_matches(result, *reference_knn(x, x[rows], 4, exclude=rows))
    # An id that is not in the index leaves nothing out (the last of k + 1 is dropped).
    plain = index.search(x[rows], k=4)
    outside = index.search(x[rows], k=4, exclude_self_ids=np.full(rows.shape, 10_000))
    assert_matches(outside, plain.ids, plain.similarities)


def test_caller_ids_are_mapped() -> None:
    x = unit_rows(150, seed=7)
    caller = np.random.default_rng(0).permutation(150).astype(np.int64) * 10 + 1_000_000
    index = NeighborIndex.build(x, ids=caller, threads=THREADS)
    rows = np.array([3, 99, 149])
    ref_rows, ref_sims = reference_knn(x, x[rows], 5, exclude=rows)
    assert_matches(index.neighbors_of(rows, k=5), caller[ref_rows], ref_sims)
    # exclude_self_ids takes caller ids
    by_id = index.search(x[rows], k=5, exclude_self_ids=caller[rows])
    assert_matches(by_id, caller[ref_rows], ref_sims)
    plain_rows, plain_sims = reference_knn(x, x[rows], 5)
    assert_matches(index.search(x[rows], k=5), caller[plain_rows], plain_sims)


def test_all_pairs_knn_matches_numpy() -> None:
    x = unit_rows(600, seed=8)
    result = all_pairs_knn(x, k=12, threads=THREADS)
    rows = np.arange(600)
    assert_matches(result, *reference_knn(x, x, 12, exclude=rows))


def test_unnormalised_features_are_normalised_in_a_copy() -> None:
    x = unit_rows(120, seed=9)
    scale = np.random.default_rng(1).uniform(0.1, 10.0, (120, 1))
    scaled = (x * scale).astype(np.float64)
    before = scaled.copy()
    result = all_pairs_knn(scaled, k=5, threads=THREADS)
    np.testing.assert_array_equal(scaled, before)
    assert_matches(result, *reference_knn(x, x, 5, exclude=np.arange(120)))
    index = NeighborIndex.build(scaled, threads=THREADS)
    assert_matches(index.search(scaled[:3] * 7.0, k=3), *reference_knn(x, x[:3], 3))
    # float32, C-contiguous input is what faiss takes directly: still not modified in place.
    scaled32 = (x * scale).astype(np.float32)
    before32 = scaled32.copy()
    NeighborIndex.build(scaled32, threads=THREADS).search(scaled32[:2], k=2)
    np.testing.assert_array_equal(scaled32, before32)


def test_ties_are_ordered_by_row_and_self_is_excluded() -> None:
    base = unit_rows(4, seed=10)
    # rows 0, 3 and 6 are identical; so are rows 1 and 4
    x = np.stack([base[0], base[1], base[2], base[0], base[1], base[3], base[0]])
    index = NeighborIndex.build(x, threads=THREADS)
    plain = index.search(x[:1], k=4)
    np.testing.assert_array_equal(plain.ids[0, :3], [0, 3, 6])
    np.testing.assert_allclose(plain.similarities[0, :3], 1.0, atol=1e-6)
    result = index.neighbors_of([0, 3, 1], k=2)
    np.testing.assert_array_equal(result.ids[:2], [[3, 6], [0, 6]])
    assert result.ids[2, 0] == 4
    # Row 1's second neighbour is tied among the copies 0, 3 and 6: any one of them.
    second = reference_knn(x, x[1:2], 2, exclude=np.array([1]))[0][0, 1]
    copies = {0, 3, 6} if second in (0, 3, 6) else {second}
    assert result.ids[2, 1] in copies
    np.testing.assert_allclose(result.similarities[:, 0], 1.0, atol=1e-6)
    # With k smaller than the number of duplicates, self must still never come back.
    one = index.neighbors_of([0, 3, 6], k=1)
    assert not (one.ids[:, 0] == [0, 3, 6]).any()
    np.testing.assert_allclose(one.similarities, 1.0, atol=1e-6)
    graph = all_pairs_knn(x, k=2, threads=THREADS)
    assert not (graph.ids == np.arange(7)[:, None]).any()


# ----------------------------------------------------------------------------- edge cases


def test_k_is_clipped() -> None:
    x = unit_rows(6, seed=11)
    index = NeighborIndex.build(x, threads=THREADS)
    plain = index.search(x[:2], k=50)
    assert plain.ids.shape == (2, 6)
    assert_matches(plain, *reference_knn(x, x[:2], 6))
    own = index.neighbors_of([0, 5], k=50)
    assert own.ids.shape == (2, 5)
    assert_matches(own, *reference_knn(x, x[[0, 5]], 5, exclude=np.array([0, 5])))
    graph = all_pairs_knn(x, k=50, threads=THREADS)
    assert graph.ids.shape == (6, 5)
    assert set(graph.ids[2]) == {0, 1, 3, 4, 5}


def test_tiny_collections() -> None:
    empty = NeighborIndex.build(np.zeros((0, DIM), dtype=np.float32), threads=THREADS)
    assert empty.kind == "exact" and len(empty) == 0
    result = empty.search(unit_rows(3), k=5)
    assert result.ids.shape == (3, 0) and result.similarities.shape == (3, 0)
    assert empty.neighbors_of([], k=3).ids.shape == (0, 0)
    x = unit_rows(9, seed=20)
    assert NeighborIndex.build(x).neighbors_of([], k=3).ids.shape == (0, 3)
    assert all_pairs_knn(np.zeros((0, DIM), dtype=np.float32), k=3).ids.shape == (0, 0)

    one = unit_rows(1, seed=12)
    single = NeighborIndex.build(one, ids=np.array([42]), threads=THREADS)
    found = single.search(unit_rows(2, seed=13), k=3)
    np.testing.assert_array_equal(found.ids, [[42], [42]])
    assert single.neighbors_of([0], k=3).ids.shape == (1, 0)
    assert single.search(one, k=3, exclude_self_ids=np.array([42])).ids.shape == (1, 0)
    assert all_pairs_knn(one, k=3).ids.shape == (1, 0)

    two = unit_rows(2, seed=14)
    np.testing.assert_array_equal(all_pairs_knn(two, k=3).ids, [[1], [0]])
    assert NeighborIndex.build(two).search(np.zeros((0, DIM), np.float32)).ids.shape == (0, 2)


def test_save_load_round_trip(tmp_path: Path) -> None:
    x = unit_rows(300, seed=15)
    caller = np.arange(300, dtype=np.int64)[::-1] * 3
    q = unit_rows(10, seed=16)
    for exact_max, kind in ((EXACT_MAX, "exact"), (100, "hnsw")):
        index = NeighborIndex.build(x, ids=caller, exact_max=exact_max, threads=THREADS)
        assert index.kind == kind
        path = tmp_path / f"{kind}.index"
        index.save(path)
        index.save(path)  # overwriting works and leaves no temporary files
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
        loaded = NeighborIndex.load(path, threads=THREADS)
        assert loaded.kind == kind and len(loaded) == 300 and loaded.dim == DIM
        np.testing.assert_array_equal(loaded.ids, caller)
        for a, b in (
            (index.search(q, k=8), loaded.search(q, k=8)),
            (index.neighbors_of([1, 2], k=4), loaded.neighbors_of([1, 2], k=4)),
        ):
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_array_equal(a.similarities, b.similarities)
    bare = NeighborIndex.build(x[:20], threads=THREADS)
    bare.save(tmp_path / "bare.npz")
    assert NeighborIndex.load(tmp_path / "bare.npz").ids is None


def test_load_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(ValueError, match="not a saved NeighborIndex"):
        NeighborIndex.load(path)


def test_threads_setting_is_restored() -> None:
    import faiss

    before = faiss.omp_get_max_threads()
    NeighborIndex.build(unit_rows(50), threads=1).search(unit_rows(2), k=3)
    assert faiss.omp_get_max_threads() == before


def test_module_does_not_import_torch() -> None:
    code = "import sys, crlc_engine.core.neighbors\nprint('torch' in sys.modules)\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- errors


def test_errors() -> None:
    x = unit_rows(20, seed=17)
    index = NeighborIndex.build(x, threads=THREADS)
    bad = x.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        NeighborIndex.build(bad)
    bad[3, 5] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        all_pairs_knn(bad)
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.search(bad[:4])
    with pytest.raises(ValueError, match="dimension 64"):
        index.search(unit_rows(2, d=64))
    with pytest.raises(ValueError, match="2-D"):
        NeighborIndex.build(x[0])
    with pytest.raises(ValueError, match="all zeros"):
        index.search(np.zeros((1, DIM), dtype=np.float32))
    with pytest.raises(ValueError, match="real numeric"):
        NeighborIndex.build(x.astype(np.complex64))
    for k in (0, -3, 2.5):
        with pytest.raises(ValueError, match="k must"):
            index.search(x[:1], k=k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="row_ids"):
        index.neighbors_of([20])
    with pytest.raises(ValueError, match="row_ids"):
        index.neighbors_of([-1])
    with pytest.raises(ValueError, match="exclude_self_ids"):
        index.search(x[:3], exclude_self_ids=np.array([0, 1]))
    with pytest.raises(ValueError, match="unique"):
        NeighborIndex.build(x, ids=np.zeros(20, dtype=np.int64))
    with pytest.raises(ValueError, match="non-negative"):
        NeighborIndex.build(x, ids=np.arange(20) - 1)
    with pytest.raises(ValueError, match="entries"):
        NeighborIndex.build(x, ids=np.arange(5))
    with pytest.raises(ValueError, match="threads"):
        NeighborIndex.build(x, threads=0)
    with pytest.raises(ValueError, match="equal Q"):
        recall_at_k(np.zeros((3, 2)), np.zeros((2, 2)))


def test_recall_at_k() -> None:
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    assert recall_at_k(exact, exact) == 1.0
    assert recall_at_k(np.array([[3, 9, 1], [7, 8, 9]]), exact) == pytest.approx(2 / 6)
    assert recall_at_k(np.array([[-1, -1, 2, 1, 3], [6, 5, 4, 0, 0]]), exact) == 1.0
    assert recall_at_k(np.zeros((0, 3)), np.zeros((0, 3))) == 1.0


# ----------------------------------------------------------------------------- approximate


@pytest.mark.parametrize("clustered", [True, False], ids=["clustered", "uniform"])
def test_hnsw_recall_against_exact(clustered: bool) -> None:
    """The approximate path (forced by a low exact_max) keeps recall@10 >= 0.95."""
    n = 20_000 if clustered else 5_000
    x = clustered_rows(n, seed=18) if clustered else unit_rows(n, seed=18)
    approx = NeighborIndex.build(x, exact_max=1_000, threads=THREADS)
    exact = NeighborIndex.build(x, exact_max=n, threads=THREADS)
    assert approx.kind == "hnsw" and exact.kind == "exact"
    rows = np.random.default_rng(0).choice(n, size=500, replace=False)
    got = approx.neighbors_of(rows, k=10)
    want = exact.neighbors_of(rows, k=10)
    assert got.ids.shape == (500, 10)
    assert not (got.ids == rows[:, None]).any()
    assert (np.diff(got.similarities, axis=1) <= 0).all()
    assert recall_at_k(got.ids, want.ids) >= 0.95
    # Plain search with new queries, too.
    q = x[rows[:200]] + 0.05 * unit_rows(200, seed=19)
    assert recall_at_k(approx.search(q, k=10).ids, exact.search(q, k=10).ids) >= 0.95
