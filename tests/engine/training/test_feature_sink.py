"""Features straight from the scan's decoding (the quick preset's FeatureSink): the same
features as from the pixel cache, no pixel file, incremental, and a kill loses at most the
batch being collected."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crlc_engine.library import ImageLibrary
from crlc_engine.library.synthetic import write_shapes_folder
from crlc_engine.pipeline.feature_method import FeatureHeadsMethod
from crlc_engine.pipeline.jobs import train_folder
from crlc_engine.training.feature_cache import FeatureCache, compute_features
from crlc_engine.training.feature_sink import FeatureSink
from tests.engine.pipeline.test_quick import FAST, quick_config
from tests.engine.training.test_features import SIDE, tiny_extractor

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    return write_shapes_folder(tmp_path / "photos", per_class=6, size=SIDE)  # 24 images


def workspace_of(folder: Path, base: Path) -> Path:
    """The library folder under the workspace base ``base``."""
    with ImageLibrary.open([folder], base) as library:
        return library.workspace


def sink_scan(folder: Path, workspace: Path, workers: int = 0) -> tuple[FeatureSink, int]:
    """Scan ``folder`` into a FeatureSink; returns it and how many images its backbone saw."""
    extractor, counter = tiny_extractor()
    with ImageLibrary.open([folder], workspace) as library:
        sink = FeatureSink(library.workspace, extractor)
        summary = library.scan(SIDE, workers=workers, sink=sink)
        assert summary.images_ok == len(library.images())
    return sink, counter.images


def features_of(folder: Path, workspace: Path) -> dict[str, np.ndarray]:
    """rel path -> cached feature row, for every image of the library."""
    extractor, _ = tiny_extractor()
    with ImageLibrary.open([folder], workspace) as library:
        records = library.images()
        rows = FeatureCache(library.workspace, extractor.spec).read(records)
    return {r.rel_path: row for r, row in zip(records, rows, strict=True)}


def test_features_from_decoding_equal_those_from_the_pixel_cache(
    photos: Path, tmp_path: Path
) -> None:
    sink, seen = sink_scan(photos, tmp_path / "fused", workers=1)  # a real decoding process
    assert seen == 24 and sink.computed == 24
    fused_ws = workspace_of(photos, tmp_path / "fused")
    assert not list(fused_ws.glob("pixels-*.u8"))  # no pixel cache
    assert len(list((fused_ws / "thumbs").glob("*.jpg"))) == 24
    extractor, _ = tiny_extractor()
    with ImageLibrary.open([photos], tmp_path / "cached") as library:
        library.scan(SIDE, workers=0)  # the old way: pixel cache, then features from it
        compute_features(library, library.images(), extractor)
    fused, cached = (
        features_of(photos, tmp_path / "fused"),
        features_of(photos, tmp_path / "cached"),
    )
    assert fused.keys() == cached.keys()
    for name, row in fused.items():
        np.testing.assert_array_equal(row, cached[name])  # float32 backbone: identical


def test_a_rescan_computes_only_new_and_changed_files(photos: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    sink_scan(photos, ws)
    before = features_of(photos, ws)
    _, seen = sink_scan(photos, ws)
    assert seen == 0  # nothing new
    changed = sorted(photos.rglob("*.png"))[0]
    Image.new("RGB", (SIDE, SIDE), (250, 10, 10)).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    Image.new("RGB", (SIDE, SIDE), (10, 250, 10)).save(photos / "new.png")
    _, seen = sink_scan(photos, ws)
    assert seen == 2
    after = features_of(photos, ws)
    rel = changed.relative_to(photos).as_posix()
    assert not np.array_equal(after[rel], before[rel]) and "new.png" in after
    for name in before.keys() - {rel}:
        np.testing.assert_array_equal(after[name], before[name])


def test_a_workspace_from_before_the_fused_scan_keeps_its_features(
    photos: Path, tmp_path: Path
) -> None:
    """Features computed the old way (pixel cache, then the backbone) count: a quick run on
    that workspace computes none again and trains on them."""
    ws = tmp_path / "ws"
    extractor, counter = tiny_extractor()
    with ImageLibrary.open([photos], ws) as library:
        library.scan(SIDE, workers=0)
        compute_features(library, library.images(), extractor)
    assert counter.images == 24
    outcome = train_folder(
        photos, quick_config(), ws, workers=0, method=FeatureHeadsMethod(extractor, FAST)
    )
    assert outcome.state == "completed" and outcome.images == 24
    assert counter.images == 24


KILLED_SCAN = """
import sys, time
sys.path.insert(0, {repo!r})
from crlc_engine.library import ImageLibrary
from crlc_engine.pipeline.feature_method import FeatureHeadsMethod
from crlc_engine.pipeline.jobs import train_folder
from crlc_engine.training.feature_sink import FeatureSink
from tests.engine.pipeline.test_quick import FAST, quick_config
from tests.engine.training.test_features import SIDE, tiny_extractor

extractor, counter = tiny_extractor(batch_size=4)
extractor.module.register_forward_hook(lambda *args: time.sleep(0.3))
with ImageLibrary.open([{folder!r}], {workspace!r}) as library:
    library.scan(SIDE, workers=0, sink=FeatureSink(library.workspace, extractor))
print("finished")
"""


def test_a_scan_killed_while_computing_features_loses_at_most_a_batch(
    photos: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    script = KILLED_SCAN.format(repo=str(REPO), folder=str(photos), workspace=str(ws))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=REPO)
    extractor, _ = tiny_extractor()
    cache = FeatureCache(workspace_of(photos, ws), extractor.spec)
    deadline = time.monotonic() + 60
    while len(cache.held()) < 8 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate(timeout=30)
    assert b"finished" not in out, "the scan ended before it could be killed"
    kept = len(cache.held())
    assert 8 <= kept < 24
    _, seen = sink_scan(photos, ws)  # the stale lock of the killed scan is taken over
    # What was kept is not computed again, except the last batch when the kill fell between
    # its features and the catalog's commit (batches of 4).
    assert 24 - kept <= seen <= 24 - kept + 4
    sink_scan(photos, tmp_path / "fresh")
    resumed, fresh = features_of(photos, ws), features_of(photos, tmp_path / "fresh")
    assert resumed.keys() == fresh.keys()
    for name, row in resumed.items():
        np.testing.assert_array_equal(row, fresh[name])


def test_the_heads_train_without_the_backbone_the_method_built(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the features are there, the method lets go of a backbone it built (and the scan's
    sink of its reference), so the heads train without it in memory; a given one is kept."""
    import crlc_engine.pipeline.feature_method as feature_method

    built: list[object] = []

    def small_extractor(*args: object, **kwargs: object) -> object:
        extractor, _ = tiny_extractor()
        built.append(extractor)
        return extractor

    monkeypatch.setattr(feature_method, "quick_extractor", small_extractor)
    method = FeatureHeadsMethod(head_settings=FAST)
    outcome = train_folder(photos, quick_config(), tmp_path / "ws", workers=0, method=method)
    assert outcome.state == "completed" and len(built) == 1
    assert method.extractor is None
    assert method.sink is not None and method.sink.extractor is None
    gone = weakref.ref(built.pop())
    gc.collect()
    assert gone() is None  # nothing else kept it alive

    given, _ = tiny_extractor()
    kept = FeatureHeadsMethod(given, FAST)
    train_folder(photos, quick_config(), tmp_path / "ws", workers=0, method=kept)
    assert kept.extractor is given
