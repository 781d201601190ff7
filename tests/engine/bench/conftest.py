"""Shared pieces of the benchmark tests: a tiny plan, its step loop, and ``torch.compile``
replaced (compiling takes tens of seconds on a CPU; the tests check the plumbing, not speed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from crlc_engine.bench.settings import BenchPlan, BenchRequest, plan_bench
from crlc_engine.bench.timing import StepLoop
from crlc_engine.core.control import JobControl
from crlc_engine.core.events import RecordingReporter

#: The smallest useful benchmark: 16 px, batch 8, one warm-up and two timed steps.
TINY_REQUEST = BenchRequest(device="cpu", size=16, batch=8, steps=2, warmup=1)
#: The same on the command line.
TINY_FLAGS = ["--device", "cpu", "--size", "16", "--batch", "8", "--steps", "2", "--warmup", "1"]


def no_compile(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """A stand-in for ``torch.compile``: the function itself."""
    return function


@pytest.fixture(autouse=True)
def eager_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.compile`` returns the function uncompiled (tests may patch it again)."""
    monkeypatch.setattr(torch, "compile", no_compile)


@pytest.fixture(autouse=True, scope="package")
def one_thread() -> Iterator[None]:
    """One torch thread: the tiny steps gain nothing from more, and on a busy machine two
    threads wait on each other for whole time slices."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_plan() -> BenchPlan:
    return plan_bench(TINY_REQUEST, "cpu")


@pytest.fixture
def reporter() -> RecordingReporter:
    return RecordingReporter()


@pytest.fixture
def tiny_loop(tiny_plan: BenchPlan, reporter: RecordingReporter) -> Iterator[StepLoop]:
    yield StepLoop(
        tiny_plan.warmup,
        tiny_plan.steps,
        tiny_plan.batch,
        torch.device("cpu"),
        reporter,
        JobControl(),
    )
