"""Labels, names, ignores with undo/redo; Hungarian name carry-over; class -> cluster mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crlc_engine.annotations import Annotations, default_cluster_name
from crlc_engine.errors import InvalidSettingError
from crlc_engine.jobs import class_to_cluster
from crlc_engine.library import Catalog
from crlc_engine.results import ResultStore, carry_over_names, match_clusters


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = Catalog(tmp_path / "catalog.sqlite")
    roots = cat.ensure_roots([tmp_path])
    cat.begin()
    for k in range(8):
        cat.insert_image(roots[tmp_path], f"img{k}.jpg", 10, 10)
    cat.commit()
    return cat


def write_run(store: ResultStore, run: str, clusters: list[int], c: int = 3) -> None:
    probs = np.full((len(clusters), c), 0.1, dtype=np.float32)
    probs[np.arange(len(clusters)), clusters] = 0.8
    feats = np.eye(len(clusters), 4, dtype=np.float32)
    store.write(run, np.arange(1, len(clusters) + 1), probs, feats)


def test_label_undo_redo_is_exact(catalog: Catalog) -> None:
    notes = Annotations(catalog)
    notes.label([1, 2], "Beach")
    notes.label([2, 3], "Mountains")
    assert notes.labels() == {1: "Beach", 2: "Mountains", 3: "Mountains"}
    assert notes.undo() == "label 2 image(s) as 'Mountains'"
    assert notes.labels() == {1: "Beach", 2: "Beach"}
    assert notes.undo() is not None
    assert notes.labels() == {}
    assert notes.undo() is None
    assert notes.redo() is not None
    assert notes.labels() == {1: "Beach", 2: "Beach"}
    notes.set_ignored([4])  # a new change drops the redo stack
    assert notes.redo() is None
    assert notes.ignored() == {4}
    notes.undo()
    assert notes.ignored() == set() and notes.labels() == {1: "Beach", 2: "Beach"}


def test_move_names_an_unnamed_cluster_and_undo_reverts_both(catalog: Catalog) -> None:
    store = ResultStore(catalog)
    write_run(store, "r1", [0, 0, 1, 1, 2, 2, 2, 0])
    notes = Annotations(catalog)
    assert notes.move_to_cluster("r1", [5], 1) == default_cluster_name(1) == "Cluster 1"
    assert notes.names("r1") == {1: "Cluster 1"} and notes.labels() == {5: "Cluster 1"}
    notes.name_cluster("r1", 0, "People")
    assert notes.move_to_cluster("r1", [3], 0) == "People"
    notes.undo()
    notes.undo()
    notes.undo()
    assert notes.names("r1") == {} and notes.labels() == {}


def test_names_are_validated(catalog: Catalog) -> None:
    with pytest.raises(InvalidSettingError, match="empty"):
        Annotations(catalog).label([1], "   ")


def test_match_clusters_is_hungarian_on_shared_images() -> None:
    old = {1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 2}
    new = {1: 2, 2: 2, 3: 1, 4: 0, 5: 0, 6: 1, 9: 0}  # image 9 is new
    # overlaps: new2-old0 = 2, new1-old0 = 1, new0-old1 = 2, new1-old2 = 1
    assert match_clusters(old, new) == {2: 0, 0: 1, 1: 2}
    assert match_clusters(old, {}) == {}


def test_names_carry_over_to_a_permuted_retraining(catalog: Catalog) -> None:
    store = ResultStore(catalog)
    write_run(store, "old", [0, 0, 0, 1, 1, 2, 2, 2])
    store.set_name("old", 0, "Cats")
    store.set_name("old", 2, "Dogs")
    write_run(store, "new", [2, 2, 2, 0, 0, 1, 1, 1])  # same groups, permuted
    assert carry_over_names(store, "old", "new") == {2: "Cats", 1: "Dogs"}
    assert store.names("new") == {2: "Cats", 1: "Dogs"}


def test_merged_name_reaches_every_matching_cluster(catalog: Catalog) -> None:
    store = ResultStore(catalog)
    write_run(store, "old", [0, 0, 1, 1, 2, 2, 2, 2])
    store.set_name("old", 0, "Pets")
    store.set_name("old", 1, "Pets")  # merged by naming
    write_run(store, "new", [1, 1, 0, 0, 2, 2, 2, 2])
    assert carry_over_names(store, "old", "new") == {1: "Pets", 0: "Pets"}


def test_class_to_cluster_mapping_rules() -> None:
    clusters = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2}
    names = {0: "Cats", 1: "Cats"}  # two clusters merged under one name
    labels = {1: "Cats", 3: "Cats", 5: "Dogs", 4: "Birds"}
    mapping = class_to_cluster(labels, names, clusters, num_clusters=3)
    assert mapping["Cats"] == 0  # the lowest cluster carrying the name
    assert mapping["Dogs"] == 2  # where its labelled image is
    assert mapping["Birds"] == 3  # cluster 1 is named Cats: no free cluster, the head grows
    assert len(set(mapping.values())) == len(mapping)


def test_summaries(catalog: Catalog) -> None:
    store = ResultStore(catalog)
    write_run(store, "r", [0, 0, 1, 1, 1, 2, 2, 2])
    store.set_name("r", 1, "B")
    summary = {s.cluster: s for s in store.summaries("r", top=2, exclude={8})}
    assert summary[1].name == "B" and summary[1].size == 3
    assert summary[2].size == 2  # image 8 excluded
    assert summary[0].mean_confidence == pytest.approx(0.8)
    assert summary[0].top_image_ids == [1, 2]
