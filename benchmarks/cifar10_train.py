"""CRLC on all 60,000 CIFAR-10 images (train + test) for a fixed time: speed and ACC/NMI/ARI.

Unpacks the JPEG archive (``../shared/datasets/cifar10-jpeg.tar.gz``), trains through the same
job the CLI runs (``crlc train``), evaluates against the folder names and prints one JSON
object. Exits 0 with ``{"skipped": ...}`` when the archive is absent.

    python benchmarks/cifar10_train.py ../shared/datasets/cifar10-jpeg.tar.gz --minutes 6
    python benchmarks/cifar10_train.py ARCHIVE --minutes 0.2 --limit 200 --backbone small  # a check

``--limit N`` trains on N class-balanced training photos (copied once into the workdir)
instead of all 60,000; ``--json PATH`` also writes the result there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from crlc_engine.cli.output import ConsoleReporter
from crlc_engine.pipeline.jobs import evaluate_folder, train_folder
from crlc_engine.pipeline.presets import resolve_train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("archive", type=Path)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="photos (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    if not args.archive.is_file():
        print(json.dumps({"benchmark": "cifar10_train", "skipped": f"{args.archive} not found"}))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crlc-cifar-"))
    data = workdir / "cifar10"
    if not data.is_dir():
        data.mkdir(parents=True)
        with tarfile.open(args.archive) as tar:
            tar.extractall(data, filter="data")
    if args.limit is not None:
        data = _subset(data, args.limit)
    config = resolve_train_config(
        10,
        "paper",
        {
            "backbone": args.backbone,
            "image_size": args.size,
            "batch_size": args.batch_size,
            "minutes": args.minutes,
            "device": args.device,
            "checkpoint_every": 1000,
        },
    )
    started = time.perf_counter()
    outcome = train_folder(data, config, workdir / "ws", ConsoleReporter())
    wall = time.perf_counter() - started
    scores = evaluate_folder(data, outcome.run.run_id, workdir / "ws")
    text = json.dumps(
        {
            "benchmark": "cifar10_train",
            "device": outcome.device,
            "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__,
            "images": outcome.images,
            "train": outcome.summary(),
            "wall_s_including_decode_and_assign": round(wall, 1),
            "evaluate": scores.summary(),
        }
    )
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)


def _subset(data: Path, limit: int) -> Path:
    """``limit`` class-balanced photos of ``data/train`` copied into their own folder (once)."""
    target = data.parent / f"cifar10-{limit}"
    if (target / ".copied").exists():
        return target
    train = data / "train"
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    for index, name in enumerate(classes):
        share = limit // len(classes) + (1 if index < limit % len(classes) else 0)
        (target / name).mkdir(parents=True, exist_ok=True)
        for path in sorted((train / name).iterdir())[:share]:
            shutil.copy(path, target / name / path.name)
    (target / ".copied").touch()
    return target


if __name__ == "__main__":
    main()
