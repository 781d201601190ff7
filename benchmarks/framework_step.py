"""Time and memory of one training step: SimCLR vs MemoryBank framework, same batch size.

Each framework runs in its own child process (so that its peak resident memory is its own)
on the same random uint8 images, through the real trainer step (augmentation, network, loss,
SGD step, bank update). Reported per framework:

* ``step_s_median`` / ``step_s_min``: wall time of one step after a warm-up;
* ``cpu_s_median``: CPU time of the process per step (all threads): on a shared machine
  far steadier than wall time, especially with ``--threads 1``;
* ``saved_activation_mb``: bytes of the distinct tensors (parameters excluded) autograd
  saves for the backward pass of one step (the activation memory, measured with
  ``saved_tensors_hooks``), the loss's included;
* ``peak_rss_delta_mb``: peak resident set size of the child during the steps minus its
  size once the trainer (model, data, bank) was built: what the steps themselves need
  (activations, gradients, optimiser state, loss temporaries, allocator slack). The peak is
  reset before the steps (Linux ``/proc/self/clear_refs``), so the trainer's construction
  (e.g. the data set statistics) does not count;
* ``bank_mb``: the memory bank itself (MemoryBank only; allocated with the trainer, so add
  it to the step memory for the total).

Frameworks alternate over ``--repeats`` rounds; the medians over rounds are reported. CPU
timings on a shared machine are noisy: compare within one run.

    python benchmarks/framework_step.py --backbone small --size 32 --batch 128 \\
        --images 8192 --steps 20 --threads 1 --out framework_step.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FRAMEWORKS = ("simclr", "memorybank")


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Start the peak resident set size (VmHWM) afresh from the current size."""
    Path("/proc/self/clear_refs").write_text("5\n")


def measure_child(args: argparse.Namespace) -> dict[str, Any]:
    """One framework in this process: step times, saved activations, peak RSS."""
    import numpy as np
    import torch

    from crlc_engine.core.config import TrainConfig
    from crlc_engine.training.trainer import CRLCTrainer

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, args.size, args.size, 3), dtype=np.uint8)
    config = TrainConfig(
        clusters=args.clusters,
        backbone=args.backbone,
        stem=args.stem,
        image_size=args.size,
        batch_size=args.batch,
        epochs=1,
        subheads=args.subheads,
        framework=args.framework,
        bank_negatives=args.negatives,
        device="cpu",
    )
    trainer = CRLCTrainer(config, images, torch.device("cpu"))
    gc.collect()
    before = _status_mb("VmRSS")
    _reset_peak_rss()
    order = torch.randperm(args.images, generator=torch.Generator().manual_seed(0))
    batches = [
        order[i * args.batch : (i + 1) * args.batch] for i in range(args.images // args.batch)
    ]
    times, cpu_times = [], []
    for step in range(args.warmup + args.steps):
        indices = batches[step % len(batches)]
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer._step(indices)
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
    peak = _status_mb("VmHWM")

    storages: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:  # parameters are not activation memory
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        trainer._step(batches[0])
    bank_bytes = 0
    if trainer.bank is not None:
        bank_bytes = sum(t.numel() * t.element_size() for t in trainer.bank.state_dict().values())
    return {
        "framework": args.framework,
        "views_per_step": args.batch * (2 if args.framework == "simclr" else 1),
        "negatives": None
        if trainer.bank is None
        else trainer.bank.negatives_per_step(args.negatives),
        "step_s_median": statistics.median(times),
        "step_s_min": min(times),
        "cpu_s_median": statistics.median(cpu_times),
        "saved_activation_mb": sum(storages.values()) / 2**20,
        "peak_rss_delta_mb": peak - before,
        "bank_mb": bank_bytes / 2**20,
    }


def main() -> None:
    """Parse the options; as parent, run every framework in child processes and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="small")
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--negatives", type=int, default=4096)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--subheads", type=int, default=10)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--framework", choices=FRAMEWORKS, help=argparse.SUPPRESS)  # child
    args = parser.parse_args()
    if args.framework is not None:
        print(json.dumps(measure_child(args)))
        return

    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in FRAMEWORKS}
    settings = [k for k in vars(args) if k not in ("out", "framework")]
    passthrough = [f"--{k}={getattr(args, k)}" for k in settings]
    for repeat in range(args.repeats):
        order = FRAMEWORKS if repeat % 2 == 0 else tuple(reversed(FRAMEWORKS))
        for name in order:
            child = subprocess.run(
                [sys.executable, __file__, *passthrough, "--framework", name],
                capture_output=True,
                text=True,
                check=True,
            )
            rounds[name].append(json.loads(child.stdout.strip().splitlines()[-1]))
    results = {}
    for name, runs in rounds.items():
        merged = dict(runs[0])
        keys = ("step_s_median", "step_s_min", "cpu_s_median", "saved_activation_mb")
        for key in (*keys, "peak_rss_delta_mb"):
            merged[key] = round(statistics.median(r[key] for r in runs), 4)
        merged["bank_mb"] = round(merged["bank_mb"], 3)
        merged["images_per_s"] = round(args.batch / merged["step_s_median"], 1)
        results[name] = merged
    simclr, bank = results["simclr"], results["memorybank"]
    report = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "torch_threads": args.threads,
        "settings": {k: getattr(args, k) for k in settings if k != "threads"},
        "results": results,
        "memorybank_vs_simclr": {
            "step_time": round(bank["step_s_median"] / simclr["step_s_median"], 3),
            "step_time_min": round(bank["step_s_min"] / simclr["step_s_min"], 3),
            "step_cpu_time": round(bank["cpu_s_median"] / simclr["cpu_s_median"], 3),
            "saved_activations": round(
                bank["saved_activation_mb"] / simclr["saved_activation_mb"], 3
            ),
            "peak_rss_delta": round(bank["peak_rss_delta_mb"] / simclr["peak_rss_delta_mb"], 3),
            "peak_rss_delta_plus_bank": round(
                (bank["peak_rss_delta_mb"] + bank["bank_mb"]) / simclr["peak_rss_delta_mb"], 3
            ),
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
