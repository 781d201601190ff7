"""The one registry of named training presets (read by the CLI and the GUI).

A preset is a partial set of :class:`~crlc_engine.config.TrainConfig` fields. Explicit
user settings override it; fields it does not name take the dataclass defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crlc_engine.config import TrainConfig
from crlc_engine.errors import InvalidSettingError


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
        summary="CPU default: small CNN at 32 px, batch 64, 100 epochs, lambda_FC 1",
        why=(
            "Without a GPU a ResNet is too slow to train from scratch (ResNet-18 with the CIFAR "
            "stem: about 21 images/s on 2 CPU cores). The small 5-layer CNN with a stride-2 "
            "first layer runs about 1,300 images/s there, so a few hundred images group in "
            "under a minute. lambda_FC is 1 instead of 10: with so few steps the clustering "
            "head follows the shapes much sooner (measured on generated shape images: ACC "
            "0.96-0.99 after 150 epochs of 300 images with 1, 0.68 with 10). Expect groups by "
            "coarse shape and layout, not by fine content."
        ),
        settings={
            "backbone": "small",
            "stem": "imagenet",
            "image_size": 32,
            "batch_size": 64,
            "epochs": 100,
            "lambda_fc": 1.0,
            "checkpoint_every": 10,
        },
    ),
    "quick": Preset(
        name="quick",
        summary="CPU in minutes: CRLC heads on pretrained EfficientNet-Lite0 features, 224 px",
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
            "lambda_fc": 1.0,
            "lambda_ent": 2.0,
            "neighbors": 20,
            "subheads": 10,
            "checkpoint_every": 10,
        },
    ),
}


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


def default_preset_name(device_kind: str) -> str:
    """The preset used without ``--preset``: ``cpu`` on a CPU, ``balanced`` on a GPU."""
    return "cpu" if device_kind == "cpu" else "balanced"


def resolve_train_config(
    clusters: int, preset: str, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Combine a preset with explicit overrides (``None`` values are ignored).

    A time budget (``minutes``) given explicitly replaces the preset's epoch count unless
    epochs were given explicitly too.

    Raises:
        InvalidSettingError: unknown preset or an invalid resulting setting.
    """
    settings: dict[str, Any] = dict(get_preset(preset).settings)
    explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "minutes" in explicit and "epochs" not in explicit:
        settings["epochs"] = None
    settings.update(explicit)
    settings["preset"] = preset
    return TrainConfig(clusters=clusters, **settings)
