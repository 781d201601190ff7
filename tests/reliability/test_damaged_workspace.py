"""A damaged workspace is named, with the way out, instead of a traceback or a silently
wrong result: catalog overwritten, cut short, emptied or deleted; runs whose files are
unreadable or that belong to another catalog; a lock that is a folder."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN_FLAGS
from tests.reliability.conftest import assert_plain_error, crlc_here


@pytest.fixture(scope="module")
def two_runs(trained_library: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace base with the shared library and a second, newer run."""
    photos, workspace = trained_library
    base = tmp_path_factory.mktemp("two-runs") / "ws"
    shutil.copytree(workspace, base)
    code, _, err = crlc_here(
        "train", str(photos), "-k", "3", "--workspace", str(base), *TINY_TRAIN_FLAGS
    )
    assert code == 0, err
    return base


@pytest.fixture
def workspace(two_runs: Path, tmp_path: Path) -> Path:
    """A private copy of the two-run workspace base (same library key: same photos)."""
    copy = tmp_path / "ws"
    shutil.copytree(two_runs, copy)
    return copy


def _library(workspace: Path) -> Path:
    (folder,) = (workspace / "libraries").iterdir()
    return folder


def _runs(workspace: Path) -> list[Path]:
    return sorted((_library(workspace) / "runs").iterdir())


def _crlc(workspace: Path, *args: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    return crlc_here(*args, "--workspace", str(workspace))


@pytest.mark.parametrize("damage", ["garbage", "cut short"])
def test_a_damaged_catalog_is_named_with_the_way_out(
    trained_library: tuple[Path, Path], workspace: Path, damage: str
) -> None:
    photos, _ = trained_library
    catalog = _library(workspace) / "catalog.sqlite"
    data = catalog.read_bytes()
    catalog.write_bytes(b"\x17not a catalog\x00" * 400 if damage == "garbage" else data[:4096])
    for args in (["clusters", str(photos)], ["train", str(photos), "-k", "3", *TINY_TRAIN_FLAGS]):
        code, payload, err = _crlc(workspace, *args)
        assert_plain_error(code, payload, err)
        assert payload["error"]["type"] == "workspace_damaged"
        assert "crlc forget" in payload["error"]["message"]
    code, _, err = _crlc(workspace, "forget", str(photos))
    assert code == 0, err
    code, scanned, err = _crlc(workspace, "scan", str(photos), "--size", "16")
    assert code == 0 and scanned["images_ok"] == 48, err


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
def test_a_lost_catalog_is_refused_not_replaced_by_a_new_numbering(
    trained_library: tuple[Path, Path], workspace: Path, loss: str
) -> None:
    photos, _ = trained_library
    catalog = _library(workspace) / "catalog.sqlite"
    for extra in catalog.parent.glob("catalog.sqlite-*"):
        extra.unlink()
    if loss == "deleted":
        catalog.unlink()
    else:
        catalog.write_bytes(b"")
    for args in (["scan", str(photos)], ["export", str(photos), str(workspace.parent / "out")]):
        code, payload, err = _crlc(workspace, *args)
        assert_plain_error(code, payload, err)
        assert payload["error"]["type"] == "workspace_damaged"
        message = payload["error"]["message"]
        assert ("missing" if loss == "deleted" else "empty") in message and "forget" in message
    assert not (workspace.parent / "out").exists()
    assert catalog.exists() == (loss == "emptied")  # nothing made anew behind the user's back


def test_runs_of_another_catalog_are_damaged_and_skipped(
    trained_library: tuple[Path, Path], workspace: Path
) -> None:
    photos, _ = trained_library
    old, new = _runs(workspace)
    config = json.loads((new / "config.json").read_text())
    (new / "config.json").write_text(json.dumps({**config, "catalog_id": "0" * 32}))
    code, listed, err = _crlc(workspace, "runs", str(photos))
    assert code == 0, err
    states = {r["run_id"]: (r["state"], r["problem"]) for r in listed["runs"]}
    assert states[old.name] == ("completed", None)
    assert states[new.name][0] == "damaged" and "another catalog" in states[new.name][1]
    code, shown, err = _crlc(workspace, "clusters", str(photos))  # the newest sound run
    assert code == 0 and shown["run_id"] == old.name, err
    code, payload, err = _crlc(workspace, "clusters", str(photos), "--run", new.name)
    assert_plain_error(code, payload, err)
    assert payload["error"]["type"] == "run_damaged" and "--delete" in payload["error"]["message"]
    code, _, err = _crlc(workspace, "runs", str(photos), "--delete", new.name)
    assert code == 0 and not new.exists(), err


def test_runs_made_before_catalog_ids_are_checked_by_their_paths(
    trained_library: tuple[Path, Path], workspace: Path
) -> None:
    photos, _ = trained_library
    old, new = _runs(workspace)
    for run in (old, new):  # as written by the version before catalog ids
        config = json.loads((run / "config.json").read_text())
        config.pop("catalog_id")
        (run / "config.json").write_text(json.dumps(config))
    db = sqlite3.connect(_library(workspace) / "catalog.sqlite")
    with db:  # the catalog was re-made since: id 1 now names another file
        db.execute("UPDATE images SET rel_path = 'elsewhere/other.png' WHERE id = 1")
    db.close()
    (old / "predictions.npz").unlink()  # a run without stored paths: adopted as it is
    code, listed, err = _crlc(workspace, "runs", str(photos))
    assert code == 0, err
    states = {r["run_id"]: r["state"] for r in listed["runs"]}
    assert states == {old.name: "completed", new.name: "damaged"}
    adopted = json.loads((old / "config.json").read_text())
    assert adopted["catalog_id"] and (old / "image_paths.json").is_file()


@pytest.mark.parametrize("part", ["config.json", "status.json"])
def test_one_broken_run_file_never_breaks_the_other_runs(
    trained_library: tuple[Path, Path], workspace: Path, part: str
) -> None:
    photos, _ = trained_library
    old, new = _runs(workspace)
    (old / part).write_text("{ not json")
    code, listed, err = _crlc(workspace, "runs", str(photos))
    assert code == 0, err
    states = {r["run_id"]: (r["state"], r["problem"]) for r in listed["runs"]}
    assert states[new.name] == ("completed", None)
    assert states[old.name][0] == "damaged" and part in states[old.name][1]
    disc = sorted((photos / "disc").iterdir())[:2]
    code, _, err = _crlc(workspace, "label", str(photos), *map(str, disc), "--as", "Disc")
    assert code == 0, err
    code, refined, err = _crlc(workspace, "refine", str(photos), "--epochs", "1")
    assert code == 0 and refined["parent"] == new.name, err


def test_a_lock_that_is_a_folder_gets_a_plain_message(
    trained_library: tuple[Path, Path], workspace: Path
) -> None:
    photos, _ = trained_library
    lock = _library(workspace) / "lock"
    lock.unlink()
    lock.mkdir()
    code, payload, err = _crlc(workspace, "scan", str(photos))
    assert_plain_error(code, payload, err)
    assert payload["error"]["type"] == "workspace_damaged" and "is a folder" in err


@pytest.mark.parametrize("cut", ["emptied", "half"])
def test_a_pixel_cache_cut_short_is_repaired_by_the_next_scan(
    trained_library: tuple[Path, Path], workspace: Path, cut: str
) -> None:
    photos, _ = trained_library
    cache = _library(workspace) / "pixels-16.u8"
    data = cache.read_bytes()
    cache.write_bytes(b"" if cut == "emptied" else data[: len(data) // 2])
    lost = 48 if cut == "emptied" else 24
    code, payload, err = _crlc(workspace, "assign", str(photos))  # reads the cache: refused
    assert_plain_error(code, payload, err)
    assert payload["error"]["type"] == "workspace_damaged" and "Scan the folders" in err
    code, scanned, err = _crlc(workspace, "scan", str(photos), "--size", "16")
    assert code == 0, err
    assert scanned["repaired"] == lost and scanned["images_ok"] == 48
    assert f"decoding {lost} images again" in err
    assert cache.read_bytes() == data  # the same pixels as before the damage
    code, trained, err = _crlc(workspace, "train", str(photos), "-k", "3", *TINY_TRAIN_FLAGS)
    assert code == 0 and trained["state"] == "completed", err


def test_runs_of_an_old_catalog_are_checked_by_read_only_commands_too(
    trained_library: tuple[Path, Path], workspace: Path
) -> None:
    photos, _ = trained_library
    old, new = _runs(workspace)
    for run in (old, new):  # runs and catalog as the version before catalog ids left them
        config = json.loads((run / "config.json").read_text())
        config.pop("catalog_id")
        (run / "config.json").write_text(json.dumps(config))
    db = sqlite3.connect(_library(workspace) / "catalog.sqlite")
    with db:  # ... and the catalog re-made since: every id names the next file
        db.execute("DELETE FROM meta WHERE key = 'catalog_id'")
        paths = db.execute("SELECT id, rel_path FROM images ORDER BY id").fetchall()
        for (image, _), (_, rel) in zip(paths, paths[1:] + paths[:1], strict=True):
            db.execute("UPDATE images SET rel_path = ? WHERE id = ?", (f"{rel}.x", image))
    db.close()
    for args in (["clusters", str(photos)], ["export", str(photos), "/tmp/x", "--dry-run"]):
        code, payload, err = _crlc(workspace, *args)
        assert_plain_error(code, payload, err)  # no run left that names the right photos
        assert payload["error"]["type"] == "run_not_found"
    code, listed, err = _crlc(workspace, "runs", str(photos))
    assert {r["state"] for r in listed["runs"]} == {"damaged"}


def test_a_run_valid_when_made_is_not_damaged_by_stricter_checks(
    trained_library: tuple[Path, Path], workspace: Path
) -> None:
    photos, _ = trained_library
    old, _ = _runs(workspace)
    config = json.loads((old / "config.json").read_text())
    config["train"]["minutes"] = 1e6  # accepted before the one-year limit
    (old / "config.json").write_text(json.dumps(config))
    code, listed, err = _crlc(workspace, "runs", str(photos))
    assert code == 0 and {r["state"] for r in listed["runs"]} == {"completed"}, err


def test_listing_works_with_a_broken_lock_and_names_a_lost_catalog(
    trained_library: tuple[Path, Path], workspace: Path
) -> None:
    photos, _ = trained_library
    lock = _library(workspace) / "lock"
    lock.unlink()
    lock.mkdir()
    code, listed, err = _crlc(workspace, "runs", str(photos))
    assert code == 0 and len(listed["runs"]) == 2, err
    (_library(workspace) / "catalog.sqlite").unlink()
    code, libraries, err = _crlc(workspace, "libraries")
    assert code == 0, err
    (info,) = libraries["libraries"]
    assert "missing" in info["problem"] and "forget" in info["problem"]
