"""The image library: scanning, decoding, the pixel cache, thumbnails and the catalog.

Every bad file must end up as a clear catalog record (status + reason) and in the scan
summary, without stopping the scan. All data is generated here; most scans decode in-process
(``workers=0``) to stay fast.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from crlc_engine.core.errors import (
    InvalidSettingError,
    NewerVersionError,
    NoImagesFoundError,
    TooManyFilesError,
)
from crlc_engine.library import (
    SCHEMA_VERSION,
    ImageLibrary,
    ImageRecord,
    ScanOptions,
    ScanSummary,
    resolve_roots,
)
from crlc_engine.library import decode as decode_mod
from crlc_engine.library import scan as library_mod
from crlc_engine.library.catalog import MIGRATIONS, Catalog
from crlc_engine.library.decode import decode_file
from crlc_engine.library.pixel_cache import PixelCache
from crlc_engine.library.walk import DEFAULT_MAX_FILES, refused_link, walk_root
from crlc_engine.pipeline.jobs import scan_folders
from tests.engine.library_helpers import (
    ORIENTATION_OPS,
    bomb_png,
    expected_thumbnail_size,
    jpeg_roundtrip,
    mad,
    noise,
    picture,
    prepare_unprivileged_tree,
    reference_rgb,
    reference_square,
    run_unprivileged,
    save_jpeg,
    save_oriented_jpeg,
    save_png,
    snapshot,
    square_of,
)

SIDE = 32


# ---------------------------------------------------------------------------- helpers
def scan(
    folders: list[Path],
    ws: Path,
    side: int = SIDE,
    options: ScanOptions | None = None,
    **kwargs: Any,
) -> tuple[ScanSummary, dict[str, ImageRecord]]:
    """Scan in-process; (summary, rel_path -> record of every status)."""
    kwargs.setdefault("workers", 0)
    with ImageLibrary.open(folders, ws) as library:
        summary = library.scan(side, options, **kwargs)
        records = {r.rel_path: r for r in library.images(None)}
    return summary, records


def records_of(folders: list[Path], ws: Path) -> dict[str, ImageRecord]:
    with ImageLibrary.open(folders, ws) as library:
        return {r.rel_path: r for r in library.images(None)}


def cached_pixels(folders: list[Path], ws: Path, side: int) -> dict[str, np.ndarray]:
    """rel_path -> cached S x S pixels of every usable image."""
    with ImageLibrary.open(folders, ws) as library:
        records = library.cached_images(side)
        pixels = library.pixels(side, records)
    return {r.rel_path: pixels[i] for i, r in enumerate(records)}


def skipped_of(summary: ScanSummary) -> dict[str, str]:
    """Skipped path -> reason."""
    return {s.path: s.reason for s in summary.skipped}


def status_of(records: dict[str, ImageRecord]) -> dict[str, tuple[str, str | None]]:
    return {rel: (r.status, r.error) for rel, r in records.items()}


@dataclass
class CallbackReporter:
    """A reporter that runs ``on_progress(done)`` after each decoded file."""

    on_progress: Any
    progresses: list[tuple[float, float | None]] = field(default_factory=list)

    def status(self, text: str) -> None:
        pass

    def progress(self, done: float, total: float | None) -> None:
        self.progresses.append((done, total))
        self.on_progress(done)

    def event(self, event: object) -> None:
        pass


# ---------------------------------------------------------------------------- bad files
def test_bad_files_are_recorded_with_reasons_and_the_rest_is_processed(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    good = save_jpeg(photos / "good.jpg", picture(160, 120, seed=1))
    save_png(photos / "good2.png", picture(90, 70, seed=2))
    (photos / "empty.jpg").write_bytes(b"")
    real = save_jpeg(photos / "whole.jpg", noise(200, 150, seed=3)).read_bytes()
    (photos / "truncated.jpg").write_bytes(real[: len(real) // 2])
    (photos / "whole.jpg").unlink()
    (photos / "notes.jpg").write_text("these are my holiday notes, not a photo\n")
    (photos / "random.png").write_bytes(np.random.default_rng(0).bytes(5000))
    (photos / "random.webp").write_bytes(np.random.default_rng(1).bytes(300))
    bomb_png(photos / "bomb.png")
    (photos / "readme.txt").write_text("not an image extension: never looked at")
    limit = Image.MAX_IMAGE_PIXELS

    summary, records = scan([photos], tmp_path / "ws")

    assert limit == Image.MAX_IMAGE_PIXELS
    assert Image.MAX_IMAGE_PIXELS is not None
    assert set(records) == {
        "bomb.png",
        "empty.jpg",
        "good.jpg",
        "good2.png",
        "notes.jpg",
        "random.png",
        "random.webp",
        "truncated.jpg",
    }
    not_an_image = "not an image (Pillow cannot identify the format)"
    assert records["good.jpg"].status == "ok"
    assert records["good2.png"].status == "ok"
    assert status_of(records)["empty.jpg"] == ("error", "empty file (0 bytes)")
    assert status_of(records)["notes.jpg"] == ("error", not_an_image)
    assert status_of(records)["random.png"] == ("error", not_an_image)
    assert status_of(records)["random.webp"] == ("error", not_an_image)
    truncated = records["truncated.jpg"]
    assert truncated.status == "error"
    assert truncated.error is not None
    assert truncated.error.startswith("corrupt or truncated image: ")
    assert "truncated" in truncated.error.removeprefix("corrupt or truncated image: ")
    bomb = records["bomb.png"]
    assert bomb.status == "error"
    assert bomb.error is not None
    assert bomb.error.startswith("decompression bomb refused: ")
    assert "1600000000 pixels" in bomb.error
    for rel in ("empty.jpg", "notes.jpg", "random.png", "random.webp", "truncated.jpg", "bomb.png"):
        assert records[rel].width is None
        assert not records[rel].has_thumbnail

    assert summary.images_ok == 2
    assert summary.new == 8
    assert summary.decoded == 8
    expected_skipped = {
        str(photos / rel): records[rel].error
        for rel in ("bomb.png", "empty.jpg", "notes.jpg", "random.png", "random.webp")
    }
    expected_skipped[str(photos / "truncated.jpg")] = truncated.error
    assert skipped_of(summary) == expected_skipped
    assert summary.images_skipped == 6
    pixels = cached_pixels([photos], tmp_path / "ws", SIDE)
    assert mad(pixels["good.jpg"], reference_square(good, SIDE)) <= 3

    # Bad files are not decoded again while they stay the same.
    again, _ = scan([photos], tmp_path / "ws")
    assert again.decoded == 0
    assert again.unchanged == 8
    assert skipped_of(again) == expected_skipped


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = bomb_png(tmp_path / "bomb.png", 40000, 40000)
    assert path.stat().st_size < 200
    limit = Image.MAX_IMAGE_PIXELS
    result = decode_file(str(path), SIDE, str(tmp_path / "thumb.jpg"))
    assert result.status == "error"
    assert result.reason is not None
    assert result.reason.startswith("decompression bomb refused: ")
    assert result.pixels is None
    assert not (tmp_path / "thumb.jpg").exists()
    assert limit == Image.MAX_IMAGE_PIXELS


def test_size_out_of_range_is_refused(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    save_jpeg(photos / "a.jpg", picture(40, 30))
    with ImageLibrary.open([photos], tmp_path / "ws") as library:
        with pytest.raises(ValueError, match=r"8\.\.1024"):
            library.scan(7, workers=0)
        with pytest.raises(ValueError, match=r"8\.\.1024"):
            library.scan(1025, workers=0)


# ---------------------------------------------------------------------------- permissions
_UNPRIVILEGED_BODY = """
root, ws = Path(sys.argv[1]), Path(sys.argv[2])

def scan():
    with ImageLibrary.open([root], ws) as lib:
        try:
            summary = lib.scan(32, workers=0).as_dict()
        except NoImagesFoundError as exc:
            summary = {"no_images": str(exc)}
        records = {r.rel_path: [r.id, r.status, r.error] for r in lib.images(None)}
    return {"summary": summary, "records": records}

out = {"uid": os.geteuid()}
os.chmod(root / "locked.jpg", 0)
os.chmod(root / "sealed", 0)
os.chmod(root / "noexec", 0o644)
try:
    open(root / "locked.jpg", "rb").close()
except PermissionError:
    pass
else:
    print(json.dumps({"permissions_not_enforced": True}))
    sys.exit(0)
try:
    out["first"] = scan()
    os.chmod(root / "locked.jpg", 0o644)
    os.chmod(root / "sealed", 0o755)
    os.chmod(root / "noexec", 0o755)
    out["fixed"] = scan()
    os.chmod(root / "sealed", 0)
    out["sealed_again"] = scan()
finally:
    os.chmod(root / "locked.jpg", 0o644)
    os.chmod(root / "sealed", 0o755)
    os.chmod(root / "noexec", 0o755)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def unprivileged_scans() -> Iterator[dict[str, Any]]:
    """Three scans by an unprivileged user (uid 65534 when the tests run as root).

    ``first``: locked.jpg is chmod 000, sealed/ is chmod 000, noexec/ is chmod 644 (listable,
    but its files cannot be looked at). ``fixed``: all permissions restored. ``sealed_again``:
    sealed/ is chmod 000 again after its image was scanned.
    """
    base = Path(tempfile.mkdtemp(prefix="crlc-unprivileged-"))
    try:
        os.chmod(base, 0o755)
        root = base / "photos"
        save_jpeg(root / "ok.jpg", picture(80, 60, seed=1))
        save_jpeg(root / "locked.jpg", picture(80, 60, seed=2))
        save_jpeg(root / "sealed" / "inner.jpg", picture(80, 60, seed=3))
        save_jpeg(root / "noexec" / "hidden_by_mode.jpg", picture(80, 60, seed=4))
        (base / "ws").mkdir()
        prepare_unprivileged_tree(root)
        prepare_unprivileged_tree(base / "ws")
        result = run_unprivileged(_UNPRIVILEGED_BODY, [str(root), str(base / "ws")])
        result["root"] = str(root)
        yield result
    finally:
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames + filenames:
                os.chmod(os.path.join(dirpath, name), 0o755, follow_symlinks=False)
        shutil.rmtree(base, ignore_errors=True)


def test_unreadable_file_and_folders_are_reported(unprivileged_scans: dict[str, Any]) -> None:
    if os.geteuid() == 0:
        assert unprivileged_scans["uid"] == 65534
    root = Path(unprivileged_scans["root"])
    first = unprivileged_scans["first"]
    records = first["records"]
    assert set(records) == {"ok.jpg", "locked.jpg"}
    assert records["ok.jpg"][1:] == ["ok", None]
    assert records["locked.jpg"][1:] == ["error", "permission denied: Permission denied"]
    summary = first["summary"]
    assert summary["images_ok"] == 1
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert skipped == {
        str(root / "locked.jpg"): "permission denied: Permission denied",
        str(root / "sealed"): "cannot list folder: Permission denied",
        str(root / "noexec" / "hidden_by_mode.jpg"): "cannot read file: Permission denied",
    }
    assert summary["images_skipped"] == 3


def test_next_scan_picks_up_fixed_folder_permissions(unprivileged_scans: dict[str, Any]) -> None:
    fixed = unprivileged_scans["fixed"]
    records = fixed["records"]
    assert records["sealed/inner.jpg"][1:] == ["ok", None]
    assert records["noexec/hidden_by_mode.jpg"][1:] == ["ok", None]
    assert records["ok.jpg"][0] == unprivileged_scans["first"]["records"]["ok.jpg"][0]


def test_next_scan_picks_up_fixed_file_permissions(unprivileged_scans: dict[str, Any]) -> None:
    """chmod does not change the mtime, so a 'permission denied' row must be retried anyway."""
    first = unprivileged_scans["first"]["records"]["locked.jpg"]
    fixed = unprivileged_scans["fixed"]["records"]["locked.jpg"]
    assert fixed[0] == first[0]
    assert fixed[1:] == ["ok", None], "a file whose permissions were fixed stays an error"
    assert unprivileged_scans["fixed"]["summary"]["images_ok"] == 4
    assert unprivileged_scans["fixed"]["summary"]["skipped"] == []


def test_folder_that_becomes_unreadable_does_not_mark_its_images_deleted(
    unprivileged_scans: dict[str, Any],
) -> None:
    root = Path(unprivileged_scans["root"])
    again = unprivileged_scans["sealed_again"]
    skipped = {s["path"]: s["reason"] for s in again["summary"]["skipped"]}
    assert skipped[str(root / "sealed")] == "cannot list folder: Permission denied"
    inner = again["records"]["sealed/inner.jpg"]
    assert inner[1:] != ["missing", "file no longer exists"], (
        "images in a folder that cannot be listed are reported as deleted"
    )
    assert again["summary"]["missing"] == 0


# ---------------------------------------------------------------------------- names
def test_names_with_spaces_non_ascii_and_long_paths(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    long_dirs = "/".join(
        [f"{i}-" + "d" * 75 for i in range(3)] + ["répertoire très long " + "é" * 40]
    )
    long_ascii = long_dirs + "/" + "x" * 246 + ".jpg"
    long_unicode = long_dirs + "/" + "é" * 123 + ".png"
    names = {
        "été 2024/ça va.jpg": 1,
        "写真/猫 の 写真.png": 2,
        "with  two spaces/ leading space.jpg": 3,
        "Ελληνικά/φωτογραφία.JPG": 4,
        long_ascii: 5,
        long_unicode: 6,
    }
    for rel, seed in names.items():
        path = photos / rel
        if rel.lower().endswith(".png"):
            save_png(path, picture(64, 48, seed=seed))
        else:
            save_jpeg(path, picture(64, 48, seed=seed))
    assert len(os.fsencode(photos / long_ascii)) > 300
    assert len(("x" * 246 + ".jpg").encode()) == 250
    assert len(("é" * 123 + ".png").encode()) == 250

    summary, records = scan([photos], tmp_path / "ws")

    assert set(records) == set(names)
    assert summary.skipped == []
    assert summary.images_ok == len(names)
    pixels = cached_pixels([photos], tmp_path / "ws", SIDE)
    with ImageLibrary.open([photos], tmp_path / "ws") as library:
        for rel in names:
            record = records[rel]
            assert record.status == "ok", (rel, record.error)
            assert record.path == photos / rel
            assert record.path.exists()
            assert (record.width, record.height) == (64, 48)
            assert record.has_thumbnail
            assert library.thumbnail_path(record.id).is_file()
            assert mad(pixels[rel], reference_square(photos / rel, SIDE)) <= 3
            assert library.catalog.image_by_path(photos / rel) == record


def test_file_name_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    save_jpeg(photos / "fine.jpg", picture(40, 30))
    bad = os.path.join(os.fsencode(photos), b"caf\xe9-latin1.jpg")
    try:
        with open(bad, "wb") as handle:
            handle.write((photos / "fine.jpg").read_bytes())
    except OSError as exc:  # pragma: no cover - file systems that enforce UTF-8 names
        pytest.skip(f"this file system refuses non-UTF-8 names: {exc}")
    summary, records = scan([photos], tmp_path / "ws")
    assert set(records) == {"fine.jpg"}
    assert records["fine.jpg"].status == "ok"
    assert [s.reason for s in summary.skipped] == ["file name is not valid UTF-8: skipped"]
    assert summary.skipped[0].path.endswith("-latin1.jpg")
    assert summary.skipped[0].path.startswith(str(photos))


# ---------------------------------------------------------------------------- symlinks
def test_symlink_loops_terminate_and_each_image_is_cached_once(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    save_jpeg(photos / "real" / "a.jpg", picture(40, 30, seed=1))
    save_jpeg(photos / "real" / "sub" / "b.jpg", picture(40, 30, seed=2))
    os.symlink("..", photos / "real" / "sub" / "up")  # -> photos/real, its own ancestor
    os.symlink(".", photos / "self")  # -> photos
    loop = "symbolic link loop or folder seen twice: skipped"

    summary, records = scan([photos], tmp_path / "ws")

    assert sorted(records) == ["real/a.jpg", "real/sub/b.jpg"]
    assert all(r.status == "ok" for r in records.values())
    assert skipped_of(summary) == {
        str(photos / "real" / "sub" / "up"): loop,
        str(photos / "self"): loop,
    }
    assert summary.images_ok == 2
    again, _ = scan([photos], tmp_path / "ws")
    assert again.decoded == 0
    assert again.unchanged == 2
    assert skipped_of(again) == skipped_of(summary)


@pytest.fixture
def linked_tree(tmp_path: Path) -> Path:
    """photos/own.jpg, photos/link.jpg -> outside/ext.jpg, photos/linkdir -> outside/extdir."""
    outside = tmp_path / "outside"
    save_jpeg(outside / "ext.jpg", picture(120, 90, seed=7))
    save_jpeg(outside / "extdir" / "c.jpg", picture(50, 40, seed=8))
    photos = tmp_path / "photos"
    save_jpeg(photos / "own.jpg", picture(50, 40, seed=9))
    os.symlink(outside / "ext.jpg", photos / "link.jpg")
    os.symlink(outside / "extdir", photos / "linkdir")
    return photos


def test_symlinked_files_and_folders_are_followed_by_default(
    linked_tree: Path, tmp_path: Path
) -> None:
    summary, records = scan([linked_tree], tmp_path / "ws")
    assert sorted(records) == ["link.jpg", "linkdir/c.jpg", "own.jpg"]
    assert all(r.status == "ok" for r in records.values())
    assert records["link.jpg"].size == (tmp_path / "outside" / "ext.jpg").stat().st_size
    assert (records["link.jpg"].width, records["link.jpg"].height) == (120, 90)
    pixels = cached_pixels([linked_tree], tmp_path / "ws", SIDE)
    reference = reference_square(tmp_path / "outside" / "ext.jpg", SIDE)
    assert mad(pixels["link.jpg"], reference) <= 3
    assert summary.skipped == []
    again, _ = scan([linked_tree], tmp_path / "ws")
    assert (again.decoded, again.unchanged) == (0, 3)


def test_no_follow_symlinks_does_not_enter_linked_folders(
    linked_tree: Path, tmp_path: Path
) -> None:
    options = ScanOptions(follow_symlinks=False)
    _, records = scan([linked_tree], tmp_path / "ws", options=options)
    assert "own.jpg" in records
    assert "linkdir/c.jpg" not in records
    assert records["own.jpg"].status == "ok"


def test_no_follow_symlinks_skips_linked_files(linked_tree: Path, tmp_path: Path) -> None:
    """ScanOptions.follow_symlinks: 'Follow symbolic links to folders and files'."""
    options = ScanOptions(follow_symlinks=False)
    _, records = scan([linked_tree], tmp_path / "ws", options=options)
    assert sorted(records) == ["own.jpg"], "a symbolic link to a file was followed"


def test_no_follow_symlinks_rescan_decodes_nothing(linked_tree: Path, tmp_path: Path) -> None:
    options = ScanOptions(follow_symlinks=False)
    first, _ = scan([linked_tree], tmp_path / "ws", options=options)
    again, _ = scan([linked_tree], tmp_path / "ws", options=options)
    assert again.decoded == 0, "an unchanged file is decoded again on every scan"
    assert again.changed == 0
    assert again.unchanged == first.new


# ---------------------------------------------------------------------------- changes mid-scan
def test_file_deleted_during_the_scan_is_recorded_missing(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg", "d.jpg"]):
        save_jpeg(photos / name, picture(60, 40, seed=i))
    victim = photos / "c.jpg"
    kept = victim.read_bytes()
    stat = victim.stat()

    def delete_victim(done: float) -> None:
        if done == 1:  # a.jpg is decoded; c.jpg is not yet
            victim.unlink()

    reporter = CallbackReporter(delete_victim)
    summary, records = scan([photos], tmp_path / "ws", reporter=reporter)

    assert reporter.progresses == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert status_of(records)["c.jpg"] == ("missing", "deleted during the scan")
    assert {r.status for rel, r in records.items() if rel != "c.jpg"} == {"ok"}
    assert summary.images_ok == 3
    assert summary.decoded == 4
    victim_id = records["c.jpg"].id

    # Still gone: nothing to decode, the row (and id) stays.
    again, records = scan([photos], tmp_path / "ws")
    assert again.decoded == 0
    assert records["c.jpg"].status == "missing"
    assert records["c.jpg"].id == victim_id

    # Back again: decoded into its old row.
    victim.write_bytes(kept)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    back, records = scan([photos], tmp_path / "ws")
    assert back.decoded == 1
    assert status_of(records)["c.jpg"] == ("ok", None)
    assert records["c.jpg"].id == victim_id
    pixels = cached_pixels([photos], tmp_path / "ws", SIDE)
    assert mad(pixels["c.jpg"], reference_square(victim, SIDE)) <= 3


def test_file_deleted_during_the_scan_is_in_the_summary(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        save_jpeg(photos / name, picture(60, 40, seed=i))
    victim = photos / "c.jpg"

    def delete_victim(done: float) -> None:
        if done == 1:
            victim.unlink()

    summary, _ = scan([photos], tmp_path / "ws", reporter=CallbackReporter(delete_victim))
    assert summary.missing == 1 or skipped_of(summary).get(str(victim)) == (
        "deleted during the scan"
    ), "a file deleted during the scan appears nowhere in the scan summary"


def test_file_replaced_before_it_is_decoded_caches_the_new_version(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for i, name in enumerate(["a.jpg", "b.jpg"]):
        save_jpeg(photos / name, picture(60, 40, seed=i))
    target = photos / "b.jpg"
    old_mtime = target.stat().st_mtime_ns

    def replace_b(done: float) -> None:
        if done == 1:
            save_jpeg(target, picture(90, 60, seed=50))
            os.utime(target, ns=(old_mtime + 3_000_000_000, old_mtime + 3_000_000_000))

    _, records = scan([photos], tmp_path / "ws", reporter=CallbackReporter(replace_b))
    record = records["b.jpg"]
    assert record.status == "ok"
    assert (record.size, record.mtime_ns) == (target.stat().st_size, target.stat().st_mtime_ns)
    assert (record.width, record.height) == (90, 60)
    pixels = cached_pixels([photos], tmp_path / "ws", SIDE)
    assert mad(pixels["b.jpg"], reference_square(target, SIDE)) <= 3
    again, _ = scan([photos], tmp_path / "ws")
    assert again.decoded == 0


def test_file_changed_while_it_is_decoded_is_recorded_then_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        save_jpeg(photos / name, picture(60, 40, seed=i))
    target = photos / "b.jpg"
    old = target.stat()
    current: dict[str, str] = {}
    real_decode, real_square = library_mod.decode_file, decode_mod.square_from

    def decode_spy(path: str, side: int, thumb: str | None) -> Any:
        current["path"] = path
        return real_decode(path, side, thumb)

    def square_and_overwrite(
        img: Image.Image, side: int, source: tuple[float, float] | None = None
    ) -> Image.Image:
        if current.get("path") == str(target) and "done" not in current:
            current["done"] = "yes"  # the file changes after it was read, before the check
            save_jpeg(target, picture(120, 80, seed=99))
            os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns + 5_000_000_000))
        return real_square(img, side, source)

    monkeypatch.setattr(library_mod, "decode_file", decode_spy)
    monkeypatch.setattr(decode_mod, "square_from", square_and_overwrite)
    summary, records = scan([photos], tmp_path / "ws")
    monkeypatch.undo()

    reason = "changed while it was being read; scan again"
    assert current.get("done") == "yes"
    assert status_of(records)["b.jpg"] == ("error", reason)
    assert status_of(records)["a.jpg"] == ("ok", None)
    assert status_of(records)["c.jpg"] == ("ok", None)
    assert skipped_of(summary) == {str(target): reason}
    assert summary.images_ok == 2
    target_id = records["b.jpg"].id

    again, records = scan([photos], tmp_path / "ws")
    assert (again.changed, again.decoded, again.unchanged) == (1, 1, 2)
    assert status_of(records)["b.jpg"] == ("ok", None)
    assert records["b.jpg"].id == target_id
    assert (records["b.jpg"].width, records["b.jpg"].height) == (120, 80)
    assert again.skipped == []
    pixels = cached_pixels([photos], tmp_path / "ws", SIDE)
    assert mad(pixels["b.jpg"], reference_square(target, SIDE)) <= 3


# ---------------------------------------------------------------------------- no images
def test_folder_without_images_raises_one_clear_error(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "notes.txt").write_text("hello")
    (photos / "sub" / "data.csv").write_text("a,b\n")
    (photos / ".hidden.jpg").write_bytes(b"hidden files are not looked at")
    with ImageLibrary.open([photos], tmp_path / "ws") as library:
        with pytest.raises(NoImagesFoundError) as info:
            library.scan(SIDE, workers=0)
        assert library.images(None) == []
    message = str(info.value)
    assert str(photos.resolve()) in message
    assert "jpg" in message and "png" in message  # says what it looked for
    assert info.value.kind == "no_images"


def test_folder_with_only_bad_files_names_an_example(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.png").write_text("text")
    with ImageLibrary.open([photos], tmp_path / "ws") as library:
        with pytest.raises(NoImagesFoundError) as info:
            library.scan(SIDE, workers=0)
        statuses = {r.rel_path: (r.status, r.error) for r in library.images(None)}
    assert statuses == {
        "empty.jpg": ("error", "empty file (0 bytes)"),
        "text.png": ("error", "not an image (Pillow cannot identify the format)"),
    }
    message = str(info.value)
    assert str(photos.resolve()) in message
    assert f"{photos / 'empty.jpg'}: empty file (0 bytes)" in message  # an example with its reason


# ---------------------------------------------------------------------------- selection
def test_hidden_files_and_folders_are_skipped_unless_asked(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    save_jpeg(photos / "visible.jpg", picture(40, 30, seed=1))
    save_jpeg(photos / ".dotfile.jpg", picture(40, 30, seed=2))
    save_jpeg(photos / ".cache" / "inside.jpg", picture(40, 30, seed=3))
    save_png(photos / "sub" / ".also.png", picture(40, 30, seed=4))
    save_png(photos / "sub" / "shown.png", picture(40, 30, seed=5))

    summary, records = scan([photos], tmp_path / "ws1")
    assert sorted(records) == ["sub/shown.png", "visible.jpg"]
    assert summary.skipped == []

    summary, records = scan([photos], tmp_path / "ws2", options=ScanOptions(include_hidden=True))
    assert sorted(records) == [
        ".cache/inside.jpg",
        ".dotfile.jpg",
        "sub/.also.png",
        "sub/shown.png",
        "visible.jpg",
    ]
    assert summary.images_ok == 5


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ((), (), ["d.jpg", "keep/a.jpg", "keep/b.png", "skip/c.jpg", "skip/deeper/e.jpg"]),
        (("*.jpg",), (), ["d.jpg", "keep/a.jpg", "skip/c.jpg", "skip/deeper/e.jpg"]),
        (("keep/*",), (), ["keep/a.jpg", "keep/b.png"]),
        ((), ("skip",), ["d.jpg", "keep/a.jpg", "keep/b.png"]),
        ((), ("*.png",), ["d.jpg", "keep/a.jpg", "skip/c.jpg", "skip/deeper/e.jpg"]),
        ((), ("skip/deeper",), ["d.jpg", "keep/a.jpg", "keep/b.png", "skip/c.jpg"]),
        (("*.jpg",), ("skip",), ["d.jpg", "keep/a.jpg"]),
    ],
)
def test_include_and_exclude_patterns(
    tmp_path: Path, include: tuple[str, ...], exclude: tuple[str, ...], expected: list[str]
) -> None:
    photos = tmp_path / "photos"
    for i, rel in enumerate(["keep/a.jpg", "skip/c.jpg", "d.jpg", "skip/deeper/e.jpg"]):
        save_jpeg(photos / rel, picture(40, 30, seed=i))
    save_png(photos / "keep" / "b.png", picture(40, 30, seed=9))
    options = ScanOptions(include=include, exclude=exclude)
    summary, records = scan([photos], tmp_path / "ws", options=options)
    assert sorted(records) == expected
    assert summary.images_ok == len(expected)
    assert summary.skipped == []


# ---------------------------------------------------------------------------- decoding accuracy
@dataclass
class DecodedSet:
    """A folder of every format / colour mode scanned at 32 and then at 96 px."""

    photos: Path
    ws: Path
    upright: dict[str, tuple[int, int]]  # name -> (width, height) as displayed
    first: dict[str, ImageRecord]
    second: dict[str, ImageRecord]
    pixels: dict[int, dict[str, np.ndarray]]
    references: dict[str, Image.Image]
    thumbnails: dict[str, Image.Image]
    summaries: list[ScanSummary]


def _write_formats(photos: Path) -> dict[str, tuple[int, int]]:
    """Write the test images; return name -> upright (width, height)."""
    sizes: dict[str, tuple[int, int]] = {}

    def put(name: str, img: Image.Image, **save: Any) -> None:
        path = photos / name
        img.save(path, **save)
        sizes[name] = img.size

    photos.mkdir(parents=True)
    base = Image.fromarray(picture(320, 240, seed=11), "RGB")
    # Large photos: JPEG draft mode kicks in; EXIF orientations 3, 6, 8.
    save_jpeg(photos / "large_landscape.jpg", picture(1200, 900, seed=1))
    sizes["large_landscape.jpg"] = (1200, 900)
    save_jpeg(photos / "large_portrait.jpg", picture(900, 1200, seed=2))
    sizes["large_portrait.jpg"] = (900, 1200)
    save_oriented_jpeg(photos / "exif3.jpg", picture(1200, 900, seed=3), 3)
    sizes["exif3.jpg"] = (1200, 900)
    save_oriented_jpeg(photos / "exif6.jpg", picture(900, 1200, seed=4), 6)
    sizes["exif6.jpg"] = (900, 1200)
    save_oriented_jpeg(photos / "exif8.jpg", picture(900, 1200, seed=5), 8)
    sizes["exif8.jpg"] = (900, 1200)
    save_png(photos / "large.png", picture(1000, 700, seed=6))
    sizes["large.png"] = (1000, 700)
    large = Image.fromarray(picture(1000, 750, seed=12), "RGB")
    put("cmyk_large.jpg", large.convert("CMYK"), quality=92)
    put("grey_large.jpg", large.convert("L"), quality=92)
    # Every colour mode.
    put("grey.png", base.convert("L"))
    alpha = Image.linear_gradient("L").resize(base.size).rotate(90)
    la = base.convert("L")
    la.putalpha(alpha)
    put("grey_alpha.png", la)
    rgba = base.copy()
    rgba.putalpha(alpha)
    put("rgba.png", rgba)
    put("palette.png", base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    transparent = palette.copy()
    transparent.paste(5, (30, 20, 200, 120))
    put("palette_transparent.png", transparent, transparency=5)
    put("cmyk.tif", base.convert("CMYK"))
    put("cmyk.jpg", base.convert("CMYK"), quality=92)
    ramp = np.linspace(0, 65535, 320, dtype=np.float64)[None, :] * np.ones((240, 1))
    ramp[40:100, 50:150] = 1000
    put("grey16.png", Image.fromarray(ramp.astype(np.uint16)))
    put("bilevel.png", base.convert("1"))
    frames = [base.quantize(64), Image.fromarray(255 - np.asarray(base), "RGB").quantize(64)]
    put("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=100)
    put("photo.webp", base, quality=90)
    put("photo.bmp", base)
    put("photo.tiff", base)
    put("small.png", Image.fromarray(picture(100, 60, seed=13), "RGB"))
    return sizes


@pytest.fixture(scope="module")
def decoded(tmp_path_factory: pytest.TempPathFactory) -> DecodedSet:
    tmp = tmp_path_factory.mktemp("formats")
    photos, ws = tmp / "photos", tmp / "ws"
    upright = _write_formats(photos)
    summaries = []
    with ImageLibrary.open([photos], ws) as library:
        summaries.append(library.scan(32, workers=0))
        first = {r.rel_path: r for r in library.images(None)}
        summaries.append(library.scan(96, workers=0))
        second = {r.rel_path: r for r in library.images(None)}
        pixels: dict[int, dict[str, np.ndarray]] = {}
        for side in (32, 96):
            records = library.cached_images(side)
            rows = library.pixels(side, records)
            pixels[side] = {r.rel_path: rows[i] for i, r in enumerate(records)}
        thumbnails = {}
        for rel, record in first.items():
            with Image.open(library.thumbnail_path(record.id)) as thumb:
                thumbnails[rel] = thumb.convert("RGB")
    references = {name: reference_rgb(photos / name) for name in upright}
    return DecodedSet(photos, ws, upright, first, second, pixels, references, thumbnails, summaries)


FORMAT_NAMES = [
    "large_landscape.jpg",
    "large_portrait.jpg",
    "exif3.jpg",
    "exif6.jpg",
    "exif8.jpg",
    "large.png",
    "cmyk_large.jpg",
    "grey_large.jpg",
    "grey.png",
    "grey_alpha.png",
    "rgba.png",
    "palette.png",
    "palette_transparent.png",
    "cmyk.tif",
    "cmyk.jpg",
    "grey16.png",
    "bilevel.png",
    "animated.gif",
    "photo.webp",
    "photo.bmp",
    "photo.tiff",
    "small.png",
]


def test_every_format_was_written_in_the_intended_mode(decoded: DecodedSet) -> None:
    modes = {}
    for name in FORMAT_NAMES:
        with Image.open(decoded.photos / name) as img:
            modes[name] = (img.format, img.mode)
    assert modes["cmyk_large.jpg"] == ("JPEG", "CMYK")
    assert modes["cmyk.jpg"] == ("JPEG", "CMYK")
    assert modes["cmyk.tif"] == ("TIFF", "CMYK")
    assert modes["grey_large.jpg"] == ("JPEG", "L")
    assert modes["grey.png"] == ("PNG", "L")
    assert modes["grey_alpha.png"] == ("PNG", "LA")
    assert modes["rgba.png"] == ("PNG", "RGBA")
    assert modes["palette.png"] == ("PNG", "P")
    assert modes["palette_transparent.png"] == ("PNG", "P")
    assert modes["grey16.png"] == ("PNG", "I;16")
    assert modes["bilevel.png"] == ("PNG", "1")
    assert modes["animated.gif"][0] == "GIF"
    assert modes["photo.webp"][0] == "WEBP"
    assert modes["photo.bmp"] == ("BMP", "RGB")
    assert modes["photo.tiff"] == ("TIFF", "RGB")
    with Image.open(decoded.photos / "palette_transparent.png") as img:
        assert img.info.get("transparency") == 5
    with Image.open(decoded.photos / "animated.gif") as img:
        assert img.n_frames == 2
    for orientation in (3, 6, 8):
        with Image.open(decoded.photos / f"exif{orientation}.jpg") as img:
            assert img.getexif().get(0x0112) == orientation


def test_every_format_decodes_ok(decoded: DecodedSet) -> None:
    assert set(decoded.first) == set(FORMAT_NAMES)
    assert {rel: r.status for rel, r in decoded.first.items()} == dict.fromkeys(FORMAT_NAMES, "ok")
    assert decoded.summaries[0].images_ok == len(FORMAT_NAMES)
    assert decoded.summaries[0].skipped == []
    # The second size decodes everything again (into its own cache), with stable ids.
    assert decoded.summaries[1].decoded == len(FORMAT_NAMES)
    assert decoded.summaries[1].new == 0
    assert {r: x.id for r, x in decoded.second.items()} == {
        r: x.id for r, x in decoded.first.items()
    }


@pytest.mark.parametrize("side", [32, 96])
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_cached_pixels_match_a_full_resolution_reference(
    decoded: DecodedSet, name: str, side: int
) -> None:
    reference = square_of(decoded.references[name], side)
    cached = decoded.pixels[side][name]
    assert cached.shape == (side, side, 3)
    assert mad(cached, reference) <= 3


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotation_gives_the_upright_picture(decoded: DecodedSet, orientation: int) -> None:
    """The test data itself: stored pixels + orientation == the upright picture."""
    name = f"exif{orientation}.jpg"
    with Image.open(decoded.photos / name) as img:
        stored = img.convert("RGB")
    width, height = decoded.upright[name]
    assert stored.size == ((width, height) if orientation == 3 else (height, width))
    upright = stored.transpose(ORIENTATION_OPS[orientation])
    assert upright.size == decoded.upright[name]
    for side in (32, 96):
        cached = decoded.pixels[side][name]
        assert mad(cached, square_of(upright, side)) <= 3
        assert mad(cached, square_of(stored, side)) > 15  # i.e. not left unrotated


def test_gif_takes_the_first_frame(decoded: DecodedSet) -> None:
    with Image.open(decoded.photos / "animated.gif") as img:
        img.seek(1)
        second_frame = img.convert("RGB")
    cached = decoded.pixels[32]["animated.gif"]
    assert mad(cached, square_of(decoded.references["animated.gif"], 32)) <= 3
    assert mad(cached, square_of(second_frame, 32)) > 40


def test_transparency_is_composited_on_white(decoded: DecodedSet) -> None:
    """The transparent palette block is white, not the palette colour or black."""
    record = decoded.first["palette_transparent.png"]
    assert record.status == "ok"
    reference = np.asarray(decoded.references["palette_transparent.png"])
    block = reference[20:120, 30:200]
    assert (block == 255).all()
    thumb = np.asarray(decoded.thumbnails["palette_transparent.png"])
    assert thumb[30:70, 40:140].mean() > 245  # the block, at 256/320 scale


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_catalog_size_is_the_upright_image_size(decoded: DecodedSet, name: str) -> None:
    record = decoded.first[name]
    assert (record.width, record.height) == decoded.upright[name], (
        "catalog width/height are not the image's real (EXIF-rotated) size"
    )


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_thumbnail_is_upright_and_never_enlarged(decoded: DecodedSet, name: str) -> None:
    record = decoded.first[name]
    assert record.has_thumbnail
    thumb = decoded.thumbnails[name]
    width, height = decoded.upright[name]
    assert thumb.size == expected_thumbnail_size(width, height)
    assert max(thumb.size) == min(256, max(width, height))
    reference = jpeg_roundtrip(
        decoded.references[name].resize(thumb.size, Image.Resampling.BILINEAR), quality=85
    )
    assert mad(np.asarray(thumb), np.asarray(reference)) <= 3
    if name.startswith("exif"):
        flipped = reference.transpose(Image.Transpose.ROTATE_180)
        assert mad(np.asarray(thumb), np.asarray(flipped)) > 15


def test_a_second_size_keeps_the_thumbnail_flag(decoded: DecodedSet) -> None:
    """Scanning at 96 after 32 does not rewrite thumbnails; they still exist for this version."""
    with ImageLibrary.open([decoded.photos], decoded.ws) as library:
        for record in decoded.second.values():
            assert library.thumbnail_path(record.id).is_file()
    lost = sorted(rel for rel, r in decoded.second.items() if not r.has_thumbnail)
    assert lost == [], "has_thumbnail was reset by the scan at a second size"


# ---------------------------------------------------------------------------- HEIC
def test_heic_decodes_with_pillow_heif(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(picture(320, 240, seed=21), "RGB").save(photos / "phone.heic", quality=90)
    with Image.open(photos / "phone.heic") as img:
        assert img.format == "HEIF"
    assert decode_mod.heif_available()
    summary, records = scan([photos], tmp_path / "ws")
    assert summary.images_ok == 1
    assert status_of(records) == {"phone.heic": ("ok", None)}
    assert (records["phone.heic"].width, records["phone.heic"].height) == (320, 240)
    pixels = cached_pixels([photos], tmp_path / "ws", SIDE)
    assert mad(pixels["phone.heic"], reference_square(photos / "phone.heic", SIDE)) <= 3


def _heic_or_fake(path: Path) -> None:
    try:
        import pillow_heif
    except ImportError:
        path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
        return
    pillow_heif.register_heif_opener()
    Image.fromarray(picture(64, 48, seed=22), "RGB").save(path, quality=90)


def test_heic_without_pillow_heif_is_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    _heic_or_fake(photos / "phone.heic")
    _heic_or_fake(photos / "other.HEIF")
    save_jpeg(photos / "fine.jpg", picture(40, 30))
    monkeypatch.setattr(decode_mod, "_heif_state", {"ok": False})
    summary, records = scan([photos], tmp_path / "ws")
    for rel in ("phone.heic", "other.HEIF"):
        record = records[rel]
        assert record.status == "unsupported"
        assert record.error is not None
        assert "pillow-heif" in record.error
        assert skipped_of(summary)[str(photos / rel)] == record.error
    assert records["fine.jpg"].status == "ok"
    assert summary.images_ok == 1


def test_unsupported_heic_is_decoded_once_pillow_heif_is_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    photos = tmp_path / "photos"
    photos.mkdir()
    _heic_or_fake(photos / "phone.heic")
    save_jpeg(photos / "fine.jpg", picture(40, 30))
    monkeypatch.setattr(decode_mod, "_heif_state", {"ok": False})
    _, records = scan([photos], tmp_path / "ws")
    assert records["phone.heic"].status == "unsupported"
    pillow_heif.register_heif_opener()
    monkeypatch.setattr(decode_mod, "_heif_state", {"ok": True})  # installed afterwards
    again, records = scan([photos], tmp_path / "ws")
    assert records["phone.heic"].status == "ok", (
        "an 'unsupported' HEIC file is never retried after pillow-heif is installed"
    )
    assert again.decoded == 1


# ---------------------------------------------------------------------------- incremental
def test_incremental_rescan(tmp_path: Path) -> None:
    photos, ws = tmp_path / "photos", tmp_path / "ws"
    for i, name in enumerate(["a.jpg", "b.jpg", "c.png", "d.jpg", "e.jpg"]):
        if name.endswith(".png"):
            save_png(photos / name, picture(80, 60, seed=i))
        else:
            save_jpeg(photos / name, picture(80, 60, seed=i))

    first, records = scan([photos], ws)
    assert (first.new, first.decoded, first.unchanged, first.images_ok) == (5, 5, 0, 5)
    ids = {rel: r.id for rel, r in records.items()}
    assert sorted(ids.values()) == [1, 2, 3, 4, 5]
    before = cached_pixels([photos], ws, SIDE)
    cache_file = ws / "libraries" / first.workspace.name / f"pixels-{SIDE}.u8"
    assert cache_file.stat().st_size == 5 * SIDE * SIDE * 3

    same, _ = scan([photos], ws)
    assert (same.new, same.changed, same.unchanged, same.missing, same.decoded) == (0, 0, 5, 0, 0)
    assert same.images_ok == 5

    # Change b (new content, different mtime), delete d, add f and g.
    b = photos / "b.jpg"
    old_mtime = b.stat().st_mtime_ns
    save_jpeg(b, picture(120, 90, seed=40))
    os.utime(b, ns=(old_mtime + 10_000_000_000, old_mtime + 10_000_000_000))
    (photos / "d.jpg").unlink()
    save_jpeg(photos / "f.jpg", picture(80, 60, seed=41))
    save_png(photos / "new" / "g.png", picture(80, 60, seed=42))

    third, records = scan([photos], ws)
    assert (third.new, third.changed, third.unchanged, third.missing) == (2, 1, 3, 1)
    assert third.decoded == 3
    assert third.images_ok == 6
    assert third.skipped == []
    assert records["b.jpg"].id == ids["b.jpg"]
    assert (records["b.jpg"].width, records["b.jpg"].height) == (120, 90)
    assert records["b.jpg"].mtime_ns == old_mtime + 10_000_000_000
    assert status_of(records)["d.jpg"] == ("missing", "file no longer exists")
    assert records["d.jpg"].id == ids["d.jpg"]
    assert records["f.jpg"].id == 6
    assert records["new/g.png"].id == 7
    assert {rel: r.id for rel, r in records.items() if rel in ids} == ids

    after = cached_pixels([photos], ws, SIDE)
    assert "d.jpg" not in after
    for rel in ("a.jpg", "c.png", "e.jpg"):
        assert np.array_equal(after[rel], before[rel]), rel
    assert not np.array_equal(after["b.jpg"], before["b.jpg"])
    assert mad(after["b.jpg"], reference_square(b, SIDE)) <= 3
    assert mad(after["f.jpg"], reference_square(photos / "f.jpg", SIDE)) <= 3
    assert mad(after["new/g.png"], reference_square(photos / "new" / "g.png", SIDE)) <= 3
    # Same rows in the raw cache file: row = id - 1, nothing moved.
    raw = PixelCache(first.workspace, SIDE)
    assert raw.rows == 7
    for rel in ("a.jpg", "b.jpg", "c.png", "e.jpg", "f.jpg", "new/g.png"):
        assert np.array_equal(raw.read([records[rel].id - 1])[0], after[rel])
    # The deleted file's row is kept as it was (stale, not reused).
    assert np.array_equal(raw.read([ids["d.jpg"] - 1])[0], before["d.jpg"])

    # Re-opening the library and scanning again decodes nothing.
    fourth, records = scan([photos], ws)
    assert (fourth.new, fourth.changed, fourth.unchanged, fourth.missing) == (0, 0, 6, 0)
    assert fourth.decoded == 0
    assert fourth.images_ok == 6


def test_reopened_library_scans_without_decoding(tmp_path: Path) -> None:
    photos, ws = tmp_path / "photos", tmp_path / "ws"
    for i in range(6):
        save_jpeg(photos / f"{i}.jpg", picture(60, 40, seed=i))
    calls: list[str] = []
    real = library_mod.decode_file

    def counting(path: str, side: int, thumb: str | None) -> Any:
        calls.append(path)
        return real(path, side, thumb)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(library_mod, "decode_file", counting)
        with ImageLibrary.open([photos], ws) as library:
            library.scan(SIDE, workers=0)
        assert len(calls) == 6
        calls.clear()
        with ImageLibrary.open([photos], ws) as library:
            summary = library.scan(SIDE, workers=0)
            assert library.images(None) == library.cached_images(SIDE)
    assert calls == []
    assert (summary.decoded, summary.unchanged, summary.images_ok) == (0, 6, 6)


def test_changed_file_that_becomes_corrupt_loses_pixels_and_thumbnail(tmp_path: Path) -> None:
    photos, ws = tmp_path / "photos", tmp_path / "ws"
    save_jpeg(photos / "a.jpg", picture(60, 40, seed=1))
    save_jpeg(photos / "b.jpg", picture(60, 40, seed=2))
    _, records = scan([photos], ws)
    assert records["b.jpg"].has_thumbnail
    (photos / "b.jpg").write_text("overwritten by a text editor")
    summary, records = scan([photos], ws)
    assert status_of(records)["b.jpg"] == (
        "error",
        "not an image (Pillow cannot identify the format)",
    )
    assert summary.images_ok == 1
    assert "b.jpg" not in cached_pixels([photos], ws, SIDE)
    assert not records["b.jpg"].has_thumbnail, (
        "has_thumbnail still claims a thumbnail for the corrupt version"
    )


# ---------------------------------------------------------------------------- catalog / layout
def test_catalog_stores_schema_version_and_relative_posix_paths(tmp_path: Path) -> None:
    photos, ws = tmp_path / "photos", tmp_path / "ws"
    save_jpeg(photos / "top.jpg", picture(40, 30, seed=1))
    save_jpeg(photos / "a" / "b" / "deep.jpg", picture(40, 30, seed=2))
    summary, records = scan([photos], ws)
    catalog = summary.workspace / "catalog.sqlite"
    assert summary.workspace.parent == ws / "libraries"
    db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    try:
        version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        roots = db.execute("SELECT id, path FROM roots").fetchall()
        rows = db.execute("SELECT root_id, rel_path FROM images ORDER BY rel_path").fetchall()
        journal = db.execute("PRAGMA journal_mode").fetchone()
    finally:
        db.close()
    assert version == (str(SCHEMA_VERSION),)
    assert SCHEMA_VERSION >= 1
    assert roots == [(1, str(photos.resolve()))]
    assert rows == [(1, "a/b/deep.jpg"), (1, "top.jpg")]
    assert journal == ("wal",)
    assert records["a/b/deep.jpg"].path == photos / "a" / "b" / "deep.jpg"
    with ImageLibrary.open([photos], ws) as library:
        assert library.catalog.schema_version == SCHEMA_VERSION
        assert (library.workspace / "library.json").is_file()
        assert (library.workspace / "thumbs").is_dir()
        assert (library.workspace / "runs").is_dir()


def test_an_old_catalog_is_migrated_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](db)  # a version-1 catalog with one image
    db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    db.execute("INSERT INTO roots(id, path) VALUES (1, '/photos')")
    db.execute(
        "INSERT INTO images(root_id, rel_path, size, mtime_ns, status) "
        "VALUES (1, 'a/b.jpg', 10, 20, 'ok')"
    )
    db.close()
    catalog = Catalog(path)
    try:
        assert catalog.schema_version == SCHEMA_VERSION
        assert [(r.id, r.root, r.rel_path) for r in catalog.images()] == [
            (1, Path("/photos"), "a/b.jpg")
        ]
    finally:
        catalog.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.close()
    with pytest.raises(NewerVersionError, match="newer than this program"):
        Catalog(path)


def test_nothing_is_written_inside_the_photo_folders(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    save_jpeg(photos / "a.jpg", picture(300, 200, seed=1))
    save_png(photos / "sub" / "b.png", picture(50, 40, seed=2))
    (photos / "sub" / "empty.jpg").write_bytes(b"")
    save_jpeg(photos / "exif6.jpg", picture(300, 200, seed=3), orientation=6)
    before = snapshot(photos)
    scan([photos], tmp_path / "ws")
    scan([photos], tmp_path / "ws", side=64)
    scan_folders([photos], 32, tmp_path / "ws", workers=0)
    assert snapshot(photos) == before


def test_library_key_is_independent_of_folder_order_and_spelling(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    save_jpeg(a / "x.jpg", picture(40, 30, seed=1))
    save_jpeg(b / "y.jpg", picture(40, 30, seed=2))
    base = tmp_path / "ws"
    spellings = [
        [a, b],
        [b, a],
        [tmp_path / "a" / ".." / "a", b],
        [str(b) + "/", str(a) + "/./"],
        [a, b, a],
    ]
    workspaces = set()
    for folders in spellings:
        with ImageLibrary.open(folders, base) as library:
            workspaces.add(library.workspace)
            assert library.roots == (a.resolve(), b.resolve())
    assert len(workspaces) == 1
    assert resolve_roots([b, a]) == (a.resolve(), b.resolve())
    with ImageLibrary.open([a], base) as only_a:
        assert only_a.workspace not in workspaces
    assert sorted(p.name for p in (base / "libraries").iterdir()) == sorted(
        {next(iter(workspaces)).name, only_a.workspace.name}
    )


def test_multiple_roots_in_one_library(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    save_jpeg(a / "same.jpg", picture(40, 30, seed=1))
    save_jpeg(a / "only_a.jpg", picture(40, 30, seed=2))
    save_jpeg(b / "same.jpg", picture(40, 30, seed=3))
    (b / "broken.jpg").write_bytes(b"")
    with ImageLibrary.open([b, a], tmp_path / "ws") as library:
        summary = library.scan(SIDE, workers=0)
        records = library.images(None)
        pixels = library.pixels(SIDE, library.cached_images(SIDE))
    by_path = {r.path: r for r in records}
    assert set(by_path) == {a / "same.jpg", a / "only_a.jpg", b / "same.jpg", b / "broken.jpg"}
    assert {r.root for r in records} == {a, b}
    assert by_path[b / "broken.jpg"].status == "error"
    assert summary.images_ok == 3
    assert skipped_of(summary) == {str(b / "broken.jpg"): "empty file (0 bytes)"}
    assert len({r.id for r in records}) == 4
    assert not np.array_equal(pixels[0], pixels[1])
    # The library of one root alone is a different library.
    _, alone = scan([a], tmp_path / "ws")
    assert set(alone) == {"same.jpg", "only_a.jpg"}


def test_process_pool_scan_matches_in_process_scan(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for i in range(5):
        save_jpeg(photos / f"{i}.jpg", picture(400, 300, seed=i), orientation=(None, 6)[i % 2])
    save_png(photos / "rgba.png", np.asarray(Image.new("RGB", (50, 50), (10, 200, 30))))
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.gif").write_text("gif? no")

    pooled = scan_folders([photos], SIDE, tmp_path / "ws_pool")  # default: process pool
    local = scan_folders([photos], SIDE, tmp_path / "ws_local", workers=0)

    assert pooled.decoded == local.decoded == 8
    assert pooled.images_ok == local.images_ok == 6
    assert skipped_of(pooled) == skipped_of(local)
    assert skipped_of(pooled) == {
        str(photos / "empty.jpg"): "empty file (0 bytes)",
        str(photos / "text.gif"): "not an image (Pillow cannot identify the format)",
    }
    pool_records = records_of([photos], tmp_path / "ws_pool")
    local_records = records_of([photos], tmp_path / "ws_local")
    assert pool_records == local_records
    pool_pixels = cached_pixels([photos], tmp_path / "ws_pool", SIDE)
    local_pixels = cached_pixels([photos], tmp_path / "ws_local", SIDE)
    assert set(pool_pixels) == set(local_pixels)
    for rel, row in local_pixels.items():
        assert np.array_equal(pool_pixels[rel], row), rel
    for rel, record in pool_records.items():
        thumb = pooled.workspace / "thumbs" / f"{record.id}.jpg"
        assert thumb.is_file() == (record.status == "ok"), rel


# ---------------------------------------------------------------------------- bounds
def test_links_to_system_folders_and_folders_above_the_root_are_not_followed(
    tmp_path: Path,
) -> None:
    """A link to / once walked the whole machine, /proc included (45,000 files in 90 s)."""
    photos = tmp_path / "photos"
    save_jpeg(photos / "own.jpg", picture(40, 30, seed=1))
    save_jpeg(tmp_path / "sibling" / "not_mine.jpg", picture(40, 30, seed=2))
    links = {"top": "/", "proc": "/proc", "me": "/proc/self", "dev": "/dev", "sys": "/sys"}
    links |= {"run": "/run", "above": str(tmp_path)}
    for name, target in links.items():
        os.symlink(target, photos / name)
    os.symlink("/proc/self/status", photos / "status.jpg")  # a file link into /proc

    walked = walk_root(photos, ScanOptions(), (photos,), limit=100)

    assert [f.rel_path for f in walked.files] == ["own.jpg"]
    reasons = dict(walked.problems)
    assert set(reasons) == {str(photos / n) for n in [*links, "status.jpg"]}
    assert reasons[str(photos / "top")] == (
        "symbolic link to the top of the file system (/): not followed"
    )
    for name in ("proc", "me", "dev", "sys", "run", "status.jpg"):
        assert "into the system folder /" in reasons[str(photos / name)], name
        assert reasons[str(photos / name)].endswith(": not followed")
    assert reasons[str(photos / "above")] == (
        f"symbolic link to {tmp_path}, a folder that contains the photo folder {photos}: "
        "not followed"
    )
    assert walked.links_outside == []
    assert refused_link("/run/media/me/USB", (photos,)) is None  # removable drives
    assert refused_link("/run/user/1000/gvfs", (photos,)) is None  # network mounts


def test_refused_links_are_listed_as_skipped_by_a_scan(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    save_jpeg(photos / "own.jpg", picture(40, 30, seed=1))
    save_jpeg(tmp_path / "sibling" / "not_mine.jpg", picture(40, 30, seed=2))
    os.symlink(tmp_path, photos / "above")
    summary, records = scan([photos], tmp_path / "ws")
    assert sorted(records) == ["own.jpg"]
    assert list(skipped_of(summary)) == [str(photos / "above")]
    assert summary.links_outside == {}


def test_links_leaving_the_roots_are_followed_and_listed(linked_tree: Path, tmp_path: Path) -> None:
    os.symlink(linked_tree / "own.jpg", linked_tree / "inside.jpg")  # stays inside: not listed
    outside = tmp_path / "outside"
    summary, records = scan([linked_tree], tmp_path / "ws")
    assert sorted(records) == ["inside.jpg", "link.jpg", "linkdir/c.jpg", "own.jpg"]
    assert summary.links_outside == {
        str(linked_tree / "link.jpg"): str(outside / "ext.jpg"),
        str(linked_tree / "linkdir"): str(outside / "extdir"),
    }
    assert summary.as_dict()["links_outside"] == [
        {"path": str(linked_tree / "link.jpg"), "target": str(outside / "ext.jpg")},
        {"path": str(linked_tree / "linkdir"), "target": str(outside / "extdir")},
    ]
    # A second root that holds the target: the link no longer leaves the library.
    both, _ = scan([linked_tree, outside], tmp_path / "ws2")
    assert both.links_outside == {}


def test_a_scan_over_the_file_limit_stops_before_adding_anything(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(3):
        save_png(a / f"{i}.png", picture(20, 20, seed=i))
        save_png(b / "sub" / f"{i}.png", picture(20, 20, seed=10 + i))
    ws = tmp_path / "ws"
    with pytest.raises(TooManyFilesError) as caught:
        scan([a, b], ws, options=ScanOptions(max_files=5))
    message = str(caught.value)
    assert message.startswith(f"more than 5 image files in {a}, {b}")
    assert "nothing was added" in message
    assert "--max-files N (e.g. --max-files 10)" in message
    assert "default 200,000" in message
    assert records_of([a, b], ws) == {}
    # The limit is remembered with the library's other scan options.
    with ImageLibrary.open([a, b], ws) as library:
        assert library.scan_options() == ScanOptions(max_files=5)
    with pytest.raises(TooManyFilesError):
        scan([a, b], ws)
    summary, records = scan([a, b], ws, options=ScanOptions(max_files=6))
    assert (summary.images_ok, len(records)) == (6, 6)
    with pytest.raises(InvalidSettingError, match="at least 1"):
        scan([a, b], ws, options=ScanOptions(max_files=0))


def test_the_default_file_limit_is_200000() -> None:
    assert ScanOptions().max_files == DEFAULT_MAX_FILES == 200_000


def test_a_workspace_inside_a_photo_folder_is_refused(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    save_jpeg(photos / "a.jpg", picture(40, 30, seed=1))
    with pytest.raises(InvalidSettingError, match="inside the photo folder") as caught:
        ImageLibrary.open([photos], photos / "ws")
    assert "thumbnails would be scanned as photos" in str(caught.value)
    assert not (photos / "ws").exists()
    with pytest.raises(InvalidSettingError, match="inside the library's workspace"):
        ImageLibrary((photos,), tmp_path)  # a photo folder inside the workspace


def test_a_workspace_below_a_hidden_folder_of_the_photos_is_fine(tmp_path: Path) -> None:
    """The default workspace (~/.local/share/...) when the photos are the home folder."""
    home = tmp_path / "home"
    save_jpeg(home / "a.jpg", picture(40, 30, seed=1))
    base = home / ".local" / "share"
    summary, records = scan([home], base)
    assert summary.images_ok == 1 and set(records) == {"a.jpg"}
    again, records = scan([home], base)  # the thumbnails were not found as photos
    assert again.images_ok == 1 and set(records) == {"a.jpg"}
    with (
        ImageLibrary.open([home], base) as library,
        pytest.raises(InvalidSettingError, match="inside the photo folder"),
    ):  # scanning hidden folders would walk into the workspace
        library.scan(SIDE, ScanOptions(include_hidden=True), workers=0)


def test_workers_beyond_the_cores_are_lowered_and_negative_refused(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for i in range(4):
        save_png(photos / f"{i}.png", picture(30, 30, seed=i))
    statuses: list[str] = []
    reporter = CallbackReporter(lambda done: None)
    reporter.status = statuses.append  # type: ignore[method-assign]
    cores = library_mod.available_cores()
    summary, _ = scan([photos], tmp_path / "ws", workers=cores + 10, reporter=reporter)
    assert summary.workers == min(cores, 4)
    assert (
        f"{cores + 10} decoding processes asked for, but only {cores} CPU core(s) are "
        f"available: using {cores}"
    ) in statuses
    with pytest.raises(InvalidSettingError, match=r"0 \(decode in this process\) or more"):
        scan([photos], tmp_path / "ws", workers=-1)


class RecordingLock:
    """A lock that records when it is taken and released."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        self.events.append("acquire")
        return True

    def release(self) -> None:
        self.events.append("release")


@pytest.fixture
def recording_lock() -> Iterator[RecordingLock]:
    lock = RecordingLock()
    decode_mod.share_big_image_lock(lock, pixels=100_000)
    yield lock
    decode_mod.share_big_image_lock(None)


def test_big_images_are_decoded_holding_the_shared_lock(
    tmp_path: Path, recording_lock: RecordingLock, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = save_png(tmp_path / "big.png", picture(400, 300, seed=1))  # 120,000 px
    small = save_png(tmp_path / "small.png", picture(300, 300, seed=2))  # 90,000 px
    drafted = save_jpeg(tmp_path / "drafted.jpg", picture(2400, 1800, seed=3))  # 1/8: 67,500
    loads: list[list[str]] = []
    real_load = ImageFile.ImageFile.load

    def load(img: Image.Image) -> Any:
        loads.append(list(recording_lock.events))  # what the lock had seen at load time
        return real_load(img)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    assert decode_file(str(big), SIDE, None).status == "ok"
    assert recording_lock.events == ["acquire", "release"]
    assert loads[0] == ["acquire"]  # loaded while holding it
    recording_lock.events.clear()
    for path in (small, drafted):
        assert decode_file(str(path), SIDE, None).status == "ok"
    assert recording_lock.events == []  # at or under the limit after the JPEG draft


def _reduce_sample(photos: Path) -> dict[str, Image.Image]:
    """1600 x 1200 pictures in the modes that step 3 of decode.py treats differently."""
    photos.mkdir(parents=True, exist_ok=True)
    base = Image.fromarray(picture(1600, 1200, seed=21), "RGB")
    alpha = Image.linear_gradient("L").resize(base.size).rotate(90)
    rgba, la = base.copy(), base.convert("L")
    rgba.putalpha(alpha)
    la.putalpha(alpha)
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    transparent = palette.copy()
    transparent.paste(5, (130, 100, 800, 530))
    ramp = np.linspace(0, 65535, 1600)[None, :] * np.linspace(0.2, 1, 1200)[:, None]
    exif = Image.Exif()
    exif[0x0112] = 6
    samples = {
        "rgb.png": (base, {}),
        "rgba.png": (rgba, {}),
        "la.png": (la, {}),
        "grey.png": (base.convert("L"), {}),
        "palette.png": (palette, {}),
        "palette_transparent.png": (transparent, {"transparency": 5}),
        "bilevel.png": (base.convert("1"), {}),
        "grey16.png": (Image.fromarray(ramp.astype(np.uint16)), {}),
        "cmyk.tif": (base.convert("CMYK"), {}),
        "oriented.tif": (base, {"exif": exif.tobytes()}),
        "oriented.png": (base, {"exif": exif.tobytes()}),
        "photo.webp": (base, {"quality": 95}),
    }
    for name, (img, save) in samples.items():
        img.save(photos / name, **save)
    return {name: reference_rgb(photos / name) for name in samples}


@pytest.fixture(scope="module")
def reduce_sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Image.Image]]:
    photos = tmp_path_factory.mktemp("reduce")
    return photos, _reduce_sample(photos)


@pytest.mark.parametrize("side", [32, 96, 256])
def test_reduced_decodes_match_the_full_resolution_reference(
    reduce_sample: tuple[Path, dict[str, Image.Image]], side: int, tmp_path: Path
) -> None:
    """Step 3 (Image.reduce right after loading) keeps square and thumbnail within 3 levels."""
    photos, references = reduce_sample
    assert decode_mod.reduce_factor(1600, 1200, side) >= 2
    for name, reference in references.items():
        thumb_path = tmp_path / f"{name}.jpg"
        result = decode_file(str(photos / name), side, str(thumb_path))
        assert result.status == "ok", (name, result.reason)
        assert (result.width, result.height) == reference.size, name
        assert result.pixels is not None
        square = np.frombuffer(result.pixels, np.uint8).reshape(side, side, 3)
        assert mad(square, square_of(reference, side)) <= 3, name
        with Image.open(thumb_path) as thumb:
            thumb_rgb = thumb.convert("RGB")
        assert thumb_rgb.size == expected_thumbnail_size(*reference.size), name
        expected = jpeg_roundtrip(reference.resize(thumb_rgb.size, Image.Resampling.BILINEAR), 85)
        assert mad(np.asarray(thumb_rgb), np.asarray(expected)) <= 3, name


def test_one_folder_may_be_given_alone(tmp_path: Path) -> None:
    """A str or Path is one folder, not a sequence of characters."""
    from crlc_engine.library import resolve_roots

    (tmp_path / "a").mkdir()
    assert resolve_roots(str(tmp_path / "a")) == resolve_roots([tmp_path / "a"])
    assert resolve_roots(tmp_path / "a") == (tmp_path.resolve() / "a",)
