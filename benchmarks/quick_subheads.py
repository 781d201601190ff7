"""The quick heads with fewer sub-heads: ACC and the heads' seconds per sub-head count.

For Imagenette and a CIFAR-10 subset (the same class-balanced ``--count`` photos and
features as ``benchmarks/sharper_groups.py``: ``--features`` defaults to its folder and
``--reuse`` loads them), trains ``FeatureTrainer(QuickSettings(clusters=10, seed=s,
subheads=H))`` for every ``--subheads`` H and seed, and scores the chosen sub-head. Prints a
Markdown table and, last, one JSON line (also written to ``--json``).

    python benchmarks/quick_subheads.py --reuse --seeds 0 1 2 3 4 5 6 7 --subheads 10 5 3 \
        --json /tmp/quick-subheads.json
    python benchmarks/quick_subheads.py --count 200 --seeds 0 --subheads 10 3   # a check
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _imagenette import report
from extractor_accuracy import (
    checked_dataset_args,
    dataset_parser,
    decode_all,
    labelled_subset,
    run_datasets,
)
from sharper_groups import features_of

from crlc_engine.results.metrics import score_clustering
from crlc_engine.training.feature_trainer import FeatureTrainer, QuickSettings


def run_dataset(
    name: str, archive: Path, args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every sub-head count and seed on one dataset."""
    files, truth = labelled_subset(name, archive, args)
    args.features.mkdir(parents=True, exist_ok=True)
    path = args.features / f"{name}_plain.npy"
    images = np.empty(0) if args.reuse and path.exists() else decode_all(files)
    features, features_s = features_of(images, path, args.reuse, False)
    log(f"{name}: {len(files)} photos, features {features_s:.1f} s")
    runs = []
    for subheads in args.subheads:
        for seed in args.seeds:
            started = time.perf_counter()
            settings = QuickSettings(clusters=10, seed=seed, subheads=subheads)
            trainer = FeatureTrainer(settings, features)
            fit = trainer.fit()
            probabilities = trainer.predict().probabilities[fit.chosen_head]
            seconds = time.perf_counter() - started
            acc = 100 * score_clustering(truth, probabilities.argmax(axis=1)).acc
            runs.append(
                {"subheads": subheads, "seed": seed, "acc": round(acc, 2), "heads_s": seconds}
            )
            log(f"{name} subheads {subheads} seed {seed}: ACC {acc:.2f}, {seconds:.1f} s")
    return {"photos": len(files), "features_s": features_s, "runs": runs}


def summary(datasets: dict[str, Any], counts: list[int]) -> dict[str, Any]:
    """Per dataset and sub-head count: mean and lowest ACC, mean heads' seconds."""
    table: dict[str, Any] = {}
    for name, data in datasets.items():
        table[name] = {}
        for subheads in counts:
            runs = [r for r in data["runs"] if r["subheads"] == subheads]
            table[name][subheads] = {
                "acc_mean": round(statistics.fmean(r["acc"] for r in runs), 2),
                "acc_min": min(r["acc"] for r in runs),
                "heads_s_mean": round(statistics.fmean(r["heads_s"] for r in runs), 1),
            }
    return table


def markdown(table: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    lines = ["| dataset | sub-heads | ACC mean | ACC lowest | heads |", "|---|---|---|---|---|"]
    for name, rows in table.items():
        for subheads, row in rows.items():
            lines.append(
                f"| {name} | {subheads} | {row['acc_mean']:.2f} | {row['acc_min']:.2f} | "
                f"{row['heads_s_mean']:.1f} s |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns the exit status."""
    parser = dataset_parser(__doc__.split("\n\n")[0] if __doc__ else None, "sharper")
    parser.add_argument("--subheads", type=int, nargs="+", default=[10, 5, 3], help="counts")
    args = checked_dataset_args(parser, argv, "sharper")
    if min(args.subheads) < 1:
        parser.error("--subheads must be >= 1")
    started = time.perf_counter()
    datasets = run_datasets("quick_subheads", args, run_dataset)
    if datasets is None:
        return 0
    table = summary(datasets, args.subheads)
    settings = {"count": args.count, "seeds": args.seeds, "subheads": args.subheads}
    body = {
        "datasets": datasets,
        "table": {name: {str(k): v for k, v in rows.items()} for name, rows in table.items()},
    }
    report("quick_subheads", settings, body, markdown(table), started, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
