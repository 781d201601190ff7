"""Each measurement on a tiny plan (16 px, batch 8, 1 + 2 steps) on the CPU: it runs, counts
only the timed steps, falls back when compiling fails and stops when cancelled. No speeds are
asserted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from crlc_engine.bench import ceiling as ceiling_module
from crlc_engine.bench.ceiling import failure_reason, measure_ceiling
from crlc_engine.bench.memory import PeakMemory
from crlc_engine.bench.reference import measure_reference, official_transform
from crlc_engine.bench.run import generated_images
from crlc_engine.bench.settings import BenchPlan, plan_bench
from crlc_engine.bench.timing import StepLoop
from crlc_engine.bench.trainer_step import measure_trainer
from crlc_engine.core.events import RecordingReporter
from tests.engine.bench.conftest import TINY_REQUEST


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return generated_images(plan_bench(TINY_REQUEST, "cpu"))


def test_generated_images_cover_the_steps(images: np.ndarray) -> None:
    assert images.dtype == np.uint8 and images.shape == (24, 16, 16, 3)  # 8 x (1 + 2)


def test_the_loop_times_only_the_steps_after_warm_up(
    tiny_loop: StepLoop, reporter: RecordingReporter
) -> None:
    calls: list[int] = []
    timing = tiny_loop.time("count", lambda: calls.append(1))
    assert len(calls) == 3 and timing.steps == 2 and timing.batch == 8
    assert timing.seconds >= 0 and reporter.progresses[-1] == (3, 3)
    assert reporter.statuses[0].startswith("count: 1 warm-up + 2 timed steps")


def test_a_cancel_stops_the_loop(tiny_loop: StepLoop) -> None:
    tiny_loop.control.cancel()
    with pytest.raises(InterruptedError, match="cancelled during count"):
        tiny_loop.time("count", lambda: None)


def test_ceiling_eager_and_compiled(tiny_plan: BenchPlan, tiny_loop: StepLoop) -> None:
    result = measure_ceiling(tiny_plan, tiny_loop)
    assert result.eager.samples_per_s > 0
    assert result.compiled is not None and result.compiled_unavailable is None
    assert (result.precision, result.memory_format) == ("float32", "contiguous")
    assert result.best_samples_per_s == max(
        result.eager.samples_per_s, result.compiled.samples_per_s
    )


def _raise_now(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("no C++ compiler found\nmore detail")


def _raise_when_called(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    def compiled(*a: Any, **k: Any) -> Any:
        raise torch.OutOfMemoryError("compiling ran out of memory")

    return compiled


@pytest.mark.parametrize(
    ("compile_", "reason"),
    [
        (_raise_now, "RuntimeError: no C++ compiler found"),
        (_raise_when_called, "OutOfMemoryError: compiling ran out of memory"),
    ],
)
def test_a_failed_compile_leaves_the_compiled_figure_out(
    monkeypatch: pytest.MonkeyPatch,
    tiny_plan: BenchPlan,
    tiny_loop: StepLoop,
    reporter: RecordingReporter,
    compile_: Callable[..., Any],
    reason: str,
) -> None:
    monkeypatch.setattr(torch, "compile", compile_)
    result = measure_ceiling(tiny_plan, tiny_loop)
    assert result.compiled is None and result.compiled_unavailable == reason
    assert result.best_samples_per_s == result.eager.samples_per_s > 0
    assert f"model-only ceiling, compiled: unavailable ({reason})" in reporter.statuses


def test_a_cancel_during_the_compiled_ceiling_is_no_compile_failure(
    monkeypatch: pytest.MonkeyPatch, tiny_plan: BenchPlan, tiny_loop: StepLoop
) -> None:
    def cancel_then_compile(function: Callable[..., Any], *a: Any, **k: Any) -> Any:
        tiny_loop.control.cancel()
        return function

    monkeypatch.setattr(torch, "compile", cancel_then_compile)
    with pytest.raises(InterruptedError):
        measure_ceiling(tiny_plan, tiny_loop)


def test_failure_reason_is_one_short_line() -> None:
    assert failure_reason(ValueError("")) == "ValueError"
    long = failure_reason(ValueError("x" * 1000))
    assert len(long) == ceiling_module.MAX_REASON_CHARS and long.endswith("...")


def test_trainer_step(tiny_plan: BenchPlan, tiny_loop: StepLoop, images: np.ndarray) -> None:
    result = measure_trainer(tiny_plan, images, tiny_loop)
    assert result.timing.steps == 2 and result.timing.samples_per_s > 0
    assert (result.precision, result.memory_format, result.compiled) == (
        "float32",
        "contiguous",
        False,
    )


def test_the_trainer_gets_the_speed_settings(tiny_loop: StepLoop, images: np.ndarray) -> None:
    plan = plan_bench(replace(TINY_REQUEST, precision="float32", compile="on"), "cpu")
    result = measure_trainer(plan, images, tiny_loop)  # torch.compile: the function itself
    assert (result.precision, result.compiled, result.compile_fallback) == (
        "float32",
        True,
        None,
    )


def test_reference_pipeline(tiny_plan: BenchPlan, tiny_loop: StepLoop, images: np.ndarray) -> None:
    result = measure_reference(tiny_plan, images, tiny_loop)
    assert result.timing.steps == 2 and result.timing.samples_per_s > 0
    assert result.workers >= 1 and result.files == len(images)


def test_official_transform_makes_normalised_views() -> None:
    from PIL import Image

    view = official_transform(16)(Image.new("RGB", (20, 20), (200, 10, 10)))
    assert view.shape == (3, 16, 16) and view.dtype == torch.float32


def test_memory_peak_is_positive_and_named() -> None:
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    assert memory.peak_bytes() > 0 and "RSS" in memory.source
