"""LibrarySession: the app's Qt-free model of an open library (fake run, no training)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.session import LibrarySession
from crlc_engine.errors import RunNotFoundError
from crlc_engine.library import ImageLibrary
from crlc_engine.results import ResultStore


@pytest.fixture
def session(shapes_folder: Path, tmp_path: Path) -> Iterator[LibrarySession]:
    ws = tmp_path / "ws"
    with ImageLibrary.open([shapes_folder], ws) as library:
        library.scan(16, workers=0, thumbnails=True)
        records = library.images()
        run = library.runs.create_run()
        run.config_path.write_text('{"train": {"clusters": 3}}')
        run.write_status("completed")
        n = len(records)
        rng = np.random.default_rng(0)
        probs = rng.dirichlet(np.ones(3), size=n).astype(np.float32)
        feats = rng.normal(size=(n, 8)).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        ResultStore(library.catalog).write(
            run.run_id, np.array([r.id for r in records]), probs, feats
        )
    s = LibrarySession([shapes_folder], ws)
    yield s
    s.close()


def test_clusters_images_and_detail(session: LibrarySession) -> None:
    assert session.has_results and session.run_id in session.runs()
    clusters = session.clusters()
    assert sum(c.size for c in clusters) == 48
    first = clusters[0].cluster
    images = session.images_of(first)
    assert list(images.confidences) == sorted(images.confidences, reverse=True)
    low = session.images_of(first, low_confidence_first=True)
    assert set(low.image_ids.tolist()) == set(images.image_ids.tolist())
    assert list(low.confidences) == sorted(low.confidences)
    detail = session.detail(int(images.image_ids[0]))
    assert detail.cluster == first and detail.path.is_file()
    assert detail.probabilities.shape == (3,) and detail.confidence == detail.probabilities.max()
    assert session.thumbnail_path(detail.image_id).is_file()


def test_neighbors_exclude_self_and_are_sorted(session: LibrarySession) -> None:
    image = int(session.images_of(session.clusters()[0].cluster).image_ids[0])
    found = session.neighbors(image, k=5)
    assert len(found) == 5 and image not in [i for i, _ in found]
    sims = [s for _, s in found]
    assert sims == sorted(sims, reverse=True)


def test_corrections_are_undoable(session: LibrarySession) -> None:
    cluster = session.clusters()[0].cluster
    ids = [int(i) for i in session.images_of(cluster).image_ids[:2]]
    session.rename(cluster, "Beach")
    assert session.cluster_name(cluster) == "Beach"
    session.move(ids[:1], (cluster + 1) % 3)
    assert session.detail(ids[0]).label == f"Cluster {(cluster + 1) % 3}"
    session.ignore(ids[1:])
    assert ids[1] not in session.images_of(cluster).image_ids
    assert session.undo() is not None  # ignore
    assert ids[1] in session.images_of(cluster).image_ids
    session.undo()  # move
    session.undo()  # rename
    assert session.cluster_name(cluster) == f"Cluster {cluster}"
    assert session.redo() is not None
    assert session.cluster_name(cluster) == "Beach"


def test_no_run_yet(shapes_folder: Path, tmp_path: Path) -> None:
    s = LibrarySession([shapes_folder], tmp_path / "empty-ws")
    try:
        assert not s.has_results and s.clusters() == []
        with pytest.raises(RunNotFoundError):
            s.rename(0, "x")
    finally:
        s.close()
