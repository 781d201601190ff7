"""Helpers shared by the Imagenette benchmarks (estimate_accuracy, imagenette_quick).

Imported as ``_imagenette``: the benchmarks run as scripts (``python benchmarks/x.py``), which
puts this folder first on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import platform
import tarfile
import time
from pathlib import Path
from typing import Any

import torch

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def unpack(archive: Path, target: Path) -> Path:
    """Unpack ``archive`` (a tar file, e.g. ``imagenette-224.tar.gz``) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() or platform.processor()
    except OSError:
        pass
    return platform.processor()


#: /proc/cpuinfo flags that decide which precisions run natively.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags_present() -> list[str]:
    """Which of :data:`CPU_FLAGS` /proc/cpuinfo lists (none where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [flag for flag in CPU_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def machine() -> dict[str, Any]:
    """The CPU, its cores, torch's threads and the torch and Python versions."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def report(
    benchmark: str,
    settings: dict[str, Any],
    body: dict[str, Any],
    table: str,
    started: float,
    json_path: Path | None,
) -> dict[str, Any]:
    """A benchmark's result (its name, :func:`machine`, ``settings``, ``body`` and the seconds
    since ``started``, a ``time.perf_counter`` value), printed by :func:`print_result`."""
    result = {
        "benchmark": benchmark,
        "machine": machine(),
        "settings": settings,
        **body,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print_result(result, table, json_path)
    return result


def print_result(result: dict[str, Any], table: str, json_path: Path | None) -> None:
    """Print a benchmark's Markdown ``table`` and, last, its ``result`` as one JSON line
    (also written, indented, to ``json_path`` when given)."""
    print(table)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
