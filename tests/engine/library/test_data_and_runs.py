"""Ground truth from folder names, the workspace base, library keys and run folders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crlc_engine.core.errors import RunNotFoundError
from crlc_engine.library.runs import RunStore, library_key, new_run_id, workspace_base
from crlc_engine.results.groundtruth import class_indices, class_of


def test_class_is_immediate_parent_folder() -> None:
    assert class_of("cats/a.jpg") == "cats"
    assert class_of("2020/cats/a.jpg") == "cats"
    assert class_of("a.jpg") is None
    idx, names = class_indices(["b", None, "a", "b"])
    assert names == ["a", "b"] and idx.tolist() == [1, -1, 0, 1]


def test_library_key_ignores_order_and_spelling(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert library_key([a, b]) == library_key([b, tmp_path / "a" / ".." / "a"])
    assert library_key([a]) != library_key([b])


def test_workspace_base_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRLC_WORKSPACE", str(tmp_path / "env"))
    assert workspace_base(tmp_path / "flag") == (tmp_path / "flag").resolve()
    assert workspace_base(None) == (tmp_path / "env").resolve()
    monkeypatch.delenv("CRLC_WORKSPACE")
    assert "crlc-organizer" in str(workspace_base(None))


def test_runs_are_sortable_and_newest_completed_is_found(tmp_path: Path) -> None:
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", new_run_id())
    store = RunStore(tmp_path / "ws" / "runs")
    with pytest.raises(RunNotFoundError):
        store.get()
    first, second = store.create_run(), store.create_run()
    for run, state in ((first, "completed"), (second, "cancelled")):
        run.config_path.write_text('{"train": {"clusters": 2}}')
        run.write_status(state)
    assert store.get().run_id == first.run_id
    assert store.get(state=None).run_id == max(first.run_id, second.run_id)
    with pytest.raises(RunNotFoundError, match="no run"):
        store.get("20000101-000000-dead")


def test_run_ids_of_one_second_sort_in_creation_order(tmp_path: Path) -> None:
    import datetime as dt

    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    first = new_run_id(now)
    ids = [first]
    for _ in range(5):
        ids.append(new_run_id(now, after=ids))
    assert ids == sorted(ids) and len(set(ids)) == 6
    store = RunStore(tmp_path / "runs")
    made = [store.create_run().run_id for _ in range(5)]
    assert made == sorted(made)
