"""Features straight from a scan's decoding: the quick preset's sink (no pixel cache).

:class:`FeatureSink` is a :class:`~crlc_engine.library.decoded_sink.DecodedSink`: the scan
decodes files in worker processes and hands each S x S square here, in the main process,
where a full batch goes through the frozen backbone and into the workspace's
:class:`~crlc_engine.training.feature_cache.FeatureCache`. The decoders keep working ahead
(one batch) while the network runs, so neither waits for the other; no pixel file is
written. What the sink holds is the feature cache's marks, so a rescan decodes only new,
changed, or not yet computed files. The scan commits the catalog after every batch, so a
kill loses at most the batch being collected or computed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.library.catalog import Catalog
from crlc_engine.training.feature_cache import FeatureCache
from crlc_engine.training.frozen_features import STATUS_EVERY_S, FeatureExtractor

__all__ = ["FeatureSink"]


class FeatureSink:
    """Decoded squares -> backbone features in the workspace's feature cache.

    Args:
        workspace: The library's workspace folder.
        extractor: The frozen backbone (its spec's side is the scan's side).
        reporter: Where a status line with the features' speed goes now and then.
    """

    pixel_rows = False

    def __init__(
        self, workspace: Path, extractor: FeatureExtractor, reporter: Reporter | None = None
    ) -> None:
        self.extractor: FeatureExtractor | None = extractor
        self.spec = extractor.spec
        self.side = extractor.spec.side
        self.batch_size = extractor.batch_size
        self.cache = FeatureCache(workspace, extractor.spec)
        self.reporter = reporter or NullReporter()
        self.computed = 0
        self.seconds = 0.0  # in the backbone
        self._ids: list[int] = []
        self._versions: list[tuple[int, int]] = []
        self._pixels: list[bytes] = []
        self._last_status = time.monotonic()

    @property
    def images_per_s(self) -> float:
        """Images per second of backbone time so far (0 before the first batch)."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def describe(self, count: int, workers: int) -> str:
        spec = self.spec
        return (
            f"Reading {count} images at {self.side} px with {max(workers, 1)} process(es) "
            f"and computing their {spec.backbone} features"
        )

    def held(self, catalog: Catalog) -> dict[int, tuple[int, int]]:
        return self.cache.held()

    def repair(self, catalog: Catalog, reporter: Reporter) -> int:
        return 0  # a cut-short feature file reads as rows not computed

    def put(self, image_id: int, size: int, mtime_ns: int, pixels: bytes) -> bool:
        self._ids.append(image_id)
        self._versions.append((size, mtime_ns))
        self._pixels.append(pixels)
        if len(self._ids) < self.batch_size:
            return False
        self._compute()
        return True

    def flush(self) -> None:
        """Nothing to do: a feature row counts by its own mark, not by the catalog."""

    def finish(self) -> None:
        self._compute()
        if self.computed:
            self.reporter.status(
                f"Features of {self.computed} images computed at {self.images_per_s:.1f} images/s"
            )

    def close(self) -> None:
        """Let go of the backbone once the scan is over (its owner may then free it)."""
        self.extractor = None

    def _compute(self) -> None:
        if not self._ids:
            return
        if self.extractor is None:
            raise RuntimeError("the feature sink was closed before its last batch")
        side = self.side
        images = np.empty((len(self._ids), side, side, 3), dtype=np.uint8)
        for i, pixels in enumerate(self._pixels):
            images[i] = np.frombuffer(pixels, dtype=np.uint8).reshape(side, side, 3)
        started = time.monotonic()
        features = self.extractor(images)
        versions = np.array(self._versions, dtype=np.int64)
        rows = np.array(self._ids, dtype=np.int64) - 1
        self.cache.write_rows(rows, versions[:, 0], versions[:, 1], features)
        self.seconds += time.monotonic() - started
        self.computed += len(self._ids)
        self._ids, self._versions, self._pixels = [], [], []
        if time.monotonic() - self._last_status >= STATUS_EVERY_S * 5:
            self._last_status = time.monotonic()
            self.reporter.status(
                f"Features: {self.computed} images at {self.images_per_s:.1f} images/s"
            )
