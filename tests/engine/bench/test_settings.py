"""The benchmark's settings: the device defaults, the checks and the trainer's speed settings."""

from __future__ import annotations

import re

import pytest

from crlc_engine.bench.settings import (
    CPU_DEFAULTS,
    GPU_DEFAULTS,
    TRAINER_SPEED_FIELDS,
    BenchRequest,
    plan_bench,
    trainer_speed_options,
)
from crlc_engine.core.errors import InvalidSettingError


def test_defaults_follow_the_device() -> None:
    cpu = plan_bench(BenchRequest(), "cpu")
    assert (cpu.backbone, cpu.stem, cpu.size, cpu.batch) == ("small", "imagenet", 32, 64)
    assert (cpu.steps, cpu.warmup) == (CPU_DEFAULTS.steps, CPU_DEFAULTS.warmup)
    gpu = plan_bench(BenchRequest(), "cuda")
    assert (gpu.backbone, gpu.size, gpu.batch, gpu.gpu) == ("resnet18", 32, 512, True)
    assert gpu.steps == GPU_DEFAULTS.steps and not cpu.gpu


def test_a_given_backbone_gets_the_auto_stem_and_given_values_stay() -> None:
    plan = plan_bench(BenchRequest(backbone="resnet18", size=24, batch=4, steps=3), "cpu")
    assert (plan.backbone, plan.stem, plan.size, plan.batch, plan.steps) == (
        "resnet18",
        "auto",
        24,
        4,
        3,
    )
    config = plan.train_config()
    assert (config.image_size, config.batch_size, config.backbone) == (24, 4, "resnet18")


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (BenchRequest(size=3), "image size must be 8..1024 px (got 3)"),
        (BenchRequest(batch=0), "batch size must be at least 2 (got 0)"),
        (BenchRequest(backbone="nope"), "unknown backbone 'nope'"),
        (BenchRequest(stem="wide"), "unknown stem 'wide'"),
        (BenchRequest(steps=0), "steps must be at least 1 (got 0)"),
        (BenchRequest(warmup=0), "warm-up steps must be at least 1 (got 0)"),
    ],
)
def test_bad_settings_say_which_rule(request_: BenchRequest, message: str) -> None:
    with pytest.raises(InvalidSettingError, match=re.escape(message)):
        plan_bench(request_, "cpu")


def test_trainer_speed_settings_reach_the_training_settings() -> None:
    assert trainer_speed_options(BenchRequest()) == dict.fromkeys(TRAINER_SPEED_FIELDS, "auto")
    config = plan_bench(BenchRequest(), "cpu").train_config()
    assert all(getattr(config, name) == "auto" for name in TRAINER_SPEED_FIELDS)
    plan = plan_bench(BenchRequest(precision="float32", compile="off"), "cpu")
    config = plan.train_config()
    assert (config.precision, config.compile, config.memory_format) == ("float32", "off", "auto")
