"""Labels, names, ignores with undo/redo; cluster summaries (groups: test_groups.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.library import Catalog
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.results.groups import default_cluster_name


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


def test_summaries(catalog: Catalog) -> None:
    store = ResultStore(catalog)
    write_run(store, "r", [0, 0, 1, 1, 1, 2, 2, 2])
    store.set_name("r", 1, "B")
    summary = {s.cluster: s for s in store.summaries("r", top=2, exclude={8})}
    assert summary[1].name == "B" and summary[1].size == 3
    assert summary[2].size == 2  # image 8 excluded
    assert summary[0].mean_confidence == pytest.approx(0.8)
    assert summary[0].top_image_ids == [1, 2]
