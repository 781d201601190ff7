"""Two literature gains tried on the quick preset's cached features: ACC and cost per variant.

For Imagenette and a CIFAR-10 subset (the same class-balanced ``--count`` photos as
``benchmarks/extractor_accuracy.py``, decoded as the scan does), with the project's default
extractor (bfloat16 graph where the CPU runs it):

* ``base``: today's quick heads (``FeatureTrainer(QuickSettings(clusters=10, seed=s))``) on the
  features of the photos;
* ``flip``: the same heads on the mean of the features of each photo and of its mirror image
  (one extra forward pass per photo, timed);
* ``self``: ``base`` followed by a self-labelling stage, as in SCAN and SPICE: the chosen
  sub-head's confident predictions (probability >= ``--threshold``) become pseudo-labels, and
  the heads train ``--self-steps`` more steps with the CRLC-semi objective (the CRLC loss plus
  ``lambda_xent`` 1 x the cross-entropy of every sub-head on 64 pseudo-labelled rows per step,
  :class:`~crlc_engine.training.feature_trainer.FeatureTrainer` with ``labelled``), starting
  from the ``base`` heads;
* ``flip+self``: both.

A variant's time is its features' seconds plus its heads' seconds (plus the self-labelling
stage); ``cost`` is that over ``base``'s. The rule of the issue: keep a gain only if it adds at
least 1 ACC point (mean of the seeds) on both datasets and costs at most 20 % more time.
Prints a Markdown table and, last, one JSON line (also written to ``--json``). Features are
saved under ``--features`` and, with ``--reuse``, loaded from there (their seconds too).

    python benchmarks/sharper_groups.py --imagenette ../shared/datasets/imagenette-224.tar.gz \
        --cifar ../shared/datasets/cifar10-jpeg.tar.gz --json /tmp/sharper-groups.json
    python benchmarks/sharper_groups.py --count 200 --seeds 0 --self-steps 20   # a check
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _imagenette import report
from extractor_accuracy import (
    checked_dataset_args,
    dataset_parser,
    decode_all,
    extract,
    labelled_subset,
    run_datasets,
)

from crlc_engine.results.metrics import best_mapping, score_clustering
from crlc_engine.training.feature_trainer import FeatureTrainer, QuickSettings
from crlc_engine.training.frozen_features import lite0_extractor

SIDE = 224
VARIANTS = ("base", "flip", "self", "flip+self")
KEEP_POINTS = 1.0
KEEP_COST = 1.2


def features_of(
    images: np.ndarray, path: Path, reuse: bool, mirrored: bool
) -> tuple[np.ndarray, float]:
    """Features of ``images`` (mirrored left-right with ``mirrored``) and their seconds."""
    seconds_path = path.with_suffix(".seconds")
    if reuse and path.exists() and seconds_path.exists():
        return np.load(path), float(seconds_path.read_text())
    extractor = lite0_extractor(SIDE, torch.device("cpu"))
    extractor.prepare()
    source = np.ascontiguousarray(images[:, :, ::-1]) if mirrored else images
    started = time.perf_counter()
    features = extract(extractor, source)
    seconds = time.perf_counter() - started
    np.save(path, features.astype(np.float32))
    seconds_path.write_text(f"{seconds:.3f}\n")
    return features, seconds


def pseudo_labels(probabilities: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, clusters) of the rows whose top probability is at least ``threshold``."""
    top = probabilities.max(axis=1)
    rows = np.flatnonzero(top >= threshold)
    return rows.astype(np.int64), probabilities[rows].argmax(axis=1).astype(np.int64)


def label_precision(truth: np.ndarray, predicted: np.ndarray, rows: np.ndarray) -> float:
    """Fraction of ``rows`` whose predicted cluster maps (Hungarian, all rows) to the truth."""
    if len(rows) == 0:
        return float("nan")
    mapping = best_mapping(truth, predicted)
    mapped = np.array([mapping.get(int(c), -1) for c in predicted[rows]])
    return float(np.mean(mapped == truth[rows]))


def self_label(
    base: FeatureTrainer, probabilities: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    """The self-labelling stage after ``base``'s fit; scores of its chosen sub-head."""
    started = time.perf_counter()
    rows, clusters = pseudo_labels(probabilities, args.threshold)
    predicted = probabilities.argmax(axis=1)
    info: dict[str, Any] = {
        "pseudo_labels": len(rows),
        "pseudo_precision": round(100 * label_precision(truth, predicted, rows), 2),
    }
    if len(rows) == 0:
        return {**info, "acc": None, "self_s": round(time.perf_counter() - started, 2)}
    steps = args.self_steps
    settings = QuickSettings(
        clusters=base.settings.clusters,
        seed=base.settings.seed + 100,
        epochs=1,
        min_steps=steps,
        max_steps=steps,
        lambda_xent=1.0,
    )
    assert base.neighbors is not None
    trainer = FeatureTrainer(
        settings, base.raw, labelled=(rows, clusters), neighbors=base.neighbors.cpu().numpy()
    )
    trainer.heads.load_state_dict(base.heads.state_dict())
    fit = trainer.fit()
    chosen = trainer.predict().probabilities[fit.chosen_head].argmax(axis=1)
    info.update(
        acc=round(100 * score_clustering(truth, chosen).acc, 2),
        steps=fit.steps,
        self_s=round(time.perf_counter() - started, 2),
    )
    return info


def fit_base(features: np.ndarray, truth: np.ndarray, seed: int) -> dict[str, Any]:
    """Today's heads on ``features``; the trainer, its chosen probabilities and scores."""
    started = time.perf_counter()
    trainer = FeatureTrainer(QuickSettings(clusters=10, seed=seed), features)
    fit = trainer.fit()
    probabilities = trainer.predict().probabilities[fit.chosen_head]
    seconds = time.perf_counter() - started
    acc = 100 * score_clustering(truth, probabilities.argmax(axis=1)).acc
    return {
        "trainer": trainer,
        "probabilities": probabilities,
        "acc": round(acc, 2),
        "heads_s": round(seconds, 2),
    }


def run_dataset(
    name: str, archive: Path, args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every variant and seed on one dataset."""
    files, truth = labelled_subset(name, archive, args)
    log(f"{name}: decoding {len(files)} photos")
    images = decode_all(files)
    args.features.mkdir(parents=True, exist_ok=True)
    plain, plain_s = features_of(images, args.features / f"{name}_plain.npy", args.reuse, False)
    mirror, mirror_s = features_of(images, args.features / f"{name}_mirror.npy", args.reuse, True)
    log(f"{name}: features {plain_s:.1f} s, mirrored {mirror_s:.1f} s")
    inputs = {"base": (plain, plain_s), "flip": ((plain + mirror) / 2, plain_s + mirror_s)}
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        for source, (features, features_s) in inputs.items():
            base = fit_base(features, truth, seed)
            runs.append(
                {
                    "variant": source,
                    "seed": seed,
                    "acc": base["acc"],
                    "seconds": round(features_s + base["heads_s"], 2),
                    "heads_s": base["heads_s"],
                }
            )
            extra = self_label(base["trainer"], base["probabilities"], truth, args)
            variant = "self" if source == "base" else "flip+self"
            runs.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "seconds": round(features_s + base["heads_s"] + extra["self_s"], 2),
                    "heads_s": base["heads_s"],
                    **extra,
                }
            )
            log(f"{name} seed {seed} {source}: {runs[-2]['acc']} -> {variant}: {runs[-1]['acc']}")
    return {"photos": len(files), "features_s": plain_s, "mirror_s": mirror_s, "runs": runs}


def summary(datasets: dict[str, Any]) -> dict[str, Any]:
    """Per dataset and variant: mean ACC, its gain over ``base``, the cost; the verdicts."""
    table: dict[str, Any] = {}
    for name, data in datasets.items():
        rows: dict[str, Any] = {}
        for variant in VARIANTS:
            runs = [r for r in data["runs"] if r["variant"] == variant and r["acc"] is not None]
            if not runs:
                continue
            rows[variant] = {
                "acc_mean": round(statistics.fmean(r["acc"] for r in runs), 2),
                "acc_each": [r["acc"] for r in runs],
                "seconds_mean": round(statistics.fmean(r["seconds"] for r in runs), 2),
            }
        for values in rows.values():
            values["gain"] = round(values["acc_mean"] - rows["base"]["acc_mean"], 2)
            values["cost"] = round(values["seconds_mean"] / rows["base"]["seconds_mean"], 3)
        table[name] = rows
    verdicts = {}
    for variant in VARIANTS[1:]:
        per_set = [t.get(variant) for t in table.values()]
        verdicts[variant] = bool(
            len(table) == 2
            and all(r is not None for r in per_set)
            and all(r["gain"] >= KEEP_POINTS and r["cost"] <= KEEP_COST for r in per_set if r)
        )
    return {"table": table, "keep": verdicts}


def markdown(result: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    lines = [
        "| dataset | variant | ACC mean | seeds | gain | time | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in result["table"].items():
        for variant, v in rows.items():
            each = " / ".join(f"{a:.2f}" for a in v["acc_each"])
            lines.append(
                f"| {name} | {variant} | {v['acc_mean']:.2f} | {each} | {v['gain']:+.2f} | "
                f"{v['seconds_mean']:.1f} s | {v['cost']:.2f}x |"
            )
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = dataset_parser(__doc__.split("\n\n")[0] if __doc__ else None, "sharper")
    parser.add_argument("--threshold", type=float, default=0.99, help="pseudo-label confidence")
    parser.add_argument("--self-steps", type=int, default=100, help="self-labelling steps")
    args = checked_dataset_args(parser, argv, "sharper")
    if not 0 < args.threshold <= 1:
        parser.error("--threshold must be in (0, 1]")
    if args.self_steps < 1:
        parser.error("--self-steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the exit status."""
    args = _parse(argv)
    started = time.perf_counter()
    datasets = run_datasets("sharper_groups", args, run_dataset)
    if datasets is None:
        return 0
    settings = {
        "count": args.count,
        "seeds": args.seeds,
        "threshold": args.threshold,
        "self_steps": args.self_steps,
    }
    body = {"datasets": datasets, **summary(datasets)}
    report("sharper_groups", settings, body, markdown(body), started, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
