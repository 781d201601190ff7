"""LibrarySession: the app's Qt-free model of an open library (fake run, no training)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.core.session import LibrarySession
from crlc_engine.core.errors import RunNotFoundError
from crlc_engine.library import ImageLibrary
from crlc_engine.results.assignments import ResultStore


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


def test_groups_images_and_detail(session: LibrarySession) -> None:
    assert session.has_results and session.run_id in session.runs()
    groups = session.groups()
    assert sum(g.size for g in groups) == 48
    first = groups[0].key
    images = session.images_of(first)
    assert list(images.confidences) == sorted(images.confidences, reverse=True)
    low = session.images_of(first, low_confidence_first=True)
    assert set(low.image_ids.tolist()) == set(images.image_ids.tolist())
    assert list(low.confidences) == sorted(low.confidences)
    detail = session.detail(int(images.image_ids[0]))
    assert detail.group == first and detail.path.is_file()
    lines = session.top_groups(detail, top=3)
    assert len(lines) == 3 and sum(line.probability or 0 for line in lines) == pytest.approx(1)
    assert detail.confidence == pytest.approx(lines[0].probability)
    assert session.thumbnail_path(detail.image_id).is_file()


def test_neighbors_exclude_self_and_are_sorted(session: LibrarySession) -> None:
    image = int(session.images_of(session.groups()[0].key).image_ids[0])
    found = session.neighbors(image, k=5)
    assert len(found) == 5 and image not in [i for i, _ in found]
    sims = [s for _, s in found]
    assert sims == sorted(sims, reverse=True)


def test_corrections_show_at_once_and_are_undoable(session: LibrarySession) -> None:
    first, second = (g.key for g in session.groups()[:2])
    sizes = {g.key: g.size for g in session.groups()}
    ids = [int(i) for i in session.images_of(first).image_ids[:2]]
    beach = session.rename(first, "Beach")
    assert beach == "group:Beach" and session.group_name(beach) == "Beach"
    session.move(ids[:1], second)  # an unnamed cluster: named "Cluster n" first
    target = f"group:Cluster {second.split(':')[1]}"
    assert session.detail(ids[0]).label == session.group_name(target)
    assert ids[0] in session.images_of(target).image_ids  # in its new group at once
    assert ids[0] not in session.images_of(beach).image_ids  # and out of the old one
    assert session.group(beach).size == sizes[first] - 1  # type: ignore[union-attr]
    assert session.group(target).size == sizes[second] + 1  # type: ignore[union-attr]
    assert session.group(target).labelled == 1  # type: ignore[union-attr]
    session.ignore(ids[1:])
    assert ids[1] not in session.images_of(beach).image_ids
    assert session.undo() is not None  # ignore
    assert ids[1] in session.images_of(beach).image_ids
    session.undo()  # move
    assert ids[0] in session.images_of(beach).image_ids
    session.undo()  # rename
    assert session.group(beach) is None and session.group(first) is not None
    assert session.redo() is not None
    assert session.group_name(beach) == "Beach"


def test_a_merge_is_one_group_and_can_be_separated(session: LibrarySession) -> None:
    a, b, c = (g.key for g in session.groups())
    sizes = {g.key: g.size for g in session.groups()}
    session.rename(a, "Beach")
    session.rename(b, "Beach")  # one name on two clusters: one group
    keys = [g.key for g in session.groups()]
    assert keys == ["group:Beach", c]
    merged = session.group("group:Beach")
    assert merged is not None and merged.size == sizes[a] + sizes[b]
    assert len(merged.clusters) == 2
    image = int(session.images_of("group:Beach").image_ids[0])
    lines = session.top_groups(session.detail(image), top=5)
    assert [line.name for line in lines].count("Beach") == 1  # one line for the merge
    with pytest.raises(Exception, match="separate them first"):
        session.plan_split("group:Beach")
    assert session.separate("group:Beach") == ["Beach", "Beach 2"]
    assert [g.title for g in session.groups()] == ["Beach", "Beach 2", session.group_name(c)]
    session.undo()
    assert [g.key for g in session.groups()] == ["group:Beach", c]


def test_no_run_yet(shapes_folder: Path, tmp_path: Path) -> None:
    s = LibrarySession([shapes_folder], tmp_path / "empty-ws")
    try:
        assert not s.has_results and s.groups() == []
        with pytest.raises(RunNotFoundError):
            s.rename("cluster:0", "x")
    finally:
        s.close()


def _fake_run(library: ImageLibrary, state: str, **files: str) -> str:
    """A run folder in ``state`` with a config and the given extra files (name -> text)."""
    run = library.runs.create_run()
    run.config_path.write_text(
        '{"train": {"clusters": 3, "epochs": 10}, "kind": "train", '
        '"created": "2024-03-12T14:02:00+00:00"}'
    )
    run.write_status(state)
    for name, text in files.items():
        (run.path / name.replace("_", ".")).write_text(text)
    return run.run_id


def test_the_selected_run_and_group_come_back(session: LibrarySession) -> None:
    first = session.run_id
    assert first is not None
    with ImageLibrary.open(session.folders, session.workspace_base) as library:
        records = library.images()
        newer = library.runs.create_run()
        newer.config_path.write_text('{"train": {"clusters": 2}}')
        newer.write_status("completed")
        rng = np.random.default_rng(1)
        ResultStore(library.catalog).write(
            newer.run_id,
            np.array([r.id for r in records]),
            rng.dirichlet(np.ones(2), size=len(records)).astype(np.float32),
            rng.normal(size=(len(records), 8)).astype(np.float32),
        )
    session.reload()
    assert session.run_id == first  # the current run stays, though a newer one exists
    session.remember_view("cluster:2")
    again = LibrarySession(session.folders, session.workspace_base)
    try:  # reopening shows the run shown last, not the newest
        assert again.run_id == first and again.remembered_group() == "cluster:2"
        again.reload(newer.run_id)
        assert again.run_id == newer.run_id
        assert again.remembered_group() is None  # a group of the other run
    finally:
        again.close()
    third = LibrarySession(session.folders, session.workspace_base)
    try:
        assert third.run_id == newer.run_id
        # a remembered run that was deleted falls back to the newest completed one
        (third.library.workspace / "app-view.json").write_text('{"run_id": "gone"}')
        third.run_id = None
        third.reload()
        assert third.run_id == newer.run_id
    finally:
        third.close()


def test_unfinished_runs_need_a_checkpoint_or_an_interruption(session: LibrarySession) -> None:
    library = session.library
    epochs = '{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "partial": true}\n'
    cancelled = _fake_run(library, "cancelled", checkpoint_pt="x", history_jsonl=epochs)
    killed = _fake_run(library, "running")  # killed before its first checkpoint
    _fake_run(library, "failed")  # no checkpoint and not interrupted: nothing to offer
    crashed = _fake_run(library, "running", checkpoint_pt="x")
    runs = session.unfinished_runs()
    assert [r.run_id for r in runs] == [cancelled, killed, crashed]
    assert [r.has_checkpoint for r in runs] == [True, False, True]
    runs = [runs[0], runs[2]]
    first = runs[0]
    assert (first.state, first.epochs_done, first.epochs_total, first.clusters) == (
        "cancelled",
        2,
        10,
        3,
    )
    assert first.busy_pid is None and first.created is not None
    assert "grouping into 3 groups" in first.describe()
    assert "stopped after epoch 2 of 10" in first.describe()
    assert "stopped in epoch 1" in runs[1].describe()


def test_a_run_training_in_another_live_process_is_busy(session: LibrarySession) -> None:
    import os
    import socket
    import subprocess
    import sys

    library = session.library
    run_id = _fake_run(library, "running", checkpoint_pt="x")
    run = library.runs.get(run_id, state=None)
    lock = library.workspace / "lock"
    live = os.getppid()  # a process that exists and is not this one
    run.write_status("running", f"pid {live}")
    lock.write_text(f"pid {live} on {socket.gethostname()}: training, since now\n")
    assert session.unfinished_runs()[0].busy_pid == live
    assert "running in process" in session.unfinished_runs()[0].describe()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.write_status("running", f"pid {dead.pid}")  # crashed: its lock line stays
    lock.write_text(f"pid {dead.pid} on {socket.gethostname()}: training, since now\n")
    assert session.unfinished_runs()[0].busy_pid is None


def test_skipped_files_and_scanned_images(shapes_folder: Path, tmp_path: Path) -> None:
    import shutil

    from app.core.scanned_images import scanned_images

    folder = tmp_path / "photos"
    shutil.copytree(shapes_folder, folder)
    (folder / "broken.png").write_bytes(b"not a picture")
    ws = tmp_path / "ws"
    with ImageLibrary.open([folder], ws) as library:
        library.scan(16, workers=0)
        workspace = library.workspace
    s = LibrarySession([folder], ws)
    try:
        assert [(Path(f.path).name, bool(f.reason)) for f in s.skipped_files()] == [
            ("broken.png", True)
        ]
        shown = s.all_images()
        assert len(shown) == 48 and list(shown.image_ids) == sorted(shown.image_ids)
        read = scanned_images(workspace)
        assert read is not None and list(read.image_ids) == list(shown.image_ids)
        assert read.paths == shown.paths
        assert scanned_images(workspace, known=48) is None  # nothing new: nothing read
        record = s.record(int(shown.image_ids[0]))
        assert record is not None and str(record.path) == shown.paths[0]
    finally:
        s.close()


def test_a_split_is_applied_reloaded_and_undone(session: LibrarySession) -> None:
    first = session.groups()[0]
    members = set(session.images_of(first.key).image_ids.tolist())
    image = next(iter(members))
    session.neighbors(image, k=3)
    index = session._index  # built once per run's features
    plan = session.plan_split(first.key, parts=3)
    assert sorted(plan.sizes, reverse=True) == plan.sizes and sum(plan.sizes) == first.size
    assert session.images_of(first.key).image_ids.size == first.size  # nothing changed
    session.split(plan, [None, "Dunes", None])
    shown_keys = {g.key for g in session.groups()}
    parts = ["group:Dunes" if k == 1 else f"cluster:{c}" for k, c in enumerate(plan.clusters)]
    assert set(parts) <= shown_keys  # the new groups are read at once
    for part, key in zip(plan.image_ids, parts, strict=True):
        shown = session.images_of(key).image_ids
        assert sorted(shown.tolist()) == sorted(part.tolist())
    assert session._index is index  # a split changes no features: same neighbour index
    assert len(session.neighbors(image, k=3)) == 3

    assert session.undo() is not None  # the split: the cached assignments follow
    assert "group:Dunes" not in {g.key for g in session.groups()}
    assert set(session.images_of(first.key).image_ids.tolist()) == members
    assert session.redo() is not None
    assert session.images_of(f"cluster:{plan.new_clusters[1]}").image_ids.size == plan.sizes[2]


def test_a_stale_split_plan_is_refused(session: LibrarySession) -> None:
    from crlc_engine.core.errors import InvalidSettingError

    key = session.groups()[0].key
    plan = session.plan_split(key, parts=2)
    session.ignore([int(plan.image_ids[1][0])])
    with pytest.raises(InvalidSettingError, match="plan it again"):
        session.split(plan)
    assert {g.key for g in session.groups()} == {"cluster:0", "cluster:1", "cluster:2"}


def test_probabilities_of_an_image_in_a_split_cluster(session: LibrarySession) -> None:
    key = session.groups()[0].key
    plan = session.plan_split(key, parts=2)
    session.split(plan, [None, "Dunes"])
    kept = session.detail(int(plan.image_ids[0][0]))
    lines = session.top_groups(kept, top=2)
    assert [line.probability for line in lines] == sorted(
        (line.probability or 0 for line in session.top_groups(kept, top=5)), reverse=True
    )[:2]
    moved = session.detail(int(plan.image_ids[1][0]))
    assert moved.group == "group:Dunes"
    lines = session.top_groups(moved, top=5)  # no model output for the new cluster
    assert (lines[0].key, lines[0].name, lines[0].probability) == ("group:Dunes", "Dunes", None)
    assert all(line.probability is not None for line in lines[1:])
