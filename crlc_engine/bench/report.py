"""What a benchmark run found (:class:`BenchReport`): the figures, the ratios computed from
them, the memory peaks, as a JSON-able dict and as lines for a person."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crlc_engine.bench.ceiling import CeilingResult
from crlc_engine.bench.reference import ReferenceResult
from crlc_engine.bench.settings import BenchPlan
from crlc_engine.bench.trainer_step import TRAINER_METHOD, TrainerResult

#: The measurements, in the order they run, by their keys in :attr:`BenchReport.peaks`.
MEASUREMENTS = ("ceiling", "trainer", "reference")


def ratio(part: float, whole: float) -> float | None:
    """``part / whole``, or ``None`` when ``whole`` is not positive."""
    return part / whole if whole > 0 else None


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f} %"


@dataclass(frozen=True)
class BenchReport:
    """The figures of one benchmark run on one device.

    Attributes:
        plan: What was measured.
        device: The device (``cpu``, ``cuda:0``...).
        device_name: The GPU's or the processor's name.
        ceiling, trainer, reference: The three measurements.
        peaks: Memory peak of each measurement (bytes; keys :data:`MEASUREMENTS`).
        memory_source: What the peaks are (see :class:`~crlc_engine.bench.memory.PeakMemory`).
        torch_version: ``torch.__version__``.
        threads: ``torch.get_num_threads()``.
        elapsed_s: Wall time of the whole run, image generation and compilation included.
    """

    plan: BenchPlan
    device: str
    device_name: str
    ceiling: CeilingResult
    trainer: TrainerResult
    reference: ReferenceResult
    peaks: dict[str, int]
    memory_source: str
    torch_version: str
    threads: int
    elapsed_s: float

    @property
    def trainer_vs_ceiling(self) -> float | None:
        """The trainer's speed as a fraction of the best model-only ceiling."""
        return ratio(self.trainer.timing.samples_per_s, self.ceiling.best_samples_per_s)

    @property
    def trainer_vs_reference(self) -> float | None:
        """The trainer's speed as a fraction of the official-code-style pipeline's."""
        return ratio(self.trainer.timing.samples_per_s, self.reference.timing.samples_per_s)

    @property
    def peak_memory_bytes(self) -> int:
        """The highest peak of the measurements."""
        return max(self.peaks.values(), default=0)

    def as_dict(self) -> dict[str, Any]:
        """The report as one JSON-able object (what ``crlc bench --json`` prints)."""
        ceiling, compiled = self.ceiling, self.ceiling.compiled
        return {
            "device": self.device,
            "device_name": self.device_name,
            "backbone": self.plan.backbone,
            "stem": self.plan.stem,
            "size": self.plan.size,
            "batch": self.plan.batch,
            "steps": self.plan.steps,
            "warmup": self.plan.warmup,
            "ceiling_samples_per_s": ceiling.best_samples_per_s,
            "ceiling_eager_samples_per_s": ceiling.eager.samples_per_s,
            "ceiling_compiled_samples_per_s": None if compiled is None else compiled.samples_per_s,
            "ceiling_compiled_unavailable": ceiling.compiled_unavailable,
            "ceiling_precision": ceiling.precision,
            "ceiling_memory_format": ceiling.memory_format,
            "trainer_samples_per_s": self.trainer.timing.samples_per_s,
            "trainer_method": TRAINER_METHOD,
            "trainer_precision": self.trainer.precision,
            "trainer_memory_format": self.trainer.memory_format,
            "trainer_compiled": self.trainer.compiled,
            "trainer_compile_fallback": self.trainer.compile_fallback,
            "reference_samples_per_s": self.reference.timing.samples_per_s,
            "reference_workers": self.reference.workers,
            "reference_files": self.reference.files,
            "trainer_vs_ceiling": self.trainer_vs_ceiling,
            "trainer_vs_reference": self.trainer_vs_reference,
            "peak_memory_bytes": self.peak_memory_bytes,
            "peak_memory_by_measurement": dict(self.peaks),
            "peak_memory_source": self.memory_source,
            "torch": self.torch_version,
            "threads": self.threads,
            "elapsed_s": self.elapsed_s,
        }

    def summary_lines(self) -> list[str]:
        """The figures for a person, one per line."""
        plan, ceiling = self.plan, self.ceiling
        compiled = (
            f"{ceiling.compiled.samples_per_s:,.1f}"
            if ceiling.compiled is not None
            else f"unavailable ({ceiling.compiled_unavailable})"
        )
        trainer = self.trainer
        return [
            f"Benchmark on {self.device} ({self.device_name}), torch {self.torch_version}, "
            f"{self.threads} threads: {plan.backbone} ({plan.stem} stem), {plan.size} px, "
            f"batch {plan.batch}, {plan.steps} timed steps after {plan.warmup} warm-up",
            f"  1. model-only ceiling ({ceiling.precision}, {ceiling.memory_format}): eager "
            f"{ceiling.eager.samples_per_s:,.1f}, compiled {compiled} samples/s",
            f"  2. our trainer ({trainer.precision}, {trainer.memory_format}, "
            f"{'compiled' if trainer.compiled else 'eager'}): "
            f"{trainer.timing.samples_per_s:,.1f} samples/s",
            f"  3. official-style pipeline (JPEG + PIL + torchvision, {self.reference.workers} "
            f"workers, float32 eager): {self.reference.timing.samples_per_s:,.1f} samples/s",
            f"  trainer / best ceiling: {_percent(self.trainer_vs_ceiling)}; "
            f"trainer / official-style: {_percent(self.trainer_vs_reference)}",
            f"  memory peak: {_mib(self.peak_memory_bytes)} ({self.memory_source}; "
            + ", ".join(f"{name} {_mib(self.peaks[name])}" for name in MEASUREMENTS)
            + ")",
            f"  samples are images with two augmented views each; took {self.elapsed_s:.0f} s",
        ]
