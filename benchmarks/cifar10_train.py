"""CRLC on all 60,000 CIFAR-10 images (train + test) for a fixed time: speed and ACC/NMI/ARI.

Unpacks the JPEG archive (``../shared/datasets/cifar10-jpeg.tar.gz``), trains through the same
job the CLI runs (``crlc train``), evaluates against the folder names and prints one JSON
object. Exits 0 with ``{"skipped": ...}`` when the archive is absent.

    python benchmarks/cifar10_train.py ../shared/datasets/cifar10-jpeg.tar.gz --minutes 6
"""

from __future__ import annotations

import argparse
import json
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
    print(
        json.dumps(
            {
                "benchmark": "cifar10_train",
                "device": outcome.device,
                "device_name": torch.cuda.get_device_name(0)
                if torch.cuda.is_available()
                else "cpu",
                "torch": torch.__version__,
                "images": outcome.images,
                "train": outcome.summary(),
                "wall_s_including_decode_and_assign": round(wall, 1),
                "evaluate": scores.summary(),
            }
        )
    )


if __name__ == "__main__":
    main()
