"""Groups: the group view of a run, names that follow pictures, refine targets, the loss."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crlc_engine.library import Catalog
from crlc_engine.library.catalog import MIGRATIONS
from crlc_engine.losses.group_cross_entropy import group_cross_entropy
from crlc_engine.pipeline.refine import group_targets
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore, RunAssignments
from crlc_engine.results.groups import (
    ATTACH_SHARE,
    GroupCheck,
    GroupStore,
    attach_names,
    build_group_view,
    check_groups,
    named_key,
    unnamed_key,
)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = Catalog(tmp_path / "catalog.sqlite")
    roots = cat.ensure_roots([tmp_path])
    cat.begin()
    for k in range(10):
        cat.insert_image(roots[tmp_path], f"img{k}.jpg", 10, 10)
    cat.commit()
    return cat


def assignments(clusters: list[int], head: int = 4) -> RunAssignments:
    """Ids 1..N; each picture 0.7 on its cluster (when it has a column), 0.1 elsewhere."""
    n = len(clusters)
    probs = np.full((n, head), 0.3 / (head - 1), dtype=np.float32)
    for k, c in enumerate(clusters):
        if c < head:
            probs[k, c] = 0.7
    conf = probs.max(axis=1)
    return RunAssignments(
        np.arange(1, n + 1), np.array(clusters), conf, probs, np.eye(n, 3, dtype=np.float32)
    )


def write_run(store: ResultStore, run: str, clusters: list[int], head: int = 4) -> None:
    data = assignments(clusters, head)
    store.write(run, data.image_ids, data.probabilities, data.features)


def attach_old_to_new(
    catalog: Catalog,
    old: list[int],
    new: list[int],
    naming: dict[int, str] | Callable[[Annotations], object],
) -> tuple[ResultStore, GroupStore, Annotations, dict[int, str]]:
    """Run "old" (clusters ``old``), named by ``naming`` (cluster -> name, given in order,
    or a function of the annotations), then run "new" (clusters ``new``) with the groups of
    "old" attached: (results, groups, annotations, the names attached)."""
    store, groups = ResultStore(catalog), GroupStore(catalog)
    write_run(store, "old", old)
    notes = Annotations(catalog)
    if callable(naming):
        naming(notes)
    else:
        for cluster, name in naming.items():
            notes.name_cluster("old", cluster, name)
    write_run(store, "new", new)
    return store, groups, notes, groups.attach("new", groups.reference("old"), "old")


# ------------------------------------------------------------------------ the group view
def test_a_merge_is_one_group_with_summed_probabilities_and_labels_win() -> None:
    data = assignments([0, 0, 1, 1, 2, 2, 3, 3])
    view = build_group_view(
        "r",
        data,
        names={0: "Dog", 1: "Dog", 2: "Cat"},
        labels={3: "Cat", 8: "Bird"},  # 3 sits in a Dog cluster; 8 in unnamed cluster 3
        ignored={6},
        colours={"Dog": 5, "Cat": 2},
    )
    keys = [g.key for g in view.groups]
    assert keys == [named_key("Dog"), named_key("Cat"), unnamed_key(3), named_key("Bird")]
    dog, cat, unnamed, bird = view.groups
    assert (dog.clusters, dog.size, dog.labelled) == ((0, 1), 3, 0)  # image 3 left for Cat
    assert (cat.clusters, sorted(view.members(cat.key)[0].tolist())) == ((2,), [3, 5])
    assert cat.labelled == 1 and unnamed.size == 1 and unnamed.title == "Cluster 3"
    assert (bird.clusters, bird.size, bird.title) == ((), 1, "Bird")
    assert view.key_of(6) is None and view.key_of(3) == cat.key  # ignored; label wins
    assert view.probabilities[0, 0] == pytest.approx(0.8)  # 0.7 + 0.1: one merged number
    ranked = view.ranked(1)
    assert ranked[0][0].key == dog.key and ranked[0][1] == pytest.approx(0.8)
    assert (dog.colour, cat.colour) == (5, 2) and len({g.colour for g in view.groups}) == 4


def test_a_split_cluster_has_no_model_column_and_keeps_its_confidence() -> None:
    data = assignments([0, 0, 5, 5], head=2)  # 5: made by a split
    data.confidences[2:] = 0.9
    view = build_group_view("r", data, names={5: "Part"}, labels={})
    part = view.group(named_key("Part"))
    assert part.size == 2 and view.confidences[2] == pytest.approx(0.9)


def test_flags_come_from_the_checks() -> None:
    data = assignments([0, 1])
    checks = [GroupCheck("Dog", 10, 6, "old"), GroupCheck("Cat", 10, 9, "old")]
    view = build_group_view("r", data, {0: "Dog", 1: "Cat"}, {}, checks=checks)
    assert "6 of its 10 pictures" in view.group(named_key("Dog")).flags[0]
    assert view.group(named_key("Cat")).flags == ()


# ------------------------------------------------------------------------ naming a new run
def test_names_follow_pictures_through_a_permutation_and_a_split_group() -> None:
    reference = {1: "Dog", 2: "Dog", 3: "Dog", 4: "Dog", 5: "Cat", 6: "Cat", 7: None, 8: None}
    new = {1: 3, 2: 3, 3: 0, 4: 0, 5: 2, 6: 2, 7: 1, 8: 1, 9: 1}  # 9: a new picture
    assert attach_names(reference, {}, new) == {3: "Dog", 0: "Dog", 2: "Cat"}


def test_a_cluster_needs_the_share_and_matching_nothing_stays_unnamed() -> None:
    reference = {i: "Dog" for i in range(1, 5)} | {i: "Cat" for i in range(5, 11)}
    new = dict.fromkeys(range(1, 11), 0)  # 4 Dogs, 6 Cats in one cluster
    assert attach_names(reference, {}, new) == {0: "Cat"}
    assert attach_names(reference, {}, new, share=0.7) == {}
    assert ATTACH_SHARE == 0.6
    assert attach_names({1: None, 2: None}, {}, {1: 0, 2: 0}) == {}


def test_labels_are_origins_first_and_name_where_they_went() -> None:
    reference = {i: None for i in range(1, 11)}  # an unnamed parent
    labels = {1: "Disc", 2: "Disc", 3: "Bar"}
    new = {1: 0, 2: 0, 4: 0, 5: 0, 3: 1, 6: 1, 7: 1, 8: 2}
    assert attach_names(reference, labels, new) == {0: "Disc", 1: "Bar"}
    # a label moved into a cluster full of another named group does not rename it
    reference = dict.fromkeys(range(1, 6), "Cat")
    assert attach_names(reference, {1: "Dog"}, dict.fromkeys(range(1, 6), 0)) == {0: "Cat"}
    # one label does not name a cluster whose other pictures came from named groups
    reference = {i: "Dog" for i in range(1, 41)} | {i: None for i in range(41, 82)}
    assert attach_names(reference, {81: "Bird"}, dict.fromkeys(range(1, 82), 0)) == {}


def test_new_pictures_count_against_a_name() -> None:
    reference = {1: "Dog", 2: "Dog", 3: "Cat", 4: "Cat"}
    new = {1: 0, 2: 0} | dict.fromkeys(range(100, 196), 0) | {3: 1, 4: 1}
    assert attach_names(reference, {}, new) == {1: "Cat"}  # 2 Dogs among 96 new: unnamed


def test_checks_count_the_pictures_that_stayed() -> None:
    reference = {1: "Dog", 2: "Dog", 3: "Dog", 4: "Cat", 5: None}
    new = {1: 0, 2: 0, 3: 1, 4: 1, 5: 1}
    checks = check_groups(reference, "old", {}, new, {0: "Dog", 1: "Cat"})
    assert [(c.name, c.members, c.kept) for c in checks] == [("Cat", 1, 1), ("Dog", 3, 2)]
    assert checks[1].flagged and not checks[0].flagged  # Dog kept 2 of 3: under 80 %


def test_attach_stores_names_checks_and_colours(catalog: Catalog) -> None:
    store, groups, _, names = attach_old_to_new(
        catalog,
        [0, 0, 0, 1, 1, 2, 2, 2, 3, 3],
        [2, 2, 2, 0, 0, 1, 1, 1, 3, 3],
        {0: "Dog", 2: "Dog", 1: "Cat"},
    )
    assert names == {2: "Dog", 1: "Dog", 0: "Cat"} == store.names("new")
    assert {c.name: (c.members, c.kept) for c in groups.checks("new")} == {
        "Dog": (6, 6),
        "Cat": (2, 2),
    }
    assert set(groups.colours()) == {"Dog", "Cat"}
    assert store.names("old") == {0: "Dog", 2: "Dog", 1: "Cat"}  # each run its own names


# ------------------------------------------------------------------------ corrections
def test_rename_a_group_everywhere_and_undo_exactly(catalog: Catalog) -> None:
    store = ResultStore(catalog)
    write_run(store, "a", [0, 0, 1, 1, 2, 2, 3, 3, 3, 3])
    write_run(store, "b", [1, 1, 0, 0, 2, 2, 3, 3, 3, 3])
    notes = Annotations(catalog)
    notes.name_cluster("a", 0, "Dog")
    notes.name_cluster("b", 1, "Dog")
    notes.label([9], "Dog")
    before = (store.names("a"), store.names("b"), notes.labels())
    notes.rename_group("Dog", "Puppy")
    assert store.names("a") == {0: "Puppy"} and store.names("b") == {1: "Puppy"}
    assert notes.labels() == {9: "Puppy"}
    notes.undo()
    assert (store.names("a"), store.names("b"), notes.labels()) == before
    notes.redo()
    assert notes.labels() == {9: "Puppy"}
    with pytest.raises(Exception, match="no group"):
        notes.rename_group("Nothing", "X")


def test_move_to_a_group_labels_and_to_an_unnamed_cluster_names_it(catalog: Catalog) -> None:
    write_run(ResultStore(catalog), "r", [0, 0, 1, 1, 2, 2, 3, 3, 3, 3])
    notes = Annotations(catalog)
    notes.name_cluster("r", 0, "Dog")
    assert notes.move_to_group("r", [5], named_key("Dog")) == "Dog"
    assert notes.move_to_group("r", [6], unnamed_key(3)) == "Cluster 3"
    view = GroupStore(catalog).view("r")
    assert view.key_of(5) == named_key("Dog") and view.key_of(6) == named_key("Cluster 3")
    assert view.group(named_key("Dog")).size == 3


def test_a_cluster_n_group_elsewhere_never_takes_an_unnamed_cluster_n(catalog: Catalog) -> None:
    _, groups, notes, _ = attach_old_to_new(
        catalog,
        [0, 0, 1, 1, 2, 2, 3, 3, 3, 3],
        [2, 2, 1, 1, 3, 3, 2, 2, 2, 2],  # "Cluster 3" went to cluster 2
        lambda notes: notes.move_to_group("old", [1], unnamed_key(3)),  # names "Cluster 3"
    )
    view = groups.view("new")
    titles = [g.title for g in view.groups]
    assert "Cluster 3" in titles and "Cluster 3 (2)" in titles  # two rows, two titles
    assert view.group(named_key("Cluster 3")).clusters == (2,)
    # moving into the unnamed cluster 3 names it apart, not into the other group
    assert notes.move_to_group("new", [5], unnamed_key(3)) == "Cluster 3 (2)"
    assert groups.view("new").group(named_key("Cluster 3")).size == 6


def test_a_group_that_lost_every_picture_keeps_a_flagged_row(catalog: Catalog) -> None:
    _, groups, notes, _ = attach_old_to_new(
        catalog,
        [0, 0, 1, 1, 2, 2, 3, 3, 3, 3],
        [1, 2, 1, 1, 2, 2, 3, 3, 3, 3],  # the Dogs spread out
        {0: "Dog", 1: "Cat"},
    )
    dog = groups.view("new").group(named_key("Dog"))
    assert dog is not None and dog.size == 0 and dog.clusters == ()
    assert dog.flags and "only 0 of its 2 pictures" in dog.flags[0]
    notes.rename_group("Dog", "Puppy")  # the warning follows a rename, and its undo
    assert groups.view("new").group(named_key("Puppy")).flags
    notes.undo()
    assert groups.view("new").group(named_key("Dog")).flags
    notes.rename_group("Dog", "Cat")  # a merge keeps both groups' checks apart
    assert {c.name for c in groups.checks("new")} == {"Dog", "Cat"}
    notes.undo()
    assert {c.name for c in groups.checks("new")} == {"Dog", "Cat"}


def test_an_undone_name_is_free_again(catalog: Catalog) -> None:
    write_run(ResultStore(catalog), "r", [0, 0, 1, 1, 2, 2, 3, 3, 3, 3])
    notes = Annotations(catalog)
    notes.name_cluster("r", 0, "Dog")
    notes.name_cluster("r", 1, "Dog")
    notes.name_cluster("r", 2, "Dog")
    assert notes.separate_clusters("r", "Dog", [0, 1, 2]) == ["Dog", "Dog 2", "Dog 3"]
    notes.undo()
    assert notes.separate_clusters("r", "Dog", [0, 1, 2]) == ["Dog", "Dog 2", "Dog 3"]


# ------------------------------------------------------------------------ refine targets
def test_a_labelled_merge_is_one_class_over_all_its_clusters() -> None:
    clusters = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 3}
    names = {0: "Cats", 1: "Cats", 3: "Dogs"}  # Dogs: named, but without labels
    labels = {1: "Cats", 5: "Birds", 6: "Fish"}
    targets = group_targets(labels, names, clusters, num_clusters=4)
    assert targets["Cats"] == (0, 1)  # one class over both clusters of the merge
    assert targets["Birds"] == (2,)  # the free unnamed cluster holding its label
    assert targets["Fish"] == (4,)  # cluster 3 is named Dogs: the head grows
    assert "Dogs" not in targets  # groups without labels are not forced


def test_group_cross_entropy_against_references() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=gen)
    one = torch.tensor([0, 3, 4, 1, 1, 2])
    allowed = F.one_hot(one, 5).bool()
    assert torch.allclose(group_cross_entropy(logits, allowed), F.cross_entropy(logits, one))
    allowed[0, 2] = allowed[3, 4] = allowed[3, 0] = True
    expected = 0.0
    for row in range(6):
        probs = torch.softmax(logits[row], dim=0)
        expected += -float(torch.log(sum(probs[c] for c in range(5) if allowed[row, c])))
    assert float(group_cross_entropy(logits, allowed)) == pytest.approx(expected / 6, rel=1e-5)


def test_the_v3_migration_gives_existing_names_their_groups(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](db)
    MIGRATIONS[1](db)
    db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '2')")
    db.execute("INSERT INTO roots(id, path) VALUES (1, '/p')")
    db.execute(
        "INSERT INTO images(root_id, rel_path, size, mtime_ns, status) VALUES (1,'a',1,1,'ok')"
    )
    db.execute("INSERT INTO cluster_names VALUES ('r', 0, 'Dog'), ('r', 1, 'Cat'), ('s', 4, 'Dog')")
    db.execute("INSERT INTO labels VALUES (1, 'Bird')")
    db.close()
    catalog = Catalog(path, read_only=True)  # a reading command updates it once, then reads
    assert GroupStore(catalog).colours() == {"Dog": 0, "Cat": 1, "Bird": 2}
    assert catalog.schema_version == 3 and catalog.catalog_id is not None
    catalog.close()
