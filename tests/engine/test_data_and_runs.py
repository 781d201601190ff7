"""The minimal folder loader and the workspace / run folders."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crlc_engine.data import class_indices, class_of, decode_square, load_image_folder
from crlc_engine.errors import FolderNotFoundError, NoImagesFoundError, RunNotFoundError
from crlc_engine.runs import Library, library_key, new_run_id, workspace_base


def test_class_is_immediate_parent_folder() -> None:
    assert class_of("cats/a.jpg") == "cats"
    assert class_of("2020/cats/a.jpg") == "cats"
    assert class_of("a.jpg") is None
    idx, names = class_indices(["b", None, "a", "b"])
    assert names == ["a", "b"] and idx.tolist() == [1, -1, 0, 1]


def test_decode_square_resizes_shorter_side_and_centre_crops(tmp_path: Path) -> None:
    img = np.zeros((40, 80, 3), dtype=np.uint8)
    img[:, 20:60] = 255  # the centre 40x40 is white, the sides black
    Image.fromarray(img).save(tmp_path / "wide.png")
    out = decode_square(tmp_path / "wide.png", 20)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    assert out[:, 1:-1].min() >= 250  # only the white centre survives the crop


def test_decode_applies_exif_orientation(tmp_path: Path) -> None:
    img = np.zeros((20, 40, 3), dtype=np.uint8)
    img[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = decode_square(tmp_path / "r.jpg", 20).astype(int)
    # After the rotation the image is 40 tall x 20 wide; the white half is on top.
    assert out[:5].mean() > 200 and out[-5:].mean() < 50


def test_load_folder_skips_bad_files_and_hidden(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.new("RGB", (10, 12), (255, 0, 0)).save(tmp_path / "a" / "red.png")
    Image.new("L", (12, 10), 128).save(tmp_path / "grey.jpg")
    Image.new("RGBA", (12, 12), (0, 0, 255, 10)).save(tmp_path / "a" / "blue.png")
    (tmp_path / "a" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".hidden" / "x.png")
    data = load_image_folder(tmp_path, 8)
    assert data.paths == ["a/blue.png", "a/red.png", "grey.jpg"]
    assert data.images.shape == (3, 8, 8, 3)
    assert data.classes == ["a", "a", None]
    assert sorted(p for p, _ in data.skipped) == ["a/broken.jpg", "a/empty.png"]
    assert tuple(data.images[1, 4, 4]) == (255, 0, 0)


def test_load_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FolderNotFoundError):
        load_image_folder(tmp_path / "missing", 8)
    with pytest.raises(NoImagesFoundError, match="no image files"):
        load_image_folder(tmp_path, 8)
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(NoImagesFoundError, match="could be decoded"):
        load_image_folder(tmp_path, 8)


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
    library = Library.open([tmp_path / "photos"], tmp_path / "ws")
    with pytest.raises(RunNotFoundError):
        library.get_run()
    first, second = library.create_run(), library.create_run()
    for run, state in ((first, "completed"), (second, "cancelled")):
        run.config_path.write_text("{}")
        run.write_status(state)
    assert library.get_run().run_id == first.run_id
    assert library.get_run(state=None).run_id == max(first.run_id, second.run_id)
    with pytest.raises(RunNotFoundError, match="no run"):
        library.get_run("20000101-000000-dead")
