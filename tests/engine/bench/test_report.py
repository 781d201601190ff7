"""The report: ratios computed from the figures, the JSON object's keys and types."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crlc_engine.bench.ceiling import CeilingResult
from crlc_engine.bench.reference import ReferenceResult
from crlc_engine.bench.report import BenchReport, ratio
from crlc_engine.bench.settings import BenchPlan
from crlc_engine.bench.timing import Timing
from crlc_engine.bench.trainer_step import TrainerResult

#: Keys ``crlc bench --json`` promises, with their types.
REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "device": str,
    "backbone": str,
    "size": int,
    "batch": int,
    "ceiling_samples_per_s": float,
    "ceiling_eager_samples_per_s": float,
    "ceiling_compiled_samples_per_s": (float, type(None)),
    "ceiling_compiled_unavailable": (str, type(None)),
    "trainer_samples_per_s": float,
    "reference_samples_per_s": float,
    "trainer_vs_ceiling": float,
    "trainer_vs_reference": float,
    "peak_memory_bytes": int,
    "torch": str,
    "threads": int,
}


def check_report_dict(payload: dict[str, Any]) -> None:
    """``payload`` has every promised key with its type, and ratios of its own figures."""
    for key, kind in REQUIRED_KEYS.items():
        assert isinstance(payload[key], kind), (key, payload[key])
    trainer = payload["trainer_samples_per_s"]
    ceiling = payload["ceiling_samples_per_s"]
    assert payload["trainer_vs_ceiling"] == pytest.approx(trainer / ceiling)
    assert payload["trainer_vs_reference"] == pytest.approx(
        trainer / payload["reference_samples_per_s"]
    )
    compiled = payload["ceiling_compiled_samples_per_s"]
    assert ceiling == pytest.approx(max(payload["ceiling_eager_samples_per_s"], compiled or 0.0))
    assert (compiled is None) == (payload["ceiling_compiled_unavailable"] is not None)


def make_report(tiny_plan: BenchPlan, compiled_seconds: float | None) -> BenchReport:
    """A report of made-up timings: batch 8, 2 steps (16 images per measurement)."""
    compiled = None if compiled_seconds is None else Timing(2, 8, compiled_seconds)
    return BenchReport(
        plan=tiny_plan,
        device="cpu",
        device_name="test",
        ceiling=CeilingResult(
            Timing(2, 8, 0.5),
            compiled,
            None if compiled else "RuntimeError: no compiler",
            "float32",
            "contiguous",
        ),
        trainer=TrainerResult(Timing(2, 8, 1.0), "float32", "contiguous", False),
        reference=ReferenceResult(Timing(2, 8, 4.0), 2, 24),
        peaks={"ceiling": 10, "trainer": 30, "reference": 20},
        memory_source="test",
        torch_version="0",
        threads=2,
        elapsed_s=1.0,
    )


def test_ratios_come_from_the_figures(tiny_plan: BenchPlan) -> None:
    report = make_report(tiny_plan, compiled_seconds=0.25)
    assert report.ceiling.best_samples_per_s == 64.0  # compiled: 16 images in 0.25 s
    assert report.trainer_vs_ceiling == 16.0 / 64.0
    assert report.trainer_vs_reference == 16.0 / 4.0
    assert report.peak_memory_bytes == 30
    payload = json.loads(json.dumps(report.as_dict()))
    check_report_dict(payload)
    assert payload["ceiling_compiled_samples_per_s"] == 64.0


def test_without_a_compiled_figure_the_eager_one_is_the_ceiling(tiny_plan: BenchPlan) -> None:
    report = make_report(tiny_plan, compiled_seconds=None)
    payload = report.as_dict()
    check_report_dict(payload)
    assert payload["ceiling_samples_per_s"] == 32.0
    assert payload["ceiling_compiled_unavailable"] == "RuntimeError: no compiler"
    assert any("unavailable (RuntimeError: no compiler)" in line for line in report.summary_lines())


def test_ratio_of_nothing_is_none() -> None:
    assert ratio(1.0, 0.0) is None and ratio(1.0, 2.0) == 0.5
