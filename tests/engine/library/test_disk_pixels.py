"""Pixels that do not fit in memory are read a batch at a time from the cache on disk
(:mod:`crlc_engine.library.disk_pixels`): the same values as reading them all, the same
training, and the command line says so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import crlc_engine.library.disk_pixels as disk_pixels
from crlc_engine.cli.main import main
from crlc_engine.core.errors import WorkspaceDamagedError
from crlc_engine.core.events import RecordingReporter
from crlc_engine.core.memory import available_memory_bytes
from crlc_engine.library.disk_pixels import DiskPixels, training_pixels
from crlc_engine.library.pixel_cache import PixelCache
from crlc_engine.training.inference import predict
from crlc_engine.training.trainer import CRLCTrainer
from tests.conftest import TINY_TRAIN_FLAGS, small_train_config

CPU = torch.device("cpu")


def filled_cache(workspace: Path, rows: int = 40, side: int = 16) -> tuple[PixelCache, np.ndarray]:
    """A pixel cache of ``rows`` random rows and the rows it holds (uint8 [rows, S, S, 3])."""
    pixels = np.random.default_rng(0).integers(0, 256, (rows, side, side, 3), dtype=np.uint8)
    cache = PixelCache(workspace, side)
    cache.ensure_rows(rows)
    cache.write_rows(list(range(rows)), [row.tobytes() for row in pixels])
    return cache, pixels


def test_rows_read_from_disk_equal_the_cache_read(tmp_path: Path) -> None:
    cache, pixels = filled_cache(tmp_path)
    job_rows = [5, 39, 0, 12, 7, 30, 2, 21]  # the job's images, in its own order
    disk = DiskPixels(cache, job_rows)
    assert disk.shape == (8, 16, 16, 3) and len(disk) == 8 and disk.nbytes == 8 * 16 * 16 * 3
    assert np.array_equal(disk.take(np.array([3, 0, 7, 0])), pixels[[12, 5, 21, 5]])
    assert np.array_equal(disk.block(6, 100), pixels[[2, 21]])
    assert np.array_equal(disk.subsample(3), pixels[[5, 12, 2]])  # every 3rd, as the stats do
    assert np.array_equal(disk.subsample(100), pixels[job_rows])


def test_a_cut_short_cache_is_refused(tmp_path: Path) -> None:
    cache, _ = filled_cache(tmp_path, rows=10)
    with pytest.raises(WorkspaceDamagedError, match="Scan the folders again"):
        DiskPixels(cache, [0, 10])


def test_pixels_stay_on_disk_only_when_they_do_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, pixels = filled_cache(tmp_path)
    reporter = RecordingReporter()
    in_memory = training_pixels(cache, [3, 1], reporter)
    assert isinstance(in_memory, np.ndarray) and np.array_equal(in_memory, pixels[[3, 1]])
    assert reporter.statuses == []

    monkeypatch.setattr(disk_pixels, "available_memory_bytes", lambda: 2 * 16 * 16 * 3)
    on_disk = training_pixels(cache, [3, 1, 2], reporter)
    assert isinstance(on_disk, DiskPixels)
    assert "do not fit in the free memory" in reporter.statuses[-1]
    monkeypatch.setattr(disk_pixels, "available_memory_bytes", lambda: None)  # unknown: read
    assert isinstance(training_pixels(cache, [3, 1, 2]), np.ndarray)


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  16000 kB\nMemFree:  1000 kB\nMemAvailable:   5000 kB\n")
    assert available_memory_bytes(meminfo) == 5000 * 1024
    meminfo.write_text("MemTotal:  16000 kB\n")
    assert available_memory_bytes(meminfo) is None
    assert available_memory_bytes(tmp_path / "missing") is None


def test_training_from_disk_equals_training_in_memory(tmp_path: Path) -> None:
    cache, pixels = filled_cache(tmp_path, rows=32)
    rows = list(range(31, -1, -1))
    config = small_train_config(batch_size=8, epochs=2)
    on_disk = CRLCTrainer(config, DiskPixels(cache, rows), CPU)
    in_memory = CRLCTrainer(config, pixels[rows], CPU)
    assert on_disk.augment_config == in_memory.augment_config  # the same view statistics
    on_disk.fit()
    in_memory.fit()
    weights = zip(
        on_disk.model.state_dict().values(), in_memory.model.state_dict().values(), strict=True
    )
    assert all(torch.equal(a, b) for a, b in weights)
    a = predict(on_disk.model, on_disk.data, on_disk.augment_config, CPU, batch_size=5)
    b = predict(in_memory.model, in_memory.data, in_memory.augment_config, CPU, batch_size=5)
    assert np.array_equal(a.probabilities, b.probabilities)


def test_command_line_trains_from_disk_when_memory_is_short(
    shapes_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(disk_pixels, "available_memory_bytes", lambda: 1000)
    args = ["train", str(shapes_folder), "-k", "4", "--workspace", str(tmp_path), "--json"]
    assert main([*args, *TINY_TRAIN_FLAGS]) == 0
    captured = capsys.readouterr()
    assert "do not fit in the free memory (0.0 GB): reading each batch from" in captured.err
    payload = json.loads(captured.out.strip().splitlines()[-1])
    assert payload["state"] == "completed" and payload["images"] == 48
