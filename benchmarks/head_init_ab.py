"""A/B of the heads' initialisation: PyTorch's default against the official He-uniform.

For each data set, the ``cpu`` preset (``crlc_engine.pipeline.presets``) trains through the
job ``crlc train`` runs (:func:`crlc_engine.pipeline.jobs.train_folder`), once per seed and
initialisation, on one workspace per data set (scanned once), for ``--minutes`` (default 3)
or, with ``--epochs``, a fixed number of epochs (what to use on a busy machine: a time budget
then trains fewer steps for whichever run shares the CPU more). Runs alternate A, B per seed.
Each run is scored against the class folders (:func:`crlc_engine.pipeline.evaluation.
evaluate_folder`: ACC, NMI, ARI of the chosen sub-head).

Data sets:

* ``shapes``: generated shape images (:func:`crlc_engine.library.synthetic.write_shapes_folder`,
  ``--shapes-per-class`` per shape, 6 shapes, 32 px, colours per grid cell);
* ``cifar``: a class-balanced ``--cifar-count`` subset of the CIFAR-10 training JPEGs
  (``../shared/datasets/cifar10-jpeg.tar.gz``; skipped when absent).

Also reports, per initialisation, the network's start on the first 256 images of each data
set: the mean absolute C-head logit and the mean per-sample entropy of the sub-heads'
predictions (``log C`` is the uniform prediction, the saddle point of L_PC).

Prints a Markdown table and one JSON line last (also written to ``--json``).

    python benchmarks/head_init_ab.py --json /tmp/head-init-ab.json
    python benchmarks/head_init_ab.py --minutes 0.2 --seeds 0 --cifar-count 500   # a check
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _imagenette import report
from extractor_accuracy import balanced_subset

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.events import NullReporter
from crlc_engine.library.synthetic import SHAPES, write_shapes_folder
from crlc_engine.models import CRLCModel
from crlc_engine.models.heads import HEAD_INITS
from crlc_engine.pipeline.evaluation import evaluate_folder
from crlc_engine.pipeline.jobs import train_folder
from crlc_engine.pipeline.presets import resolve_train_config

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def shapes_folder(target: Path, per_class: int) -> Path:
    """The generated shapes, written once."""
    mark = target / ".written"
    if not mark.exists():
        shutil.rmtree(target, ignore_errors=True)
        write_shapes_folder(target, per_class, 32, shapes=SHAPES[:6], colour_cells=True)
        mark.touch()
    return target


def cifar_folder(archive: Path, target: Path, count: int) -> Path:
    """``count`` CIFAR-10 training photos in class folders, copied once."""
    mark = target / ".written"
    if mark.exists():
        return target
    unpacked = target.parent / "cifar-unpacked"
    if not (unpacked / ".unpacked").exists():
        unpacked.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
        (unpacked / ".unpacked").touch()
    train = next(p for p in unpacked.rglob("train") if p.is_dir())
    files, _ = balanced_subset(train, count)
    shutil.rmtree(target, ignore_errors=True)
    for path in files:
        (target / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.parent.name / path.name)
    mark.touch()
    return target


def with_init(config: TrainConfig, init: str) -> TrainConfig:
    """``config`` with the heads' initialisation ``init``."""
    return config.replace(head_init=init)


def start_statistics(config: TrainConfig, images: torch.Tensor) -> dict[str, float]:
    """Mean |logit| and mean per-sample entropy (nats) of a fresh network on ``images``
    (float [B, 3, S, S], standardised per channel), in train mode as the first step sees it
    (batch statistics in BatchNorm)."""
    torch.manual_seed(config.seed)
    model = CRLCModel.for_settings(config)
    with torch.no_grad():
        logits = model(images).logits.float()  # [H, B, C]
    p = logits.softmax(-1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1).mean()
    return {"mean_abs_logit": float(logits.abs().mean()), "entropy": float(entropy)}


def first_images(folder: Path, size: int, count: int = 256) -> torch.Tensor:
    """The first ``count`` images under ``folder`` as float [B, 3, S, S], standardised."""
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg"})[:count]
    arrays = [
        np.asarray(Image.open(f).convert("RGB").resize((size, size)), dtype=np.float32)
        for f in files
    ]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / std


def run_dataset(
    name: str, folder: Path, args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every seed and initialisation on one data set."""
    classes = sum(1 for p in folder.iterdir() if p.is_dir())
    budget: dict[str, Any] = (
        {"epochs": args.epochs, "minutes": None}
        if args.epochs
        else {"minutes": args.minutes, "epochs": None}
    )
    base = resolve_train_config(classes, "cpu", {**budget, "checkpoint_every": 1000})
    images = first_images(folder, base.image_size)
    start = {init: start_statistics(with_init(base, init), images) for init in HEAD_INITS}
    log(f"{name}: start {start} (log C = {math.log(classes):.3f})")
    workspace = args.work / f"ws-{name}"
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        for init in HEAD_INITS:
            config = with_init(base.replace(seed=seed), init)
            started = time.perf_counter()
            outcome = train_folder(folder, config, workspace, NullReporter())
            scores = evaluate_folder(folder, outcome.run.run_id, workspace)
            runs.append(
                {
                    "init": init,
                    "seed": seed,
                    "acc": round(100 * scores.chosen.acc, 2),
                    "nmi": round(100 * scores.chosen.nmi, 2),
                    "epochs": outcome.fit.epochs,
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            log(f"{name} seed {seed} {init}: ACC {runs[-1]['acc']} ({runs[-1]['epochs']} epochs)")
    return {"classes": classes, "images": outcome.images, "start": start, "runs": runs}


def summary(datasets: dict[str, Any]) -> dict[str, Any]:
    """Mean ACC per data set and initialisation, and which initialisation wins."""
    table: dict[str, Any] = {}
    for name, data in datasets.items():
        table[name] = {
            init: {
                "acc_mean": round(statistics.fmean(r["acc"] for r in rows), 2),
                "acc_each": [r["acc"] for r in rows],
                "nmi_mean": round(statistics.fmean(r["nmi"] for r in rows), 2),
            }
            for init in HEAD_INITS
            if (rows := [r for r in data["runs"] if r["init"] == init])
        }
    wins = {
        name: max(rows, key=lambda init: rows[init]["acc_mean"]) for name, rows in table.items()
    }
    return {"table": table, "better": wins}


def markdown(result: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    lines = [
        "| data set | init | start mean abs logit | start entropy | ACC mean | seeds | NMI |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in result["table"].items():
        start = result["datasets"][name]["start"]
        for init, v in rows.items():
            each = " / ".join(f"{a:.2f}" for a in v["acc_each"])
            lines.append(
                f"| {name} | {init} | {start[init]['mean_abs_logit']:.3f} | "
                f"{start[init]['entropy']:.3f} | {v['acc_mean']:.2f} | {each} | "
                f"{v['nmi_mean']:.2f} |"
            )
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cifar", type=Path, default=CIFAR, help="cifar10-jpeg.tar.gz")
    parser.add_argument("--work", type=Path, default=Path("/tmp/head-init-ab"), help="data here")
    parser.add_argument("--minutes", type=float, default=3.0, help="budget per run")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epochs instead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shapes-per-class", type=int, default=400)
    parser.add_argument("--cifar-count", type=int, default=10_000)
    parser.add_argument("--only", choices=["shapes", "cifar"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or (args.epochs is not None and args.epochs < 1):
        parser.error("--minutes must be > 0 and --epochs >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the A/B; returns the exit status."""
    args = _parse(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {text}", flush=True)

    folders: dict[str, Path] = {}
    if args.only in (None, "shapes"):
        folders["shapes"] = shapes_folder(args.work / "shapes", args.shapes_per_class)
    if args.only in (None, "cifar") and args.cifar.exists():
        folders["cifar"] = cifar_folder(args.cifar, args.work / "cifar", args.cifar_count)
    datasets = {name: run_dataset(name, folder, args, log) for name, folder in folders.items()}
    settings = {
        "preset": "cpu",
        "minutes": None if args.epochs else args.minutes,
        "epochs": args.epochs,
        "seeds": args.seeds,
    }
    body = {"datasets": datasets, **summary(datasets)}
    report("head_init_ab", settings, body, markdown(body), started, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
