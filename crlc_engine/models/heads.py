"""The two heads of CRLC on top of the backbone features.

- :class:`RepresentationHead` (RL-head): ``Linear(d, d) - ReLU - Linear(d, 128)``, output
  L2-normalised.
- :class:`ClusterHeads` (C-head): H independent sub-heads ``Linear(d, d) - ReLU -
  Linear(d, C)`` evaluated together as batched matrix products; no batch norm (official).

Two initialisations (:data:`HEAD_INITS`): ``torch``, PyTorch's ``nn.Linear`` default (weights
and biases uniform in +-1/sqrt(fan_in)); ``he_uniform``, the official code's (weights uniform
in +-sqrt(6 / fan_in), i.e. He/Kaiming uniform with gain sqrt 2, biases zero). With
``he_uniform`` every layer's weights are sqrt 6 (about 2.45) times wider, so the C-head's
initial logits are about 6 times larger: the sub-heads start further from the uniform
prediction, the saddle point of L_PC.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from crlc_engine.core.config import HEAD_INITS


def check_head_init(init: str) -> None:
    """Raise ``ValueError`` for an initialisation not in :data:`HEAD_INITS`."""
    if init not in HEAD_INITS:
        raise ValueError(f"unknown head init {init!r}; choose one of {', '.join(HEAD_INITS)}")


def he_uniform_(weight: Tensor, bias: Tensor | None, fan_in: int) -> None:
    """Weights uniform in +-sqrt(6 / fan_in) (He uniform, gain sqrt 2), bias zero, in place.

    ``fan_in`` is given: stacked sub-head weights [H, d_in, d_out] have no standard layout.
    """
    bound = math.sqrt(6.0 / fan_in)
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        if bias is not None:
            bias.zero_()


class RepresentationHead(nn.Module):
    """RL-head: features [B, d] -> unit-norm z [B, out_dim]."""

    def __init__(self, in_dim: int, out_dim: int = 128, init: str = "torch") -> None:
        super().__init__()
        check_head_init(init)
        self.net = nn.Sequential(
            nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim)
        )
        if init == "he_uniform":
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    he_uniform_(layer.weight, layer.bias, layer.in_features)

    def forward(self, features: Tensor) -> Tensor:
        """Return L2-normalised z [B, out_dim] (normalised in float32)."""
        z: Tensor = self.net(features)
        return F.normalize(z.float(), dim=1)


class ClusterHeads(nn.Module):
    """H clustering sub-heads in one module: features [B, d] -> logits [H, B, C].

    Parameters are stacked per sub-head (``weight1`` [H, d, d], ``weight2`` [H, d, C]) and
    initialised independently per sub-head, by ``init`` (see :data:`HEAD_INITS`). Names
    starting with ``weight`` get weight decay, ``bias*`` do not.
    """

    def __init__(self, in_dim: int, clusters: int, subheads: int = 10, init: str = "torch") -> None:
        super().__init__()
        check_head_init(init)
        self.init = init
        self.in_dim = in_dim
        self.clusters = clusters
        self.subheads = subheads
        self.weight1 = nn.Parameter(torch.empty(subheads, in_dim, in_dim))
        self.bias1 = nn.Parameter(torch.empty(subheads, 1, in_dim))
        self.weight2 = nn.Parameter(torch.empty(subheads, in_dim, clusters))
        self.bias2 = nn.Parameter(torch.empty(subheads, 1, clusters))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``torch``: Uniform(-1/sqrt(d), 1/sqrt(d)) for every weight and bias, as nn.Linear
        does; ``he_uniform``: :func:`he_uniform_` for both layers (fan-in d)."""
        if self.init == "he_uniform":
            he_uniform_(self.weight1, self.bias1, self.in_dim)
            he_uniform_(self.weight2, self.bias2, self.in_dim)
            return
        bound = 1.0 / math.sqrt(self.in_dim)
        for p in (self.weight1, self.bias1, self.weight2, self.bias2):
            nn.init.uniform_(p, -bound, bound)

    def forward(self, features: Tensor) -> Tensor:
        """Map features [B, d] to logits [H, B, C]."""
        x = features.unsqueeze(0).expand(self.subheads, -1, -1)
        hidden = F.relu(torch.baddbmm(self.bias1, x, self.weight1))
        return torch.baddbmm(self.bias2, hidden, self.weight2)
