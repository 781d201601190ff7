"""`crlc export --undo` never trusts the paths of a journal or manifest (real CLI, real files).

Undo refuses, as a whole and touching nothing, a journal that names files outside its export
folder; it keeps files whose identity changed since the export; and for journals of the
older format (version 1, no checksums) it puts moves back only when the library's catalog
vouches for them, and deletes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from crlc_engine.library import relink_root
from crlc_engine.results.export import CHANGED_REASON, UNVERIFIED_REASON
from tests.reliability.conftest import assert_plain_error, run_crlc

STAMP = "20240102T030405Z"


def clone_library(trained: tuple[Path, Path], folder: Path) -> tuple[Path, Path]:
    """A private copy of the trained library in ``folder``: (photos, workspace base).

    The photos keep their mtimes; the workspace is re-linked to the copy (its catalog then
    names the copied folder), so that a test may move or delete photos.
    """
    photos, workspace = trained
    copy_photos, copy_workspace = folder / "photos", folder / "ws"
    shutil.copytree(photos, copy_photos)
    shutil.copytree(workspace, copy_workspace, ignore=shutil.ignore_patterns("*lock"))
    relink_root(photos, copy_photos, copy_workspace)
    return copy_photos, copy_workspace


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (export manifests and journals left out)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(("crlc-export-", ".crlc-export-"))
    }


def journal_lines(journal: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]


def write_lines(journal: Path, lines: list[dict[str, Any]]) -> None:
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines))


def export(photos: Path, workspace: Path, dest: Path, *extra: str) -> dict[str, Any]:
    code, out, err = run_crlc(
        "export", str(photos), str(dest), "--workspace", str(workspace), *extra
    )
    assert code == 0, err
    return out


def undo(target: Path, workspace: Path) -> tuple[int, dict[str, Any], str]:
    return run_crlc("export", "--undo", str(target), "--workspace", str(workspace))


@pytest.mark.parametrize("mode", ["copy", "move"])
def test_a_journal_naming_a_file_elsewhere_as_source_and_destination_is_refused(
    tmp_path: Path, mode: str
) -> None:
    """The reproduced attack: ``/elsewhere/f`` as both source and destination of a record."""
    victim = tmp_path / "elsewhere" / "f"
    victim.parent.mkdir()
    victim.write_bytes(b"a precious file")
    dest = tmp_path / "out"
    dest.mkdir()
    start, end = {"copy": ("copying", "copied"), "move": ("moving", "moved")}[mode]
    record: dict[str, Any] = {"kind": "file", "source": str(victim), "destination": str(victim)}
    record |= {"cluster": "Beach", "folder": "Beach", "confidence": 0.9}
    header: dict[str, Any] = {"kind": "header", "format": "crlc-export-journal", "version": 1}
    header["stamp"] = STAMP
    header |= {"mode": mode, "dest": str(dest.resolve()), "fingerprint": {}, "created": "now"}
    write_lines(
        dest / f".crlc-export-{STAMP}.journal",
        [header, record | {"state": start}, record | {"state": end}, {"kind": "finished"}],
    )
    rows = [
        ["source", "destination", "cluster", "folder", "confidence", "mode", "status", "note"],
        [str(victim), str(victim), "Beach", "Beach", "0.9000", mode, "exported", ""],
    ]
    with open(dest / f"crlc-export-{STAMP}.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)

    code, out, err = undo(dest / f"crlc-export-{STAMP}.csv", tmp_path / "ws")
    assert_plain_error(code, out, err)
    assert out["error"]["type"] == "export_undo"
    assert "outside the export folder" in out["error"]["message"]
    assert "nothing was changed" in out["error"]["message"]
    assert victim.read_bytes() == b"a precious file"


def test_a_journal_whose_destination_was_edited_to_a_photo_is_refused(
    trained_library: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, workspace = trained_library
    dest = tmp_path / "out"
    result = export(photos, workspace, dest)
    journal = Path(result["journal"])
    lines = journal_lines(journal)
    copied = next(line for line in lines if line.get("state") == "copied")
    photo = Path(copied["source"])
    copied["destination"] = str(photo)  # the original photo, as the export's copy
    write_lines(journal, lines)
    photos_before, export_before = tree(photos), tree(dest)

    code, out, err = undo(Path(result["manifest"]), workspace)
    assert_plain_error(code, out, err)
    assert out["error"]["type"] == "export_undo" and str(photo) in out["error"]["message"]
    assert tree(photos) == photos_before and tree(dest) == export_before
    assert photo.is_file()


def test_a_copy_changed_after_the_export_is_kept(
    trained_library: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, workspace = trained_library
    dest = tmp_path / "out"
    result = export(photos, workspace, dest)
    edited = Path(result["first_files"][0])
    edited.write_bytes(edited.read_bytes()[::-1])  # same size, other bytes

    code, out, err = undo(Path(result["manifest"]), workspace)
    assert code == 0, err
    assert out["removed"] == result["files"] - 1 and out["unverified"] == 0
    assert out["kept"] == [{"path": str(edited), "reason": CHANGED_REASON}]
    assert set(tree(dest)) == {edited.relative_to(dest).as_posix()}
    assert f"kept: {edited}" in err


def _as_version_1(journal: Path) -> None:
    lines = journal_lines(journal)
    lines[0]["version"] = 1
    for line in lines:
        for key in ("size", "mtime_ns", "sha256", "target"):
            line.pop(key, None)
    write_lines(journal, lines)


def test_a_version_1_journal_restores_verified_moves_and_deletes_nothing(
    trained_library: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, workspace = clone_library(trained_library, tmp_path)
    before = tree(photos)
    copies = export(photos, workspace, tmp_path / "copies")
    moves = export(photos, workspace, tmp_path / "moved", "--mode", "move")
    assert tree(photos) == {} and moves["files"] == len(before)
    for result in (copies, moves):
        _as_version_1(Path(result["journal"]))
    changed = Path(moves["first_files"][0])
    changed.write_bytes(changed.read_bytes() + b"edited after the export")

    code, out, err = undo(Path(moves["manifest"]), workspace)
    assert code == 0, err
    assert out["restored"] == len(before) - 1 and out["removed"] == 0
    assert [k["path"] for k in out["kept"]] == [str(changed)]
    assert "differs from the photo the library recorded" in out["kept"][0]["reason"]
    restored = tree(photos)
    assert len(restored) == len(before) - 1
    assert all(before[name] == digest for name, digest in restored.items())

    copies_before = tree(tmp_path / "copies")
    code, out, err = undo(Path(copies["manifest"]), workspace)
    assert code == 0, err
    assert out["removed"] == 0 and out["unverified"] == copies["files"]
    assert {k["reason"] for k in out["kept"]} == {UNVERIFIED_REASON}
    assert tree(tmp_path / "copies") == copies_before
    assert f"Kept {copies['files']} file(s) exported by an older version" in err


def _row_of(manifest: Path, photo: Path) -> dict[str, str]:
    """The manifest row of ``photo`` (matched by its folder and name)."""
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return next(r for r in rows if Path(r["source"]).parts[-2:] == photo.parts[-2:])


def test_undo_keeps_the_copy_a_dedupe_tool_linked_the_photo_to(
    trained_library: tuple[Path, Path], tmp_path: Path
) -> None:
    """A dedupe tool replaced a photo by a symlink to its exported copy: that copy is the
    last one, so undo keeps it and the photo's link still works."""
    photos, workspace = clone_library(trained_library, tmp_path)
    dest = tmp_path / "out"
    result = export(photos, workspace, dest)
    photo = photos / "cross" / "cross_0000.png"
    copy = Path(_row_of(Path(result["manifest"]), photo)["destination"])
    original = photo.read_bytes()
    photo.unlink()
    photo.symlink_to(copy)

    code, out, err = undo(dest, workspace)
    assert code == 0, err
    assert out["removed"] == result["files"] - 1
    assert [k["path"] for k in out["kept"]] == [str(copy)]
    assert "leads to a file in the export folder" in out["kept"][0]["reason"]
    assert photo.is_file() and photo.read_bytes() == original


def _forged_line(state: str, source: Path, destination: Path, **identity: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"kind": "file", "state": state, "source": str(source)}
    line |= {"destination": str(destination), "cluster": "x", "folder": "x", "confidence": 0.9}
    return line | identity


def test_a_forged_move_journal_puts_nothing_outside_the_libraries(
    trained_library: tuple[Path, Path], tmp_path: Path
) -> None:
    """A ``moved`` record naming ``~/.ssh/authorized_keys`` as the original, and a
    ``moving`` one whose exported file is a whole folder: both stay in DEST."""
    photos, workspace = clone_library(trained_library, tmp_path)
    before = tree(photos)
    dest = tmp_path / "out"
    result = export(photos, workspace, dest, "--mode", "move")
    journal = Path(result["journal"])
    planted = dest / "key.pub"
    planted.write_bytes(b"ssh-ed25519 AAAA attacker")
    keys = tmp_path / "home" / ".ssh" / "authorized_keys"
    info = planted.stat()
    identity = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
    digest = hashlib.sha256(planted.read_bytes()).hexdigest()
    album = dest / "album"
    (album / "inside").mkdir(parents=True)
    folder = {"size": album.stat().st_size, "mtime_ns": album.stat().st_mtime_ns}
    write_lines(
        journal,
        [
            *journal_lines(journal),
            _forged_line("moved", keys, planted, **identity, sha256=digest),
            _forged_line("moving", photos / "album", album, **folder),
        ],
    )

    code, out, err = undo(journal, workspace)
    assert code == 0, err
    assert out["restored"] == result["files"] and tree(photos) == before
    kept = {k["path"]: k["reason"] for k in out["kept"]}
    assert set(kept) == {str(planted), str(album)}
    assert "in none of your libraries" in kept[str(planted)]
    assert "folder" in kept[str(album)]
    assert planted.is_file() and not (tmp_path / "home").exists()
    assert (album / "inside").is_dir() and not (photos / "album").exists()


def test_a_journal_naming_a_photo_below_dest_is_refused(
    trained_library: tuple[Path, Path], tmp_path: Path
) -> None:
    """DEST may be a parent of a library root; a record whose exported file is a photo of
    that library refuses the whole journal (the photo is never moved out)."""
    photos, workspace = clone_library(trained_library, tmp_path)
    result = export(photos, workspace, tmp_path)
    journal = Path(result["journal"])
    photo = photos / "cross" / "cross_0000.png"
    info = photo.stat()
    identity: dict[str, Any] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
    identity["sha256"] = hashlib.sha256(photo.read_bytes()).hexdigest()
    lines = journal_lines(journal)
    lines[0]["mode"] = "move"
    lines.append(_forged_line("moved", tmp_path / "elsewhere" / photo.name, photo, **identity))
    write_lines(journal, lines)
    before = tree(tmp_path)

    code, out, err = undo(journal, workspace)
    assert_plain_error(code, out, err)
    assert out["error"]["type"] == "export_undo"
    assert "inside the photo folder" in out["error"]["message"]
    assert "nothing was changed" in out["error"]["message"]
    assert tree(tmp_path) == before and photo.is_file()


def test_undo_goes_on_when_a_photo_folder_became_a_file(
    trained_library: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, workspace = clone_library(trained_library, tmp_path)
    before = tree(photos)
    dest = tmp_path / "out"
    result = export(photos, workspace, dest, "--mode", "move")
    shutil.rmtree(photos / "cross")
    (photos / "cross").write_bytes(b"a file where the folder was")
    crosses = sorted(name for name in before if name.startswith("cross/"))

    code, out, err = undo(dest, workspace)
    assert code == 0, err
    assert "Traceback" not in err
    assert out["restored"] == result["files"] - len(crosses) and len(out["kept"]) == len(crosses)
    assert all("a file is in the way" in k["reason"] for k in out["kept"])
    assert all(Path(k["path"]).is_file() for k in out["kept"])
    assert {k: v for k, v in before.items() if k not in crosses} == {
        k: v for k, v in tree(photos).items() if k != "cross"
    }
    assert journal_lines(Path(result["journal"]))[-1]["kind"] == "undone"


def test_undo_checks_read_each_library_json_and_open_a_catalog_on_first_use(
    trained_library: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No catalog is opened and no workspace walked until a look-up needs that library."""
    import crlc_engine.results.export_sources as cli_results
    from crlc_engine.library.catalog import Catalog

    photos, workspace = trained_library

    def heavy(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("list_libraries opens every catalog")

    opened: list[Path] = []
    real_init = Catalog.__init__

    def counting(self: Catalog, path: Path, read_only: bool = False) -> None:
        opened.append(path)
        real_init(self, path, read_only)

    monkeypatch.setattr("crlc_engine.library.registry.list_libraries", heavy)
    monkeypatch.setattr(Catalog, "__init__", counting)
    photo = sorted((photos / "cross").iterdir())[0]
    with cli_results.export_undo_checks(workspace) as (roots, lookup):
        assert [Path(os.path.realpath(r)) for r in roots] == [Path(os.path.realpath(photos))]
        assert opened == []
        assert lookup(tmp_path / "elsewhere.png") is None and opened == []
        info = photo.stat()
        assert lookup(Path(os.path.realpath(photo))) == (info.st_size, info.st_mtime_ns)
        assert lookup(Path(os.path.realpath(photo))) is not None and len(opened) == 1
