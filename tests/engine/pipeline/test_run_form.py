"""The settings of a new run as a form shows them: preset values, overrides, checks, devices."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pytest
import torch

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.device import DeviceChoice
from crlc_engine.core.errors import DeviceUnavailableError
from crlc_engine.pipeline.estimate import estimate_training
from crlc_engine.pipeline.presets import PRESETS, resolve_train_config
from crlc_engine.pipeline.run_form import (
    EDITED_FIELDS,
    QUICK_MISSING,
    DeviceOptions,
    PresetChoices,
    RunForm,
    estimate_form,
    preset_values,
    pretrained_box,
)

PROBLEM = "torchvision is broken here"


def form_of(preset: str, clusters: int = 10, **changes: Any) -> RunForm:
    """A form showing ``preset``'s values (as the dialog loads them), with ``changes``."""
    values = preset_values(preset)
    shown = RunForm(
        clusters=clusters,
        preset=preset,
        device="auto",
        image_size=int(values["image_size"]),
        backbone=str(values["backbone"]),
        pretrained=bool(values["pretrained"]),
        time_budget=values["epochs"] is None,
        epochs=int(values["epochs"] or 1),
        minutes=float(values["minutes"] or 10.0),
        lambda_ent=float(values["lambda_ent"]),
        critic=str(values["critic"]),
        framework=str(values["framework"]),
        stage=str(values["stage"]),
        freeze_backbone=bool(values["freeze_backbone"]),
        stage_optim=str(values["stage_optim"]),
    )
    return dataclasses.replace(shown, **changes)


def test_preset_values_are_the_preset_over_the_defaults() -> None:
    values = preset_values("cpu")
    assert set(values) == set(EDITED_FIELDS)
    assert (values["backbone"], values["image_size"], values["epochs"]) == ("small", 32, 100)
    assert values["stage_optim"] == "run" and values["minutes"] is None
    defaults = TrainConfig(clusters=2)
    assert preset_values("no such preset") == {n: getattr(defaults, n) for n in EDITED_FIELDS}


@pytest.mark.parametrize("preset", ["cpu", "quick"])
def test_a_form_showing_the_preset_overrides_nothing(preset: str) -> None:
    form = form_of(preset)
    assert form.overrides() == {}
    assert form.config() == resolve_train_config(10, preset)


def test_edited_values_become_overrides() -> None:
    form = form_of("cpu", image_size=48, lambda_ent=1.5, epochs=7, device="cpu")
    assert form.overrides() == {"image_size": 48, "lambda_ent": 1.5, "epochs": 7, "device": "cpu"}
    config = form.config()
    assert (config.image_size, config.lambda_ent, config.epochs) == (48, 1.5, 7)


def test_a_time_budget_is_an_override_and_replaces_the_epochs() -> None:
    form = form_of("cpu", time_budget=True, minutes=2.5)
    assert form.overrides() == {"minutes": 2.5}
    assert (form.config().epochs, form.config().minutes) == (None, 2.5)


def test_stage_settings_count_only_for_two_stage() -> None:
    one = form_of("cpu", freeze_backbone=True, stage_optim="paper")
    assert one.overrides() == {}  # end-to-end: nothing to freeze, no stage optimisers
    two = form_of("cpu", stage="two_stage", freeze_backbone=True, stage_optim="paper")
    expected = {"stage": "two_stage", "freeze_backbone": True, "stage_optim": "paper"}
    assert two.overrides() == expected
    assert two.requested({"stage", "nothing"}) == {"stage": "two_stage"}


def test_the_weights_box_means_what_the_network_allows() -> None:
    assert [pretrained_box(b) for b in ("efficientnet_lite0", "small", "resnet18")] == [
        "always",
        "never",
        "choice",
    ]
    assert form_of("cpu", backbone="small", pretrained=True).values()["pretrained"] is False
    assert form_of("cpu", backbone="resnet18", pretrained=True).values()["pretrained"] is True
    # EfficientNet is always pretrained; recorded as the preset has it
    assert form_of("cpu", backbone="efficientnet_lite0").values()["pretrained"] is False
    assert form_of("quick", pretrained=False).values()["pretrained"] is True


def test_check_says_why_a_form_cannot_start() -> None:
    config, error = form_of("cpu").check(300)
    assert config == resolve_train_config(10, "cpu") and error is None
    assert form_of("cpu").check(1) == (
        None,
        "Grouping needs at least 2 photos; this library has 1.",
    )
    config, error = form_of("quick", stage="two_stage").check(300)
    assert config is None and error is not None
    assert error.startswith("These settings cannot be used: the quick preset")


def test_preset_choices_grey_out_and_pick_the_first() -> None:
    without = PresetChoices(quick_available=False, torchvision_problem=PROBLEM)
    assert without.problem("quick") == QUICK_MISSING
    assert without.problem("balanced") == PROBLEM and without.problem("cpu") is None
    assert without.initial("cuda", saved="balanced") == ("cpu", False)  # not usable here
    assert without.initial("cpu", saved="cpu") == ("cpu", True)
    usable = PresetChoices(quick_available=True, torchvision_problem=None)
    assert usable.initial("cuda", saved=None) == ("balanced", False)
    assert usable.default("cpu") == "quick"
    assert usable.default("cpu", {"stage": "two_stage"}) == "cpu"
    assert set(PRESETS) >= {"quick", "cpu", "balanced"}


def fake_probe(request: str) -> DeviceChoice:
    if request in ("auto", "cuda"):
        return DeviceChoice(torch.device("cuda"), "fake GPU")
    if request == "cpu":
        return DeviceChoice(torch.device("cpu"), "CPU requested")
    raise DeviceUnavailableError(f"no {request} here")


def test_device_options_say_what_can_be_used() -> None:
    devices = DeviceOptions.probe(fake_probe)
    assert devices.detected_kind == "cuda" and devices.kind("auto") == "cuda"
    assert devices.kind("cpu") == "cpu"
    assert devices.usable("cuda") and not devices.usable("mps") and not devices.usable("tpu")
    assert devices.label("auto") == "Automatic (the GPU)"
    assert devices.label("mps") == "Apple GPU (MPS): not available"
    assert devices.tip("mps") == "no mps here" and devices.note("mps") == "no mps here"
    assert devices.tip("auto") == "Use the fastest device found: Detected: cuda (fake GPU)"

    def broken(request: str) -> DeviceChoice:
        raise DeviceUnavailableError("nothing")

    none = DeviceOptions.probe(broken)
    assert none.detected_kind == "cpu" and none.auto is None
    assert none.detected_text() == "Detected: no device could be checked; using the CPU."


def test_the_estimate_reads_photos_again_at_an_uncached_size() -> None:
    config = resolve_train_config(10, "cpu")
    cached = estimate_form(config, 500, "cpu", None, cached_sizes={32})
    assert cached == estimate_training(config, 500, "cpu")
    uncached = estimate_form(config, 500, "cpu", None, cached_sizes={64})
    assert uncached == estimate_training(config, 500, "cpu", decode_images=500)
    assert uncached.seconds > cached.seconds


def test_the_form_imports_without_qt_or_torch() -> None:
    code = (
        "import sys, crlc_engine.pipeline.run_form\n"
        "assert 'PySide6' not in sys.modules and 'torch' not in sys.modules, 'imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
