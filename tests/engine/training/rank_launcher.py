"""Start processes as ``torchrun`` would (its variables set, a free localhost port), for the
tests of training over several processes on the CPU (gloo)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_ranks(
    arguments: Callable[[int], list[str]], world_size: int = 2, timeout: float = 120
) -> list[str]:
    """Run ``python ARGS`` once per rank (``arguments(rank)``) with torchrun's variables,
    wait for all and return their outputs; every one must exit with 0."""
    port = free_port()
    children = []
    for rank in range(world_size):
        env = dict(os.environ)
        env.update(
            RANK=str(rank),
            WORLD_SIZE=str(world_size),
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        children.append(
            subprocess.Popen(
                [sys.executable, *arguments(rank)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = []
    try:
        for child in children:
            outputs.append(child.communicate(timeout=timeout)[0].decode(errors="replace"))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for child, output in zip(children, outputs, strict=True):
        assert child.returncode == 0, output
    return outputs
