"""Regression tests for defects found in review (each test names the defect it pins)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crlc_engine.cli.main import main
from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.events import RecordingReporter
from crlc_engine.library import ImageLibrary, relink_root
from crlc_engine.library.catalog import Catalog
from crlc_engine.library.runs import library_key
from crlc_engine.training.trainer import CRLCTrainer


def last_json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_every_cli_error_is_one_json_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert (
        main(["scan", str(tmp_path), "--size", "4", "--workspace", str(tmp_path / "w"), "--json"])
        == 1
    )
    assert last_json(capsys)["error"]["type"] == "invalid_setting"
    assert main(["train", "--json"]) == 2  # argparse usage error
    assert last_json(capsys)["error"]["type"] == "usage"
    assert main(["train", str(tmp_path), "-k", "2", "--epochs", "x", "--json"]) == 2
    assert "invalid" in last_json(capsys)["error"]["message"]


def test_pause_then_cancel_does_not_count_the_pause_as_training() -> None:
    images = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    config = TrainConfig(
        clusters=2,
        stem="imagenet",
        image_size=16,
        batch_size=8,
        epochs=5,
        subheads=1,
        feature_dim=8,
    )
    trainer = CRLCTrainer(config, images, torch.device("cpu"))
    control = JobControl()
    reached = threading.Event()

    class PauseAtTwo(RecordingReporter):
        def progress(self, done: float, total: float | None) -> None:
            if int(done) == 2:
                control.pause()
                reached.set()

    worker = threading.Thread(target=trainer.fit, args=(PauseAtTwo(), control))
    worker.start()
    assert reached.wait(30)
    time.sleep(1.0)
    control.cancel()
    worker.join(30)
    assert trainer.total_steps == 2 and trainer.elapsed_s < 0.9


def test_chosen_head_ignores_a_short_partial_epoch() -> None:
    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    trainer = CRLCTrainer(
        TrainConfig(
            clusters=2, stem="imagenet", image_size=16, epochs=1, subheads=2, feature_dim=8
        ),
        images,
        torch.device("cpu"),
    )
    trainer.history = [
        {"partial": False, "head_losses": [1.0, 2.0]},
        {"partial": True, "head_losses": [3.0, 0.5]},
    ]
    assert trainer.chosen_head == 0


def test_scan_options_are_kept_for_later_scans(tmp_path: Path) -> None:
    photos = tmp_path / "p"
    (photos / ".hidden").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(photos / "a.png")
    Image.new("RGB", (8, 8), "blue").save(photos / ".hidden" / "b.png")
    from crlc_engine.library import ScanOptions

    with ImageLibrary.open([photos], tmp_path / "ws") as library:
        assert library.scan(8, ScanOptions(include_hidden=True), workers=0).images_ok == 2
        again = library.scan(8, workers=0)  # e.g. what refine or resume do
        assert again.images_ok == 2 and again.missing == 0


def test_move_to_a_cluster_the_run_does_not_have(
    shapes_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(tmp_path / "ws")
    assert (
        main(
            [
                "train",
                str(shapes_folder),
                "-k",
                "2",
                "--epochs",
                "1",
                "--size",
                "16",
                "--subheads",
                "1",
                "--device",
                "cpu",
                "--workspace",
                ws,
                "--json",
            ]
        )
        == 0
    )
    run_id = last_json(capsys)["run_id"]
    image = str(next((shapes_folder / "disc").iterdir()))
    assert main(["move", str(shapes_folder), image, "--to", "5", "--workspace", ws, "--json"]) == 1
    assert "clusters 0..1" in last_json(capsys)["error"]["message"]
    # A run id that is not completed is refused where a completed run is needed.
    run_dir = Path(ws).glob(f"libraries/*/runs/{run_id}")
    status = next(run_dir) / "status.json"
    status.write_text(json.dumps({"state": "cancelled"}))
    assert main(["clusters", str(shapes_folder), "--run", run_id, "--workspace", ws, "--json"]) == 1
    assert "is cancelled" in last_json(capsys)["error"]["message"]


def test_relink_finishes_after_a_crash_between_rename_and_catalog(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    Image.new("RGB", (8, 8)).save(old / "a.png")
    with ImageLibrary.open([old], tmp_path / "ws") as library:
        library.scan(8, workers=0)
        workspace = library.workspace
    os.rename(old, new)
    # The crash: the workspace was renamed but the catalog still names the old root.
    crashed = workspace.with_name(library_key([new]))
    os.replace(workspace, crashed)
    moved = relink_root(old, new, tmp_path / "ws")
    assert moved == [crashed]
    catalog = Catalog(crashed / "catalog.sqlite")
    try:
        assert list(catalog.root_ids()) == [new.resolve()]
    finally:
        catalog.close()
    with ImageLibrary.open([new], tmp_path / "ws") as library:
        assert library.scan(8, workers=0).decoded == 0


def test_changed_file_is_not_usable_until_decoded_again(tmp_path: Path) -> None:
    photos = tmp_path / "p"
    photos.mkdir()
    Image.new("RGB", (8, 8), "red").save(photos / "a.png")
    Image.new("RGB", (8, 8), "blue").save(photos / "b.png")
    with ImageLibrary.open([photos], tmp_path / "ws") as library:
        library.scan(8, workers=0)
        Image.new("RGB", (8, 8), "green").save(photos / "a.png")
        os.utime(photos / "a.png", ns=(1, 1))
        control = JobControl()
        control.cancel()  # cancelled before anything is decoded
        summary = library.scan(8, control=control, workers=0)
        assert summary.cancelled and summary.changed == 1
        assert [r.rel_path for r in library.cached_images(8)] == ["b.png"]
        library.scan(8, workers=0)
        assert len(library.cached_images(8)) == 2
