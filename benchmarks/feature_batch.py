"""The quick preset's feature extractor at several batch sizes: images/s and peak memory.

Each batch size runs in a fresh process (so its peak resident memory is its own): the
project's EfficientNet-Lite0 extractor (``lite0_extractor``: the bf16 graph where the CPU runs
it) computes the features of ``--images`` photos of a folder, decoded and resized to 224 px
beforehand, after one warm-up batch; the best of ``--repeats`` passes counts. Prints one JSON
line per batch size, then one JSON object with all of them (also written to ``--json``).

    python benchmarks/feature_batch.py PHOTO_FOLDER --batches 4 8 16 32 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIDE = 224


def measure(folder: Path, batch: int, count: int, repeats: int) -> dict[str, Any]:
    """One batch size, in this process."""
    import numpy as np
    import torch
    from PIL import Image

    from crlc_engine.training.frozen_features import lite0_extractor

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    files = files[:count]
    images = np.stack(
        [np.asarray(Image.open(f).convert("RGB").resize((SIDE, SIDE))) for f in files]
    )
    extractor = lite0_extractor(SIDE)
    extractor.batch_size = batch
    extractor.prepare()
    extractor(images[:batch])
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(images), batch):
            extractor(images[start : start + batch])
        best = max(best, len(images) / (time.perf_counter() - started))
    return {
        "batch": batch,
        "images": len(images),
        "threads": torch.get_num_threads(),
        "runtime": extractor.runtime,
        "precision": extractor.spec.precision,
        "images_per_s": round(best, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every batch size in its own process; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("folder", type=Path, help="a folder of photos")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--images", type=int, default=512, help="photos to time")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes (the best counts)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.folder, args.one, args.images, args.repeats)))
        return 0
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    if min(args.batches) < 1 or args.images < 1 or args.repeats < 1:
        parser.error("--batches, --images and --repeats must be >= 1")
    rows = []
    for batch in args.batches:
        command = [sys.executable, __file__, str(args.folder), "--one", str(batch)]
        command += ["--images", str(args.images), "--repeats", str(args.repeats)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "feature_batch", "folder": str(args.folder), "rows": rows}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
