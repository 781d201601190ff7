"""``crlc bench``: how fast training runs here, next to the model-only ceiling and an
official-code-style pipeline (the measurements are :mod:`crlc_engine.bench`'s)."""

from __future__ import annotations

import argparse
from typing import Any

from crlc_engine.api import JobControl
from crlc_engine.cli.arguments import Subparsers, count
from crlc_engine.cli.output import ConsoleReporter


def add_parsers(sub: Subparsers) -> None:
    """Add ``crlc bench``."""
    bench = sub.add_parser(
        "bench",
        help="measure training speed on this machine",
        description=(
            "Measure, on one device, samples per second (an image with two augmented views) "
            "of: 1. the model-only ceiling (network, CRLC losses, backward and SGD step on "
            "views already on the device; eager and torch.compile), 2. our trainer's step "
            "(augmentation on the device included), 3. an official-code-style pipeline (JPEG "
            "files, PIL and torchvision transforms in one DataLoader worker per core, float32 "
            "eager network). Prints the ratios and the memory peak. Defaults: on a CPU the "
            "small CNN at 32 px, batch 64 (a few minutes on 2 cores); on a GPU ResNet-18 at "
            "32 px, batch 512."
        ),
    )
    bench.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    bench.add_argument("--backbone", help="network (default: small on a CPU, resnet18 on a GPU)")
    bench.add_argument(
        "--stem",
        help="first layer: auto, cifar or imagenet (default: imagenet for the CPU's small CNN, "
        "else auto)",
    )
    bench.add_argument("--size", type=int, help="image side in pixels (default: 32)")
    bench.add_argument("--batch", type=int, help="images per step (default: 64 CPU, 512 GPU)")
    bench.add_argument(
        "--steps", type=count(1), help="timed steps per measurement (default: 10 CPU, 30 GPU)"
    )
    bench.add_argument(
        "--warmup", type=count(1), help="untimed steps before them (default: 2 CPU, 5 GPU)"
    )
    bench.add_argument(
        "--precision",
        default="auto",
        help="the trainer's precision: auto (bf16 on CUDA), float32 or bfloat16",
    )
    bench.add_argument(
        "--memory-format",
        default="auto",
        help="the trainer's memory format: auto (channels_last on CUDA), contiguous or "
        "channels_last",
    )
    bench.add_argument(
        "--compile",
        default="auto",
        help="whether the trainer compiles its network: auto (on CUDA), off or on",
    )
    bench.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON object on the last line of stdout",
    )
    bench.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    # imported here: the measurements bring torch, which `crlc --help` must not load
    from crlc_engine.api import BenchRequest, run_bench

    request = BenchRequest(
        device=args.device,
        backbone=args.backbone,
        stem=args.stem,
        size=args.size,
        batch=args.batch,
        steps=args.steps,
        warmup=args.warmup,
        precision=args.precision,
        memory_format=args.memory_format,
        compile=args.compile,
    )
    return run_bench(request, ConsoleReporter(), control).as_dict()
