"""Export of clustered photos to one folder per cluster (crlc_engine.results.export).

All data is generated in ``tmp_path``: small random files named like photos (the export never
decodes them). Crashes are simulated in-process by failing a file operation, and once for
real by SIGKILLing an exporting subprocess.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import crlc_engine.results.export as export_mod
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CRLCError, InvalidSettingError
from crlc_engine.core.events import RecordingReporter
from crlc_engine.results.export import (
    EXPORT_MODES,
    MAX_NAME_BYTES,
    MAX_NAME_CHARS,
    UNCERTAIN_FOLDER,
    CrossDeviceLinkError,
    ExportDestinationError,
    ExportItem,
    NotEnoughSpaceError,
    UndoError,
    cluster_folder_names,
    export_images,
    file_checks,
    file_ops,
    plan_export,
    preflight,
    sanitize_folder_name,
    undo_export,
)
from crlc_engine.results.export import plan as export_plan
from crlc_engine.results.export import undo as export_undo

REPO_ROOT = Path(__file__).resolve().parents[3]
OLD_MTIME = 1_600_000_000  # 2020-09-13: copies must keep it
EXPORT_FILES = ("crlc-export-", ".crlc-export-")


# --------------------------------------------------------------------------- helpers


def patch_device(monkeypatch: pytest.MonkeyPatch, device_of: Callable[..., int]) -> None:
    """Pretend drives: ``device_of`` answers for the preflight and the file operations."""
    for module in (preflight, file_ops):
        monkeypatch.setattr(module, "device_of", device_of)


def write_photo(path: Path, size: int = 1500, mtime: float = OLD_MTIME) -> Path:
    """A file of random bytes with an old mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    os.utime(path, (mtime, mtime))
    return path


def make_library(root: Path, layout: dict[str, str], confidence: float = 0.9) -> list[ExportItem]:
    """Write one photo per ``relative path -> cluster`` entry; return the export items."""
    items = []
    for number, (relative, cluster) in enumerate(sorted(layout.items())):
        source = write_photo(root / relative, size=1000 + 37 * number, mtime=OLD_MTIME + number)
        items.append(ExportItem(source.resolve(), cluster, confidence, relative))
    return items


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> (sha256, mtime_ns) of every file (symlinks: their target)."""
    result = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            result[relative] = (f"-> {os.readlink(path)}", 0)
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            result[relative] = (digest, path.stat().st_mtime_ns)
    return result


def files_of(folder: Path) -> dict[str, tuple[str, int]]:
    """:func:`snapshot` without the export's manifests and journals."""
    return {k: v for k, v in snapshot(folder).items() if not Path(k).name.startswith(EXPORT_FILES)}


def all_paths(folder: Path) -> set[str]:
    """Every file and folder below ``folder`` (relative POSIX paths)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def exported(dest: Path) -> set[str]:
    """Exported files below ``dest`` (manifests and journals left out)."""
    return {
        p.relative_to(dest).as_posix()
        for p in dest.rglob("*")
        if (p.is_file() or p.is_symlink()) and not p.name.startswith(EXPORT_FILES)
    }


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def read_journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_journal(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def catalog_of(items: list[ExportItem]) -> Callable[[Path], tuple[int, int] | None]:
    """A stand-in for the libraries' catalogs: what a scan recorded for each photo now."""
    recorded = {i.source: (i.source.stat().st_size, i.source.stat().st_mtime_ns) for i in items}
    return recorded.get


def as_version_1(journal: Path) -> None:
    """Rewrite a journal as the older version wrote it: version 1, no identities."""
    lines = read_journal(journal)
    lines[0]["version"] = 1
    for line in lines:
        for key in ("size", "mtime_ns", "sha256", "target"):
            line.pop(key, None)
    write_journal(journal, lines)


@pytest.fixture
def library(tmp_path: Path) -> tuple[Path, list[ExportItem]]:
    """Ten photos in two clusters, two of them with the same file name."""
    root = tmp_path / "photos"
    layout = {f"2023/img{i}.jpg": "Beach" for i in range(4)}
    layout |= {f"2024/img{i}.jpg": "Mountains" for i in range(4)}
    layout |= {"2024/trip/img0.jpg": "Beach", "2024/trip/other.jpg": "Mountains"}
    return root, make_library(root, layout)


class CancelAfter(RecordingReporter):
    """Cancels ``control`` once ``count`` photos are done."""

    def __init__(self, control: JobControl, count: int) -> None:
        super().__init__()
        self.control, self.count = control, count

    def progress(self, done: float, total: float | None) -> None:
        super().progress(done, total)
        if done >= self.count:
            self.control.cancel()


class Crash(BaseException):
    """Stands for the process being killed at an exact point."""


@pytest.fixture
def crash_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``crash_on(module, name, when)``: the function raises Crash once ``when(*args)``."""

    def arm(owner: Any, name: str, when: Callable[..., bool], before: bool = True) -> None:
        real = getattr(owner, name)
        fired: list[bool] = []

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not fired and when(*args):
                fired.append(True)
                if before:
                    raise Crash(name)
                real(*args, **kwargs)
                raise Crash(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    yield arm
    monkeypatch.undo()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Beach", "Beach"),
        ("Beach / 2024", "Beach _ 2024"),
        ("a\\b/c", "a_b_c"),
        ("..", "unnamed"),
        (".", "unnamed"),
        ("", "unnamed"),
        ("   ", "unnamed"),
        ("...hidden", "hidden"),
        ("trip...", "trip"),
        ("trip. . ", "trip"),
        ("CON", "_CON"),
        ("con", "_con"),
        ("Nul.txt", "_Nul.txt"),
        ("COM1", "_COM1"),
        ("lpt9.jpg", "_lpt9.jpg"),
        ("aux .tar.gz", "_aux .tar.gz"),
        ("COM10", "COM10"),
        ("CONSOLE", "CONSOLE"),
        ("a\x00b\x1fc\x7fd", "a b c d"),
        ("line\nbreak\ttab", "line break tab"),
        ('a<b>c:"d"|e?f*', "a_b_c__d__e_f_"),
        ("_uncertain", "_uncertain (cluster)"),
        ("_Uncertain", "_uncertain (cluster)"),
        ("Été 2024 🌊", "Été 2024 🌊"),
        ("Cafe\u0301", "Café"),
        ("x" * 300, "x" * MAX_NAME_CHARS),
        ("é" * 150, "é" * (MAX_NAME_BYTES // 2)),
        ("🙂" * 100, "🙂" * (MAX_NAME_BYTES // 4)),
        ("x" * 119 + " .y", "x" * 119),
    ],
)
def test_sanitize_folder_name_table(name: str, expected: str) -> None:
    assert sanitize_folder_name(name) == expected


@pytest.mark.parametrize(
    "name",
    ["..", "a/../b", "/etc", "\\\\server\\share", "CON.", "x" * 500, "\udcff\ud800bad", " . "],
)
def test_sanitized_names_are_single_portable_components(name: str) -> None:
    folder = sanitize_folder_name(name)
    assert folder and folder not in (".", "..")
    assert not set(folder) & set('/\\<>:"|?*')
    assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in folder)
    assert folder == folder.rstrip(" .") and folder == folder.lstrip(" .")
    assert len(folder) <= MAX_NAME_CHARS and len(folder.encode("utf-8")) <= MAX_NAME_BYTES
    assert folder.split(".")[0].strip().upper() not in {"CON", "PRN", "AUX", "NUL"}


def test_cluster_folder_names_are_distinct_and_deterministic() -> None:
    names = ["Beach/2024", "Beach\\2024", "beach_2024", "_uncertain", "", "..", "A", "a"]
    folders = cluster_folder_names(names)
    assert folders == cluster_folder_names(reversed(names))
    assert len({f.casefold() for f in folders.values()}) == len(names)
    assert UNCERTAIN_FOLDER not in {f.casefold() for f in folders.values()}
    assert folders["Beach/2024"] == "Beach_2024"
    assert folders["Beach\\2024"] == "Beach_2024 (2)"
    assert folders["beach_2024"] == "beach_2024 (3)"
    assert folders["_uncertain"] == "_uncertain (cluster)"
    assert {folders[""], folders[".."]} == {"unnamed", "unnamed (2)"}
    assert folders["A"] == "A" and folders["a"] == "a (2)"


def test_long_names_keep_their_number_within_the_cap() -> None:
    folders = cluster_folder_names(["x" * 200 + "1", "x" * 200 + "2"])
    assert sorted(folders.values()) == sorted(["x" * 120, "x" * 116 + " (2)"])


# --------------------------------------------------------------------------- layout


def test_copy_layout_uncertain_and_ignored(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    items = make_library(root, {"a.jpg": "Beach / 2024", "b.jpg": "Beach / 2024", "c.jpg": "CON"})
    low = ExportItem(write_photo(root / "d.jpg"), "Beach / 2024", 0.2, "d.jpg")
    odd = ExportItem(write_photo(root / "e.jpg"), "_uncertain", 0.95, "e.jpg")
    gone = ExportItem(write_photo(root / "f.jpg"), "CON", 0.9, "f.jpg", ignored=True)
    dest = tmp_path / "out"
    result = export_images([*items, low, odd, gone], dest, roots=[root], min_confidence=0.5)

    assert exported(dest) == {
        "Beach _ 2024/a.jpg",
        "Beach _ 2024/b.jpg",
        "_CON/c.jpg",
        "_uncertain/d.jpg",
        "_uncertain (cluster)/e.jpg",
    }
    assert result.files == 5 and result.already_done == 0 and not result.cancelled
    assert result.folders == {
        "Beach _ 2024": 2,
        "_CON": 1,
        "_uncertain": 1,
        "_uncertain (cluster)": 1,
    }
    assert result.skipped == [(str(root / "f.jpg"), "ignored")]
    summary = result.as_dict()
    assert summary["manifest"] == str(result.manifest) and summary["files"] == 5
    assert summary["folders"] == result.folders
    json.dumps(summary)


def test_keep_subfolders_recreates_relative_folders(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    sneaky = ExportItem(write_photo(root / "x.jpg"), "Beach", 0.9, "../../x/CON/x.jpg")
    dest = tmp_path / "out"
    export_images([*items, sneaky], dest, roots=[root], keep_subfolders=True)
    assert exported(dest) == {
        "Beach/2023/img0.jpg",
        "Beach/2023/img1.jpg",
        "Beach/2023/img2.jpg",
        "Beach/2023/img3.jpg",
        "Beach/2024/trip/img0.jpg",
        "Beach/x/_CON/x.jpg",
        "Mountains/2024/img0.jpg",
        "Mountains/2024/img1.jpg",
        "Mountains/2024/img2.jpg",
        "Mountains/2024/img3.jpg",
        "Mountains/2024/trip/other.jpg",
    }


def test_name_collisions_get_numbers_and_never_overwrite(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    dest = tmp_path / "out"
    foreign = write_photo(dest / "Beach" / "img1.jpg", size=77)
    foreign_before = snapshot(dest)
    result = export_images(items, dest, roots=[root])

    beach = sorted(p for p in exported(dest) if p.startswith("Beach/"))
    assert beach == [
        "Beach/img0 (2).jpg",
        "Beach/img0.jpg",
        "Beach/img1 (2).jpg",
        "Beach/img1.jpg",
        "Beach/img2.jpg",
        "Beach/img3.jpg",
    ]
    assert snapshot(dest)["Beach/img1.jpg"] == foreign_before["Beach/img1.jpg"]
    assert foreign.stat().st_size == 77
    by_source = {e.source.relative_to(root).as_posix(): e for e in result.entries}
    assert by_source["2023/img0.jpg"].destination == dest / "Beach" / "img0.jpg"
    assert by_source["2024/trip/img0.jpg"].destination == dest / "Beach" / "img0 (2).jpg"
    assert result.files == 10


def test_plan_is_deterministic_and_read_only(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    dest = tmp_path / "out"
    first = plan_export(items, dest, [root], min_confidence=0.5)
    assert first == plan_export(list(reversed(items)), dest, [root], min_confidence=0.5)
    assert not dest.exists()
    assert all(e.status == "planned" for e in first)


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink", "csv"])
def test_non_move_modes_never_modify_the_originals(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], mode: str
) -> None:
    root, items = library
    before = snapshot(root)
    export_images(items, tmp_path / "out", mode=mode, roots=[root])
    assert snapshot(root) == before


def test_copy_keeps_timestamps_and_content(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    result = export_images(items, tmp_path / "out", mode="copy", roots=[root])
    for entry in result.entries:
        assert entry.destination is not None
        assert entry.destination.read_bytes() == entry.source.read_bytes()
        assert entry.destination.stat().st_mtime == entry.source.stat().st_mtime
        assert not entry.destination.is_symlink()
        assert not os.path.samefile(entry.destination, entry.source)


def test_hardlink_and_symlink_results(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    hard = export_images(items, tmp_path / "hard", mode="hardlink", roots=[root])
    soft = export_images(items, tmp_path / "soft", mode="symlink", roots=[root])
    for entry in hard.entries:
        assert entry.destination is not None
        assert os.path.samefile(entry.destination, entry.source)
        assert not entry.destination.is_symlink()
    for entry in soft.entries:
        assert entry.destination is not None
        assert os.readlink(entry.destination) == str(entry.source)
        assert os.path.isabs(os.readlink(entry.destination))


def test_csv_mode_writes_only_the_manifest(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    dest = tmp_path / "out"
    result = export_images(items, dest, mode="csv", roots=[root])
    assert all_paths(dest) == {result.manifest.name}
    rows = read_manifest(result.manifest)
    assert [r["status"] for r in rows] == ["planned"] * 10
    assert {r["mode"] for r in rows} == {"csv"}
    assert {r["destination"] for r in rows} == {str(e.destination) for e in result.entries}
    assert result.journal is None and result.files == 10


def test_manifest_columns_and_rows(tmp_path: Path, library: tuple[Path, list[ExportItem]]) -> None:
    root, items = library
    items[0] = ExportItem(items[0].source, items[0].cluster, 0.9, items[0].relative, True)
    result = export_images(items, tmp_path / "out", roots=[root])
    rows = read_manifest(result.manifest)
    assert list(rows[0]) == [
        "source",
        "destination",
        "cluster",
        "folder",
        "confidence",
        "mode",
        "status",
        "note",
    ]
    assert result.manifest.parent == (tmp_path / "out").resolve()
    assert result.manifest.name.startswith("crlc-export-") and result.manifest.suffix == ".csv"
    statuses = sorted(r["status"] for r in rows)
    assert statuses == ["exported"] * 9 + ["skipped"]
    skipped = next(r for r in rows if r["status"] == "skipped")
    assert skipped["source"] == str(items[0].source) and skipped["destination"] == ""
    assert skipped["note"] == "ignored"
    assert not [p for p in all_paths(tmp_path / "out") if p.endswith(".tmp")]


def test_dry_run_touches_nothing(tmp_path: Path, library: tuple[Path, list[ExportItem]]) -> None:
    root, items = library
    before_paths, before = all_paths(tmp_path), snapshot(tmp_path)
    for mode in EXPORT_MODES:
        result = export_images(items, tmp_path / "out", mode=mode, roots=[root], dry_run=True)
        assert result.dry_run and result.files == 10
        assert result.folders == {"Beach": 5, "Mountains": 5}
        assert len(result.as_dict()["first_files"]) == 10
    assert all_paths(tmp_path) == before_paths and snapshot(tmp_path) == before
    assert not result.manifest.exists()


def test_progress_is_reported_per_file(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    reporter = RecordingReporter()
    export_images(items, tmp_path / "out", roots=[root], reporter=reporter)
    assert reporter.progresses == [(float(i), 10.0) for i in range(11)]
    assert reporter.statuses


def test_missing_duplicate_and_failing_sources_do_not_stop_the_export(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, items = library
    missing = ExportItem(root / "gone.jpg", "Beach", 0.9, "gone.jpg")
    real_copy = file_ops.copy_contents

    def copy_contents(src: Any, dst: Any, *args: Any) -> Any:
        if Path(src) == items[2].source:
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        return real_copy(src, dst, *args)

    monkeypatch.setattr(file_ops, "copy_contents", copy_contents)
    result = export_images([*items, items[0], missing], tmp_path / "out", roots=[root])
    assert result.files == 9 and len(exported(tmp_path / "out")) == 9
    assert result.failed == [(str(items[2].source), "Permission denied")]
    assert result.skipped == [(str(items[0].source), "listed twice")]
    assert result.missing == [(str(missing.source), "source missing")]
    assert result.state == "finished_with_failures"
    summary = result.as_dict()
    assert (summary["done"], summary["failed"], summary["skipped"], summary["missing"]) == (
        9,
        1,
        1,
        1,
    )
    assert summary["failed_files"] == [
        {"path": str(items[2].source), "reason": "Permission denied"}
    ]
    assert summary["missing_files"] == [{"path": str(missing.source), "reason": "source missing"}]
    assert summary["skipped_files"] == [{"path": str(items[0].source), "reason": "listed twice"}]
    statuses = sorted(r["status"] for r in read_manifest(result.manifest))
    assert statuses == ["exported"] * 9 + ["failed", "missing", "skipped"]
    assert not [p for p in all_paths(tmp_path / "out") if ".crlc-partial-" in p]


def test_first_files_lists_only_photos_in_the_export(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Photos that failed (or were not reached, the export cancelled) are not listed."""
    root, items = library
    real_copy = file_ops.copy_contents
    failing = {items[i].source for i in (0, 1, 2, 3, 4, 5, 7)}

    def copy_contents(src: Any, dst: Any, *args: Any) -> Any:
        if Path(src) in failing:
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        return real_copy(src, dst, *args)

    monkeypatch.setattr(file_ops, "copy_contents", copy_contents)
    result = export_images(items, tmp_path / "out", roots=[root])
    assert result.files == 3 and len(result.failed) == 7
    listed = result.as_dict()["first_files"]
    assert sorted(listed) == sorted(str(tmp_path / "out" / p) for p in exported(tmp_path / "out"))
    monkeypatch.undo()

    control = JobControl()
    cancelled = export_images(
        items, tmp_path / "cut", roots=[root], reporter=CancelAfter(control, 2), control=control
    )
    assert cancelled.cancelled and cancelled.files == 2
    listed = cancelled.as_dict()["first_files"]
    assert sorted(listed) == sorted(str(tmp_path / "cut" / p) for p in exported(tmp_path / "cut"))


def test_a_full_drive_stops_the_export_resumably(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, items = library
    dest = tmp_path / "out"
    real_copy = file_ops.copy_contents
    calls: list[Any] = []

    def copy_contents(src: Any, dst: Any, *args: Any) -> Any:
        calls.append(src)
        if len(calls) == 3:
            Path(dst).write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(src, dst, *args)

    monkeypatch.setattr(file_ops, "copy_contents", copy_contents)
    with pytest.raises(NotEnoughSpaceError, match="full"):
        export_images(items, dest, roots=[root])
    monkeypatch.undo()
    manifest = next(dest.glob("crlc-export-*.csv"))
    statuses = sorted(r["status"] for r in read_manifest(manifest))
    assert statuses == ["exported"] * 2 + ["pending"] * 8

    result = export_images(items, dest, roots=[root])
    assert result.already_done == 2 and result.files == 10 and result.manifest == manifest
    assert len(exported(dest)) == 10
    assert not [p for p in all_paths(dest) if ".crlc-partial-" in p]


# --------------------------------------------------------------------------- refusals


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettingError, match="mode"):
        export_images([], tmp_path / "out", mode="teleport")
    with pytest.raises(InvalidSettingError, match="between 0 and 1"):
        export_images([], tmp_path / "out", min_confidence=1.5)


def test_destination_inside_a_library_is_refused(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    (tmp_path / "alias").symlink_to(root / "2024")
    for dest in (root, root / "2023" / "export", root / "new" / "deep", tmp_path / "alias"):
        with pytest.raises(ExportDestinationError, match="inside the photo folder") as info:
            export_images(items, dest, roots=[tmp_path / "elsewhere", root])
        assert isinstance(info.value, CRLCError) and info.value.kind == "export_destination"
    assert not (root / "new").exists() and not (root / "2023" / "export").exists()
    # A parent of the library is fine...
    result = export_images(items, tmp_path, roots=[root])
    assert result.files == 10
    # ...unless a cluster folder would land in the library.
    renamed = [ExportItem(i.source, "photos", 0.9, i.relative) for i in items]
    with pytest.raises(ExportDestinationError, match="same name"):
        export_images(renamed, tmp_path, roots=[root])


def test_destination_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportDestinationError, match="is a file"):
        export_images([], tmp_path / "file")


@pytest.mark.parametrize("mode", ["copy", "move"])
def test_not_enough_free_space_is_refused(
    tmp_path: Path,
    library: tuple[Path, list[ExportItem]],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    root, items = library
    before = snapshot(root)
    asked: list[str] = []

    def tiny_disk(path: str | Path) -> SimpleNamespace:
        asked.append(str(path))
        return SimpleNamespace(total=10**9, used=10**9 - 1000, free=1000)

    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    if mode == "move":  # same file system: nothing to write, no check
        patch_device(monkeypatch, lambda path, follow=False: 1)
    with pytest.raises(NotEnoughSpaceError, match="not enough free space") as info:
        export_images(items, tmp_path / "out", mode=mode, roots=[root])
    assert info.value.kind == "not_enough_space" and asked
    assert not (tmp_path / "out").exists() and snapshot(root) == before

    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=10**12))
    assert export_images(items, tmp_path / "out", mode=mode, roots=[root]).files == 10


def test_same_drive_move_and_links_need_no_free_space(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, items = library
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=0))
    assert export_images(items, tmp_path / "h", mode="hardlink", roots=[root]).files == 10
    assert export_images(items, tmp_path / "m", mode="move", roots=[root]).files == 10


def test_hardlink_across_file_systems_is_refused(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, items = library
    real_device = file_checks.device_of
    dest = tmp_path / "out"

    def other_drive(path: Path, follow: bool = False) -> int:
        return 999 if root in Path(path).parents else real_device(path, follow)

    patch_device(monkeypatch, other_drive)
    with pytest.raises(CrossDeviceLinkError, match="copy"):
        export_images(items, dest, mode="hardlink", roots=[root])
    assert not dest.exists()
    monkeypatch.undo()

    def exdev(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", exdev)
    with pytest.raises(CrossDeviceLinkError, match="copy") as info:
        export_images(items, dest, mode="hardlink", roots=[root])
    assert info.value.kind == "cross_device_link"


# --------------------------------------------------------------------------- move and undo


def test_move_then_undo_restores_everything(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    before = snapshot(root)
    dest = tmp_path / "out"
    result = export_images(items, dest, mode="move", roots=[root], keep_subfolders=True)
    assert result.files == 10 and not any(i.source.exists() for i in items)
    shutil.rmtree(root / "2024")  # the move emptied it; undo must recreate it

    undo = undo_export(result.manifest, [root])
    assert undo.restored == 10 and undo.kept == [] and undo.folders_removed >= 2
    assert snapshot(root) == before
    assert exported(dest) == set() and all_paths(dest) == {
        result.manifest.name,
        result.journal.name if result.journal else "",
    }
    assert undo.as_dict()["restored"] == 10
    again = undo_export(result.manifest, [root])  # idempotent
    assert again.restored == 0 and again.unchanged == 10 and snapshot(root) == before


def test_undo_never_overwrites_a_file_that_reappeared(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    dest = tmp_path / "out"
    result = export_images(items, dest, mode="move", roots=[root])
    newcomer = write_photo(items[0].source, size=42)
    undo = undo_export(result.journal or result.manifest, [root])
    assert undo.restored == 9
    assert [path for path, _ in undo.kept] == [str(items[0].source)]
    assert newcomer.stat().st_size == 42
    entry = next(e for e in result.entries if e.source == items[0].source)
    assert entry.destination is not None and entry.destination.exists()


def test_undo_of_copies_and_links_removes_only_what_still_matches(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    before = snapshot(root)
    copies = export_images(items, tmp_path / "c", mode="copy", roots=[root])
    links = export_images(items, tmp_path / "s", mode="symlink", roots=[root])
    hard = export_images(items, tmp_path / "h", mode="hardlink", roots=[root])
    edited = copies.entries[0].destination
    assert edited is not None
    edited.write_bytes(b"edited by the user")
    items[1].source.unlink()  # the copy of a deleted original is its last copy

    undo = undo_export(copies.manifest, [root])
    assert undo.removed == 8 and len(undo.kept) == 2
    assert exported(tmp_path / "c") == {
        edited.relative_to(tmp_path / "c").as_posix(),
        next(
            e.destination.relative_to(tmp_path / "c").as_posix()
            for e in copies.entries
            if e.source == items[1].source and e.destination is not None
        ),
    }
    assert undo_export(links.manifest, [root]).removed == 10
    assert undo_export(hard.manifest, [root]).removed == 9  # the deleted original's link is kept
    assert exported(tmp_path / "s") == set()
    after = snapshot(root)
    assert {k: v for k, v in before.items() if k in after} == after


def test_csv_export_has_nothing_to_undo(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    result = export_images(items, tmp_path / "out", mode="csv", roots=[root])
    undo = undo_export(result.manifest, [root])
    assert (undo.restored, undo.removed, undo.kept) == (0, 0, [])


def test_undo_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UndoError, match="no export manifest"):
        undo_export(tmp_path / "missing.csv", ())
    with pytest.raises(UndoError, match="no export manifest"):
        undo_export(tmp_path, ())
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UndoError, match="not an export manifest"):
        undo_export(tmp_path / "notes.csv", ())


def test_undo_from_the_manifest_alone(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    """Without a journal, moves are put back only when the library's catalog vouches."""
    root, items = library
    before = snapshot(root)
    catalog = catalog_of(items)
    dest = tmp_path / "out"
    result = export_images(items, dest, mode="move", roots=[root])
    assert result.journal is not None
    result.journal.unlink()
    blind = undo_export(dest, [root])  # no catalog: nothing can be verified
    assert blind.restored == 0 and blind.unverified == 10 and len(exported(dest)) == 10
    assert all("no library's catalog knows" in reason for _, reason in blind.kept)
    undo = undo_export(dest, [root], catalog=catalog)  # the folder: its latest export
    assert undo.restored == 10 and snapshot(root) == before and exported(dest) == set()
    assert all_paths(dest) == {result.manifest.name}


# --------------------------------------------------------------------------- undo safety


def test_journal_records_what_each_export_created(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    sizes = {str(i.source): i.source.stat().st_size for i in items}
    copies = export_images(items, tmp_path / "c", mode="copy", roots=[root])
    links = export_images(items, tmp_path / "s", mode="symlink", roots=[root])
    assert copies.journal is not None and links.journal is not None
    lines = read_journal(copies.journal)
    assert lines[0]["version"] == export_mod.JOURNAL_VERSION == 2
    starts = [line for line in lines if line.get("state") == "copying"]
    assert len(starts) == 10 and all(s["size"] == sizes[s["source"]] for s in starts)
    for line in (line for line in lines if line.get("state") == "copied"):
        created = Path(line["destination"])
        assert line["size"] == created.stat().st_size
        assert line["mtime_ns"] == created.stat().st_mtime_ns
        assert line["sha256"] == hashlib.sha256(created.read_bytes()).hexdigest()
    linked = [line for line in read_journal(links.journal) if line.get("state") == "linked"]
    assert len(linked) == 10
    assert all(line["target"] == line["source"] and "sha256" not in line for line in linked)


def test_a_file_changed_after_the_export_is_kept(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    copies = export_images(items, tmp_path / "c", mode="copy", roots=[root])
    # Same size and date, other bytes: only the checksum tells.
    edited = copies.entries[0].destination
    assert edited is not None
    stats = edited.stat()
    edited.write_bytes(os.urandom(stats.st_size))
    os.utime(edited, ns=(stats.st_atime_ns, stats.st_mtime_ns))
    undo = undo_export(copies.manifest, [root])
    assert undo.removed == 9 and undo.kept == [(str(edited), export_mod.CHANGED_REASON)]
    assert edited.exists()

    moves = export_images(items[:4], tmp_path / "m", mode="move", roots=[root])
    touched = moves.entries[1].destination
    assert touched is not None
    touched.write_bytes(touched.read_bytes() + b"edited")
    undo = undo_export(moves.manifest, [root])
    assert undo.restored == 3 and undo.kept == [(str(touched), export_mod.CHANGED_REASON)]
    assert touched.exists() and not moves.entries[1].source.exists()


def test_version_1_journal_restores_verified_moves_and_deletes_nothing(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    catalog = catalog_of(items)
    moved, copied = items[:5], items[5:]
    moves = export_images(moved, tmp_path / "m", mode="move", roots=[root])
    copies = export_images(copied, tmp_path / "c", mode="copy", roots=[root])
    assert moves.journal is not None and copies.journal is not None
    as_version_1(moves.journal)
    as_version_1(copies.journal)
    changed = moves.entries[0].destination
    assert changed is not None
    changed.write_bytes(b"not the photo the library knows")

    undo = undo_export(moves.journal, [root], catalog=catalog)
    assert undo.restored == 4 and changed.exists() and not moves.entries[0].source.exists()
    assert [path for path, _ in undo.kept] == [str(changed)]
    assert "differs from the photo the library recorded" in undo.kept[0][1]
    assert all(i.source.exists() for i in moved[1:])

    before = files_of(tmp_path / "c")
    undo = undo_export(copies.manifest, [root], catalog=catalog)
    assert undo.removed == 0 and undo.unverified == 5 and files_of(tmp_path / "c") == before
    assert {reason for _, reason in undo.kept} == {export_mod.UNVERIFIED_REASON}


def _forge(journal: Path, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    lines = read_journal(journal)
    edit(lines)
    write_journal(journal, lines)


def _file_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("kind") == "file"]


def test_journal_naming_files_outside_its_folder_is_refused(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    elsewhere = write_photo(tmp_path / "elsewhere" / "f")
    dest = tmp_path / "out"
    result = export_images(items, dest, mode="move", roots=[root])
    assert result.journal is not None
    real = result.journal.read_bytes()
    before = files_of(tmp_path)

    def both_elsewhere(lines: list[dict[str, Any]]) -> None:
        for line in _file_lines(lines)[:2]:
            line["source"] = line["destination"] = str(elsewhere)

    def evil_parent(lines: list[dict[str, Any]]) -> None:
        (dest / "evil").symlink_to(elsewhere.parent)
        _file_lines(lines)[-1]["destination"] = str(dest / "evil" / "f")

    def evil_folder(lines: list[dict[str, Any]]) -> None:
        lines.append({"kind": "mkdir", "path": str(tmp_path / "elsewhere")})

    def dotted(lines: list[dict[str, Any]]) -> None:
        _file_lines(lines)[-1]["destination"] = str(dest / ".." / "elsewhere" / "f")

    def same_file(lines: list[dict[str, Any]]) -> None:
        line = _file_lines(lines)[-1]
        line["source"] = line["destination"]

    cases = {
        "outside the export folder": (both_elsewhere, evil_parent, evil_folder),
        "not a plain absolute path": (dotted,),
        "both the original and the exported file": (same_file,),
    }
    for words, edits in cases.items():
        for edit in edits:
            _forge(result.journal, edit)
            with pytest.raises(UndoError, match=words) as info:
                undo_export(result.journal, [root])
            assert "nothing was changed" in str(info.value)
            with contextlib.suppress(FileNotFoundError):
                (dest / "evil").unlink()
            assert files_of(tmp_path) == before
            result.journal.write_bytes(real)
    assert undo_export(result.journal, [root]).restored == 10


def test_a_journal_moved_out_of_its_export_folder_is_refused(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    result = export_images(items, tmp_path / "out", mode="copy", roots=[root])
    assert result.journal is not None
    moved = tmp_path / "other" / result.journal.name
    moved.parent.mkdir()
    shutil.copy2(result.journal, moved)
    before = files_of(tmp_path / "out")
    with pytest.raises(UndoError, match="lies in"):
        undo_export(moved, [root])
    assert files_of(tmp_path / "out") == before


def _identity_of(path: Path) -> dict[str, Any]:
    """The version 2 identity of a file as an export records it (size, mtime, sha256)."""
    return {
        "size": path.stat().st_size,
        "mtime_ns": path.stat().st_mtime_ns,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


@pytest.mark.parametrize("mode", ["copy", "move"])
def test_a_journal_naming_a_file_inside_a_library_is_refused(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], mode: str
) -> None:
    """DEST may be a parent of the library; a record pointing into it refuses the journal."""
    root, items = library
    result = export_images(items[:5], tmp_path, mode=mode, roots=[root])
    assert result.journal is not None
    photo = items[7].source  # still in the library
    if mode == "copy":
        photo = root / "twin.jpg"
        shutil.copy2(items[0].source, photo)
    state = {"copy": "copied", "move": "moved"}[mode]
    forged = {"kind": "file", "state": state, "destination": str(photo)} | _identity_of(photo)
    forged["source"] = str(tmp_path / "elsewhere" / photo.name)
    if mode == "copy":
        forged["source"] = str(items[0].source)
    _forge(result.journal, lambda lines: lines.append(forged))
    before = files_of(tmp_path)

    with pytest.raises(UndoError, match="inside the photo folder") as info:
        undo_export(result.journal, [root])
    assert "nothing was changed" in str(info.value) and str(photo) in str(info.value)
    assert files_of(tmp_path) == before and photo.is_file()
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_undo_keeps_a_file_whose_original_became_a_link_to_it(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], mode: str
) -> None:
    """A dedupe tool replaced the photo by a symlink to its exported copy: that copy is now
    the only one, so undo keeps it (and the photo's link keeps working)."""
    root, items = library
    dest = tmp_path / "out"
    result = export_images(items, dest, mode=mode, roots=[root])
    entry = result.entries[0]
    assert entry.destination is not None
    entry.source.unlink()
    entry.source.symlink_to(entry.destination)

    undo = undo_export(result.manifest, [root])
    assert undo.removed == 9 and [path for path, _ in undo.kept] == [str(entry.destination)]
    assert "leads to a file in the export folder" in undo.kept[0][1]
    assert entry.destination.is_file() and entry.source.is_file()
    assert exported(dest) == {entry.destination.relative_to(dest).as_posix()}


def test_a_forged_copy_record_whose_original_links_to_it_is_kept(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    dest = tmp_path / "out"
    result = export_images(items, dest, mode="copy", roots=[root])
    assert result.journal is not None
    precious = write_photo(dest / "precious.jpg")
    link = tmp_path / "x" / "lnk"
    link.parent.mkdir()
    link.symlink_to(precious)
    forged = {"kind": "file", "state": "copied", "source": str(link)}
    forged |= {"destination": str(precious)} | _identity_of(precious)
    _forge(result.journal, lambda lines: lines.append(forged))

    undo = undo_export(result.journal, [root])
    assert undo.removed == 10 and [path for path, _ in undo.kept] == [str(precious)]
    assert "leads to a file in the export folder" in undo.kept[0][1]
    assert precious.is_file() and link.is_file()


def test_a_forged_move_record_never_writes_outside_the_libraries(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    """A ``moved`` record naming ``~/.ssh/authorized_keys`` as the original: the file stays
    in DEST, no folder is created there, and no ``.crlc-partial-*`` file is deleted."""
    root, items = library
    before = snapshot(root)
    dest = tmp_path / "out"
    result = export_images(items, dest, mode="move", roots=[root])
    assert result.journal is not None
    planted = write_photo(dest / "Beach" / "key.pub")
    target = tmp_path / "home" / ".ssh" / "authorized_keys"
    bystander = write_photo(tmp_path / "home" / file_ops.partial_path(target).name)
    forged = {"kind": "file", "state": "moved", "source": str(target)}
    forged |= {"destination": str(planted)} | _identity_of(planted)
    _forge(result.journal, lambda lines: lines.append(forged))

    undo = undo_export(result.journal, [root])
    assert undo.restored == 10 and snapshot(root) == before
    assert [path for path, _ in undo.kept] == [str(planted)]
    assert "in none of your libraries" in undo.kept[0][1]
    assert planted.is_file() and not target.parent.exists() and bystander.is_file()


def test_a_forged_moving_record_never_moves_a_folder(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    """A move cut short is checked by size and date only: a folder never passes."""
    root, items = library
    dest = tmp_path / "out"
    result = export_images(items, dest, mode="move", roots=[root])
    assert result.journal is not None
    folder = dest / "Beach" / "album"
    write_photo(folder / "inside.jpg")
    info = folder.stat()
    forged: dict[str, Any] = {"kind": "file", "state": "moving", "source": str(root / "album")}
    forged |= {"destination": str(folder), "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    _forge(result.journal, lambda lines: lines.append(forged))

    undo = undo_export(result.journal, [root])
    assert undo.restored == 10 and [path for path, _ in undo.kept] == [str(folder)]
    assert "folder" in undo.kept[0][1]
    assert (folder / "inside.jpg").is_file() and not (root / "album").exists()


def test_undo_goes_on_when_a_photo_cannot_be_put_back(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    """The photo folder ``2023`` became a file: its four photos stay in the export, with
    the reason, and the other six are put back."""
    root, items = library
    dest = tmp_path / "out"
    result = export_images(items, dest, mode="move", roots=[root])
    assert result.journal is not None
    shutil.rmtree(root / "2023")
    (root / "2023").write_bytes(b"a file in the way")

    undo = undo_export(result.manifest, [root])
    assert undo.restored == 6 and len(undo.kept) == 4
    stuck = {str(e.destination) for e in result.entries if e.source.parent == root / "2023"}
    assert {path for path, _ in undo.kept} == stuck
    assert all("a file is in the way" in reason for _, reason in undo.kept)
    assert all(Path(path).is_file() for path in stuck)
    assert read_journal(result.journal)[-1]["kind"] == "undone"


def test_hard_links_and_same_drive_moves_are_not_read(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """They are identified by drive, inode, size and date; copies keep their checksum."""
    root, items = library
    before = snapshot(root)

    def no_reading(path: Path) -> str:
        raise AssertionError(f"{path} was read")

    for module in (file_checks, export_undo):
        monkeypatch.setattr(module, "sha256_of", no_reading)
    for mode in ("hardlink", "move"):
        result = export_images(items, tmp_path / mode, mode=mode, roots=[root])
        assert result.journal is not None and result.files == 10
        lines = read_journal(result.journal)
        done = [line for line in lines if line.get("state") in ("linked", "moved")]
        assert len(done) == 10
        for line in done:
            info = os.lstat(line["destination"])
            assert (line["device"], line["inode"]) == (info.st_dev, info.st_ino)
            assert (line["size"], line["mtime_ns"]) == (info.st_size, info.st_mtime_ns)
            assert "sha256" not in line
        undo = undo_export(result.manifest, [root])
        assert undo.removed + undo.restored == 10 and undo.kept == []
        assert snapshot(root) == before
    copies = export_images(items, tmp_path / "copy", mode="copy", roots=[root])
    assert copies.journal is not None
    copied = [line for line in read_journal(copies.journal) if line.get("state") == "copied"]
    assert all("sha256" in line and "inode" not in line for line in copied)

    monkeypatch.undo()
    _pretend_photos_on_another_drive(root, monkeypatch)
    moves = export_images(items, tmp_path / "far", mode="move", roots=[root])
    assert moves.journal is not None
    moved = [line for line in read_journal(moves.journal) if line.get("state") == "moved"]
    assert len(moved) == 10 and all("sha256" in line and "inode" not in line for line in moved)


def test_a_moved_file_replaced_by_a_copy_is_kept(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    """Same size, date and bytes, but another file than the one the move left there."""
    root, items = library
    result = export_images(items, tmp_path / "out", mode="move", roots=[root])
    replaced = result.entries[0].destination
    assert replaced is not None
    shutil.copy2(replaced, tmp_path / "copy.jpg")
    os.replace(tmp_path / "copy.jpg", replaced)
    undo = undo_export(result.manifest, [root])
    assert undo.restored == 9 and undo.kept == [(str(replaced), export_mod.CHANGED_REASON)]


def test_a_stamp_taken_meanwhile_gives_the_next_one(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, items = library
    dest = tmp_path / "out"
    dest.mkdir()
    stamp = "20240102T030405Z"
    monkeypatch.setattr(export_plan, "new_stamp", lambda folder: stamp)
    (dest / f".crlc-export-{stamp}.journal").write_bytes(b"another export's journal")
    (dest / f"crlc-export-{stamp}-2.csv").write_bytes(b"another export's manifest")
    result = export_images(items, dest, roots=[root])
    assert result.journal == dest / f".crlc-export-{stamp}-3.journal"
    assert result.manifest == dest / f"crlc-export-{stamp}-3.csv" and result.files == 10
    assert (dest / f".crlc-export-{stamp}.journal").read_bytes() == b"another export's journal"
    assert (dest / f"crlc-export-{stamp}-2.csv").read_bytes() == b"another export's manifest"

    listed = export_images(items, dest, mode="csv", roots=[root])  # the manifest is taken too
    assert listed.manifest == dest / f"crlc-export-{stamp}-4.csv"
    assert (dest / f"crlc-export-{stamp}-2.csv").read_bytes() == b"another export's manifest"


def test_a_move_whose_source_cannot_be_deleted_is_taken_back_and_reported(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only photo folder: the hard link is taken back, the photo listed as failed."""
    root, items = library
    before = snapshot(root)
    real_unlink = os.unlink

    def read_only(path: Any, *args: Any, **kwargs: Any) -> None:
        if root in Path(path).parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", read_only)
    result = export_images(items, tmp_path / "out", mode="move", roots=[root])
    monkeypatch.undo()
    assert result.files == 0 and result.state == "finished_with_failures"
    assert sorted(result.failed) == sorted((str(i.source), "Permission denied") for i in items)
    assert exported(tmp_path / "out") == set() and snapshot(root) == before


def test_free_space_margin_scales_with_the_export(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, items = library
    assert export_mod.free_space_margin(0, 0) == 2**20
    assert export_mod.free_space_margin(164_000, 48) == 2**20 + 48 * 8192 + 1640
    assert export_mod.free_space_margin(10**10, 3000) == 2**20 + 3000 * 8192 + 10**8
    needed = sum(i.source.stat().st_size for i in items)
    margin = export_mod.free_space_margin(needed, len(items))
    free = {"bytes": needed + margin - 1}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=free["bytes"]))
    with pytest.raises(NotEnoughSpaceError, match="not enough free space"):
        export_images(items, tmp_path / "out", roots=[root])
    free["bytes"] += 1
    assert export_images(items, tmp_path / "out", roots=[root]).files == 10


# --------------------------------------------------------------------------- interruptions


def test_cancelled_copy_resumes_without_duplicates(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    dest = tmp_path / "out"
    control = JobControl()
    first = export_images(
        items, dest, roots=[root], reporter=CancelAfter(control, 4), control=control
    )
    assert first.cancelled and first.files == 4 and len(exported(dest)) == 4
    rows = read_manifest(first.manifest)
    assert sorted(r["status"] for r in rows) == ["exported"] * 4 + ["pending"] * 6

    second = export_images(items, dest, roots=[root])
    assert not second.cancelled and second.already_done == 4 and second.files == 10
    assert second.manifest == first.manifest and second.journal == first.journal
    assert len(exported(dest)) == 10 and not [p for p in exported(dest) if "(3)" in p]
    assert exported(dest) == {
        e.destination.relative_to(dest).as_posix() for e in second.entries if e.destination
    }
    assert {r["status"] for r in read_manifest(second.manifest)} == {"exported"}
    assert second.journal is not None
    kinds = [line["kind"] for line in read_journal(second.journal)]
    assert kinds[0] == "header" and "cancelled" in kinds and "resumed" in kinds
    assert kinds[-1] == "finished"

    third = export_images(items, dest, roots=[root])  # a new export: all already there
    assert third.already_done == 10 and len(exported(dest)) == 10
    assert third.manifest != second.manifest
    assert {r["status"] for r in read_manifest(third.manifest)} == {"already_present"}
    assert undo_export(third.manifest, [root]).removed == 0  # not its files
    assert undo_export(second.manifest, [root]).removed == 10


def test_cancelled_move_can_be_undone(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    before = snapshot(root)
    control = JobControl()
    reporter = CancelAfter(control, 3)
    result = export_images(
        items, tmp_path / "out", mode="move", roots=[root], reporter=reporter, control=control
    )
    assert result.cancelled and result.files == 3
    assert undo_export(result.manifest, [root]).restored == 3
    assert snapshot(root) == before


def test_a_journal_line_cut_short_by_a_kill_is_tolerated(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    before = snapshot(root)
    dest = tmp_path / "out"
    control = JobControl()
    first = export_images(
        items, dest, mode="move", roots=[root], reporter=CancelAfter(control, 2), control=control
    )
    assert first.journal is not None
    with first.journal.open("ab") as handle:
        handle.write(b'{"kind": "file", "state": "mov')  # killed while writing

    second = export_images(items, dest, mode="move", roots=[root])
    assert second.journal == first.journal and second.already_done == 2
    assert second.files == 10 and len(exported(dest)) == 10
    lines = first.journal.read_bytes().splitlines()
    assert [json.loads(line)["kind"] for line in lines if line.endswith(b"}")][-1] == "finished"
    assert undo_export(second.journal, [root]).restored == 10 and snapshot(root) == before


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_rerun_recognises_files_of_an_export_without_journal(
    tmp_path: Path, library: tuple[Path, list[ExportItem]], mode: str
) -> None:
    root, items = library
    dest = tmp_path / "out"
    first = export_images(items, dest, mode=mode, roots=[root])
    assert first.journal is not None
    first.journal.unlink()
    first.manifest.unlink()
    before = snapshot(dest)
    second = export_images(items, dest, mode=mode, roots=[root])
    assert second.already_done == 10 and second.files == 10
    assert {e.status for e in second.entries} == {"present"}
    assert {k: v for k, v in snapshot(dest).items() if not k.startswith(EXPORT_FILES)} == before


def _moved(items: list[ExportItem]) -> int:
    """How many photos are no longer at their original path."""
    return sum(not i.source.exists() for i in items)


def _arm_move_crash(
    crash_point: str,
    root: Path,
    target: Path,
    crash_on: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Make the move of ``target`` die at ``crash_point`` (see the test below)."""
    if crash_point in ("copy2_partial", "unlink_partial", "unlink_source"):
        _pretend_photos_on_another_drive(root, monkeypatch)
    if crash_point == "link":
        crash_on(os, "link", lambda src, *rest: Path(src) == target)
    elif crash_point in ("unlink_after_link", "unlink_source"):
        crash_on(os, "unlink", lambda path, *rest: Path(path) == target)
    elif crash_point == "unlink_partial":
        crash_on(os, "unlink", lambda path, *rest: _is_partial_copy_of(path, target))
    else:
        real_copy = file_ops.copy_contents

        def half_copy(src: Any, dst: Any, *args: Any) -> Any:
            if Path(src) != target:
                return real_copy(src, dst, *args)
            Path(dst).write_bytes(Path(src).read_bytes()[:100])
            raise Crash("copy2")

        monkeypatch.setattr(file_ops, "copy_contents", half_copy)


def _pretend_photos_on_another_drive(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Moves then copy to a partial file, rename it, then delete the source."""
    real_device = file_checks.device_of

    def drives(path: Path, follow: bool = False) -> int:
        return 7 if root in Path(path).parents else real_device(path, follow)

    patch_device(monkeypatch, drives)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=10**12))


def _is_partial(path: Any) -> bool:
    return Path(path).name.startswith(".crlc-partial-")


def _is_partial_copy_of(path: Any, target: Path) -> bool:
    """A complete partial file of ``target`` (sizes are unique in the test library)."""
    path = Path(path)
    return _is_partial(path) and path.exists() and path.stat().st_size == target.stat().st_size


def _crash_move(
    crash_point: str,
    root: Path,
    dest: Path,
    items: list[ExportItem],
    crash_on: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Run a move that dies on ``items[5]``; return its journal."""
    _arm_move_crash(crash_point, root, items[5].source, crash_on, monkeypatch)
    with pytest.raises(Crash):
        export_images(items, dest, mode="move", roots=[root])
    monkeypatch.undo()
    journal = max(dest.glob(".crlc-export-*.journal"))
    states = [line.get("state") for line in read_journal(journal)]
    assert states.count("moving") == states.count("moved") + 1  # one move was cut short
    return journal


def _assert_cut_short(crash_point: str, journal: Path, source: Path) -> None:
    """The cut-short move left ``source`` in the state its crash point promises."""
    last = [line for line in read_journal(journal) if line.get("state") == "moving"][-1]
    assert last["source"] == str(source)
    destination = Path(last["destination"])
    partial = destination.with_name(file_ops.partial_path(destination).name)
    expected = {
        "link": (True, False, False),
        "unlink_after_link": (True, True, False),
        "copy2_partial": (True, False, True),
        "unlink_partial": (True, True, True),
        "unlink_source": (True, True, False),
    }[crash_point]
    assert (source.exists(), destination.exists(), partial.exists()) == expected
    if crash_point == "unlink_after_link":
        assert os.path.samefile(source, destination)
    if crash_point == "unlink_source":
        assert not os.path.samefile(source, destination)


@pytest.mark.parametrize(
    "crash_point",
    ["link", "unlink_after_link", "copy2_partial", "unlink_partial", "unlink_source"],
)
def test_move_crash_at_any_point_is_undone_or_resumed(
    tmp_path: Path,
    library: tuple[Path, list[ExportItem]],
    crash_on: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    crash_point: str,
) -> None:
    """Same file system: link + unlink; other drive: copy to a partial file, rename, unlink.

    The crash hits the 6th photo (``link``: before it is linked; ``unlink_after_link``:
    linked at both places; ``copy2_partial``: half a partial file; ``unlink_partial``:
    complete at the destination plus its partial file; ``unlink_source``: complete copy at
    the destination, original still there).
    """
    root, items = library
    before = snapshot(root)
    dest = tmp_path / "out"

    journal = _crash_move(crash_point, root, dest, items, crash_on, monkeypatch)
    assert 0 < _moved(items) < len(items)
    _assert_cut_short(crash_point, journal, items[5].source)
    undo = undo_export(journal, [root])
    assert undo.kept == [] and snapshot(root) == before
    assert exported(dest) == set()
    assert not [p for p in all_paths(tmp_path) if ".crlc-partial-" in p]

    _crash_move(crash_point, root, dest, items, crash_on, monkeypatch)
    done_before = _moved(items)
    finished = export_images(items, dest, mode="move", roots=[root])
    assert finished.files == 10 and finished.skipped == [] and len(exported(dest)) == 10
    assert finished.already_done in (done_before, done_before + 1)
    assert _moved(items) == 10
    assert not [p for p in all_paths(tmp_path) if ".crlc-partial-" in p]
    hashes = sorted(h for k, (h, _) in snapshot(dest).items() if not k.startswith(EXPORT_FILES))
    assert hashes == sorted(h for h, _ in before.values())
    assert undo_export(finished.manifest, [root]).restored == 10 and snapshot(root) == before


@pytest.mark.parametrize("crash_point", ["copy2_partial", "rename"])
def test_copy_crash_resumes_without_duplicates_or_partial_files(
    tmp_path: Path,
    library: tuple[Path, list[ExportItem]],
    crash_on: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    crash_point: str,
) -> None:
    root, items = library
    dest = tmp_path / "out"
    target = items[6].source
    if crash_point == "copy2_partial":
        real_copy = file_ops.copy_contents

        def copy_contents(src: Any, dst: Any, *args: Any) -> Any:
            if Path(src) == target:
                Path(dst).write_bytes(b"partial")
                raise Crash("copy2")
            return real_copy(src, dst, *args)

        monkeypatch.setattr(file_ops, "copy_contents", copy_contents)
    else:  # the partial file got its final name, the journal line "copied" did not follow
        crash_on(
            os,
            "unlink",
            lambda path, *rest: _is_partial_copy_of(path, target),
            before=False,
        )
    with pytest.raises(Crash):
        export_images(items, dest, roots=[root])
    monkeypatch.undo()
    states = [line.get("state") for line in read_journal(max(dest.glob(".crlc-export-*")))]
    assert states.count("copying") == states.count("copied") + 1
    leftovers = [p for p in all_paths(dest) if ".crlc-partial-" in p]
    assert len(leftovers) == (1 if crash_point == "copy2_partial" else 0)

    result = export_images(items, dest, roots=[root])
    assert result.already_done == states.count("copied") + (crash_point == "rename")
    assert result.files == 10 and len(exported(dest)) == 10
    assert not [p for p in all_paths(dest) if ".crlc-partial-" in p or "(3)" in p]
    for entry in result.entries:
        assert entry.destination is not None
        assert entry.destination.read_bytes() == entry.source.read_bytes()
    undo = undo_export(result.manifest, [root])  # the file cut short got its identity
    assert undo.removed == 10 and undo.kept == [] and exported(dest) == set()


# --------------------------------------------------------------------------- real kill

_KILLABLE_EXPORT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from crlc_engine.results.export import ExportItem, export_images

    class SlowReporter:
        def status(self, text): pass
        def event(self, event): pass
        def progress(self, done, total):
            time.sleep(0.12)

    spec = json.loads(sys.argv[1])
    items = [ExportItem(Path(s), c, 0.9, r) for s, c, r in spec["items"]]
    export_images(items, Path(spec["dest"]), mode="move", roots=[Path(spec["root"])],
                  reporter=SlowReporter())
    """
)


def _kill_export_half_way(root: Path, dest: Path, items: list[ExportItem]) -> int:
    spec = {
        "items": [[str(i.source), i.cluster, i.relative] for i in items],
        "dest": str(dest),
        "root": str(root),
    }
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_EXPORT, json.dumps(spec)], cwd=REPO_ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while _moved(items) < 3:
            assert process.poll() is None, "the export ended before it could be killed"
            assert time.monotonic() < deadline, "the export did not start"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return _moved(items)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_move_killed_half_way_is_fully_undone(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    before = snapshot(root)
    dest = tmp_path / "out"
    moved = _kill_export_half_way(root, dest, items)
    assert 3 <= moved < len(items)
    assert not list(dest.glob("crlc-export-*.csv"))  # killed: only the journal exists

    undo = undo_export(next(dest.glob(".crlc-export-*.journal")), [root])
    assert undo.kept == [] and undo.restored == moved
    assert snapshot(root) == before
    assert exported(dest) == set()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_move_killed_half_way_resumes_then_undoes(
    tmp_path: Path, library: tuple[Path, list[ExportItem]]
) -> None:
    root, items = library
    before = snapshot(root)
    dest = tmp_path / "out"
    moved = _kill_export_half_way(root, dest, items)

    result = export_images(items, dest, mode="move", roots=[root])
    assert result.already_done == moved and result.files == 10 and result.skipped == []
    assert len(exported(dest)) == 10 and not any(i.source.exists() for i in items)
    assert undo_export(result.manifest, [root]).restored == 10
    assert snapshot(root) == before and exported(dest) == set()
