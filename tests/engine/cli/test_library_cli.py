"""``crlc scan``, ``crlc libraries``, ``crlc forget`` and ``crlc relink``; locking and crashes."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crlc_engine.library import ImageLibrary, ScanOptions
from crlc_engine.library.decode import decode_file
from crlc_engine.library.decode_pool import available_cores
from crlc_engine.library.runs import library_key
from tests.engine.library_helpers import (
    REPO,
    mad,
    noise,
    picture,
    reference_square,
    run_cli,
    save_jpeg,
    save_png,
    snapshot,
    wait_for,
)

FAST = ["--size", "32", "--workers", "0"]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Three good images and two bad files."""
    folder = tmp_path / "photos"
    save_jpeg(folder / "a.jpg", picture(120, 90, seed=1))
    save_jpeg(folder / "sub" / "b.jpg", picture(90, 120, seed=2), orientation=6)
    save_png(folder / "c.png", picture(64, 64, seed=3))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "sub" / "text.png").write_text("not a picture")
    return folder


def records_of(folders: list[Path], ws: Path) -> dict[str, tuple[int, str]]:
    with ImageLibrary.open(folders, ws) as library:
        return {r.rel_path: (r.id, r.status) for r in library.images(None)}


def pixels_of(folders: list[Path], ws: Path, side: int = 32) -> dict[str, np.ndarray]:
    with ImageLibrary.open(folders, ws) as library:
        records = library.cached_images(side)
        rows = library.pixels(side, records)
    return {r.rel_path: rows[i] for i, r in enumerate(records)}


# ---------------------------------------------------------------------------- scan
def test_scan_json_lists_ok_and_skipped_files(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    code, out, err = run_cli(["scan", str(photos), *FAST, "--workspace", str(ws)], capsys)
    assert code == 0, out
    workspace = ws / "libraries" / library_key([photos])
    assert out["workspace"] == str(workspace)
    assert workspace.is_dir()
    assert out["images_ok"] == 3
    assert out["images_skipped"] == 2
    assert sorted((s["path"], s["reason"]) for s in out["skipped"]) == [
        (str(photos / "empty.jpg"), "empty file (0 bytes)"),
        (str(photos / "sub" / "text.png"), "not an image (Pillow cannot identify the format)"),
    ]
    assert (out["new"], out["decoded"], out["unchanged"], out["missing"]) == (5, 5, 0, 0)
    assert out["size"] == 32
    assert out["cancelled"] is False
    assert "empty file (0 bytes)" in err
    pixels = pixels_of([photos], ws)
    assert mad(pixels["sub/b.jpg"], reference_square(photos / "sub" / "b.jpg", 32)) <= 3

    code, out, _ = run_cli(["scan", str(photos), *FAST, "--workspace", str(ws)], capsys)
    assert code == 0
    assert (out["new"], out["decoded"], out["unchanged"]) == (0, 0, 5)
    assert out["images_ok"] == 3
    assert out["images_skipped"] == 2


def test_scan_selection_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    save_jpeg(folder / "a.jpg", picture(40, 30, seed=1))
    save_jpeg(folder / ".hidden.jpg", picture(40, 30, seed=2))
    save_jpeg(folder / "skip" / "b.jpg", picture(40, 30, seed=3))
    save_png(folder / "c.png", picture(40, 30, seed=4))
    save_jpeg(tmp_path / "outside" / "d.jpg", picture(40, 30, seed=5))
    os.symlink(tmp_path / "outside", folder / "linked")

    code, out, _ = run_cli(
        ["scan", str(folder), *FAST, "--workspace", str(tmp_path / "w1")], capsys
    )
    assert code == 0
    assert sorted(records_of([folder], tmp_path / "w1")) == [
        "a.jpg",
        "c.png",
        "linked/d.jpg",
        "skip/b.jpg",
    ]
    args = ["--hidden", "--include", "*.jpg", "--exclude", "skip", "--no-follow-symlinks"]
    code, out, _ = run_cli(
        ["scan", str(folder), *FAST, *args, "--workspace", str(tmp_path / "w2")], capsys
    )
    assert code == 0
    assert out["images_ok"] == 2
    assert sorted(records_of([folder], tmp_path / "w2")) == [".hidden.jpg", "a.jpg"]


def test_scan_of_a_folder_without_images_fails_with_no_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "letter.txt").write_text("dear ...")
    code, out, err = run_cli(
        ["scan", str(folder), *FAST, "--workspace", str(tmp_path / "ws")], capsys
    )
    assert code == 1
    assert set(out) == {"error"}
    assert out["error"]["type"] == "no_images"
    assert str(folder) in out["error"]["message"]
    assert "crlc: error: " in err


def test_scan_of_a_missing_folder_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        ["scan", str(tmp_path / "nope"), *FAST, "--workspace", str(tmp_path / "ws")], capsys
    )
    assert code == 1
    assert out["error"]["type"] == "folder_not_found"
    assert str(tmp_path / "nope") in out["error"]["message"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "-1"], "argument --workers: must be 0 (decode in this process)"),
        (["--workers", "two"], "argument --workers: must be a whole number (got 'two')"),
        (["--max-files", "0"], "argument --max-files: must be at least 1 (got 0)"),
        (["--max-files", "-5"], "argument --max-files: must be at least 1 (got -5)"),
    ],
)
def test_scan_refuses_bad_workers_and_file_limits_plainly(
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    code, out, err = run_cli(["scan", str(photos), *flags, "--workspace", str(tmp_path)], capsys)
    assert code == 2
    assert out["error"]["type"] == "usage"
    assert message in out["error"]["message"]
    assert "Traceback" not in err
    assert not (tmp_path / "libraries").exists()


def test_train_takes_the_file_limit_too(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        ["train", str(photos), "-k", "2", "--max-files", "0", "--workspace", str(tmp_path)],
        capsys,
    )
    assert (code, out["error"]["type"]) == (2, "usage")
    assert "--max-files: must be at least 1" in out["error"]["message"]


def test_scan_over_the_file_limit_fails_plainly_and_remembers_the_limit(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = ["--workspace", str(tmp_path / "ws")]
    code, out, err = run_cli(["scan", str(photos), *FAST, "--max-files", "4", *ws], capsys)
    assert code == 1
    assert out["error"]["type"] == "too_many_files"
    assert out["error"]["message"].startswith(f"more than 4 image files in {photos}")
    assert "--max-files" in out["error"]["message"]
    assert "Traceback" not in err
    assert records_of([photos], tmp_path / "ws") == {}
    code, out, _ = run_cli(["scan", str(photos), *FAST, *ws], capsys)  # the limit is kept
    assert out["error"]["type"] == "too_many_files"
    # --max-files alone keeps the stored selection; the selection flags keep the limit.
    code, out, _ = run_cli(["scan", str(photos), *FAST, "--exclude", "sub", *ws], capsys)
    assert (code, out["new"]) == (0, 3)
    code, out, _ = run_cli(["scan", str(photos), *FAST, "--max-files", "3", *ws], capsys)
    assert (code, out["new"], out["unchanged"]) == (0, 0, 3)
    with ImageLibrary.open([photos], tmp_path / "ws") as library:
        assert library.scan_options() == ScanOptions(exclude=("sub",), max_files=3)
    code, out, _ = run_cli(["scan", str(photos), *FAST, "--hidden", *ws], capsys)
    assert out["error"]["type"] == "too_many_files"  # 5 files again, the limit is still 3


def test_scan_lists_links_that_leave_the_folder_and_skips_links_above_it(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_jpeg(tmp_path / "elsewhere" / "e.jpg", picture(50, 40, seed=5))
    os.symlink(tmp_path / "elsewhere", photos / "away")
    os.symlink("/", photos / "everything")
    os.symlink(tmp_path, photos / "parent")
    code, out, err = run_cli(
        ["scan", str(photos), *FAST, "--workspace", str(tmp_path / "ws")], capsys
    )
    assert code == 0
    assert out["links_outside"] == [
        {"path": str(photos / "away"), "target": str(tmp_path / "elsewhere")}
    ]
    assert f"  {photos / 'away'} -> {tmp_path / 'elsewhere'}\n" in err
    assert "1 symbolic link(s) lead outside the folders (followed):" in err
    skipped = {s["path"]: s["reason"] for s in out["skipped"]}
    assert skipped[str(photos / "everything")].endswith("(/): not followed")
    assert "contains the photo folder" in skipped[str(photos / "parent")]
    assert out["images_ok"] == 4


def test_scan_lowers_workers_to_the_cores_and_says_so(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cores = available_cores()
    ws = ["--workspace", str(tmp_path / "ws")]
    code, out, err = run_cli(
        ["scan", str(photos), "--size", "32", "--workers", str(cores + 6), *ws], capsys
    )
    assert code == 0
    assert out["workers"] == min(cores, 5)
    assert f"{cores + 6} decoding processes asked for, but only {cores} CPU core(s)" in err


def test_scan_refuses_a_workspace_inside_the_photo_folder(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["scan", str(photos), *FAST, "--workspace", str(photos)], capsys)
    assert code == 1
    assert out["error"]["type"] == "invalid_setting"
    assert f"is inside the photo folder {photos}" in out["error"]["message"]
    assert "Traceback" not in err
    assert not (photos / "libraries").exists()


# ---------------------------------------------------------------------------- libraries
def test_libraries_lists_roots_counts_and_disk_use(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    code, out, _ = run_cli(["libraries", "--workspace", str(ws)], capsys)
    assert (code, out) == (0, {"libraries": []})

    other = tmp_path / "other"
    save_jpeg(other / "x.jpg", picture(40, 30))
    assert run_cli(["scan", str(photos), *FAST, "--workspace", str(ws)], capsys)[0] == 0
    assert run_cli(["scan", str(other), str(photos), *FAST, "--workspace", str(ws)], capsys)[0] == 0

    code, out, err = run_cli(["libraries", "--workspace", str(ws)], capsys)
    assert code == 0
    libraries = out["libraries"]
    assert [lib["roots"] for lib in libraries] == [[str(other), str(photos)], [str(photos)]]
    single = libraries[1]
    workspace = ws / "libraries" / library_key([photos])
    assert single["key"] == workspace.name
    assert single["workspace"] == str(workspace)
    assert single["images"] == {"ok": 3, "error": 2}
    assert single["runs"] == 0
    assert single["disk_bytes"] >= (workspace / "pixels-32.u8").stat().st_size > 0
    assert libraries[0]["images"] == {"ok": 4, "error": 2}
    assert workspace.name in err


# ---------------------------------------------------------------------------- relink
def test_relink_after_moving_the_folder_keeps_ids_and_pixels(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    assert run_cli(["scan", str(photos), *FAST, "--workspace", str(ws)], capsys)[0] == 0
    ids = records_of([photos], ws)
    pixels = pixels_of([photos], ws)
    old_workspace = ws / "libraries" / library_key([photos])
    thumbs = sorted(p.name for p in (old_workspace / "thumbs").iterdir())
    moved = tmp_path / "moved photos"
    os.rename(photos, moved)

    code, out, _ = run_cli(["relink", str(photos), str(moved), "--workspace", str(ws)], capsys)
    assert code == 0, out
    new_workspace = ws / "libraries" / library_key([moved])
    assert out == {"workspaces": [str(new_workspace)]}
    assert new_workspace.is_dir()
    assert not old_workspace.exists()
    assert sorted(p.name for p in (new_workspace / "thumbs").iterdir()) == thumbs
    assert records_of([moved], ws) == ids
    moved_pixels = pixels_of([moved], ws)
    assert set(moved_pixels) == set(pixels)
    for rel, row in pixels.items():
        assert np.array_equal(moved_pixels[rel], row), rel

    code, out, _ = run_cli(["scan", str(moved), *FAST, "--workspace", str(ws)], capsys)
    assert code == 0
    assert (out["decoded"], out["new"], out["missing"], out["unchanged"]) == (0, 0, 0, 5)
    assert out["workspace"] == str(new_workspace)
    assert out["images_ok"] == 3
    code, out, _ = run_cli(["libraries", "--workspace", str(ws)], capsys)
    assert [lib["roots"] for lib in out["libraries"]] == [[str(moved)]]


def test_relink_errors(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    assert run_cli(["scan", str(photos), *FAST, "--workspace", str(ws)], capsys)[0] == 0
    code, out, _ = run_cli(
        ["relink", str(photos), str(tmp_path / "not there"), "--workspace", str(ws)], capsys
    )
    assert code == 1
    assert out["error"]["type"] == "folder_not_found"
    assert str(tmp_path / "not there") in out["error"]["message"]

    elsewhere = tmp_path / "elsewhere"
    save_jpeg(elsewhere / "z.jpg", picture(40, 30))
    code, out, _ = run_cli(
        ["relink", str(tmp_path / "never scanned"), str(elsewhere), "--workspace", str(ws)],
        capsys,
    )
    assert code == 1
    assert out["error"]["type"] == "library_not_found"

    # Relinking onto a folder that already has its own library is refused.
    assert run_cli(["scan", str(elsewhere), *FAST, "--workspace", str(ws)], capsys)[0] == 0
    code, out, _ = run_cli(["relink", str(photos), str(elsewhere), "--workspace", str(ws)], capsys)
    assert code == 1
    assert out["error"]["type"] == "invalid_setting"
    assert records_of([photos], ws)["a.jpg"][1] == "ok"  # untouched


# ---------------------------------------------------------------------------- forget
def test_forget_removes_the_workspace_but_not_the_photos(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    assert run_cli(["scan", str(photos), *FAST, "--workspace", str(ws)], capsys)[0] == 0
    workspace = ws / "libraries" / library_key([photos])
    before = snapshot(photos)
    code, out, err = run_cli(["forget", str(photos), "--workspace", str(ws)], capsys)
    assert code == 0
    assert out == {"removed": str(workspace)}
    assert not workspace.exists()
    assert list((ws / "libraries").iterdir()) == []
    assert snapshot(photos) == before
    assert "not touched" in err
    code, out, _ = run_cli(["libraries", "--workspace", str(ws)], capsys)
    assert out == {"libraries": []}


def test_forget_works_after_the_folder_is_gone_and_fails_for_unknown_libraries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    folder = tmp_path / "card"
    save_jpeg(folder / "a.jpg", picture(40, 30))
    assert run_cli(["scan", str(folder), *FAST, "--workspace", str(ws)], capsys)[0] == 0
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    code, out, _ = run_cli(["forget", str(folder), "--workspace", str(ws)], capsys)
    assert code == 0
    assert not (ws / "libraries" / library_key([folder])).exists()

    code, out, _ = run_cli(["forget", str(folder), "--workspace", str(ws)], capsys)
    assert code == 1
    assert out["error"]["type"] == "library_not_found"
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    code, out, _ = run_cli(["forget", str(unknown), "--workspace", str(ws)], capsys)
    assert code == 1
    assert out["error"]["type"] == "library_not_found"
    assert str(unknown) in out["error"]["message"]


# ---------------------------------------------------------------------------- lock
_HOLDER = """
import sys
from pathlib import Path
from crlc_engine.library.lock import WorkspaceLock
lock = WorkspaceLock(Path(sys.argv[1]), "test holder")
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


def start_holder(workspace: Path) -> subprocess.Popen[str]:
    """A child process holding the workspace lock until its stdin is closed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(workspace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_scan_fails_while_another_process_holds_the_workspace(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    with ImageLibrary.open([photos], ws) as library:
        workspace = library.workspace
    with start_holder(workspace) as holder:
        code, out, _ = run_cli(["scan", str(photos), *FAST, "--workspace", str(ws)], capsys)
        assert code == 1
        assert out["error"]["type"] == "workspace_locked"
        message = out["error"]["message"]
        assert f"pid {holder.pid} " in message
        assert "test holder" in message
        code, out, _ = run_cli(["forget", str(photos), "--workspace", str(ws)], capsys)
        assert code == 1
        assert out["error"]["type"] == "workspace_locked"
        assert workspace.is_dir()
        assert holder.stdin is not None
        holder.stdin.close()  # the holder releases the lock and exits
    assert holder.returncode == 0
    code, out, _ = run_cli(["scan", str(photos), *FAST, "--workspace", str(ws)], capsys)
    assert code == 0, out
    assert out["images_ok"] == 3


def test_lock_is_released_when_the_holder_is_killed(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    with ImageLibrary.open([photos], ws) as library:
        workspace = library.workspace
    with start_holder(workspace) as holder:
        holder.kill()
    assert holder.returncode == -signal.SIGKILL
    code, out, _ = run_cli(["scan", str(photos), *FAST, "--workspace", str(ws)], capsys)
    assert code == 0, out
    assert out["images_ok"] == 3


# ---------------------------------------------------------------------------- crash
def _ok_rows(catalog: Path) -> int:
    if not catalog.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=1.0)
        try:
            row = db.execute("SELECT COUNT(*) FROM images WHERE status='ok'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return 0
    return int(row[0])


def test_a_killed_scan_is_completed_by_the_next_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, ws = tmp_path / "photos", tmp_path / "ws"
    count = 400
    for i in range(count):
        save_jpeg(folder / f"{i // 100}" / f"{i:03d}.jpg", noise(480, 360, seed=i), quality=90)
    catalog = ws / "libraries" / library_key([folder]) / "catalog.sqlite"
    log = (tmp_path / "scan.log").open("w")
    scan = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crlc_engine.cli.main",
            "scan",
            str(folder),
            "--size",
            "32",
            "--workers",
            "1",
            "--workspace",
            str(ws),
            "--json",
        ],
        stdout=log,
        stderr=log,
        cwd=str(REPO),
        start_new_session=True,  # its decoding worker is killed with it
    )
    try:
        wait_for(
            lambda: _ok_rows(catalog) > 0 or scan.poll() is not None,
            timeout=120,
            what="the first decoded images to be committed",
        )
        assert scan.poll() is None, "the scan ended before it could be killed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(scan.pid, signal.SIGKILL)
        scan.wait(timeout=30)
        log.close()
    assert scan.returncode == -signal.SIGKILL
    done_before = _ok_rows(catalog)
    assert 0 < done_before < count, f"{done_before} of {count} done when killed"

    code, out, _ = run_cli(["scan", str(folder), *FAST, "--workspace", str(ws)], capsys)
    assert code == 0, out
    assert out["images_ok"] == count
    assert out["new"] == 0  # every file already had its row: nothing inserted twice
    assert out["unchanged"] == done_before
    assert out["decoded"] == count - done_before
    assert out["skipped"] == []

    db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    try:
        rows, distinct, low, high = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT rel_path), MIN(id), MAX(id) FROM images"
        ).fetchone()
        statuses = db.execute("SELECT status, COUNT(*) FROM images GROUP BY status").fetchall()
    finally:
        db.close()
    assert (rows, distinct, low, high) == (count, count, 1, count)
    assert statuses == [("ok", count)]
    with ImageLibrary.open([folder], ws) as library:
        records = library.cached_images(32)
        assert len(records) == count
        cached = library.pixels(32, records)
        for record, row in zip(records, cached, strict=True):
            fresh = decode_file(str(record.path), 32, None)
            assert fresh.status == "ok"
            assert fresh.pixels is not None
            assert np.array_equal(row, np.frombuffer(fresh.pixels, np.uint8).reshape(32, 32, 3)), (
                record.rel_path
            )
            assert record.has_thumbnail, record.rel_path
            with Image.open(library.thumbnail_path(record.id)) as thumb:
                assert thumb.size == (256, 192)
