"""CRLCModel: backbone + RL-head + C-head."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from crlc_engine.core.config import TrainConfig
from crlc_engine.models.backbones import build_backbone
from crlc_engine.models.heads import ClusterHeads, RepresentationHead


class CRLCOutput(NamedTuple):
    """What :meth:`CRLCModel.forward` returns.

    Attributes:
        features: Backbone features [B, d].
        z: L2-normalised RL-head output [B, feature_dim] (float32).
        logits: C-head logits [H, B, C], one slice per sub-head.
    """

    features: Tensor
    z: Tensor
    logits: Tensor


class CRLCModel(nn.Module):
    """The CRLC network of the paper (Fig. 1): a shared backbone and two heads."""

    def __init__(
        self,
        backbone: str,
        stem: str,
        clusters: int,
        subheads: int = 10,
        feature_dim: int = 128,
        pretrained: bool = False,
        head_init: str = "torch",
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, stem, pretrained=pretrained)
        d = self.backbone.feature_dim
        self.rl_head = RepresentationHead(d, feature_dim, init=head_init)
        self.c_head = ClusterHeads(d, clusters, subheads, init=head_init)

    @classmethod
    def for_settings(cls, config: TrainConfig, pretrained: bool = False) -> CRLCModel:
        """The network a run with ``config`` trains (``pretrained``: ImageNet weights)."""
        return cls(
            config.backbone,
            config.resolved_stem(),
            config.clusters,
            config.subheads,
            config.feature_dim,
            pretrained=pretrained,
            head_init=config.head_init,
        )

    def forward(self, images: Tensor) -> CRLCOutput:
        """Run images [B, 3, S, S] through the backbone and both heads."""
        features = self.backbone(images)
        return CRLCOutput(features, self.rl_head(features), self.c_head(features))
