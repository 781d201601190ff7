"""Held-out ACC of the quick heads on features of each extractor runtime and precision.

For Imagenette (``train/<wnid>/*.JPEG``) and CIFAR-10 (``train/<class>/NNNN.jpg``):

1. unpacks the ``train/`` folder of the archive under ``--work`` (once: a ``.unpacked`` mark);
2. draws a class-balanced random subset of ``--count`` photos (seed 0: ``count / classes``
   per class, sorted names permuted by ``numpy.random.default_rng(0)``);
3. decodes them as the scan does (:func:`crlc_engine.library.decode.decode_file`: shorter
   side to 224 px, centre crop, uint8);
4. extracts EfficientNet-Lite0 features with each variant through the project's
   :class:`~crlc_engine.training.frozen_features.FeatureExtractor` (batch 32, so the last
   batch is smaller): ``fp32`` (float32, eager), ``bf16`` (bfloat16, eager), ``bf16jit``
   (bfloat16, traced + frozen graph) and, with ``--fp32-jit``, ``fp32jit``; each is saved
   at once as ``<features>/<dataset>_<variant>.npy`` (float32 [N, 1280]) next to
   ``<dataset>_labels.npy`` (int64 [N]), ``<dataset>_files.txt`` (the rows' files) and
   ``<dataset>_classes.json``;
5. compares every variant with ``fp32`` (per-image cosine: min, mean) and ``bf16jit`` with
   ``bf16`` (per-image relative L2 difference, the measure of ``JIT_TOLERANCE``), and checks
   on the first 32 photos that the graph gives the same features for batches of 1, 7 and 32;
6. trains the quick heads (``FeatureTrainer(QuickSettings(clusters=10, seed=s), features)``,
   ``.fit()``, ``.predict()``) for each seed and scores the lowest-loss sub-head (and the
   best one) with :func:`crlc_engine.results.metrics.score_clustering` (Hungarian ACC).

The acceptance rule: a variant's mean ACC within 0.5 points of ``fp32``'s on every dataset.
Prints a Markdown table and, last, one JSON line (also written to ``--json``). A dataset whose
archive is absent is skipped; with both absent it prints ``{"skipped": ...}`` and exits 0.

    python benchmarks/extractor_accuracy.py --imagenette ../shared/datasets/imagenette-224.tar.gz \
        --cifar ../shared/datasets/cifar10-jpeg.tar.gz --json /tmp/extractor-accuracy.json
    python benchmarks/extractor_accuracy.py --count 200 --seeds 0   # a check
"""

from __future__ import annotations

import argparse
import json
import statistics
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _imagenette import IMAGE_SUFFIXES, report

from crlc_engine.library.decode import decode_file
from crlc_engine.results.metrics import score_clustering
from crlc_engine.training.feature_trainer import FeatureTrainer, QuickSettings
from crlc_engine.training.frozen_features import (
    JIT_TOLERANCE,
    FeatureExtractor,
    lite0_extractor,
    relative_difference,
)

SIDE = 224
BATCH = 32
CHECK_IMAGES = 32
CHECK_BATCHES = (1, 7, 32)
REFERENCE = "fp32"
ACCEPT_POINTS = 0.5
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARCHIVES = {
    "imagenette": ROOT.parent / "shared" / "datasets" / "imagenette-224.tar.gz",
    "cifar": ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz",
}


@dataclass(frozen=True)
class Variant:
    """One way of extracting the features: precision and runtime of the extractor."""

    name: str
    precision: str
    runtime: str


VARIANTS = (
    Variant("fp32", "float32", "eager"),
    Variant("bf16", "bfloat16", "eager"),
    Variant("bf16jit", "bfloat16", "jit"),
)
FP32_JIT = Variant("fp32jit", "float32", "jit")


# ---------------------------------------------------------------------- data


def unpack_train(archive: Path, target: Path) -> Path:
    """The ``train/`` folder of ``archive``, unpacked into ``target`` unless done before."""
    mark = target / ".unpacked"
    if not mark.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[0] == "train"]
            tar.extractall(target, members=members, filter="data")
        mark.touch()
    return target / "train"


def balanced_subset(train: Path, count: int, seed: int = 0) -> tuple[list[Path], list[str]]:
    """``count`` photos, as many of each class folder as can be (random, ``seed``)."""
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    picked: list[Path] = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (train / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        share = count // len(classes) + (1 if index < count % len(classes) else 0)
        order = rng.permutation(len(files))[:share]
        picked.extend(files[i] for i in sorted(order))
    return picked, classes


def labelled_subset(
    name: str, archive: Path, args: argparse.Namespace
) -> tuple[list[Path], np.ndarray]:
    """The dataset's ``args.count`` class-balanced photos (unpacked under ``args.work``) and
    their classes: int64 [N], the index of each photo's folder among the sorted folders."""
    files, classes = balanced_subset(unpack_train(archive, args.work / name), args.count)
    truth = np.array([classes.index(p.parent.name) for p in files], dtype=np.int64)
    return files, truth


def decode_all(files: list[Path]) -> np.ndarray:
    """The project's 224-px squares of ``files``: uint8 [N, 224, 224, 3]."""
    out = np.empty((len(files), SIDE, SIDE, 3), dtype=np.uint8)
    for row, path in enumerate(files):
        result = decode_file(str(path), SIDE, None)
        if result.status != "ok" or result.pixels is None:
            raise RuntimeError(f"{path}: {result.reason}")
        out[row] = np.frombuffer(result.pixels, dtype=np.uint8).reshape(SIDE, SIDE, 3)
    return out


# ---------------------------------------------------------------------- features


def extract(extractor: FeatureExtractor, images: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Features of ``images`` in batches of ``batch`` (the last one smaller)."""
    rows = [extractor(images[start : start + batch]) for start in range(0, len(images), batch)]
    return np.concatenate(rows)


def cosines(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity (float64)."""
    a, b = features.astype(np.float64), reference.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    result: np.ndarray = (a * b).sum(axis=1) / np.maximum(norms, 1e-12)
    return result


def compare(features: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Cosine (min, mean) and largest relative L2 difference of ``features`` to ``reference``."""
    cos = cosines(features, reference)
    diff = relative_difference(torch.from_numpy(features), torch.from_numpy(reference))
    return {
        "cos_min": round(float(cos.min()), 6),
        "cos_mean": round(float(cos.mean()), 6),
        "rel_diff_max": round(diff, 6),
    }


def variant_features(
    variant: Variant, images: np.ndarray, path: Path, reuse: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    """Extract (or, with ``reuse``, load) one variant's features; saved to ``path`` at once."""
    if reuse and path.exists():
        return np.load(path), {"variant": variant.name, "reused": str(path)}
    extractor = lite0_extractor(
        SIDE, torch.device("cpu"), variant.precision, runtime=variant.runtime
    )
    started = time.perf_counter()
    runtime = extractor.prepare()
    build = time.perf_counter() - started
    started = time.perf_counter()
    features = extract(extractor, images)
    seconds = time.perf_counter() - started
    np.save(path, features.astype(np.float32))
    info = {
        "variant": variant.name,
        "precision": variant.precision,
        "runtime": runtime,
        "build_s": round(build, 3),
        "extract_s": round(seconds, 2),
        "images_per_s": round(len(images) / seconds, 1),
        "file": str(path),
    }
    return features, info


def batch_check(images: np.ndarray) -> dict[str, Any]:
    """The bf16 graph on the same photos in batches of 1, 7 and 32, against bf16 eager."""
    eager = lite0_extractor(SIDE, precision="bfloat16", runtime="eager")
    jit = lite0_extractor(SIDE, precision="bfloat16", runtime="jit")
    reference = extract(eager, images, len(images))
    by_size = {size: extract(jit, images, size) for size in CHECK_BATCHES}
    largest = by_size[max(CHECK_BATCHES)]
    return {
        "images": len(images),
        "tolerance": JIT_TOLERANCE["bfloat16"],
        "jit_vs_eager": {str(s): compare(f, reference) for s, f in by_size.items()},
        "jit_vs_jit_batch_32": {str(s): compare(f, largest) for s, f in by_size.items()},
        "eager_batch_1_vs_32": compare(extract(eager, images, 1), reference),
    }


# ---------------------------------------------------------------------- heads


def heads_acc(features: np.ndarray, truth: np.ndarray, seed: int) -> dict[str, Any]:
    """Train the quick heads on ``features`` with ``seed``; scores of the chosen sub-head."""
    started = time.perf_counter()
    trainer = FeatureTrainer(QuickSettings(clusters=10, seed=seed), features)
    fit = trainer.fit()
    probabilities = trainer.predict().probabilities
    chosen = score_clustering(truth, probabilities[fit.chosen_head].argmax(axis=1))
    per_head = [score_clustering(truth, p.argmax(axis=1)).acc for p in probabilities]
    return {
        "seed": seed,
        "acc": round(chosen.acc * 100, 2),
        "nmi": round(chosen.nmi * 100, 2),
        "ari": round(chosen.ari * 100, 2),
        "best_head_acc": round(max(per_head) * 100, 2),
        "head": fit.chosen_head,
        "epochs": fit.epochs,
        "seconds": round(time.perf_counter() - started, 1),
    }


def run_dataset(
    name: str, archive: Path, args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Any]:
    """Everything above for one dataset."""
    train = unpack_train(archive, args.work / name)
    files, classes = balanced_subset(train, args.count)
    truth = np.array([classes.index(p.parent.name) for p in files], dtype=np.int64)
    out = args.features
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"{name}_labels.npy", truth)
    (out / f"{name}_files.txt").write_text("".join(f"{p.relative_to(train)}\n" for p in files))
    (out / f"{name}_classes.json").write_text(json.dumps(classes) + "\n")
    started = time.perf_counter()
    images = decode_all(files)
    log(f"{name}: {len(files)} photos of {len(classes)} classes decoded")
    result: dict[str, Any] = {
        "archive": str(archive),
        "images": len(files),
        "classes": classes,
        "decode_s": round(time.perf_counter() - started, 1),
        "batch_check": batch_check(images[:CHECK_IMAGES]),
        "variants": {},
    }
    features: dict[str, np.ndarray] = {}
    for variant in (*VARIANTS, FP32_JIT) if args.fp32_jit else VARIANTS:
        path = out / f"{name}_{variant.name}.npy"
        features[variant.name], info = variant_features(variant, images, path, args.reuse)
        result["variants"][variant.name] = info
        log(f"{name}: {variant.name} features -> {path} {info}")
    for variant, values in features.items():
        info = result["variants"][variant]
        info["vs_fp32"] = compare(values, features[REFERENCE])
        if variant.endswith("jit"):
            info["vs_eager"] = compare(values, features[variant.removesuffix("jit")])
        info["runs"] = [heads_acc(values, truth, seed) for seed in args.seeds]
        info["acc_mean"] = round(statistics.fmean(r["acc"] for r in info["runs"]), 2)
        log(f"{name}: {variant} ACC {[r['acc'] for r in info['runs']]} mean {info['acc_mean']}")
    return result


# ---------------------------------------------------------------------- report


def acceptance(datasets: dict[str, Any]) -> dict[str, Any]:
    """Per variant: its mean ACC minus fp32's on each dataset, and whether all are >= -0.5."""
    verdict: dict[str, Any] = {}
    names = {v for d in datasets.values() for v in d["variants"] if v != REFERENCE}
    for variant in sorted(names):
        deltas = {
            name: round(
                d["variants"][variant]["acc_mean"] - d["variants"][REFERENCE]["acc_mean"], 2
            )
            for name, d in datasets.items()
        }
        verdict[variant] = {
            "delta_points": deltas,
            "within_0_5": all(v >= -ACCEPT_POINTS for v in deltas.values()),
        }
    return verdict


def table(datasets: dict[str, Any]) -> str:
    """ACC per dataset, variant and seed as Markdown."""
    lines = [
        "| dataset | variant | runtime | ACC per seed | mean ACC | cos min / mean vs fp32 "
        "| images/s |",
        "|---|---|---|---|---:|---|---:|",
    ]
    for name, data in datasets.items():
        for variant, info in data["variants"].items():
            accs = ", ".join(f"{r['acc']:.2f}" for r in info["runs"])
            cos = info["vs_fp32"]
            lines.append(
                f"| {name} | {variant} | {info.get('runtime', '')} | {accs} "
                f"| {info['acc_mean']:.2f} | {cos['cos_min']:.4f} / {cos['cos_mean']:.4f} "
                f"| {info.get('images_per_s', '')} |"
            )
    return "\n".join(lines)


def dataset_parser(description: str | None, features: str) -> argparse.ArgumentParser:
    """The options these per-dataset benchmarks share: the archives, ``--work``,
    ``--features`` (default ``WORK/<features>``), ``--count``, ``--seeds``, ``--reuse``,
    ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    for name, default in DEFAULT_ARCHIVES.items():
        parser.add_argument(f"--{name}", type=Path, default=default, help=f"{name} archive")
    parser.add_argument("--work", type=Path, default=Path("/tmp/s16data"), help="unpack here")
    parser.add_argument("--features", type=Path, default=None, help=f"default: WORK/{features}")
    parser.add_argument("--count", type=int, default=2000, help="photos per dataset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="head seeds")
    parser.add_argument("--reuse", action="store_true", help="load saved features if present")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    return parser


def checked_dataset_args(
    parser: argparse.ArgumentParser, argv: list[str] | None, features: str
) -> argparse.Namespace:
    """Parse ``argv``; check ``--count`` and fill in ``--features``."""
    args = parser.parse_args(argv)
    if args.count < 20:
        parser.error("--count must be >= 20")
    args.features = args.features or args.work / features
    return args


def run_datasets(
    benchmark: str,
    args: argparse.Namespace,
    run: Callable[[str, Path, argparse.Namespace, Callable[[str], None]], dict[str, Any]],
) -> dict[str, Any] | None:
    """``run`` on every dataset whose archive is present, with a timestamped log; ``None``
    (after printing the ``skipped`` JSON line) when none is."""
    archives = {name: getattr(args, name) for name in DEFAULT_ARCHIVES}
    present = {name: path for name, path in archives.items() if path.exists()}
    if not present:
        missing = ", ".join(str(p) for p in archives.values())
        print(json.dumps({"benchmark": benchmark, "skipped": f"{missing} not found"}))
        return None
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {text}", flush=True)

    return {name: run(name, path, args, log) for name, path in present.items()}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = dataset_parser(__doc__.split("\n\n")[0] if __doc__ else None, "features")
    parser.add_argument("--fp32-jit", action="store_true", help="also the float32 graph")
    return checked_dataset_args(parser, argv, "features")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = _parse(argv)
    started = time.perf_counter()
    datasets = run_datasets("extractor_accuracy", args, run_dataset)
    if datasets is None:
        return 0
    body = {
        "skipped": {
            n: f"{getattr(args, n)} not found" for n in DEFAULT_ARCHIVES if n not in datasets
        },
        "features_dir": str(args.features),
        "datasets": datasets,
        "acceptance": acceptance(datasets),
    }
    settings = {"count": args.count, "seeds": args.seeds, "batch": BATCH, "side": SIDE}
    report("extractor_accuracy", settings, body, table(datasets), started, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
