"""The settings of a new run as a form shows them: the model of the Group dialog, without Qt.

A form edits a few fields of a :class:`~crlc_engine.core.config.TrainConfig`
(:data:`EDITED_FIELDS`) on top of a chosen preset, plus the number of groups and the device.
This module says

- what a preset's values of those fields are (:func:`preset_values`), and which presets can
  be chosen here and which one is chosen first (:class:`PresetChoices`);
- what the form's fields mean (:meth:`RunForm.values`: e.g. the weights box of a network
  without ImageNet weights, the stage-2 settings of an end-to-end run), which of them differ
  from the preset and so become overrides (:meth:`RunForm.overrides`), and the run's
  settings (:meth:`RunForm.config`: the preset plus the overrides, merged by the one rule
  :func:`~crlc_engine.pipeline.presets.resolve_train_config`, so that the run records the
  preset plus exactly what was different);
- whether the form can start a run and why not (:meth:`RunForm.check`);
- which devices can be chosen, in words (:class:`DeviceOptions`);
- what the run will cost (:func:`estimate_form`, from the estimate's cost model).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from crlc_engine.core.config import PRETRAINED_BACKBONES, TrainConfig
from crlc_engine.core.device import DeviceChoice
from crlc_engine.core.errors import CRLCError, InvalidSettingError
from crlc_engine.pipeline.estimate import Calibration, TrainingEstimate, estimate_training
from crlc_engine.pipeline.estimate.text import DEVICE_WORDS
from crlc_engine.pipeline.presets import (
    PRESETS,
    PRETRAINED_HINT,
    default_preset_name,
    torchvision_presets,
)
from crlc_engine.pipeline.request import RunRequest, settings_of

__all__ = [
    "DEVICE_OPTIONS",
    "EDITED_FIELDS",
    "QUICK_MISSING",
    "DeviceOptions",
    "PresetChoices",
    "RunForm",
    "estimate_form",
    "preset_values",
    "pretrained_box",
]

#: Fields of :class:`TrainConfig` a form edits, besides ``clusters`` and ``preset``.
EDITED_FIELDS = (
    "image_size",
    "backbone",
    "pretrained",
    "epochs",
    "minutes",
    "lambda_ent",
    "critic",
    "framework",
    "stage",
    "freeze_backbone",
    "stage_optim",
)
#: Edited fields compared one to one with the preset in :meth:`RunForm.overrides` (the run's
#: length, epochs or a time budget, follows its own rule).
PLAIN_FIELDS = (
    "image_size",
    "backbone",
    "pretrained",
    "lambda_ent",
    "critic",
    "framework",
    "stage",
    "freeze_backbone",
    "stage_optim",
)

#: Device requests offered, in order, with their names in the list.
DEVICE_OPTIONS: dict[str, str] = {
    "auto": "Automatic",
    "cpu": "CPU",
    "cuda": "NVIDIA GPU (CUDA)",
    "mps": "Apple GPU (MPS)",
}

#: Why the quick preset cannot be chosen without the ``pretrained`` extra, and the fix.
QUICK_MISSING = "Not installed. " + PRETRAINED_HINT

#: What the weights box of a network can be: always on (EfficientNet-Lite0, whose weights
#: are installed with it), never (no ImageNet weights), or the user's choice.
PretrainedBox = Literal["always", "never", "choice"]


def preset_values(preset: str) -> dict[str, Any]:
    """The preset's value of every edited field (dataclass defaults where it is silent; an
    unknown preset: the defaults)."""
    defaults = TrainConfig(clusters=2)
    values = {name: getattr(defaults, name) for name in EDITED_FIELDS}
    preset_settings = PRESETS[preset].settings if preset in PRESETS else {}
    values.update({k: v for k, v in preset_settings.items() if k in values})
    return values


def pretrained_box(backbone: str) -> PretrainedBox:
    """What the weights box means for ``backbone`` (see :data:`PretrainedBox`)."""
    if backbone == "efficientnet_lite0":
        return "always"
    if backbone not in PRETRAINED_BACKBONES:
        return "never"
    return "choice"


@dataclass(frozen=True)
class PresetChoices:
    """Which presets can be chosen here, and which one a form starts with.

    Attributes:
        quick_available: Whether the ``pretrained`` extra (the quick preset) is installed.
        torchvision_problem: Why the ResNet presets cannot be used (``None``: they can).
    """

    quick_available: bool
    torchvision_problem: str | None

    def problem(self, name: str) -> str | None:
        """Why preset ``name`` cannot be chosen here, or ``None``."""
        if name == "quick" and not self.quick_available:
            return QUICK_MISSING
        if self.torchvision_problem is not None and name in torchvision_presets():
            return self.torchvision_problem
        return None

    def default(self, device_kind: str, requested: Mapping[str, Any] | None = None) -> str:
        """The preset ``crlc train`` uses without ``--preset`` on ``device_kind`` with the
        ``requested`` settings (:func:`~crlc_engine.pipeline.presets.default_preset_name`)."""
        return default_preset_name(
            device_kind,
            self.quick_available,
            requested,
            torchvision_usable=self.torchvision_problem is None,
        )

    def initial(self, device_kind: str, saved: str | None) -> tuple[str, bool]:
        """The preset a form shows first, and whether it is the user's own choice.

        The user's saved default preset when it can be chosen here (it then does not
        follow the device), else the device's default (which follows the device and the
        settings edited until the user picks a preset).
        """
        if saved in PRESETS and self.problem(str(saved)) is None:
            return str(saved), True
        return self.default(device_kind), False


@dataclass(frozen=True)
class RunForm:
    """What a form's fields show (the raw state of its widgets).

    ``pretrained``, ``freeze_backbone`` and ``stage_optim`` are the boxes as shown; what
    they mean for the run depends on the network and the scheme (:meth:`values`). The run's
    length is ``epochs`` or, with ``time_budget``, ``minutes``.
    """

    clusters: int
    preset: str
    device: str
    image_size: int
    backbone: str
    pretrained: bool
    time_budget: bool
    epochs: int
    minutes: float
    lambda_ent: float
    critic: str
    framework: str
    stage: str
    freeze_backbone: bool
    stage_optim: str

    def pretrained_value(self) -> bool:
        """What the weights box means for the chosen network (EfficientNet: always
        pretrained, recorded as the preset has it)."""
        box = pretrained_box(self.backbone)
        if box == "always":
            return bool(preset_values(self.preset)["pretrained"])
        return box == "choice" and self.pretrained

    def values(self) -> dict[str, Any]:
        """The value of every edited field, as the run would take it."""
        two_stage = self.stage == "two_stage"
        return {
            "image_size": self.image_size,
            "backbone": self.backbone,
            "epochs": None if self.time_budget else self.epochs,
            "minutes": self.minutes if self.time_budget else None,
            "lambda_ent": self.lambda_ent,
            "critic": self.critic,
            "pretrained": self.pretrained_value(),
            "framework": self.framework,
            "stage": self.stage,
            "freeze_backbone": two_stage and self.freeze_backbone,
            "stage_optim": self.stage_optim
            if two_stage
            else preset_values(self.preset)["stage_optim"],
        }

    def requested(self, edited: Collection[str]) -> dict[str, Any]:
        """The values of the ``edited`` fields (what the default preset follows)."""
        values = self.values()
        return {name: values[name] for name in edited if name in values}

    def overrides(self) -> dict[str, Any]:
        """The settings that differ from the chosen preset (what :meth:`config` passes on).

        A time budget is an override whenever the preset counts epochs; the device, unless
        it is ``auto``.
        """
        preset = preset_values(self.preset)
        values = self.values()
        changed: dict[str, Any] = {}
        for name in PLAIN_FIELDS:
            if values[name] != preset[name]:
                changed[name] = values[name]
        if self.time_budget:
            if preset["epochs"] is not None or values["minutes"] != preset["minutes"]:
                changed["minutes"] = values["minutes"]
        elif values["epochs"] != preset["epochs"]:
            changed["epochs"] = values["epochs"]
        if self.device != "auto":
            changed["device"] = self.device
        return changed

    def config(self) -> TrainConfig:
        """The run's settings: the preset plus :meth:`overrides`.

        Raises:
            InvalidSettingError: the settings are invalid.
        """
        request = RunRequest(clusters=self.clusters, preset=self.preset, overrides=self.overrides())
        return settings_of(request)

    def check(self, images: int) -> tuple[TrainConfig | None, str | None]:
        """The run's settings for ``images`` photos, or ``None`` and why they cannot be used."""
        if images < 2:
            return None, f"Grouping needs at least 2 photos; this library has {images}."
        try:
            return self.config(), None
        except InvalidSettingError as problem:
            return None, f"These settings cannot be used: {problem}"


@dataclass(frozen=True)
class DeviceOptions:
    """The devices a form offers: what ``auto`` resolves to and which requests are usable.

    Attributes:
        auto: What ``auto`` resolved to (``None``: the probe failed; the CPU is used).
        notes: Per request, ``None`` if usable, else why not (the probe's message).
    """

    auto: DeviceChoice | None
    notes: Mapping[str, str | None]

    @classmethod
    def probe(cls, probe: Callable[[str], DeviceChoice]) -> DeviceOptions:
        """Ask ``probe(request)`` (raising a ``CRLCError`` for an unavailable device) about
        ``auto`` and each GPU kind, once."""
        try:
            auto: DeviceChoice | None = probe("auto")
        except CRLCError:
            auto = None
        notes: dict[str, str | None] = {"auto": None, "cpu": None}
        for request in ("cuda", "mps"):
            try:
                probe(request)
            except CRLCError as error:
                notes[request] = str(error)
            else:
                notes[request] = None
        return cls(auto, notes)

    @property
    def detected_kind(self) -> str:
        """The device kind ``auto`` resolves to (``cpu`` when the probe failed)."""
        return self.auto.kind if self.auto is not None else "cpu"

    def kind(self, request: str) -> str:
        """The device kind a run of ``request`` uses (``auto`` resolved)."""
        return self.detected_kind if request == "auto" else request

    def note(self, request: str) -> str | None:
        """Why ``request`` is unavailable (the probe's message), ``None`` if it is usable."""
        return self.notes.get(request)

    def usable(self, request: str) -> bool:
        """Whether ``request`` is a known device request that can be used here."""
        return request in self.notes and self.notes[request] is None

    def detected_text(self) -> str:
        """What ``auto`` found, in a sentence."""
        if self.auto is None:
            return "Detected: no device could be checked; using the CPU."
        return f"Detected: {self.auto.device} ({self.auto.reason})"

    def label(self, request: str) -> str:
        """``request``'s name in the list (``auto``: with the device it finds)."""
        text = DEVICE_OPTIONS.get(request, request)
        if request == "auto":
            return f"{text} ({DEVICE_WORDS.get(self.detected_kind, self.detected_kind)})"
        if self.note(request) is not None:
            return f"{text}: not available"
        return text

    def tip(self, request: str) -> str:
        """``request``'s tooltip: why it is unavailable, else what it does."""
        note = self.note(request)
        if note is not None:
            return note
        if request == "auto":
            return "Use the fastest device found: " + self.detected_text()
        if request == "cpu":
            return "Train on the processor. Works everywhere; slow for big networks."
        return "Available."


def estimate_form(
    config: TrainConfig,
    images: int,
    device_kind: str,
    calibration: Calibration | None,
    cached_sizes: Collection[int],
) -> TrainingEstimate:
    """The time and disk of ``config`` over ``images`` photos on ``device_kind``; a training
    size the library's pixel cache lacks (not in ``cached_sizes``) reads every photo again."""
    decode = 0 if config.image_size in cached_sizes else images
    return estimate_training(config, images, device_kind, calibration, decode_images=decode)
