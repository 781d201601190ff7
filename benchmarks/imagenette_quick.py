"""The ``quick`` mode on Imagenette against k-means on the same cached features.

Unpacks ``imagenette-224.tar.gz`` (or reuses an unpacked folder), optionally keeps the first
``--limit / 10`` images of each class, and then, in a fresh workspace:

1. scans the folder into the library's pixel cache at ``--size`` (timed);
2. runs the quick job for seed 0 (timed: EfficientNet-Lite0 features of every image, then the
   CRLC heads, then the assignments into the catalog); scan + this job = the whole run a user
   waits for;
3. runs the job again for the other seeds (features come from the workspace cache);
4. scores every run against the class folders (lowest-loss sub-head, and the best sub-head);
5. runs faiss k-means (L2-normalised features, nredo 10) with the same seeds on the same
   cached features.

Prints a Markdown table and writes one JSON object (``--json``). Exits 0 with
``{"skipped": ...}`` when the archive is absent.

    python benchmarks/imagenette_quick.py ../shared/datasets/imagenette-224.tar.gz \
        --limit 500 --json /tmp/quick-500.json            # a check: 50 images per class
    python benchmarks/imagenette_quick.py ../shared/datasets/imagenette-224.tar.gz \
        --json /tmp/quick.json                            # all 13,394 images at 224 px

The quick job runs through :func:`crlc_engine.pipeline.jobs.train_folder` (what
``crlc train --preset quick`` runs once ``jobs.train_folder`` dispatches to it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from _imagenette import IMAGE_SUFFIXES, machine, unpack

from crlc_engine.core.config import TrainConfig
from crlc_engine.library import ImageLibrary, scan_folders
from crlc_engine.pipeline.feature_method import FeatureHeadsMethod
from crlc_engine.pipeline.jobs import evaluate_folder, train_folder
from crlc_engine.pipeline.presets import PRESETS, resolve_train_config
from crlc_engine.results.groundtruth import class_indices, class_of
from crlc_engine.results.metrics import score_clustering
from crlc_engine.training.checkpoint import load_checkpoint
from crlc_engine.training.feature_cache import FeatureCache
from crlc_engine.training.frozen_features import (
    PRECISIONS,
    FeatureSpec,
    lite0_extractor,
    resolve_precision,
)

#: The quick preset's settings (used while ``crlc_engine.pipeline.presets`` has no ``quick`` entry).
QUICK_SETTINGS: dict[str, Any] = {
    "backbone": "efficientnet_lite0",
    "pretrained": True,
    "batch_size": 256,
    "epochs": 20,
    "lambda_fc": 1.0,
    "lambda_ent": 2.0,
    "neighbors": 20,
    "subheads": 10,
    "checkpoint_every": 10,
}


def _unpack(archive: Path, data: Path | None, workdir: Path) -> tuple[Path, float]:
    if data is not None and data.is_dir():
        return data, 0.0
    started = time.perf_counter()
    target = unpack(archive, workdir / "imagenette")
    return target, time.perf_counter() - started


def _subset(root: Path, limit: int, classes: int, target: Path) -> Path:
    """Link the first ``limit / classes`` images (sorted paths) of every class into ``target``."""
    by_class: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            by_class.setdefault(path.parent.name, []).append(path)
    per_class = max(1, limit // max(1, len(by_class) or classes))
    for name, paths in sorted(by_class.items()):
        (target / name).mkdir(parents=True, exist_ok=True)
        for path in paths[:per_class]:
            dest = target / name / f"{path.parent.parent.name}-{path.name}"
            try:
                os.link(path, dest)
            except OSError:
                shutil.copy2(path, dest)
    return target


def _config(size: int, seed: int, epochs: int, lambda_fc: float | None) -> TrainConfig:
    overrides: dict[str, Any] = {"image_size": size, "seed": seed, "epochs": epochs}
    overrides["device"] = "cpu"
    if lambda_fc is not None:
        overrides["lambda_fc"] = lambda_fc
    if "quick" in PRESETS:
        return resolve_train_config(10, "quick", overrides)
    return TrainConfig(clusters=10, preset="quick", **{**QUICK_SETTINGS, **overrides})


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(100 * statistics.fmean(values), 2),
        "min": round(100 * min(values), 2),
        "max": round(100 * max(values), 2),
    }


def _kmeans(features: np.ndarray, truth: np.ndarray, seeds: list[int]) -> dict[str, Any]:
    x = np.ascontiguousarray(features, dtype=np.float32)
    faiss.normalize_L2(x)
    runs = []
    for seed in seeds:
        started = time.perf_counter()
        km = faiss.Kmeans(x.shape[1], 10, niter=50, nredo=10, seed=seed, verbose=False)
        km.train(x)
        labels = km.index.search(x, 1)[1][:, 0].astype(np.int64)
        scores = score_clustering(truth, labels)
        runs.append({"seed": seed, **scores.as_dict(), "seconds": time.perf_counter() - started})
    return {
        "runs": runs,
        **{m: _summary([r[m] for r in runs]) for m in ("acc", "nmi", "ari")},
        "seconds_each": round(statistics.fmean(r["seconds"] for r in runs), 2),
    }


def _table(result: dict[str, Any]) -> str:
    quick, kmeans = result["quick"], result["kmeans"]

    def cell(block: dict[str, Any], metric: str) -> str:
        s = block[metric]
        return f"{s['mean']:.1f} ({s['min']:.1f}-{s['max']:.1f})"

    rows = [
        "| method (EfficientNet-Lite0 pretrained on ImageNet, which contains these classes) "
        "| ACC | NMI | ARI | time |",
        "|---|---|---|---|---|",
        f"| k-means (faiss, L2-normalised, nredo 10) | {cell(kmeans, 'acc')} | "
        f"{cell(kmeans, 'nmi')} | {cell(kmeans, 'ari')} | {kmeans['seconds_each']:.1f} s "
        "per seed on cached features |",
        f"| quick preset: CRLC heads, lowest-loss sub-head | {cell(quick, 'acc')} | "
        f"{cell(quick, 'nmi')} | {cell(quick, 'ari')} | {quick['heads_s_each']:.1f} s heads "
        "per seed on cached features |",
        f"| (quick, best sub-head by ground truth) | {cell(quick['best'], 'acc')} | "
        f"{cell(quick['best'], 'nmi')} | {cell(quick['best'], 'ari')} | |",
    ]
    t = result["timing"]
    rows.append("")
    rows.append(
        f"Whole quick run for {result['images']} images at {result['size']} px: "
        f"{t['whole_run_s'] / 60:.1f} min = scan {t['scan_s']:.0f} s + features "
        f"{t['features_s']:.0f} s ({t['features_images_per_s']:.1f} images/s) + heads "
        f"{t['heads_s']:.0f} s + other {t['other_s']:.0f} s (kNN, assignments, catalog)."
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("archive", type=Path)
    parser.add_argument("--size", type=int, default=224, help="pixel cache side, 160..224")
    parser.add_argument("--limit", type=int, default=None, help="images in all (per class: /10)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=QUICK_SETTINGS["epochs"])
    parser.add_argument("--lambda-fc", type=float, default=None)
    parser.add_argument("--data", type=Path, default=None, help="an unpacked copy to reuse")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not 160 <= args.size <= 224:
        parser.error("--size must be 160..224")
    if not args.archive.is_file() and (args.data is None or not args.data.is_dir()):
        print(json.dumps({"benchmark": "imagenette_quick", "skipped": f"{args.archive} not found"}))
        return
    torch.set_num_threads(args.threads)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crlc-imagenette-"))
    data, unpack_s = _unpack(args.archive, args.data, workdir)
    if args.limit is not None:
        data = _subset(data, args.limit, 10, workdir / f"subset-{args.limit}")
    ws = workdir / "ws"
    seeds = list(range(args.seeds))

    started = time.perf_counter()
    scan = scan_folders([data], args.size, ws)
    scan_s = time.perf_counter() - started
    jobs_out: list[dict[str, Any]] = []
    extractor = lite0_extractor(args.size, torch.device("cpu"), args.precision)
    for seed in seeds:
        job_started = time.perf_counter()
        config = _config(args.size, seed, args.epochs, args.lambda_fc)
        outcome = train_folder(data, config, ws, method=FeatureHeadsMethod(extractor))
        wall = time.perf_counter() - job_started
        status = outcome.run.read_status()
        scores = evaluate_folder(data, outcome.run.run_id, ws)
        jobs_out.append(
            {
                "seed": seed,
                "run_id": outcome.run.run_id,
                "wall_s": wall,
                "features_s": float(status.get("features_s", 0.0)),
                "features_computed": int(status.get("features_computed", 0)),
                "heads_s": outcome.fit.elapsed_s,
                "head": outcome.fit.chosen_head,
                "chosen": scores.chosen.as_dict(),
                "best": {**scores.best.as_dict(), "head": scores.best_head},
            }
        )
        print(json.dumps({"seed": seed, **jobs_out[-1]}), flush=True)

    first = jobs_out[0]
    with ImageLibrary.open([data], ws) as library:
        records = library.cached_images(args.size)
        run = library.runs.get(first["run_id"])
        state = load_checkpoint(run.checkpoint_path)
        spec = FeatureSpec.from_dict(state["features"])
        features = FeatureCache(library.workspace, spec).read(records)
    truth, names = class_indices([class_of(r.rel_path) for r in records])
    kmeans = _kmeans(features, truth, seeds)

    quick: dict[str, Any] = {
        m: _summary([j["chosen"][m] for j in jobs_out]) for m in ("acc", "nmi", "ari")
    }
    quick["best"] = {m: _summary([j["best"][m] for j in jobs_out]) for m in ("acc", "nmi", "ari")}
    quick["heads_s_each"] = round(statistics.fmean(j["heads_s"] for j in jobs_out), 1)
    quick["runs"] = jobs_out
    features_s = first["features_s"]
    result = {
        "benchmark": "imagenette_quick",
        "images": len(records),
        "classes": len(names),
        "size": args.size,
        "seeds": seeds,
        "feature_spec": spec.as_dict(),
        "settings": _config(args.size, 0, args.epochs, args.lambda_fc).to_dict(),
        "head_settings": state["settings"],
        "head_precision": resolve_precision(state["settings"]["precision"], torch.device("cpu")),
        "scan": scan.as_dict(),
        "timing": {
            "unpack_s": round(unpack_s, 1),
            "scan_s": round(scan_s, 1),
            "features_s": round(features_s, 1),
            "features_images_per_s": round(first["features_computed"] / features_s, 2)
            if features_s > 0
            else 0.0,
            "heads_s": round(first["heads_s"], 1),
            "other_s": round(first["wall_s"] - features_s - first["heads_s"], 1),
            "first_job_s": round(first["wall_s"], 1),
            "whole_run_s": round(scan_s + first["wall_s"], 1),
        },
        "kmeans": kmeans,
        "quick": quick,
        "machine": {**machine(), "faiss": faiss.__version__},
    }
    table = _table(result)
    result["table"] = table
    print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
