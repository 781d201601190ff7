"""CRLC heads as MLPs on fixed backbone features (the ``quick`` mode).

Same structure as :mod:`crlc_engine.models.heads` (RL-head ``Linear - ReLU - Linear`` with an
L2-normalised output; H independent C-sub-heads ``Linear - ReLU - Linear`` evaluated as
batched matrix products; no batch norm) but with a hidden width of its own: the paper's heads
keep the feature width d, which for 1280-d EfficientNet features and 10 sub-heads is 16 M
parameters and many times the CPU time of the 256-wide heads used here (512 until the
heads were measured at 256 without losing accuracy: docs/benchmarks.md).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["FeatureHeads", "FeatureHeadsOutput"]


class FeatureHeadsOutput(NamedTuple):
    """What :meth:`FeatureHeads.forward` returns.

    Attributes:
        z: L2-normalised RL-head output [B, feature_dim] (float32), or ``None`` when not asked.
        logits: C-head logits [H, B, C].
    """

    z: Tensor | None
    logits: Tensor


class FeatureHeads(nn.Module):
    """RL-head + H C-sub-heads on features [B, d].

    Every linear layer is initialised like :class:`torch.nn.Linear` (uniform in
    +-1/sqrt(fan_in)), independently per sub-head. Weight matrices are named ``weight*`` (weight
    decay applies), biases ``bias*``.

    Args:
        in_dim: Feature width d.
        hidden: Hidden width of every head.
        clusters: Clusters C.
        subheads: Sub-heads H.
        feature_dim: Width of the RL-head output z.
    """

    def __init__(
        self, in_dim: int, hidden: int, clusters: int, subheads: int, feature_dim: int = 128
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.hidden = hidden
        self.clusters = clusters
        self.subheads = subheads
        self.feature_dim = feature_dim
        self.rl_head = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, feature_dim)
        )
        self.weight1 = nn.Parameter(torch.empty(subheads, in_dim, hidden))
        self.bias1 = nn.Parameter(torch.empty(subheads, 1, hidden))
        self.weight2 = nn.Parameter(torch.empty(subheads, hidden, clusters))
        self.bias2 = nn.Parameter(torch.empty(subheads, 1, clusters))
        for first, params in (
            (True, (self.weight1, self.bias1)),
            (False, (self.weight2, self.bias2)),
        ):
            bound = 1.0 / math.sqrt(in_dim if first else hidden)
            for p in params:
                nn.init.uniform_(p, -bound, bound)

    def cluster_logits(self, features: Tensor) -> Tensor:
        """C-head logits [H, B, C] of features [B, d]."""
        x = features.unsqueeze(0).expand(self.subheads, -1, -1)
        hidden = F.relu(torch.baddbmm(self.bias1, x, self.weight1))
        return torch.baddbmm(self.bias2, hidden, self.weight2)

    def forward(self, features: Tensor, with_z: bool = True) -> FeatureHeadsOutput:
        """Both heads on features [B, d] (the RL-head only when ``with_z``)."""
        z = F.normalize(self.rl_head(features).float(), dim=1) if with_z else None
        return FeatureHeadsOutput(z, self.cluster_logits(features))
