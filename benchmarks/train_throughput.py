"""Training throughput of the CRLC trainer per backbone (images/s, two views each).

Runs the real trainer (augmentation on the device + model + CRLC loss + SGD step) on random
uint8 images for a fixed number of steps after a warm-up, and prints one JSON object.
Compare backbones within one run: shared machines are noisy.

    python benchmarks/train_throughput.py --backbones small resnet18 --size 32 --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.device import resolve_device
from crlc_engine.training.trainer import CRLCTrainer


def measure(
    backbone: str, size: int, batch: int, steps: int, warmup: int, device: torch.device, stem: str
) -> dict[str, float | str]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch * (steps + warmup), size, size, 3), dtype=np.uint8)
    config = TrainConfig(
        clusters=10,
        backbone=backbone,
        stem=stem,
        image_size=size,
        batch_size=batch,
        epochs=1,
        device=str(device),
    )
    trainer = CRLCTrainer(config, images, device)
    # Warm-up: cudnn autotuning, allocator, first-call overheads.
    trainer.steps_per_epoch = warmup
    trainer.fit()
    trainer.config = trainer.loop_settings = config.replace(epochs=2)
    trainer.steps_per_epoch = steps
    trainer.permutation = None
    trainer.step_in_epoch = 0
    start = time.perf_counter()
    trainer.fit()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "backbone": backbone,
        "stem": config.resolved_stem(),
        "size": size,
        "batch": batch,
        "steps": steps,
        "seconds": round(seconds, 3),
        "samples_per_s": round(steps * batch / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbones", nargs="+", default=["small", "resnet18"])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--stem", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device).device
    results = [
        measure(b, args.size, args.batch_size, args.steps, args.warmup, device, args.stem)
        for b in args.backbones
    ]
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "device": str(device),
                "device_name": torch.cuda.get_device_name(0)
                if device.type == "cuda"
                else platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
