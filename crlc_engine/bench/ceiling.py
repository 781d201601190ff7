"""The model-only ceiling: what the network, the CRLC losses and the SGD step alone reach on
views already on the device (no data loading, no augmentation), eager and compiled.

On CUDA the network runs the fast path, bf16 autocast with channels-last weights and views; on
other devices float32, contiguous. The compiled figure compiles the objective (network and
losses, forward and backward) with ``torch.compile``; the optimiser step stays eager. When
compiling fails, the figure is unavailable with the reason: the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crlc_engine.bench.model_step import ModelStep, Objective
from crlc_engine.bench.settings import BenchPlan
from crlc_engine.bench.timing import StepLoop, Timing

#: The longest compile-failure reason kept (the first line of the error, cut here).
MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class CeilingResult:
    """The model-only ceiling, eager and compiled.

    Attributes:
        eager: The eager network's timing.
        compiled: The compiled one's, or ``None`` when compiling failed.
        compiled_unavailable: Why there is no compiled figure (``None`` when there is).
        precision: ``bfloat16`` (autocast, CUDA) or ``float32``.
        memory_format: ``channels_last`` (CUDA) or ``contiguous``.
    """

    eager: Timing
    compiled: Timing | None
    compiled_unavailable: str | None
    precision: str
    memory_format: str

    @property
    def best_samples_per_s(self) -> float:
        """The faster of eager and compiled."""
        compiled = 0.0 if self.compiled is None else self.compiled.samples_per_s
        return max(self.eager.samples_per_s, compiled)


def failure_reason(exc: BaseException) -> str:
    """One line saying why something failed: the error's type and its message's first line."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def _time_network(plan: BenchPlan, loop: StepLoop, compiled: bool) -> Timing:
    """Time :class:`ModelStep` on one fixed batch of random views (fresh weights)."""
    device = loop.device
    network = ModelStep(plan.train_config(), device, channels_last=plan.gpu, autocast=plan.gpu)
    generator = torch.Generator(device=device).manual_seed(0)
    views = torch.randn(
        (2 * plan.batch, 3, plan.size, plan.size), generator=generator, device=device
    )
    if plan.gpu:
        views = views.contiguous(memory_format=torch.channels_last)
    objective: Objective = network.objective
    if compiled:
        objective = torch.compile(network.objective)
    label = "model-only ceiling, " + ("compiled" if compiled else "eager")
    return loop.time(label, lambda: network.step(views, objective))


def measure_ceiling(plan: BenchPlan, loop: StepLoop) -> CeilingResult:
    """The model-only ceiling of ``plan`` on ``loop.device``, eager then compiled.

    Raises:
        InterruptedError: cancelled.
    """
    eager = _time_network(plan, loop, compiled=False)
    compiled: Timing | None = None
    reason: str | None = None
    try:
        compiled = _time_network(plan, loop, compiled=True)
    except InterruptedError:
        raise
    except Exception as exc:  # any compiler failure: the figure is missing, the run goes on
        reason = failure_reason(exc)
        loop.reporter.status(f"model-only ceiling, compiled: unavailable ({reason})")
    finally:
        torch.compiler.reset()  # drop the compiled graphs before the next measurement
    return CeilingResult(
        eager=eager,
        compiled=compiled,
        compiled_unavailable=reason,
        precision="bfloat16" if plan.gpu else "float32",
        memory_format="channels_last" if plan.gpu else "contiguous",
    )
