"""Clustering metrics (ACC, NMI, ARI) with numpy and scipy only.

Conventions follow the CRLC paper's evaluation (and scikit-learn's defaults):

* ACC: fraction of samples correctly labelled under the best one-to-one mapping of
  clusters to classes (Hungarian / Kuhn-Munkres on the contingency table). With more
  clusters than classes the unmatched clusters count as wrong; with fewer, the
  unmatched classes do.
* NMI: mutual information over the arithmetic mean of the two entropies
  (natural log); 1.0 when both labelings are a single cluster.
* ARI: Hubert & Arabie's adjusted Rand index from the contingency table; 1.0 for
  identical degenerate partitions (all in one cluster, or all singletons).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment

__all__ = [
    "ClusteringScores",
    "adjusted_rand_index",
    "best_mapping",
    "cluster_accuracy",
    "contingency_matrix",
    "normalized_mutual_info",
    "score_clustering",
]


def _as_labels(labels: ArrayLike, name: str) -> NDArray[np.int64]:
    """Validate a 1-D label vector and return it as int64.

    Args:
        labels: ``[n]`` integer labels (integral floats and bools are accepted).
        name: Argument name for error messages.

    Returns:
        ``[n]`` int64 array.

    Raises:
        ValueError: If not 1-D, empty, or not integer-valued.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise ValueError(f"{name} must contain integer labels, got dtype {arr.dtype}")


def _check_pair(
    labels_true: ArrayLike, labels_pred: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    t = _as_labels(labels_true, "labels_true")
    p = _as_labels(labels_pred, "labels_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(
            f"labels_true and labels_pred differ in length: {t.shape[0]} != {p.shape[0]}"
        )
    return t, p


def _contingency(
    t: NDArray[np.int64], p: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Contingency table plus the sorted class and cluster labels of its rows / columns."""
    classes, t_idx = np.unique(t, return_inverse=True)
    clusters, p_idx = np.unique(p, return_inverse=True)
    flat = t_idx.reshape(-1) * clusters.shape[0] + p_idx.reshape(-1)
    counts = np.bincount(flat, minlength=classes.shape[0] * clusters.shape[0])
    table = counts.reshape(classes.shape[0], clusters.shape[0]).astype(np.int64)
    return table, classes, clusters


def contingency_matrix(labels_true: ArrayLike, labels_pred: ArrayLike) -> NDArray[np.int64]:
    """Counts of samples per (class, cluster) pair.

    Args:
        labels_true: ``[n]`` ground-truth class labels (arbitrary ints).
        labels_pred: ``[n]`` predicted cluster labels (arbitrary ints).

    Returns:
        ``[n_classes, n_clusters]`` int64 counts; rows follow the sorted distinct
        class labels, columns the sorted distinct cluster labels.

    Raises:
        ValueError: On length mismatch, empty or non-integer input.
    """
    table, _, _ = _contingency(*_check_pair(labels_true, labels_pred))
    return table


def best_mapping(labels_true: ArrayLike, labels_pred: ArrayLike) -> dict[int, int]:
    """Hungarian one-to-one matching of clusters to classes (maximising agreement).

    Args:
        labels_true: ``[n]`` ground-truth class labels.
        labels_pred: ``[n]`` predicted cluster labels.

    Returns:
        ``{cluster label: class label}`` for the matched clusters. When there are more
        clusters than classes, the unmatched clusters are absent from the dict.

    Raises:
        ValueError: On length mismatch, empty or non-integer input.
    """
    table, classes, clusters = _contingency(*_check_pair(labels_true, labels_pred))
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(clusters[c]): int(classes[r]) for r, c in zip(rows, cols, strict=True)}


def _accuracy_from_table(table: NDArray[np.int64]) -> float:
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum()) / float(table.sum())


def cluster_accuracy(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Clustering accuracy (ACC) under the best one-to-one cluster-to-class mapping.

    Args:
        labels_true: ``[n]`` ground-truth class labels.
        labels_pred: ``[n]`` predicted cluster labels (any number of clusters).

    Returns:
        Fraction in ``[0, 1]``.

    Raises:
        ValueError: On length mismatch, empty or non-integer input.
    """
    table, _, _ = _contingency(*_check_pair(labels_true, labels_pred))
    return _accuracy_from_table(table)


def _entropy(counts: NDArray[np.int64]) -> float:
    """Shannon entropy (nats) of a count vector."""
    c = counts[counts > 0].astype(np.float64)
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def _nmi_from_table(table: NDArray[np.int64]) -> float:
    n_classes, n_clusters = table.shape
    if n_classes == 1 and n_clusters == 1:
        return 1.0  # both labelings put everything in one cluster: identical
    n = float(table.sum())
    row = table.sum(axis=1).astype(np.float64)
    col = table.sum(axis=0).astype(np.float64)
    i, j = np.nonzero(table)
    nij = table[i, j].astype(np.float64)
    # MI = sum_ij (n_ij / n) log(n n_ij / (a_i b_j)).
    mi = float((nij / n * (np.log(nij) + np.log(n) - np.log(row[i]) - np.log(col[j]))).sum())
    mi = max(mi, 0.0)
    if mi == 0.0:
        return 0.0
    h_mean = 0.5 * (_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0)))
    return float(min(mi / max(h_mean, np.finfo(np.float64).eps), 1.0))


def normalized_mutual_info(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Normalised mutual information, ``MI / ((H(true) + H(pred)) / 2)``, natural log.

    Args:
        labels_true: ``[n]`` ground-truth class labels.
        labels_pred: ``[n]`` predicted cluster labels.

    Returns:
        Value in ``[0, 1]``; 1.0 when both labelings are a single cluster; 0.0 when
        the mutual information is zero otherwise.

    Raises:
        ValueError: On length mismatch, empty or non-integer input.
    """
    table, _, _ = _contingency(*_check_pair(labels_true, labels_pred))
    return _nmi_from_table(table)


def _pairs(counts: NDArray[np.int64]) -> int:
    """``sum_k C(counts_k, 2)`` as an exact Python int."""
    c = counts.astype(np.int64)
    return int((c * (c - 1) // 2).sum())


def _ari_from_table(table: NDArray[np.int64]) -> float:
    n = int(table.sum())
    total = n * (n - 1) // 2
    index = _pairs(table.reshape(-1))
    a = _pairs(table.sum(axis=1))
    b = _pairs(table.sum(axis=0))
    # ARI = (index - a b / N) / ((a + b) / 2 - a b / N), multiplied through by 2N so
    # that numerator and denominator are exact integers.
    numerator = 2 * total * index - 2 * a * b
    denominator = total * (a + b) - 2 * a * b
    if denominator == 0:
        # Only when both partitions are all-one-cluster or all-singletons (identical).
        return 1.0
    return numerator / denominator


def adjusted_rand_index(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Adjusted Rand index (Hubert & Arabie, 1985).

    ``ARI = (sum_ij C(n_ij, 2) - a b / C(n, 2)) / ((a + b) / 2 - a b / C(n, 2))`` with
    ``a = sum_i C(a_i, 2)`` over class sizes and ``b = sum_j C(b_j, 2)`` over cluster
    sizes, computed with exact integers.

    Args:
        labels_true: ``[n]`` ground-truth class labels.
        labels_pred: ``[n]`` predicted cluster labels.

    Returns:
        ARI in ``[-1, 1]`` (about 0 for independent labelings, 1 for identical ones).

    Raises:
        ValueError: On length mismatch, empty or non-integer input.
    """
    table, _, _ = _contingency(*_check_pair(labels_true, labels_pred))
    return _ari_from_table(table)


@dataclass(frozen=True)
class ClusteringScores:
    """ACC, NMI and ARI of one clustering, as fractions (not percent).

    Attributes:
        acc: Clustering accuracy in ``[0, 1]``.
        nmi: Normalised mutual information in ``[0, 1]``.
        ari: Adjusted Rand index in ``[-1, 1]``.
    """

    acc: float
    nmi: float
    ari: float

    def as_dict(self) -> dict[str, float]:
        """Return ``{"acc": ..., "nmi": ..., "ari": ...}``."""
        return {"acc": self.acc, "nmi": self.nmi, "ari": self.ari}


def score_clustering(labels_true: ArrayLike, labels_pred: ArrayLike) -> ClusteringScores:
    """All three metrics from one contingency table.

    Args:
        labels_true: ``[n]`` ground-truth class labels.
        labels_pred: ``[n]`` predicted cluster labels.

    Returns:
        ClusteringScores (fractions).

    Raises:
        ValueError: On length mismatch, empty or non-integer input.
    """
    table, _, _ = _contingency(*_check_pair(labels_true, labels_pred))
    return ClusteringScores(
        acc=_accuracy_from_table(table),
        nmi=_nmi_from_table(table),
        ari=_ari_from_table(table),
    )
