"""Tests for crlc_engine.results.metrics (ACC, NMI, ARI) against hand-worked values."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from crlc_engine.results.metrics import (
    ClusteringScores,
    adjusted_rand_index,
    best_mapping,
    cluster_accuracy,
    contingency_matrix,
    normalized_mutual_info,
    score_clustering,
)

TRUE6 = [0, 0, 0, 1, 1, 1]
PRED6 = [1, 1, 0, 0, 0, 0]


def test_contingency_hand_example() -> None:
    # class 0 -> clusters {1, 1, 0}: one in cluster 0, two in cluster 1
    # class 1 -> clusters {0, 0, 0}: three in cluster 0
    np.testing.assert_array_equal(contingency_matrix(TRUE6, PRED6), [[1, 2], [3, 0]])


def test_contingency_non_contiguous_labels() -> None:
    table = contingency_matrix([7, 7, -3, 100], [5, 9, 9, 5])
    # rows: classes sorted (-3, 7, 100); columns: clusters sorted (5, 9)
    np.testing.assert_array_equal(table, [[0, 1], [1, 1], [1, 0]])
    assert table.dtype == np.int64


def test_accuracy_hand_example() -> None:
    # Contingency [[1, 2], [3, 0]]. The two one-to-one mappings:
    #   cluster 0 -> class 0, cluster 1 -> class 1: 1 + 0 = 1 correct
    #   cluster 0 -> class 1, cluster 1 -> class 0: 3 + 2 = 5 correct  (best)
    # ACC = 5 / 6.
    assert cluster_accuracy(TRUE6, PRED6) == pytest.approx(5 / 6)
    assert best_mapping(TRUE6, PRED6) == {0: 1, 1: 0}


def test_nmi_hand_example() -> None:
    # n = 6, contingency [[1, 2], [3, 0]], row sums (3, 3), column sums (4, 2).
    # H(true) = log 2.
    # H(pred) = -(4/6 log 4/6 + 2/6 log 2/6) = log 3 - (2/3) log 2.
    # MI = sum_ij p_ij log(p_ij / (p_i p_j)):
    #   (0, 0): 1/6 log((1/6) / (1/2 * 4/6)) = 1/6 log(1/2) = -(1/6) log 2
    #   (0, 1): 2/6 log((2/6) / (1/2 * 2/6)) = 1/3 log 2
    #   (1, 0): 3/6 log((3/6) / (1/2 * 4/6)) = 1/2 log(3/2)
    #   (1, 1): 0
    #   MI = (1/6) log 2 + (1/2) log 3 - (1/2) log 2 = (1/2) log 3 - (1/3) log 2
    # NMI = MI / ((H(true) + H(pred)) / 2)
    #     = ((3 log 3 - 2 log 2) / 6) / ((log 3 + (1/3) log 2) / 2)
    #     = (3 log 3 - 2 log 2) / (3 log 3 + log 2)  ~= 0.478704
    l2, l3 = math.log(2), math.log(3)
    expected = (3 * l3 - 2 * l2) / (3 * l3 + l2)
    assert expected == pytest.approx(0.478704, abs=1e-6)
    assert normalized_mutual_info(TRUE6, PRED6) == pytest.approx(expected, rel=1e-12)


def test_ari_hand_example() -> None:
    # contingency [[1, 2], [3, 0]]:
    #   index = C(1,2) + C(2,2) + C(3,2) + C(0,2) = 0 + 1 + 3 + 0 = 4
    #   a = C(3,2) + C(3,2) = 6   (row sums 3, 3)
    #   b = C(4,2) + C(2,2) = 7   (column sums 4, 2)
    #   N = C(6,2) = 15, expected index = a b / N = 42 / 15 = 2.8, max = (a + b) / 2 = 6.5
    # ARI = (4 - 2.8) / (6.5 - 2.8) = 1.2 / 3.7 = 12 / 37 ~= 0.324324
    assert adjusted_rand_index(TRUE6, PRED6) == pytest.approx(12 / 37, rel=1e-12)


def test_second_hand_example_three_clusters() -> None:
    # true [0, 0, 1, 1], pred [0, 1, 2, 2]: contingency [[1, 1, 0], [0, 0, 2]].
    # ACC: cluster 0 -> class 0 (1), cluster 2 -> class 1 (2); cluster 1 unmatched -> 3/4.
    # ARI: index = C(2,2) = 1; a = 1 + 1 = 2; b = 0 + 0 + 1 = 1; N = 6;
    #      expected = 2/6 = 1/3; max = 3/2; ARI = (1 - 1/3) / (3/2 - 1/3) = (2/3) / (7/6) = 4/7.
    # NMI: H(true) = log 2; H(pred) = -(2 * 1/4 log 1/4 + 1/2 log 1/2) = (3/2) log 2;
    #      MI = 1/4 log((1/4)/(1/2*1/4)) * 2 + 1/2 log((1/2)/(1/2*1/2)) = log 2
    #      (pred determines true), NMI = log 2 / ((5/2) log 2 / 2) = 4/5.
    t, p = [0, 0, 1, 1], [0, 1, 2, 2]
    assert cluster_accuracy(t, p) == pytest.approx(3 / 4)
    assert adjusted_rand_index(t, p) == pytest.approx(4 / 7)
    assert normalized_mutual_info(t, p) == pytest.approx(4 / 5)
    mapping = best_mapping(t, p)
    # clusters 0 and 1 tie for class 0: exactly one of them is matched to it
    assert mapping[2] == 1 and len(mapping) == 2
    assert sorted(c for c, k in mapping.items() if k == 0) in ([0], [1])


def _ari_by_pair_counting(t: list[int], p: list[int]) -> float:
    """Hubert-Arabie ARI by explicit loops over all pairs of samples."""
    n = len(t)
    both = same_true = same_pred = 0
    for i in range(n):
        for j in range(i + 1, n):
            st, sp = t[i] == t[j], p[i] == p[j]
            both += st and sp
            same_true += st
            same_pred += sp
    total = n * (n - 1) // 2
    expected = same_true * same_pred / total
    maximum = (same_true + same_pred) / 2
    return (both - expected) / (maximum - expected)


def test_ari_matches_explicit_pair_counting() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        t = rng.integers(0, 4, size=60).tolist()
        p = rng.integers(0, 6, size=60).tolist()
        p[:30] = t[:30]  # some agreement so the value is not ~0
        assert adjusted_rand_index(t, p) == pytest.approx(_ari_by_pair_counting(t, p), rel=1e-12)


def test_permutation_invariance_of_predicted_labels() -> None:
    rng = np.random.default_rng(1)
    t = rng.integers(0, 5, size=300)
    p = np.where(rng.random(300) < 0.7, t, rng.integers(0, 5, size=300))
    base = score_clustering(t, p)
    for perm in itertools.islice(itertools.permutations(range(5)), 0, 120, 17):
        relabelled = np.asarray(perm)[p] * 10 + 3  # permute and make non-contiguous
        s = score_clustering(t, relabelled)
        assert s.acc == pytest.approx(base.acc)
        assert s.nmi == pytest.approx(base.nmi)
        assert s.ari == pytest.approx(base.ari)


def test_identical_partitions_score_one() -> None:
    rng = np.random.default_rng(2)
    t = rng.integers(0, 7, size=200)
    relabelled = (t * 3 + 11) % 1000  # bijective relabelling
    assert score_clustering(t, relabelled).as_dict() == pytest.approx(
        {"acc": 1.0, "nmi": 1.0, "ari": 1.0}
    )


def test_degenerate_partitions() -> None:
    ones = [4] * 10
    assert normalized_mutual_info(ones, [9] * 10) == 1.0
    assert adjusted_rand_index(ones, [9] * 10) == 1.0
    assert cluster_accuracy(ones, [9] * 10) == 1.0
    singletons = list(range(10))
    assert adjusted_rand_index(singletons, singletons[::-1]) == 1.0
    assert normalized_mutual_info(singletons, singletons[::-1]) == pytest.approx(1.0)
    # one cluster vs a real split: no information, ARI 0
    split = [0] * 5 + [1] * 5
    assert normalized_mutual_info(split, ones) == 0.0
    assert adjusted_rand_index(split, ones) == pytest.approx(0.0)
    assert cluster_accuracy(split, ones) == pytest.approx(0.5)
    # a single sample
    assert score_clustering([3], [8]) == ClusteringScores(1.0, 1.0, 1.0)


def test_independent_partitions_ari_near_zero() -> None:
    rng = np.random.default_rng(3)
    values = [
        adjusted_rand_index(rng.integers(0, 5, size=200), rng.integers(0, 5, size=200))
        for _ in range(300)
    ]
    assert abs(float(np.mean(values))) < 0.002
    assert max(abs(v) for v in values) < 0.05


def test_more_clusters_than_classes() -> None:
    # 2 classes, 4 clusters: each class split into two clusters of 3 and 2.
    t = [0] * 5 + [1] * 5
    p = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    # best one-to-one: cluster 0 -> class 0 (3), cluster 2 -> class 1 (3) -> ACC 6/10
    assert cluster_accuracy(t, p) == pytest.approx(0.6)
    mapping = best_mapping(t, p)
    assert mapping == {0: 0, 2: 1}
    assert contingency_matrix(t, p).shape == (2, 4)
    # the refinement still carries all the information about the classes
    assert 0 < normalized_mutual_info(t, p) < 1


def test_fewer_clusters_than_classes() -> None:
    t = [0, 0, 1, 1, 2, 2]
    p = [5, 5, 5, 5, 6, 6]
    # cluster 6 -> class 2 (2), cluster 5 -> class 0 or 1 (2) -> ACC 4/6
    assert cluster_accuracy(t, p) == pytest.approx(4 / 6)
    mapping = best_mapping(t, p)
    assert mapping[6] == 2 and mapping[5] in (0, 1)


def test_scores_dataclass() -> None:
    s = score_clustering(TRUE6, PRED6)
    assert s.as_dict() == {"acc": s.acc, "nmi": s.nmi, "ari": s.ari}
    assert s.acc == pytest.approx(5 / 6)
    assert s.ari == pytest.approx(12 / 37)
    assert all(isinstance(v, float) for v in s.as_dict().values())


def test_accepts_integral_floats_and_arrays() -> None:
    assert cluster_accuracy(np.array(TRUE6, dtype=np.float32), np.array(PRED6)) == pytest.approx(
        5 / 6
    )


@pytest.mark.parametrize(
    ("t", "p"),
    [
        ([0, 1, 2], [0, 1]),  # length mismatch
        ([], []),  # empty
        ([[0, 1]], [[0, 1]]),  # not 1-D
        ([0.5, 1.0], [0, 1]),  # non-integer labels
        (["a", "b"], [0, 1]),  # non-numeric labels
    ],
)
def test_errors(t: Any, p: Any) -> None:
    for fn in (
        contingency_matrix,
        cluster_accuracy,
        best_mapping,
        normalized_mutual_info,
        adjusted_rand_index,
        score_clustering,
    ):
        with pytest.raises(ValueError):
            fn(t, p)
