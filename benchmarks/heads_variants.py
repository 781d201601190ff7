"""The quick preset's heads on cached features, variant by variant: ACC and fit seconds.

Trains :class:`~crlc_engine.training.feature_trainer.FeatureTrainer` on the same features
(float32 [N, D] ``.npy``, e.g. from ``benchmarks/extractor_accuracy.py``) with the same kNN
table, for each variant and seed, and scores the chosen (lowest-loss) sub-head against the
labels (int ``.npy``) with the Hungarian ACC. A variant is ``+``-joined changes to today's
:class:`~crlc_engine.training.quick_settings.QuickSettings`: ``base`` (none), ``stepsN``
(exactly N steps), ``hiddenN``, ``subN`` (sub-heads), ``bsN`` (batch), ``loop``
(``torch.optim.Adam`` instead of the trainer's ``HeadsAdam``), ``fused`` (its fused kernel),
``pcaN`` (the raw features projected on their top N principal directions first). Prints one
line per fit and one JSON object last (``--json`` writes it too); exits 0
with ``{"skipped": ...}`` when a file is absent.

    python benchmarks/heads_variants.py FEATURES.npy LABELS.npy --variants base,hidden512+loop
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from crlc_engine.core.events import NullReporter
from crlc_engine.results.metrics import score_clustering
from crlc_engine.training.feature_trainer import FeatureTrainer, QuickSettings, mine_neighbors
from crlc_engine.training.optim import make_adam


def _pca(x: np.ndarray, k: int) -> np.ndarray:
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected: np.ndarray = (centred @ vt[:k].T).astype(np.float32)
    return projected


def _fit(
    x: np.ndarray, labels: np.ndarray, knn: np.ndarray, variant: str, seed: int, clusters: int
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    features, optimizer = x, "heads"
    for part in variant.split("+"):
        if part == "base":
            continue
        if part == "loop":
            optimizer = "torch"
        elif part == "fused":
            optimizer = "fused"
        elif part.startswith("pca"):
            features = _pca(x, int(part[3:]))
        elif part.startswith("steps"):
            changes.update(min_steps=int(part[5:]), max_steps=int(part[5:]), epochs=1)
        elif part.startswith("hidden"):
            changes["hidden"] = int(part[6:])
        elif part.startswith("sub"):
            changes["subheads"] = int(part[3:])
        elif part.startswith("bs"):
            changes["batch_size"] = int(part[2:])
        else:
            raise SystemExit(f"unknown variant part {part!r}")
    settings = QuickSettings(clusters=clusters, seed=seed, **changes)
    trainer = FeatureTrainer(settings, features, neighbors=knn)
    if optimizer != "heads":
        trainer.optimizer = make_adam(
            trainer.heads, settings.lr, settings.weight_decay, fused=optimizer == "fused"
        )
    started = time.perf_counter()
    fit = trainer.fit(NullReporter())
    seconds = time.perf_counter() - started
    probabilities = trainer.predict().probabilities[trainer.chosen_head]
    scores = score_clustering(labels, probabilities.argmax(axis=1))
    return {
        "variant": variant,
        "seed": seed,
        "acc": round(100 * float(scores.acc), 2),
        "steps": fit.steps,
        "fit_s": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("features", type=Path)
    parser.add_argument("labels", type=Path)
    parser.add_argument("--variants", default="base")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    for path in (args.features, args.labels):
        if not path.is_file():
            print(json.dumps({"benchmark": "heads_variants", "skipped": f"{path} not found"}))
            return
    x = np.load(args.features).astype(np.float32)
    labels = np.load(args.labels)
    knn = mine_neighbors(x, 20)
    clusters = int(np.unique(labels).size)
    runs = []
    for variant in args.variants.split(","):
        for seed in range(args.seeds):
            runs.append(_fit(x, labels, knn, variant, seed, clusters))
            print(runs[-1], flush=True)
    means = {
        v: round(float(np.mean([r["acc"] for r in runs if r["variant"] == v])), 2)
        for v in args.variants.split(",")
    }
    result = {"benchmark": "heads_variants", "images": len(x), "runs": runs, "acc_mean": means}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
