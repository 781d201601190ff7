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
import shutil
from pathlib import Path
from typing import Any

import pytest

from crlc_engine.export import CHANGED_REASON, UNVERIFIED_REASON
from crlc_engine.library import relink_root
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
