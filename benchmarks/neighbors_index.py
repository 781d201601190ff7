"""Exact (IndexFlatIP) vs approximate (HNSW) nearest neighbours over 128-d unit features.

For each size N, on clustered unit vectors (Gaussian clusters of unequal size and spread, like
trained CRLC features) it times, for both index kinds of ``crlc_engine.core.neighbors``:

* build: ``NeighborIndex.build``;
* single: median latency of one query (``neighbors_of`` of one random row, k = 10), one call
  per query as an interactive app would make it;
* batch: 1,000 random rows in one call, k = 10;
* all-pairs: the k = 50 graph of every row (``neighbors_of`` of all rows, as
  ``all_pairs_knn`` does after building);

single-query latency is also taken with one faiss thread (``single_query_ms_1_thread``);

and the HNSW recall@10 against exact search (1,000 random rows; also recall@10 and @50 of
the all-pairs graph). A uniform-random control (no cluster structure, the hard case for
graph indexes) gets the HNSW build time and recall@10. Prints one JSON object.

    python benchmarks/neighbors_index.py --sizes 1000,5000,10000,20000,50000,100000
    python benchmarks/neighbors_index.py --sizes 2000 --single 20   # quick check
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

import faiss
import numpy as np

from crlc_engine.core.neighbors import (
    EXACT_MAX,
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    NeighborIndex,
    Neighbors,
    recall_at_k,
)

T = TypeVar("T")


def clustered_features(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around random centres: unequal sizes, per-cluster noise 0.05-0.15 per
    dimension (within-cluster cosine about 0.25-0.75), float32 [n, dim]."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.choice(clusters, size=n, p=rng.dirichlet(np.ones(clusters)))
    spread = rng.uniform(0.05, 0.15, clusters).astype(np.float32)
    x = centres[labels] + rng.standard_normal((n, dim)).astype(np.float32) * spread[labels, None]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def uniform_features(n: int, dim: int, seed: int) -> np.ndarray:
    """Uniformly distributed unit vectors, float32 [n, dim]."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Run ``fn`` once; return its result and the wall time in seconds."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def single_query_ms(index: NeighborIndex, rows: np.ndarray, k: int, threads: int) -> float:
    """Median wall time in ms of ``neighbors_of`` for one row at a time with ``threads``."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        index.neighbors_of(rows[:1], k=k)  # warm-up
        times = []
        for i in range(rows.shape[0]):
            start = time.perf_counter()
            index.neighbors_of(rows[i : i + 1], k=k)
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        faiss.omp_set_num_threads(previous)
    return statistics.median(times)


def measure_kind(
    x: np.ndarray,
    exact_max: int,
    args: argparse.Namespace,
    sample: np.ndarray,
    single: np.ndarray,
    all_pairs: bool,
) -> tuple[dict[str, Any], Neighbors, Neighbors | None]:
    """Time one index kind on ``x``; return timings, batch result and all-pairs result."""
    index, build_s = timed(lambda: NeighborIndex.build(x, exact_max=exact_max, seed=0))
    row: dict[str, Any] = {"kind": index.kind, "build_s": round(build_s, 3)}
    row["single_query_ms"] = round(single_query_ms(index, single, 10, args.threads), 3)
    row["single_query_ms_1_thread"] = round(single_query_ms(index, single, 10, 1), 3)
    batch, batch_s = timed(lambda: index.neighbors_of(sample, k=10))
    row[f"batch_{sample.size}_s"] = round(batch_s, 3)
    graph: Neighbors | None = None
    if all_pairs:
        graph, pairs_s = timed(lambda: index.neighbors_of(np.arange(x.shape[0]), k=args.k))
        row[f"all_pairs_k{args.k}_s"] = round(pairs_s, 3)
        row["build_plus_all_pairs_s"] = round(build_s + pairs_s, 3)
    return row, batch, graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,5000,10000,20000,50000,100000")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--queries", type=int, default=1000, help="rows in the batch query")
    parser.add_argument("--single", type=int, default=200, help="one-row queries to time")
    parser.add_argument("--k", type=int, default=50, help="k of the all-pairs graph")
    parser.add_argument(
        "--all-pairs-max", type=int, default=100_000, help="largest N for all-pairs timings"
    )
    parser.add_argument(
        "--uniform-max", type=int, default=100_000, help="largest N of the uniform control"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="faiss threads (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # faiss thread count for everything (indexes are built with threads=None and follow it).
    faiss.omp_set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for n in sizes:
        rng = np.random.default_rng(args.seed + n)
        sample = np.sort(rng.choice(n, size=min(args.queries, n), replace=False))
        single = rng.choice(n, size=min(args.single, n), replace=False)
        all_pairs = n <= args.all_pairs_max
        x = clustered_features(n, args.dim, args.clusters, args.seed)
        exact, exact_batch, exact_graph = measure_kind(x, n, args, sample, single, all_pairs)
        hnsw, hnsw_batch, hnsw_graph = measure_kind(x, 0, args, sample, single, all_pairs)
        hnsw["recall_at_10"] = round(recall_at_k(hnsw_batch.ids, exact_batch.ids), 4)
        if exact_graph is not None and hnsw_graph is not None:
            hnsw["all_pairs_recall_at_10"] = round(
                recall_at_k(hnsw_graph.ids[:, :10], exact_graph.ids[:, :10]), 4
            )
            hnsw[f"all_pairs_recall_at_{args.k}"] = round(
                recall_at_k(hnsw_graph.ids, exact_graph.ids), 4
            )
        entry: dict[str, Any] = {"n": n, "exact": exact, "hnsw": hnsw}
        if n <= args.uniform_max:
            u = uniform_features(n, args.dim, args.seed + 1)
            u_exact = NeighborIndex.build(u, exact_max=n)
            u_hnsw, u_build = timed(functools.partial(NeighborIndex.build, u, exact_max=0))
            entry["uniform_control"] = {
                "hnsw_build_s": round(u_build, 3),
                "hnsw_recall_at_10": round(
                    recall_at_k(
                        u_hnsw.neighbors_of(sample, k=10).ids,
                        u_exact.neighbors_of(sample, k=10).ids,
                    ),
                    4,
                ),
            }
        results.append(entry)
    print(
        json.dumps(
            {
                "benchmark": "neighbors_index",
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(),
                    "faiss": faiss.__version__,
                    "numpy": np.__version__,
                    "threads": args.threads,
                },
                "params": {
                    "dim": args.dim,
                    "clusters": args.clusters,
                    "hnsw_m": HNSW_M,
                    "ef_construction": HNSW_EF_CONSTRUCTION,
                    "ef_search": HNSW_EF_SEARCH,
                    "exact_max": EXACT_MAX,
                    "all_pairs_k": args.k,
                },
                "results": results,
                "total_s": round(time.perf_counter() - started, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
