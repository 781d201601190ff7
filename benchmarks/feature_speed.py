"""Speed of the frozen EfficientNet-Lite0 feature extractor on the CPU, option by option.

Decodes ``--images`` photos once (the project's decoder: shorter side to 224 px, centre crop,
uint8), then times the network on them under each option and compares its pooled 1280-d
features with the float32 eager reference on the same images (cosine similarity per image:
mean and min). Every variant is warmed up (one full batch, and one batch of the tail's size)
before it is timed; images/s is over all the images, normalisation included, best of
``--repeats`` passes. Variants:

1. ``fp32_eager``: float32, eager, NCHW, batch 50 (the reference);
2. ``bf16_eager``: bf16 autocast (``torch.autocast("cpu", dtype=torch.bfloat16)``);
3. ``fp32_cl`` / ``bf16_cl``: channels-last memory format (``bf16_cl`` is what
   :class:`~crlc_engine.training.frozen_features.FeatureExtractor` runs where bf16 is native);
4. ``*_jit`` / ``*_jit_opt``: ``torch.jit.trace`` + ``torch.jit.freeze`` (+
   ``torch.jit.optimize_for_inference``), channels-last, float32 and bf16 (traced under
   autocast, so the casts are part of the frozen graph);
5. ``*_compile``: ``torch.compile`` (inductor, ``freezing=True``), channels-last, in a child
   process stopped after ``--compile-timeout`` seconds; the first calls' time (the
   compilation) is recorded apart as ``compile_s`` (``--no-compile`` skips it);
6. ``int8_fx`` / ``int8_fx_jit``: FX graph mode post-training static quantization
   (``torch.ao.quantization.quantize_fx``, the x86 backend's default mapping: per-channel
   symmetric int8 weights, histogram-calibrated 7-bit activations) calibrated on the first 64
   of the images (the same images it is then timed on: the user's own photos);
   ``int8_fx_onednn`` the same with the oneDNN backend's mapping (8-bit activations, which
   VNNI runs without overflow); ``int8_dynamic`` (``quantize_dynamic``) is recorded as
   failing when it finds nothing to quantize;
7. ``project_{fp32,bf16}_{eager,jit}``: the project's
   :class:`~crlc_engine.training.frozen_features.FeatureExtractor` forced to each runtime
   (``jit``: BatchNorm folded in float32, traced under autocast, frozen, checked against the
   module), each in a fresh child process so that ``build_s`` is the graph's cost at the
   start of a run (``warmup_s``: its first batches, first kernel calls included);
8. threads 1 and 2 (``torch.set_num_threads``) for the reference and the best variant;
9. batch sizes 16, 50 and 128 for the best variant.

The best variant is the fastest one whose min cosine is at least ``--min-cosine`` (a proxy:
the held-out ACC check belongs to ``benchmarks/quick_pipeline.py``). A variant that fails
(an unsupported operator, a missing instruction set, a compiler error) gets a row with
``error`` and the script goes on. The machine block records the CPU flags that matter
(AVX512-BF16, AVX512-VNNI, AMX), the torch version and the thread count.

Prints a Markdown table and one JSON object (also written to ``--json``). Exits 0 with
``{"skipped": ...}`` when the archive is absent.

    python benchmarks/feature_speed.py --synthetic --images 32 --repeats 1     # a check
    python benchmarks/feature_speed.py ../shared/datasets/imagenette-224.tar.gz \
        --images 256 --repeats 3 --json /tmp/feature-speed.json                # a measurement
    python benchmarks/feature_speed.py ../shared/datasets/imagenette-224.tar.gz --no-compile \
        --no-sweeps --only bf16_cl,project_bf16_eager,project_bf16_jit    # the extractor only

The source may also be a folder of images. Use at least 128 images for the batch-size rows
to mean anything (a batch never holds more than all the images).
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import queue
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _imagenette import CPU_FLAGS, IMAGE_SUFFIXES, cpu_flags_present, machine
from torch import Tensor, nn

from crlc_engine.augment.config import AugmentConfig
from crlc_engine.augment.normalize import normalize_only
from crlc_engine.library.decode import decode_file
from crlc_engine.models.efficientnet_lite import LITE0_FEATURE_DIM, LITE0_NORMALIZATION
from crlc_engine.training.frozen_features import (
    FeatureExtractor,
    FeatureSpec,
    lite0_extractor,
    resolve_precision,
)

SIDE = 224
REFERENCE = "fp32_eager"
BATCH = 50
CALIBRATION_IMAGES = 64
SWEEP_THREADS = (1, 2)
SWEEP_BATCHES = (16, 50, 128)
NORMALIZATION = AugmentConfig(mean=LITE0_NORMALIZATION[0], std=LITE0_NORMALIZATION[1])

Forward = Callable[[Tensor], Tensor]
#: (model, one normalised example batch, calibration batches) -> forward function.
Builder = Callable[[nn.Module, Tensor, list[Tensor]], Forward]


# ---------------------------------------------------------------------- the variants


def _autocast(bf16: bool) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def _eager(bf16: bool) -> Builder:
    def build(model: nn.Module, example: Tensor, calibration: list[Tensor]) -> Forward:
        def forward(x: Tensor) -> Tensor:
            with _autocast(bf16):
                out: Tensor = model(x)
            return out

        return forward

    return build


def _jit(bf16: bool, optimize: bool) -> Builder:
    def build(model: nn.Module, example: Tensor, calibration: list[Tensor]) -> Forward:
        with torch.no_grad(), _autocast(bf16), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated in torch 2.x
            traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
            frozen = torch.jit.freeze(traced)
            if optimize:
                frozen = torch.jit.optimize_for_inference(frozen)
        return frozen  # type: ignore[no-any-return]

    return build


def _compiled(bf16: bool) -> Builder:
    def build(model: nn.Module, example: Tensor, calibration: list[Tensor]) -> Forward:
        import torch._dynamo
        import torch._inductor.config as inductor_config

        torch._dynamo.reset()
        inductor_config.freezing = True  # fold BatchNorm, prepack weights (inference only)

        def run(x: Tensor) -> Tensor:
            with _autocast(bf16):
                out: Tensor = model(x)
            return out

        compiled: Forward = torch.compile(run, backend="inductor")
        return compiled

    return build


def _int8_fx(engine: str, jit: bool) -> Builder:
    def build(model: nn.Module, example: Tensor, calibration: list[Tensor]) -> Forward:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        if engine not in torch.backends.quantized.supported_engines:
            raise RuntimeError(f"this torch has no {engine} quantized engine")
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():
            # deprecation notes of torch.ao.quantization and of reduce_range
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            prepared = prepare_fx(model, get_default_qconfig_mapping(engine), (example,))
            with torch.no_grad():
                for batch in calibration:
                    prepared(batch)
            quantized: nn.Module = convert_fx(prepared)
            if not jit:
                return quantized
            with torch.no_grad():
                traced = torch.jit.trace(quantized, example)  # type: ignore[no-untyped-call]
                frozen = torch.jit.freeze(traced)
        return frozen  # type: ignore[no-any-return]

    return build


def _int8_dynamic(model: nn.Module, example: Tensor, calibration: list[Tensor]) -> Forward:
    from torch.ao.quantization import quantize_dynamic

    before = {name: type(m) for name, m in model.named_modules()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        quantized: nn.Module = quantize_dynamic(model, dtype=torch.qint8)  # type: ignore[no-untyped-call]
    changed = [n for n, m in quantized.named_modules() if before.get(n) is not type(m)]
    if not changed:
        kinds = sorted({type(m).__name__ for m in model.modules() if not list(m.children())})
        raise RuntimeError(
            "quantize_dynamic found nothing to quantize: it covers Linear and recurrent layers, "
            f"and this network (classifier dropped) has only {', '.join(kinds)}"
        )
    return quantized


def _project(bf16: bool, runtime: str) -> Builder:
    """The project's extractor, its runtime forced; building it includes the graph's."""

    def build(model: nn.Module, example: Tensor, calibration: list[Tensor]) -> Forward:
        mean, std = LITE0_NORMALIZATION
        spec = FeatureSpec(
            backbone="efficientnet_lite0",
            weights="benchmark",
            side=SIDE,
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            dim=LITE0_FEATURE_DIM,
            precision="bfloat16" if bf16 else "float32",
        )
        extractor = FeatureExtractor(model, spec, torch.device("cpu"), runtime=runtime)
        extractor.prepare()
        return extractor.forward

    return build


@dataclass(frozen=True)
class Variant:
    """One way of running the network.

    Attributes:
        name: Short name (the table's row).
        method: ``eager``, ``jit``, ``jit+opt``, ``compile``, ``fx-static`` or ``dynamic``.
        precision: ``float32``, ``bfloat16`` or ``int8``.
        channels_last: Channels-last weights and inputs (else NCHW).
        build: Makes the forward function from a fresh copy of the model.
        isolated: Runs in a child process under a time limit (``torch.compile``).
    """

    name: str
    method: str
    precision: str
    channels_last: bool
    build: Builder
    isolated: bool = False


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(REFERENCE, "eager", "float32", False, _eager(False)),
        Variant("bf16_eager", "eager", "bfloat16", False, _eager(True)),
        Variant("fp32_cl", "eager", "float32", True, _eager(False)),
        Variant("bf16_cl", "eager", "bfloat16", True, _eager(True)),
        Variant("fp32_jit", "jit", "float32", True, _jit(False, False)),
        Variant("fp32_jit_opt", "jit+opt", "float32", True, _jit(False, True)),
        Variant("bf16_jit", "jit", "bfloat16", True, _jit(True, False)),
        Variant("bf16_jit_opt", "jit+opt", "bfloat16", True, _jit(True, True)),
        Variant("int8_dynamic", "dynamic", "int8", False, _int8_dynamic),
        Variant("int8_fx", "fx-static", "int8", True, _int8_fx("x86", False)),
        Variant("int8_fx_jit", "fx-static+jit", "int8", True, _int8_fx("x86", True)),
        Variant("int8_fx_onednn", "fx-static", "int8", True, _int8_fx("onednn", False)),
        Variant("fp32_compile", "compile", "float32", True, _compiled(False), isolated=True),
        Variant("bf16_compile", "compile", "bfloat16", True, _compiled(True), isolated=True),
        *(
            Variant(
                f"project_{name}_{runtime}",
                f"project-{runtime}",
                precision,
                True,
                _project(name == "bf16", runtime),
                isolated=True,
            )
            for name, precision in (("fp32", "float32"), ("bf16", "bfloat16"))
            for runtime in ("eager", "jit")
        ),
    )
}


# ---------------------------------------------------------------------- measuring


def _error_text(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = f"{type(error).__name__}: {' / '.join(lines[:3])}" if lines else type(error).__name__
    return text[:600]


def _prepare(images: Tensor, channels_last: bool) -> Tensor:
    """uint8 [B, S, S, 3] -> normalised float32 [B, 3, S, S] in the variant's layout."""
    x = normalize_only(images, NORMALIZATION)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    prepared: Tensor = x.contiguous(memory_format=layout)
    return prepared


def _fresh_model(base: nn.Module, channels_last: bool) -> nn.Module:
    model = copy.deepcopy(base)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout).eval()
    model.requires_grad_(False)
    return model


def _cosines(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    a = features.astype(np.float64)
    b = reference.astype(np.float64)
    dots = (a * b).sum(axis=1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosines: np.ndarray = dots / np.maximum(norms, 1e-12)
    return cosines


def _pass(forward: Forward, images: Tensor, batch: int, channels_last: bool) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch):
            x = _prepare(images[start : start + batch], channels_last)
            out.append(forward(x).float())
    return torch.cat(out).numpy()


def measure(
    variant: Variant,
    base: nn.Module,
    images: Tensor,
    batch: int,
    threads: int,
    reference: np.ndarray | None,
    repeats: int,
    section: str,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Time ``variant`` on ``images``; a failure becomes a row with ``error``.

    Returns:
        The row, and the features of the last timed pass (``None`` on failure).
    """
    count = images.shape[0]
    row: dict[str, Any] = {
        "section": section,
        "variant": variant.name,
        "method": variant.method,
        "precision": variant.precision,
        "layout": "channels_last" if variant.channels_last else "nchw",
        "batch": batch,
        "threads": threads,
    }
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = _fresh_model(base, variant.channels_last)
        calibration = (
            [
                _prepare(images[start : start + batch], variant.channels_last)
                for start in range(0, min(CALIBRATION_IMAGES, count), batch)
            ]
            if variant.method.startswith("fx")
            else []
        )
        started = time.perf_counter()
        forward = variant.build(model, _prepare(images[:batch], variant.channels_last), calibration)
        row["build_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        _pass(forward, images[:batch], batch, variant.channels_last)
        tail = count % batch
        if tail and count > batch:  # the last, smaller batch (torch.compile specialises on it)
            _pass(forward, images[:tail], batch, variant.channels_last)
        row["warmup_s"] = round(time.perf_counter() - started, 3)
        if variant.method == "compile":
            row["compile_s"] = round(row["build_s"] + row["warmup_s"], 3)
        if calibration:
            row["calibration_images"] = min(CALIBRATION_IMAGES, count)
        best = float("inf")
        features = np.zeros((count, LITE0_FEATURE_DIM), dtype=np.float32)
        for _ in range(repeats):
            started = time.perf_counter()
            features = _pass(forward, images, batch, variant.channels_last)
            best = min(best, time.perf_counter() - started)
        if features.shape != (count, LITE0_FEATURE_DIM):
            raise RuntimeError(f"features of shape {list(features.shape)}")
        if not np.isfinite(features).all():
            raise RuntimeError("non-finite features")
        row["seconds"] = round(best, 4)
        row["images_per_s"] = round(count / best, 2)
        if reference is not None:
            cos = _cosines(features, reference)
            row["cos_mean"] = round(float(cos.mean()), 6)
            row["cos_min"] = round(float(cos.min()), 6)
        else:
            row["cos_mean"] = row["cos_min"] = 1.0
        return row, features
    except Exception as error:  # any failure is a result: record it and go on
        row["error"] = _error_text(error)
        return row, None
    finally:
        torch.set_num_threads(previous_threads)


def _base_model() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, as the project loads it (float32)."""
    module: nn.Module = lite0_extractor(SIDE, precision="float32", runtime="eager").module
    return module


def _isolated_worker(
    out: Any,
    jobs: list[tuple[str, int, int, str]],
    images: np.ndarray,
    reference: np.ndarray,
    repeats: int,
) -> None:
    """Child process: measure each job and put its row on ``out``; ``None`` when done."""
    warnings.simplefilter("ignore", FutureWarning)
    base = _base_model()
    pixels = torch.from_numpy(images)
    for name, batch, threads, section in jobs:
        row, _ = measure(VARIANTS[name], base, pixels, batch, threads, reference, repeats, section)
        out.put(row)
    out.put(None)


def measure_isolated(
    jobs: list[tuple[str, int, int, str]],
    images: np.ndarray,
    reference: np.ndarray,
    repeats: int,
    timeout_s: float,
) -> list[dict[str, Any]]:
    """Run ``jobs`` (variant, batch, threads, section) in a child process, ``timeout_s`` in all.

    Jobs left when the time is up (or when the child dies) get a row with ``error``.
    """
    context = mp.get_context("spawn")
    results: Any = context.Queue()
    child = context.Process(
        target=_isolated_worker, args=(results, jobs, images, reference, repeats), daemon=True
    )
    deadline = time.monotonic() + timeout_s
    child.start()
    rows: list[dict[str, Any]] = []
    reason = ""
    while len(rows) < len(jobs):
        try:
            row = results.get(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        except queue.Empty:
            if time.monotonic() >= deadline:
                reason = f"TimeoutError: did not finish within --compile-timeout {timeout_s:.0f} s"
                break
            if not child.is_alive():
                reason = f"the child process died (exit code {child.exitcode})"
                break
            continue
        if row is None:
            break
        rows.append(row)
    if child.is_alive():
        child.join(timeout=5.0 if not reason else 0.0)
    if child.is_alive():
        child.kill()
        child.join()
    for name, batch, threads, section in jobs[len(rows) :]:
        variant = VARIANTS[name]
        rows.append(
            {
                "section": section,
                "variant": name,
                "method": variant.method,
                "precision": variant.precision,
                "layout": "channels_last" if variant.channels_last else "nchw",
                "batch": batch,
                "threads": threads,
                "error": reason or "no result from the child process",
            }
        )
    return rows


# ---------------------------------------------------------------------- inputs


def _decode(path: Path) -> np.ndarray:
    result = decode_file(str(path), SIDE, None)
    if result.status != "ok" or result.pixels is None:
        raise RuntimeError(f"{path.name}: {result.reason}")
    return np.frombuffer(result.pixels, dtype=np.uint8).reshape(SIDE, SIDE, 3)


def _round_robin(names: list[str], count: int) -> list[str]:
    """``count`` names taken in turn from each class folder (sorted), for a mix of classes."""
    by_class: dict[str, list[str]] = {}
    for name in sorted(names):
        by_class.setdefault(str(Path(name).parent), []).append(name)
    columns = [by_class[key] for key in sorted(by_class)]
    picked: list[str] = []
    depth = 0
    while len(picked) < count and any(depth < len(c) for c in columns):
        picked.extend(c[depth] for c in columns if depth < len(c))
        depth += 1
    return picked[:count]


def load_photos(source: Path, count: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode ``count`` photos of a tar archive or a folder to uint8 [count, 224, 224, 3]."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="feature-speed-") as tmp:
        if source.is_dir():
            names = [
                str(p.relative_to(source))
                for p in source.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            ]
            root = source
            picked = _round_robin(names, count)
        else:
            with tarfile.open(source) as tar:
                members = {
                    m.name: m
                    for m in tar.getmembers()
                    if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES
                }
                picked = _round_robin(list(members), count)
                tar.extractall(tmp, members=[members[n] for n in picked], filter="data")
            root = Path(tmp)
        if not picked:
            raise SystemExit(f"no images in {source}")
        images = np.stack([_decode(root / name) for name in picked])
    classes = len({str(Path(name).parent) for name in picked})
    info = {
        "source": str(source),
        "images": int(images.shape[0]),
        "classes": classes,
        "side": SIDE,
        "decode_s": round(time.perf_counter() - started, 2),
    }
    return images, info


def synthetic_photos(count: int, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Smooth random images (7x7 colour fields upsampled, plus noise): uint8 [N, 224, 224, 3]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 7, 7, generator=generator)
    smooth = F.interpolate(coarse, size=(SIDE, SIDE), mode="bicubic", align_corners=False)
    noisy = smooth + 0.05 * torch.randn(count, 3, SIDE, SIDE, generator=generator)
    pixels = (noisy.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    info = {"source": "synthetic", "images": count, "side": SIDE, "seed": seed}
    return np.ascontiguousarray(pixels.numpy()), info


# ---------------------------------------------------------------------- report


def cpu_flags() -> dict[str, Any]:
    """The instruction-set flags that matter here, and what torch makes of them."""
    present = cpu_flags_present()
    found: dict[str, Any] = {flag: flag in present for flag in CPU_FLAGS}
    found["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    mkldnn_bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    found["mkldnn_bf16"] = bool(mkldnn_bf16()) if mkldnn_bf16 is not None else None
    found["project_auto_precision"] = resolve_precision("auto", torch.device("cpu"))
    return found


def choose_best(rows: list[dict[str, Any]], min_cosine: float) -> dict[str, Any] | None:
    """The fastest row that worked and whose min cosine is at least ``min_cosine``."""
    fit = [r for r in rows if "error" not in r and r.get("cos_min", 0.0) >= min_cosine]
    return max(fit, key=lambda r: r["images_per_s"]) if fit else None


def _cell(row: dict[str, Any], key: str, digits: int) -> str:
    value = row.get(key)
    return "" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| section | variant | method | precision | layout | batch | threads | images/s "
        "| x ref | cos mean | cos min | build+warm-up s | error |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        setup = ""
        if "warmup_s" in row:
            setup = f"{row['build_s'] + row['warmup_s']:.1f}"
        error = str(row.get("error", "")).replace("|", "/")
        lines.append(
            f"| {row['section']} | {row['variant']} | {row['method']} | {row['precision']} "
            f"| {row['layout']} | {row['batch']} | {row['threads']} "
            f"| {_cell(row, 'images_per_s', 1)} | {_cell(row, 'speedup', 2)} "
            f"| {_cell(row, 'cos_mean', 4)} | {_cell(row, 'cos_min', 4)} | {setup} "
            f"| {error[:160]} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- main


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("source", type=Path, nargs="?", help="imagenette-224.tar.gz or a folder")
    parser.add_argument("--synthetic", action="store_true", help="random images (a quick check)")
    parser.add_argument("--images", type=int, default=256, help="photos to decode and time")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (the best counts)")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-sweeps", action="store_true", help="skip the thread/batch rows")
    parser.add_argument(
        "--only", default=None, help="comma-separated variants to run (the reference always)"
    )
    parser.add_argument(
        "--compile-timeout", type=float, default=600.0, help="seconds for all torch.compile runs"
    )
    parser.add_argument(
        "--min-cosine",
        type=float,
        default=0.99,
        help="lowest per-image cosine to the reference for the best variant",
    )
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats must be >= 1")
    if not args.synthetic and args.source is None:
        parser.error("give the archive (or a folder), or --synthetic")
    args.only = None if args.only is None else {n for n in args.only.split(",") if n}
    unknown = sorted((args.only or set()) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = _parse(argv)
    if not args.synthetic and not args.source.exists():
        print(json.dumps({"benchmark": "feature_speed", "skipped": f"{args.source} not found"}))
        return 0
    if args.synthetic:
        photos, source = synthetic_photos(args.images)
    else:
        photos, source = load_photos(args.source, args.images)
    images = torch.from_numpy(photos)
    base = _base_model()
    threads = torch.get_num_threads()
    started = time.perf_counter()

    rows: list[dict[str, Any]] = []
    reference_row, reference = measure(
        VARIANTS[REFERENCE], base, images, BATCH, threads, None, args.repeats, "variants"
    )
    if reference is None:
        raise SystemExit(f"the float32 reference failed: {reference_row['error']}")
    rows.append(reference_row)
    chosen = [
        v
        for v in VARIANTS.values()
        if v.name != REFERENCE and (args.only is None or v.name in args.only)
    ]
    for variant in chosen:
        if not variant.isolated:
            row, _ = measure(
                variant, base, images, BATCH, threads, reference, args.repeats, "variants"
            )
            rows.append(row)
    compiled = [(v.name, BATCH, threads, "variants") for v in chosen if v.method == "compile"]
    if compiled and not args.no_compile:
        rows.extend(
            measure_isolated(compiled, photos, reference, args.repeats, args.compile_timeout)
        )
    for variant in chosen:  # one fresh process each: the graph's build from a cold start
        if variant.method.startswith("project"):
            job = (variant.name, BATCH, threads, "project")
            rows.extend(
                measure_isolated([job], photos, reference, args.repeats, args.compile_timeout)
            )

    best = None if args.no_sweeps else choose_best(rows, args.min_cosine)
    sweeps: list[tuple[str, int, int, str]] = []
    for count in () if args.no_sweeps else SWEEP_THREADS:
        sweeps.append((REFERENCE, BATCH, count, "threads"))
        if best is not None and best["variant"] != REFERENCE:
            sweeps.append((best["variant"], BATCH, count, "threads"))
    if best is not None:
        sweeps.extend((best["variant"], size, threads, "batch") for size in SWEEP_BATCHES)
    isolated = [job for job in sweeps if VARIANTS[job[0]].isolated]
    for name, batch, count, section in sweeps:
        if not VARIANTS[name].isolated:
            rows.append(
                measure(
                    VARIANTS[name], base, images, batch, count, reference, args.repeats, section
                )[0]
            )
    if isolated:
        rows.extend(
            measure_isolated(isolated, photos, reference, args.repeats, args.compile_timeout)
        )

    reference_rate = reference_row["images_per_s"]
    for row in rows:
        if "images_per_s" in row:
            row["speedup"] = round(row["images_per_s"] / reference_rate, 3)
    failed: dict[str, str] = {}
    for row in rows:
        if "error" in row:
            failed.setdefault(row["variant"], row["error"])
    result = {
        "benchmark": "feature_speed",
        "machine": {**machine(), "cpu_flags": cpu_flags()},
        "input": source,
        "settings": {
            "repeats": args.repeats,
            "batch": BATCH,
            "threads": threads,
            "min_cosine": args.min_cosine,
            "compile": not args.no_compile,
            "only": None if args.only is None else sorted(args.only),
            "sweeps": not args.no_sweeps,
            "compile_timeout_s": args.compile_timeout,
            "calibration_images": min(CALIBRATION_IMAGES, images.shape[0]),
        },
        "reference_images_per_s": reference_rate,
        "best": None if best is None else best["variant"],
        "best_images_per_s": None if best is None else best["images_per_s"],
        "failed": failed,
        "results": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(table(rows))
    print()
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
