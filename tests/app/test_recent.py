"""app.core.recent: the recently opened libraries (most recent first, moved folders kept)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core import recent


@pytest.fixture(autouse=True)
def fresh_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "config" / "recent.json"
    monkeypatch.setattr(recent, "recent_file", lambda: path)
    yield path


def test_most_recent_first_without_duplicates_and_bounded(tmp_path: Path) -> None:
    folders = [tmp_path / f"f{i}" for i in range(recent.MAX_RECENT + 2)]
    for folder in folders:
        folder.mkdir()
        recent.remember_folders([folder])
    recent.remember_folders([folders[3]])  # opened again: moves to the front
    libraries = recent.recent_libraries()
    assert libraries[0] == [str(folders[3])]
    assert len(libraries) == recent.MAX_RECENT
    assert libraries.count([str(folders[3])]) == 1
    assert [str(folders[0])] not in libraries  # the oldest fell off
    assert recent.recent_folders() == [str(folders[3])]


def test_a_library_of_several_folders_is_one_entry(tmp_path: Path) -> None:
    a, b = tmp_path / "b", tmp_path / "a"
    a.mkdir()
    b.mkdir()
    recent.remember_folders([a, b])
    recent.remember_folders([b, a])
    assert recent.recent_libraries() == [[str(tmp_path / "a"), str(tmp_path / "b")]]


def test_missing_folders_are_kept_so_they_can_be_relinked(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    recent.remember_folders([old])
    old.rename(tmp_path / "new")
    assert recent.recent_folders() == [str(old)]
    recent.replace_folder(old, tmp_path / "new")
    assert recent.recent_folders() == [str(tmp_path / "new")]
    recent.forget_recent([tmp_path / "new"])
    assert recent.recent_libraries() == []


def test_reads_the_first_format_and_ignores_garbage(fresh_list: Path, tmp_path: Path) -> None:
    fresh_list.parent.mkdir(parents=True)
    fresh_list.write_text(json.dumps({"folders": [str(tmp_path)]}))
    assert recent.recent_folders() == [str(tmp_path)]
    fresh_list.write_text("not json")
    assert recent.recent_libraries() == []
    fresh_list.write_text(json.dumps({"libraries": [[1, 2], [], "x", [str(tmp_path)]]}))
    assert recent.recent_libraries() == [[str(tmp_path)]]
