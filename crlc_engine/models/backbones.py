"""Backbone registry: image batch [B, 3, S, S] -> pooled features [B, d].

Backbones are torchvision ResNets (randomly initialised) with a choice of stem, and a small
CNN for quick CPU runs and tests. Register new ones in :data:`BACKBONES`.

torchvision is imported only when a ResNet is built: the quick preset (EfficientNet-Lite0,
defined here) and the small CNN run without it, and a ResNet without a working torchvision
is an :class:`~crlc_engine.core.errors.InvalidSettingError` saying what to install
(:func:`crlc_engine.pipeline.presets.torchvision_problem`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.models.optional_deps import check_resnet_available

if TYPE_CHECKING:
    from torchvision.models import ResNet


class Backbone(nn.Module):
    """A feature extractor with a known output width.

    Attributes:
        feature_dim: Width d of the pooled features.
        input_normalization: ``(mean, std)`` per RGB channel (inputs in [0, 1]) that pretrained
            weights expect, or ``None`` when the caller picks (e.g. the data set's own).
    """

    feature_dim: int
    input_normalization: tuple[tuple[float, float, float], tuple[float, float, float]] | None

    def __init__(
        self,
        body: nn.Module,
        feature_dim: int,
        input_normalization: (
            tuple[tuple[float, float, float], tuple[float, float, float]] | None
        ) = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.input_normalization = input_normalization

    def forward(self, images: Tensor) -> Tensor:
        """Map images [B, 3, S, S] to features [B, d]."""
        out: Tensor = self.body(images)
        return out.flatten(1)


#: Per-channel mean and std that torchvision's ImageNet weights expect (inputs in [0, 1]).
IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def resnet_factory(arch: str) -> Callable[..., ResNet]:
    """torchvision's builder of ``arch`` (``resnet18``, ``resnet34``, ``resnet50``), imported
    now.

    Raises:
        InvalidSettingError: torchvision is missing or broken (the message says what to
            install).
    """
    check_resnet_available(arch)
    from torchvision import models as tv_models

    factory: Callable[..., ResNet] = getattr(tv_models, arch)
    return factory


def _resnet(arch: str, stem: str, pretrained: bool = False) -> Backbone:
    """A torchvision ResNet without its classifier; ``pretrained`` loads ImageNet weights.

    The weights file is the whole classifier, loaded strictly before the CIFAR stem (which
    replaces the pretrained 7x7 first convolution by a fresh 3x3 one) and before the
    classifier is dropped.

    Raises:
        InvalidSettingError: torchvision is missing or broken.
    """
    net = resnet_factory(arch)(weights=None)
    if pretrained:
        from crlc_engine.models.weights import load_resnet_state_dict

        net.load_state_dict(load_resnet_state_dict(arch), strict=True)
    if stem == "cifar":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return Backbone(net, feature_dim, IMAGENET_NORMALIZATION if pretrained else None)


def _conv_bn(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _small(stem: str, pretrained: bool = False) -> Backbone:
    """A 5-layer CNN (about 1.2 M parameters) for CPU runs; ``stem`` picks the first stride.

    Raises:
        InvalidSettingError: ``pretrained`` (there are no ImageNet weights for it).
    """
    if pretrained:
        raise InvalidSettingError(
            "the small network has no pretrained weights; use efficientnet_lite0, resnet18 or "
            "resnet50 with pretrained weights, or train it from scratch"
        )
    first_stride = 1 if stem == "cifar" else 2
    layers = [
        *_conv_bn(3, 32, first_stride),
        *_conv_bn(32, 64, 2),
        *_conv_bn(64, 128, 2),
        *_conv_bn(128, 128, 1),
        *_conv_bn(128, 256, 2),
        nn.AdaptiveAvgPool2d(1),
    ]
    return Backbone(nn.Sequential(*layers), 256)


def _efficientnet_lite0(stem: str, pretrained: bool = True) -> Backbone:
    """EfficientNet-Lite0, always with its ImageNet weights (``stem`` and ``pretrained`` are
    ignored: it only makes sense pretrained, with its own stem)."""
    from crlc_engine.models.efficientnet_lite import (
        LITE0_FEATURE_DIM,
        LITE0_NORMALIZATION,
        efficientnet_lite0,
    )

    net = efficientnet_lite0(pretrained=True)
    net.drop_classifier()
    return Backbone(net, LITE0_FEATURE_DIM, LITE0_NORMALIZATION)


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it and what it is."""

    name: str
    build: Callable[[str, bool], Backbone]
    description: str


BACKBONES: dict[str, BackboneSpec] = {
    "small": BackboneSpec("small", _small, "small 5-layer CNN, 256-d features (fast on CPU)"),
    "resnet18": BackboneSpec(
        "resnet18",
        lambda stem, pretrained: _resnet("resnet18", stem, pretrained),
        "ResNet-18, 512-d",
    ),
    "resnet34": BackboneSpec(
        "resnet34",
        lambda stem, pretrained: _resnet("resnet34", stem, pretrained),
        "ResNet-34, 512-d",
    ),
    "resnet50": BackboneSpec(
        "resnet50",
        lambda stem, pretrained: _resnet("resnet50", stem, pretrained),
        "ResNet-50, 2048-d",
    ),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0",
        _efficientnet_lite0,
        "EfficientNet-Lite0 with ImageNet weights (the 'pretrained' extra), 1280-d",
    ),
}


def build_backbone(name: str, stem: str, pretrained: bool = False) -> Backbone:
    """Build a registered backbone with the given stem (``cifar`` or ``imagenet``).

    ``pretrained`` asks for ImageNet weights (see :mod:`crlc_engine.models.pretrained`).

    Raises:
        InvalidSettingError: unknown backbone or stem, or a ResNet without a working
            torchvision.
    """
    if stem not in ("cifar", "imagenet"):
        raise InvalidSettingError(f"stem must be cifar or imagenet here (got {stem!r})")
    try:
        spec = BACKBONES[name]
    except KeyError:
        raise InvalidSettingError(
            f"unknown backbone {name!r}; choose one of {', '.join(sorted(BACKBONES))}"
        ) from None
    return spec.build(stem, pretrained)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneSpec",
    "build_backbone",
    "count_parameters",
    "resnet_factory",
]
