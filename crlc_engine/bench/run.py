"""Run the three measurements of ``crlc bench`` on one device (:func:`run_bench`)."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

from crlc_engine.bench.ceiling import measure_ceiling
from crlc_engine.bench.memory import PeakMemory
from crlc_engine.bench.reference import measure_reference
from crlc_engine.bench.report import BenchReport
from crlc_engine.bench.settings import BenchPlan, BenchRequest, plan_bench
from crlc_engine.bench.timing import StepLoop
from crlc_engine.bench.trainer_step import measure_trainer
from crlc_engine.core.control import JobControl
from crlc_engine.core.device import resolve_device
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.library.synthetic import SHAPES, make_shapes_dataset

#: The most distinct generated images (the trainer's data set, the reference's JPEG files);
#: the steps go over them several times when they need more.
MAX_IMAGES = 2048

Result = TypeVar("Result")


def generated_images(plan: BenchPlan) -> np.ndarray:
    """Generated shape images uint8 [N, S, S, 3]: enough for every timed and warm-up step
    (at most :data:`MAX_IMAGES`), at least one batch."""
    count = max(plan.batch, min(plan.batch * (plan.warmup + plan.steps), MAX_IMAGES))
    per_class = math.ceil(count / len(SHAPES))
    images, _ = make_shapes_dataset(per_class, plan.size, shapes=SHAPES)
    return images[:count]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _measured(
    name: str, memory: PeakMemory, peaks: dict[str, int], measure: Callable[[], Result]
) -> Result:
    """Run one measurement and keep its memory peak under ``name``."""
    memory.reset()
    result = measure()
    peaks[name] = memory.peak_bytes()
    return result


def run_bench(
    request: BenchRequest,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
) -> BenchReport:
    """Measure the model-only ceiling, our trainer's step and the official-code-style
    pipeline on one device, and report them.

    Raises:
        DeviceUnavailableError: the requested device is missing.
        InvalidSettingError: a setting out of range.
        InterruptedError: cancelled through ``control``.
    """
    started = time.perf_counter()
    reporter = reporter or NullReporter()
    choice = resolve_device(request.device)
    device = choice.device
    plan = plan_bench(request, device.type)
    reporter.status(f"Device {device}: {choice.reason}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer sets it, for every measurement
    loop = StepLoop(plan.warmup, plan.steps, plan.batch, device, reporter, control or JobControl())
    reporter.status(f"generating {plan.size} px images")
    images = generated_images(plan)
    memory = PeakMemory(device)
    peaks: dict[str, int] = {}
    ceiling = _measured("ceiling", memory, peaks, lambda: measure_ceiling(plan, loop))
    trainer = _measured("trainer", memory, peaks, lambda: measure_trainer(plan, images, loop))
    reference = _measured("reference", memory, peaks, lambda: measure_reference(plan, images, loop))
    report = BenchReport(
        plan=plan,
        device=str(device),
        device_name=_device_name(device),
        ceiling=ceiling,
        trainer=trainer,
        reference=reference,
        peaks=peaks,
        memory_source=memory.source,
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
        elapsed_s=time.perf_counter() - started,
    )
    for line in report.summary_lines():
        reporter.status(line)
    return report
