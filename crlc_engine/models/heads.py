"""The two heads of CRLC on top of the backbone features.

- :class:`RepresentationHead` (RL-head): ``Linear(d, d) - ReLU - Linear(d, 128)``, output
  L2-normalised.
- :class:`ClusterHeads` (C-head): H independent sub-heads ``Linear(d, d) - ReLU -
  Linear(d, C)`` evaluated together as batched matrix products; no batch norm (official).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class RepresentationHead(nn.Module):
    """RL-head: features [B, d] -> unit-norm z [B, out_dim]."""

    def __init__(self, in_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim)
        )

    def forward(self, features: Tensor) -> Tensor:
        """Return L2-normalised z [B, out_dim] (normalised in float32)."""
        z: Tensor = self.net(features)
        return F.normalize(z.float(), dim=1)


class ClusterHeads(nn.Module):
    """H clustering sub-heads in one module: features [B, d] -> logits [H, B, C].

    Parameters are stacked per sub-head (``weight1`` [H, d, d], ``weight2`` [H, d, C]) and
    initialised like :class:`torch.nn.Linear` (uniform in +-1/sqrt(fan_in)), independently
    per sub-head. Names starting with ``weight`` get weight decay, ``bias*`` do not.
    """

    def __init__(self, in_dim: int, clusters: int, subheads: int = 10) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.clusters = clusters
        self.subheads = subheads
        self.weight1 = nn.Parameter(torch.empty(subheads, in_dim, in_dim))
        self.bias1 = nn.Parameter(torch.empty(subheads, 1, in_dim))
        self.weight2 = nn.Parameter(torch.empty(subheads, in_dim, clusters))
        self.bias2 = nn.Parameter(torch.empty(subheads, 1, clusters))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(d), 1/sqrt(d)) for every weight and bias, as nn.Linear does."""
        bound = 1.0 / math.sqrt(self.in_dim)
        for p in (self.weight1, self.bias1, self.weight2, self.bias2):
            nn.init.uniform_(p, -bound, bound)

    def forward(self, features: Tensor) -> Tensor:
        """Map features [B, d] to logits [H, B, C]."""
        x = features.unsqueeze(0).expand(self.subheads, -1, -1)
        hidden = F.relu(torch.baddbmm(self.bias1, x, self.weight1))
        return torch.baddbmm(self.bias2, hidden, self.weight2)
