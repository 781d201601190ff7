"""The one registry of named training presets (read by the CLI and the GUI).

A preset is a partial set of :class:`~crlc_engine.core.config.TrainConfig` fields. Explicit
user settings override it; fields it does not name take the dataclass defaults.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import InvalidSettingError

# re-exported: the presets' view of the optional packages (tests and the facade read them here)
from crlc_engine.models.optional_deps import PRETRAINED_EXTRA_MODULE as PRETRAINED_EXTRA_MODULE
from crlc_engine.models.optional_deps import PRETRAINED_HINT as PRETRAINED_HINT
from crlc_engine.models.optional_deps import TORCHVISION_BACKBONES as TORCHVISION_BACKBONES
from crlc_engine.models.optional_deps import installed_torch_version, torchvision_import_problem
from crlc_engine.models.optional_deps import needs_torchvision as needs_torchvision
from crlc_engine.models.optional_deps import (
    torchvision_install_command as torchvision_install_command,
)


@dataclass(frozen=True)
class Preset:
    """A named set of settings and the reason for them."""

    name: str
    summary: str
    why: str
    settings: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        summary="The official CRLC runner: ResNet-34, batch 512, 2,000 epochs",
        why=(
            "Reproduces the published CIFAR-10 setting (ACC 79.9): ResNet-34 with the CIFAR "
            "stem at 32 px, SGD lr 0.1 momentum 0.9 wd 5e-4 (weights only), lambda_FC 10, "
            "lambda_ent 2.0 (official; the paper text says 1.0), tau 0.1, gamma 0.01, "
            "logit guard 0.01 at |25|, 10 sub-heads. Needs a GPU: days on a CPU."
        ),
        settings={
            "backbone": "resnet34",
            "stem": "cifar",
            "image_size": 32,
            "batch_size": 512,
            "epochs": 2000,
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "lambda_fc": 10.0,
            "lambda_ent": 2.0,
            "tau": 0.1,
            "gamma": 0.01,
            "critic": "log_dot",
            "guard_weight": 0.01,
            "guard_bound": 25.0,
            "subheads": 10,
            "checkpoint_every": 25,
            "head_init": "he_uniform",
        },
    ),
    "balanced": Preset(
        name="balanced",
        summary="GPU default: ResNet-18 at 64 px, batch 512, 300 epochs",
        why=(
            "The paper's losses and optimiser with ResNet-18 (about 2x the speed of ResNet-34 "
            "for a small accuracy cost, the backbone the paper itself uses for its two-stage "
            "runs) at 64 px, where photos keep more detail than at 32 px; the CIFAR stem "
            "(auto at 64 px) keeps spatial resolution. 300 epochs instead of 2,000: on "
            "CIFAR-10 most of the accuracy arrives in the first few hundred epochs, and a "
            "user wants a result in minutes to an hour (about 10 minutes for 10,000 photos "
            "on a current GPU)."
        ),
        settings={
            "backbone": "resnet18",
            "stem": "auto",
            "image_size": 64,
            "batch_size": 512,
            "epochs": 300,
            "checkpoint_every": 10,
        },
    ),
    "cpu": Preset(
        name="cpu",
        summary="CPU from scratch: small CNN at 32 px, batch 64, 100 epochs, lambda_FC 1",
        why=(
            "Without a GPU a ResNet is too slow to train from scratch (ResNet-18 with the CIFAR "
            "stem: about 21 images/s on 2 CPU cores). The small 5-layer CNN with a stride-2 "
            "first layer runs about 1,300 images/s there, so a few hundred images group in "
            "under a minute. lambda_FC is 1 instead of 10: with so few steps the clustering "
            "head follows the shapes much sooner (measured on generated shape images: ACC "
            "0.96-0.99 after 150 epochs of 300 images with 1, 0.68 with 10). Expect groups by "
            "coarse shape and layout, not by fine content. Two-stage runs use this SGD for "
            "both stages: the paper's stage optimisers were tuned for batch 512 on a GPU, and "
            "its lr 5.0 for a frozen backbone diverged on the small CNN."
        ),
        settings={
            "backbone": "small",
            "stem": "imagenet",
            "image_size": 32,
            "batch_size": 64,
            "epochs": 100,
            "lambda_fc": 1.0,
            "stage_optim": "run",
            "checkpoint_every": 10,
        },
    ),
    "quick": Preset(
        name="quick",
        summary="CPU default: CRLC heads on pretrained EfficientNet-Lite0 features, 224 px",
        why=(
            "EfficientNet-Lite0 (ImageNet weights from the 'pretrained' extra, no download) "
            "runs once per image; its features are cached in the workspace and the CRLC heads "
            "train on them with positives drawn from each image's 20 nearest neighbours, Adam "
            "lr 1e-3, 20 epochs and at least 300 steps. Imagenette, 2,000 images at 224 px: "
            "ACC 95.5-95.9 against 85-90 for k-means on the same features. Groups follow "
            "ImageNet-like content (objects, scenes), which suits everyday photos."
        ),
        settings={
            "backbone": "efficientnet_lite0",
            "pretrained": True,
            "image_size": 224,
            "batch_size": 256,
            "epochs": 20,
            # what the heads really train with (recorded in the run's config.json)
            "optimizer": "adam",
            "lr": 1e-3,
            "lr_min": 1e-5,
            "weight_decay": 0.0,
            "lambda_fc": 1.0,
            "lambda_ent": 2.0,
            "neighbors": 20,
            "subheads": 10,
            "checkpoint_every": 10,
        },
    ),
}


#: The largest lambda_FC x lr at which the MemoryBank framework's features still learn
#: (tau 0.1): at 0.1 and above every z collapses to one point (measured with
#: benchmarks/memorybank_probe.py; see crlc_engine/losses/memory_bank.py). Without an
#: explicit lambda_FC, a MemoryBank run gets the preset's, lowered to this product.
MEMORYBANK_LAMBDA_FC_LR = 0.01


def memorybank_lambda_fc(lambda_fc: float, lr: float) -> float:
    """``lambda_fc`` lowered so that lambda_FC x lr <= :data:`MEMORYBANK_LAMBDA_FC_LR` (SGD)."""
    if lr <= 0:
        return lambda_fc
    return min(lambda_fc, round(MEMORYBANK_LAMBDA_FC_LR / lr, 9))


def get_preset(name: str) -> Preset:
    """Look a preset up by name.

    Raises:
        InvalidSettingError: ``name`` is not registered.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidSettingError(
            f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None


#: The frozen backbone whose features the ``quick`` preset trains its heads on.
QUICK_BACKBONE = "efficientnet_lite0"

#: Settings only training on pixels has (the quick preset cannot honour them), except
#: where the value is the one quick uses itself (:data:`QUICK_VALUES`).
PIXEL_ONLY_SETTINGS = (
    "backbone",
    "stem",
    "framework",
    "stage",
    "stage1_epochs",
    "freeze_backbone",
    "stage_optim",
    "bank_negatives",
    "bank_momentum",
    "blur",
    "momentum",
    "precision",
    "memory_format",
    "compile",
    "head_init",
)

#: The quick preset's own values of settings in :data:`PIXEL_ONLY_SETTINGS`.
QUICK_VALUES: dict[str, Any] = {
    "backbone": QUICK_BACKBONE,
    "framework": "simclr",
    "stage": "end_to_end",
    "freeze_backbone": False,
    "precision": "auto",
    "memory_format": "auto",
    "compile": "auto",
    "head_init": "torch",
}


def quick_conflicts(requested: Mapping[str, Any]) -> list[str]:
    """The explicitly given settings the quick preset cannot honour, in a stable order.

    ``lr`` and ``weight_decay`` count unless ``optimizer`` is ``adam``: quick trains its
    heads with Adam (lr 1e-3) and reads those two only as Adam values.

    Args:
        requested: Setting name -> explicit value (``None`` = not given).
    """
    given = {k: v for k, v in requested.items() if v is not None}
    names = [
        name
        for name in PIXEL_ONLY_SETTINGS
        if name in given and given[name] != QUICK_VALUES.get(name, _NOT_QUICK)
    ]
    if given.get("optimizer") != "adam":
        names += [name for name in ("lr", "weight_decay") if name in given]
    return names


_NOT_QUICK = object()

#: How to install the ``pretrained`` extra, for messages that need it.
#: How the preset is chosen without ``--preset``, in words (help texts and dialogs).
DEFAULT_PRESET_RULE = "quick on a CPU, or cpu without the 'pretrained' extra; balanced on a GPU"


def quick_preset_available() -> bool:
    """Whether the ``pretrained`` extra (the ``quick`` preset's weights) is installed.

    Looks the module up without importing it (no torch import, no file read).
    """
    return importlib.util.find_spec(PRETRAINED_EXTRA_MODULE) is not None


def default_preset_name(
    device_kind: str,
    quick_available: bool | None = None,
    requested: Mapping[str, Any] | None = None,
    torchvision_usable: bool | None = None,
) -> str:
    """The preset used without ``--preset`` (see :data:`DEFAULT_PRESET_RULE`).

    On a GPU, ``balanced`` (the paper's end-to-end training, minutes for thousands of
    photos). On a CPU, ``quick`` when its pretrained weights are installed: on Imagenette it
    groups 13,394 photos in under 5 minutes at ACC 96.9, where training from scratch
    (``cpu``) would take far longer and group by coarse shape and layout; otherwise, or
    when a setting only pixel training has was asked for, ``cpu``. On a GPU without a
    working torchvision (``balanced`` trains a ResNet), the CPU's choice.

    Args:
        device_kind: ``cpu`` or a GPU kind (``cuda``).
        quick_available: Whether the ``pretrained`` extra is installed; ``None`` looks it up.
        requested: The settings given explicitly, name -> value (see :func:`quick_conflicts`).
        torchvision_usable: Whether torchvision imports; ``None`` looks it up (on a GPU
            only, see :func:`torchvision_problem`).
    """
    if device_kind != "cpu":
        if torchvision_usable is None:
            torchvision_usable = torchvision_problem() is None
        if torchvision_usable:
            return "balanced"
    if quick_conflicts(requested or {}):
        return "cpu"
    if quick_available is None:
        quick_available = quick_preset_available()
    return "quick" if quick_available else "cpu"


def explicit_settings(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The one rule for settings given on top of others (a preset, a parent run's).

    ``None`` means "not given". A time budget (``minutes``) given without ``epochs`` also
    clears the epoch count it would otherwise inherit (``epochs: None``).
    """
    explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "minutes" in explicit and "epochs" not in explicit:
        explicit["epochs"] = None
    return explicit


def resolve_train_config(
    clusters: int, preset: str, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Combine a preset with explicit overrides (``None`` values are ignored).

    A time budget (``minutes``) given explicitly replaces the preset's epoch count unless
    epochs were given explicitly too. With the MemoryBank framework and no explicit
    ``lambda_fc``, lambda_FC is lowered so that lambda_FC x lr <= 0.01
    (:data:`MEMORYBANK_LAMBDA_FC_LR`; e.g. 0.1 at lr 0.1).

    Raises:
        InvalidSettingError: unknown preset, an invalid resulting setting, or a ResNet
            without a working torchvision (:func:`torchvision_problem`).
    """
    settings: dict[str, Any] = dict(get_preset(preset).settings)
    explicit = explicit_settings(overrides)
    settings.update(explicit)
    settings["preset"] = preset
    if (
        settings.get("framework") == "memorybank"
        and "lambda_fc" not in explicit
        and settings.get("optimizer", TrainConfig.optimizer) == "sgd"
    ):
        settings["lambda_fc"] = memorybank_lambda_fc(
            float(settings.get("lambda_fc", TrainConfig.lambda_fc)),
            float(settings.get("lr", TrainConfig.lr)),
        )
    config = TrainConfig(clusters=clusters, **settings)
    check_torchvision(config.backbone)
    if preset == "quick":
        conflicts = quick_conflicts(explicit)
        if conflicts:
            listed = ", ".join(name.replace("_", "-") for name in conflicts)
            raise InvalidSettingError(
                f"the quick preset trains heads on fixed pretrained features and cannot use "
                f"{listed}; choose the cpu (CPU) or balanced (GPU) preset to train on the "
                "pixels with them"
            )
        check_quick_settings(config)
    return config


def check_quick_settings(config: TrainConfig) -> None:
    """Refuse settings that have no meaning for CRLC heads on fixed pretrained features.

    Raises:
        InvalidSettingError: another backbone, a two-stage or stage setting, or the
            MemoryBank framework.
    """
    if config.backbone != QUICK_BACKBONE:
        raise InvalidSettingError(
            f"the quick preset trains on fixed {QUICK_BACKBONE} features, so it cannot use "
            f"the {config.backbone} network; choose the cpu (CPU) or balanced (GPU) preset "
            "to train that network on the pixels"
        )
    if config.stage != "end_to_end":
        raise InvalidSettingError(
            "the quick preset trains heads on fixed pretrained features: it has no stages "
            f"(got stage {config.stage!r}); choose the cpu or balanced preset for two-stage "
            "training"
        )
    if config.framework != "simclr":
        raise InvalidSettingError(
            "the quick preset draws each image's positive from its nearest neighbours: "
            f"the {config.framework!r} framework does not apply; choose the cpu or balanced "
            "preset for it"
        )


def torchvision_presets() -> tuple[str, ...]:
    """The presets that train a ResNet, i.e. need torchvision (``balanced``, ``paper``)."""
    return tuple(
        sorted(
            name
            for name, preset in PRESETS.items()
            if needs_torchvision(str(preset.settings.get("backbone", TrainConfig.backbone)))
        )
    )


def torchvision_message(cause: str) -> str:
    """The plain message for a ResNet without a usable torchvision, ``cause`` saying why."""
    presets = " and ".join(torchvision_presets())
    if getattr(sys, "frozen", False):  # a bundle: nothing can be installed into it
        return (
            f"The {presets} presets and the ResNet networks need torchvision, which this CPU "
            "bundle leaves out. Use the quick or cpu preset, or install the program with pip "
            "(see the README) or a full bundle (packaging/README.md)."
        )
    torch_version = installed_torch_version()
    matching = f"torch {torch_version}" if torch_version else "your torch"
    return (
        f"The {presets} presets and the ResNet networks need torchvision, which is not usable "
        f"here ({cause}). Install the torchvision that matches {matching}: "
        f"{torchvision_install_command(torch_version)}. The quick and cpu presets work "
        "without it."
    )


@functools.cache
def torchvision_problem() -> str | None:
    """``None`` when torchvision imports, else the plain message of :func:`torchvision_message`.

    Imports torchvision (and torch) once; the answer is cached. Catches not only a missing
    torchvision (``ImportError``) but a broken one, e.g. a build for another torch
    (``RuntimeError: operator torchvision::nms does not exist``) or a missing library
    (``OSError``).
    """
    cause = torchvision_import_problem()
    return None if cause is None else torchvision_message(cause)


def check_torchvision(backbone: str) -> None:
    """Refuse a ResNet ``backbone`` when torchvision is not usable.

    Raises:
        InvalidSettingError: ``backbone`` needs torchvision and :func:`torchvision_problem`
            found one.
    """
    if needs_torchvision(backbone):
        problem = torchvision_problem()
        if problem is not None:
            raise InvalidSettingError(problem)
