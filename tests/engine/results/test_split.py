"""Splitting a cluster: k-means on the stored features, undo/redo, export, the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from crlc_engine.cli.main import main
from crlc_engine.core.errors import InvalidSettingError, RunNotFoundError
from crlc_engine.core.fileio import atomic_write_json
from crlc_engine.library import Catalog, ImageLibrary
from crlc_engine.pipeline.refine import group_targets
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.results.cluster_split import normalize_rows, plan_split, spherical_kmeans

C = 3
#: Sub-groups of cluster 0 (sizes 12, 8, 5), then cluster 1 (6 images) and cluster 2 (4).
SUBGROUP_SIZES = (12, 8, 5)
OTHER_SIZES = (6, 4)
N = sum(SUBGROUP_SIZES) + sum(OTHER_SIZES)
D = 16


def designed_run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clusters [N], probabilities [N, C], features [N, D]) with clear sub-groups in cluster 0.

    Image ``k`` (id ``k + 1``) of cluster 0 belongs to sub-group ``truth[k]``; the rows of
    the sub-groups are interleaved so that no split can follow the id order by accident.
    """
    rng = np.random.default_rng(7)
    directions = normalize_rows(rng.normal(size=(len(SUBGROUP_SIZES) + 2, D)))
    truth = np.repeat(np.arange(len(SUBGROUP_SIZES)), SUBGROUP_SIZES)
    rng.shuffle(truth)
    rows = [directions[g] + 0.05 * rng.normal(size=D) for g in truth]
    clusters = [0] * len(truth)
    for c, size in enumerate(OTHER_SIZES, start=1):
        rows += [
            directions[len(SUBGROUP_SIZES) + c - 1] + 0.05 * rng.normal(size=D) for _ in range(size)
        ]
        clusters += [c] * size
    probs = np.full((N, C), 0.1, dtype=np.float32)
    probs[np.arange(N), clusters] = 0.8
    return np.array(clusters), probs, np.array(rows, dtype=np.float32)


def truth_groups() -> list[set[int]]:
    """The image ids of each sub-group of cluster 0, largest first."""
    rng = np.random.default_rng(7)
    normalize_rows(rng.normal(size=(len(SUBGROUP_SIZES) + 2, D)))  # same draws as above
    truth = np.repeat(np.arange(len(SUBGROUP_SIZES)), SUBGROUP_SIZES)
    rng.shuffle(truth)
    return [set((np.flatnonzero(truth == g) + 1).tolist()) for g in range(len(SUBGROUP_SIZES))]


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = Catalog(tmp_path / "catalog.sqlite")
    roots = cat.ensure_roots([tmp_path])
    cat.begin()
    for k in range(N):
        cat.insert_image(roots[tmp_path], f"img{k:02d}.jpg", 10, 10)
    cat.commit()
    _, probs, feats = designed_run()
    ResultStore(cat).write("r1", np.arange(1, N + 1), probs, feats)
    return cat


def state(catalog: Catalog) -> tuple[dict[int, int], dict[int, str], dict[int, str], set[int]]:
    """(image -> cluster, names, labels, ignored) of run r1."""
    notes = Annotations(catalog)
    return (
        ResultStore(catalog).load("r1").cluster_of(),
        notes.names("r1"),
        notes.labels(),
        notes.ignored(),
    )


# ---------------------------------------------------------------------- k-means
def reference_centroids(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Plain-loop unit centroids of each group."""
    centers = np.zeros((k, x.shape[1]))
    for row, group in zip(x, labels, strict=True):
        centers[group] += row
    for group in range(k):
        centers[group] /= np.linalg.norm(centers[group])
    return centers


def test_kmeans_ends_at_a_lloyd_fixed_point() -> None:
    """Every row is nearest (cosine) to its own group's centroid, computed by a plain loop."""
    x = normalize_rows(np.random.default_rng(3).normal(size=(120, 8)))
    labels = spherical_kmeans(x, 4, seed=1)
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3]
    centers = reference_centroids(x, labels, 4)
    for row, group in zip(x, labels, strict=True):
        similarities = [float(row @ c) for c in centers]
        assert similarities[group] == pytest.approx(max(similarities), abs=1e-12)


def test_kmeans_finds_the_best_two_way_partition_of_a_small_set() -> None:
    """Brute force over every 2-partition of 9 points: k-means reaches the minimum inertia."""
    rng = np.random.default_rng(5)
    x = normalize_rows(
        np.concatenate(
            [
                rng.normal(size=(5, 3)) + np.array([4, 0, 0]),
                rng.normal(size=(4, 3)) + np.array([0, 4, 0]),
            ]
        )
    )

    def inertia(labels: tuple[int, ...]) -> float:
        lab = np.array(labels)
        centers = reference_centroids(x, lab, 2)
        return sum(float(np.sum((r - centers[g]) ** 2)) for r, g in zip(x, lab, strict=True))

    best = min(
        inertia(labels)
        for labels in itertools.product((0, 1), repeat=len(x))
        if 0 < sum(labels) < len(x)
    )
    found = spherical_kmeans(x, 2, seed=0)
    assert inertia(tuple(found.tolist())) == pytest.approx(best, rel=1e-12)


def test_kmeans_is_deterministic_and_keeps_every_group_non_empty() -> None:
    x = np.random.default_rng(0).normal(size=(60, 5))
    x[:50] = x[0]  # 50 duplicates and 10 distinct rows: 6 groups still all non-empty
    first = spherical_kmeans(x, 6, seed=4)
    assert np.array_equal(first, spherical_kmeans(x, 6, seed=4))
    assert np.bincount(first, minlength=6).min() > 0


def test_kmeans_on_a_sample_assigns_every_row() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(size=(300, 4)) + 5, rng.normal(size=(200, 4)) - 5])
    labels = spherical_kmeans(x, 2, seed=0, fit_max=50)
    assert labels.shape == (500,)
    assert len(set(labels[:300].tolist())) == 1 and len(set(labels[300:].tolist())) == 1
    assert labels[0] != labels[-1]


def test_kmeans_refuses_too_few_distinct_rows() -> None:
    x = np.ones((10, 4))
    x[5:] = -1
    with pytest.raises(InvalidSettingError, match="only 2 different feature vectors"):
        spherical_kmeans(x, 3)


# ---------------------------------------------------------------------- split
def test_split_finds_the_sub_groups(catalog: Catalog) -> None:
    notes = Annotations(catalog)
    notes.name_cluster("r1", 0, "Animals")
    plan = notes.split_cluster("r1", 0, parts=3)
    groups = truth_groups()
    assert plan.sizes == list(SUBGROUP_SIZES)
    assert plan.clusters == (0, 3, 4)  # new indices start at the head's C = 3
    assert [set(ids.tolist()) for ids in plan.image_ids] == groups
    after = ResultStore(catalog).load("r1")
    clusters = after.cluster_of()
    assert {i for i, c in clusters.items() if c == 0} == groups[0]
    assert {i for i, c in clusters.items() if c == 3} == groups[1]
    assert {i for i, c in clusters.items() if c == 4} == groups[2]
    # The model's outputs are left alone.
    _, probs, feats = designed_run()
    assert np.array_equal(after.probabilities, probs) and np.array_equal(after.features, feats)
    assert notes.names("r1") == {0: "Animals"}  # the kept part keeps the name, new ones unnamed
    summaries = {s.cluster: s for s in ResultStore(catalog).summaries("r1")}
    assert {c: s.size for c, s in summaries.items()} == {0: 12, 1: 6, 2: 4, 3: 8, 4: 5}
    assert summaries[3].mean_confidence == pytest.approx(0.8)
    assert notes.history()[-1][1] == "split cluster 0 into 3 parts (12+8+5)"


def test_split_leaves_ignored_images_and_numbers_after_every_used_index(
    catalog: Catalog,
) -> None:
    notes = Annotations(catalog)
    groups = truth_groups()
    smallest = sorted(groups[2])
    notes.set_ignored(smallest[:3])  # 2 of the 5 left: still a part of its own
    notes.name_cluster("r1", 7, "Later")  # a name past C: new indices go past it too
    plan = notes.split_cluster("r1", 0, parts=3)
    assert plan.clusters == (0, 8, 9)
    assert plan.sizes == [12, 8, 2]
    clusters = ResultStore(catalog).load("r1").cluster_of()
    assert all(clusters[i] == 0 for i in smallest[:3])
    second = notes.split_cluster("r1", 8, parts=2)
    assert second.clusters[0] == 8 and second.clusters[1] == 10


def test_plan_then_apply_equals_split_and_is_deterministic(catalog: Catalog) -> None:
    notes = Annotations(catalog)
    plan = notes.plan_split("r1", 0, parts=2, seed=3)
    again = plan_split(ResultStore(catalog), "r1", 0, 2, set(), seed=3)
    assert plan.clusters == again.clusters
    assert all(np.array_equal(a, b) for a, b in zip(plan.image_ids, again.image_ids, strict=True))
    assert notes.history() == []  # planning changes nothing
    notes.apply_split(plan)
    moved = ResultStore(catalog).load("r1").cluster_of()
    assert {i for i, c in moved.items() if c == C} == set(plan.image_ids[1].tolist())


def test_undo_and_redo_restore_exactly(catalog: Catalog) -> None:
    notes = Annotations(catalog)
    notes.name_cluster("r1", 0, "Animals")
    notes.label([1], "Pets")  # an existing label is kept by label=True
    before = state(catalog)
    history = len(notes.history())
    notes.split_cluster("r1", 0, parts=3, names=["Cats", None, "Birds"], label=True)
    after = state(catalog)
    assert len(notes.history()) == history + 1
    assert after[1] == {0: "Cats", 4: "Birds"} | {3: "Cluster 3"}
    groups = truth_groups()
    expected_labels = {i: "Cats" for i in groups[0]} | {i: "Cluster 3" for i in groups[1]}
    expected_labels |= {i: "Birds" for i in groups[2]}
    expected_labels[1] = "Pets"
    assert after[2] == expected_labels
    assert "split" in (notes.undo() or "")
    assert state(catalog) == before
    assert "split" in (notes.redo() or "")
    assert state(catalog) == after
    notes.undo()
    assert state(catalog) == before


def test_a_part_may_merge_into_another_cluster_by_name(catalog: Catalog) -> None:
    notes = Annotations(catalog)
    notes.name_cluster("r1", 1, "Dogs")
    notes.split_cluster("r1", 0, parts=2, names=[None, "Dogs"])
    assert notes.names("r1") == {1: "Dogs", 3: "Dogs"}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"run_id": "nope"}, RunNotFoundError, "no assignments"),
        ({"cluster": 5}, InvalidSettingError, "no images in cluster 5"),
        ({"parts": 1}, InvalidSettingError, "2..50 parts"),
        ({"parts": 51}, InvalidSettingError, "2..50 parts"),
        ({"cluster": 2, "parts": 5}, InvalidSettingError, "too few to split into 5"),
        ({"names": ["A"]}, InvalidSettingError, "give 2 names"),
        ({"names": ["A", "A"]}, InvalidSettingError, "same name"),
        ({"names": [None, "   "], "label": True}, InvalidSettingError, "same name"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    catalog: Catalog, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    notes = Annotations(catalog)
    notes.name_cluster("r1", 0, "Cluster 3")  # label=True would name part 1 "Cluster 3" too
    before = state(catalog)
    arguments: dict[str, object] = {"run_id": "r1", "cluster": 0, "parts": 2} | kwargs
    with pytest.raises(error, match=match):
        notes.split_cluster(**arguments)  # type: ignore[arg-type]
    assert state(catalog) == before


def test_ignored_images_do_not_count_towards_the_parts(catalog: Catalog) -> None:
    notes = Annotations(catalog)
    cluster2 = [i for i, c in state(catalog)[0].items() if c == 2]
    notes.set_ignored(cluster2[:3])
    with pytest.raises(InvalidSettingError, match="1 image"):
        notes.split_cluster("r1", 2, parts=2)


def test_a_stale_plan_is_refused(catalog: Catalog) -> None:
    notes = Annotations(catalog)
    plan = notes.plan_split("r1", 0, parts=2)
    notes.set_ignored([int(plan.image_ids[0][0])])
    with pytest.raises(InvalidSettingError, match="changed since"):
        notes.apply_split(plan)
    notes.undo()
    notes.split_cluster("r1", 1, parts=2)  # takes index 3, the plan's new cluster
    with pytest.raises(InvalidSettingError, match="changed since"):
        notes.apply_split(plan)


def test_refine_maps_classes_onto_split_clusters() -> None:
    """group_targets with indices past C: a named part keeps its index, an unnamed part
    holding most of a group's labels is claimed by it (the head grows to cover both)."""
    clusters = {1: 0, 2: 3, 3: 4, 4: 4}
    mapping = group_targets({2: "Cats", 3: "Birds", 4: "Birds"}, {3: "Cats"}, clusters, 3)
    assert mapping == {"Cats": (3,), "Birds": (4,)}


# ---------------------------------------------------------------------- library, export, CLI
@pytest.fixture
def library(tmp_path: Path) -> tuple[Path, str, str]:
    """A scanned library of N tiny PNGs with a completed run (assignments as designed)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(N):
        Image.new("RGB", (8, 8), (k * 7 % 256, k * 13 % 256, k * 29 % 256)).save(
            photos / f"img{k:02d}.png"
        )
    ws = str(tmp_path / "ws")
    with ImageLibrary.open([photos], ws) as lib:
        lib.scan(8, workers=0)
        ids = np.array([r.id for r in lib.images()], dtype=np.int64)
        assert [r.path.name for r in lib.images()] == [f"img{k:02d}.png" for k in range(N)]
        run = lib.runs.create_run()
        atomic_write_json(run.config_path, {"train": {"clusters": C, "preset": "cpu"}})
        run.write_status("completed")
        _, probs, feats = designed_run()
        ResultStore(lib.catalog).write(run.run_id, ids, probs, feats)
    return photos, ws, run.run_id


def crlc(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main([*args, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


def test_cli_split_name_move_export_undo(
    library: tuple[Path, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, ws, run_id = library
    common = ["--workspace", ws]
    code, out = crlc(["split", str(photos), "0", "--parts", "3", "--dry-run", *common], capsys)
    assert code == 0 and out["applied"] is False
    assert [p["size"] for p in out["parts"]] == list(SUBGROUP_SIZES)
    code, listed = crlc(["clusters", str(photos), *common], capsys)
    assert len(listed["clusters"]) == C  # a dry run changes nothing

    code, out = crlc(
        ["split", str(photos), "0", "--parts", "3", "--names", ",Dogs,", *common], capsys
    )
    assert code == 0 and out["applied"] is True and out["run_id"] == run_id
    assert out["parts"] == [
        {"cluster": 0, "name": None, "size": 12},
        {"cluster": 3, "name": "Dogs", "size": 8},
        {"cluster": 4, "name": None, "size": 5},
    ]
    code, listed = crlc(["clusters", str(photos), *common], capsys)
    sizes = {c["cluster"]: c["size"] for c in listed["clusters"]}
    assert sizes == {0: 12, 1: 6, 2: 4, 3: 8, 4: 5}

    # The new clusters are real clusters for the other commands too.
    code, out = crlc(["name", str(photos), "4", "Birds", *common], capsys)
    assert code == 0 and out["cluster"] == 4
    stray = photos / "img00.png"  # image 1, which is in cluster 0, 3 or 4
    code, out = crlc(["move", str(photos), str(stray), "--to", "4", *common], capsys)
    assert code == 0 and out["class"] == "Birds"

    dest = tmp_path / "sorted"
    code, exported = crlc(["export", str(photos), str(dest), *common], capsys)
    assert code == 0 and exported["files"] == N
    groups = truth_groups()
    folder_of = {0: "Cluster 0", 1: "Cluster 1", 2: "Cluster 2"}
    expected: dict[str, set[str]] = {}
    for image, cluster in enumerate(designed_run()[0].tolist(), start=1):
        folder = folder_of[cluster]
        if cluster == 0:
            folder = (
                "Cluster 0" if image in groups[0] else "Dogs" if image in groups[1] else "Birds"
            )
        if image == 1:
            folder = "Birds"  # moved = labelled with the cluster's name
        expected.setdefault(folder, set()).add(f"img{image - 1:02d}.png")
    found = {d.name: {f.name for f in d.iterdir()} for d in dest.iterdir() if d.is_dir()}
    assert found == expected

    for _ in range(3):  # move, name, split
        code, out = crlc(["undo", str(photos), *common], capsys)
        assert code == 0 and out["undone"]
    assert "split" in out["undone"]
    code, listed = crlc(["clusters", str(photos), *common], capsys)
    assert {c["cluster"]: c["size"] for c in listed["clusters"]} == {0: 25, 1: 6, 2: 4}
    code, out = crlc(["name", str(photos), "4", "Birds", *common], capsys)
    assert code == 1 and "not 4" in out["error"]["message"]


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (["0", "--parts", "1"], "usage"),
        (["9"], "invalid_setting"),
        (["zero"], "invalid_setting"),
        (["0", "--names", "A"], "invalid_setting"),
        (["0", "--run", "20000101-000000-dead"], "run_not_found"),
    ],
)
def test_cli_split_errors(
    args: list[str], kind: str, library: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, ws, _ = library
    code, out = crlc(["split", str(photos), *args, "--workspace", ws], capsys)
    assert code == (2 if kind == "usage" else 1) and out["error"]["type"] == kind
