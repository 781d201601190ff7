"""Combined CRLC training objective."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from crlc_engine.losses._precision import at_least_float32
from crlc_engine.losses.feature_contrastive import feature_contrastive_loss
from crlc_engine.losses.logit_guard import logit_guard
from crlc_engine.losses.marginal_entropy import marginal_entropy
from crlc_engine.losses.probability_contrastive import (
    CRITICS,
    Critic,
    probability_contrastive_loss,
)

__all__ = ["CRLCLossConfig", "CRLCLossOutput", "crlc_loss"]


@dataclass(frozen=True)
class CRLCLossConfig:
    """Weights and hyper-parameters of the CRLC loss.

    Attributes:
        lambda_fc: Weight of the feature contrastive loss L_FC (>= 0; 10 in paper
            and official code). 0 disables it (C-head-only ablation).
        lambda_ent: Weight of the marginal entropy (>= 0). 2.0 as in the official
            runner; the paper states 1.0, which reproduces much worse.
        tau: Temperature of L_FC (> 0).
        gamma: Probability smoothing for L_PC, in ``[0, 1]``.
        critic: Critic of L_PC, one of ``CRITICS``.
        guard_weight: Weight of the logit guard (>= 0).
        guard_bound: Logit bound of the guard (>= 0).
    """

    lambda_fc: float = 10.0
    lambda_ent: float = 2.0
    tau: float = 0.1
    gamma: float = 0.01
    critic: Critic = "log_dot"
    guard_weight: float = 0.01
    guard_bound: float = 25.0

    def __post_init__(self) -> None:
        """Validate the values.

        Raises:
            ValueError: If any value is out of range or the critic is unknown.
        """
        checks: list[tuple[str, float, bool, str]] = [
            ("lambda_fc", self.lambda_fc, self.lambda_fc >= 0, ">= 0"),
            ("lambda_ent", self.lambda_ent, self.lambda_ent >= 0, ">= 0"),
            ("tau", self.tau, self.tau > 0, "> 0"),
            ("gamma", self.gamma, 0 <= self.gamma <= 1, "in [0, 1]"),
            ("guard_weight", self.guard_weight, self.guard_weight >= 0, ">= 0"),
            ("guard_bound", self.guard_bound, self.guard_bound >= 0, ">= 0"),
        ]
        for name, value, ok, rule in checks:
            if not (math.isfinite(value) and ok):
                raise ValueError(f"CRLCLossConfig.{name} must be finite and {rule}, got {value}")
        if self.critic not in CRITICS:
            raise ValueError(
                f"CRLCLossConfig.critic must be one of {', '.join(CRITICS)}, got {self.critic!r}"
            )


class CRLCLossOutput(NamedTuple):
    """Parts of the CRLC loss.

    Attributes:
        total: Scalar ``lambda_fc * feature + mean_h cluster[h]``; the value to
            back-propagate.
        feature: Scalar L_FC (a 0-d zero tensor when ``lambda_fc == 0`` and no
            features were given).
        cluster: ``[H]`` per sub-head
            ``probability_contrastive - lambda_ent * entropy + guard_weight * guard``.
        probability_contrastive: ``[H]`` L_PC per sub-head.
        entropy: ``[H]`` marginal entropy of the unsmoothed probabilities,
            averaged over the two views.
        guard: ``[H]`` unweighted logit guard, averaged over the two views.
    """

    total: Tensor
    feature: Tensor
    cluster: Tensor
    probability_contrastive: Tensor
    entropy: Tensor
    guard: Tensor


def crlc_loss(
    z_a: Tensor | None,
    z_b: Tensor | None,
    logits_a: Tensor,
    logits_b: Tensor,
    config: CRLCLossConfig = CRLCLossConfig(),
) -> CRLCLossOutput:
    """CRLC objective for one batch of B images seen in two augmented views.

    ``total = lambda_fc * L_FC + mean_h L_cluster,h`` with
    ``L_cluster,h = L_PC,h - lambda_ent * H_h + guard_weight * G_h`` where
    ``H_h`` is the marginal entropy of the (unsmoothed) probabilities and
    ``G_h`` the logit guard, both averaged over the two views. Logits are
    softmaxed and every loss computed in at least float32 (bf16/fp16 inputs
    are cast up; float64 stays float64).

    Args:
        z_a: ``[B, D]`` L2-normalised projection of view a, or ``None`` (only
            allowed when ``config.lambda_fc == 0``).
        z_b: ``[B, D]`` L2-normalised projection of view b, or ``None`` likewise.
        logits_a: ``[H, B, C]`` raw cluster logits of view a (H sub-heads).
        logits_b: ``[H, B, C]`` raw cluster logits of view b.
        config: Loss hyper-parameters.

    Returns:
        CRLCLossOutput with all the parts (see its docstring for shapes).

    Raises:
        ValueError: If the features are missing while ``lambda_fc > 0``, only one
            of them is given, or the shapes do not match.
    """
    if logits_a.dim() != 3 or logits_a.shape != logits_b.shape:
        raise ValueError(
            f"logits_a and logits_b must both be [H, B, C] with equal shapes, got "
            f"{tuple(logits_a.shape)} and {tuple(logits_b.shape)}"
        )
    if (z_a is None) != (z_b is None):
        raise ValueError("z_a and z_b must both be tensors or both be None")
    batch = logits_a.shape[1]

    la = at_least_float32(logits_a)
    lb = at_least_float32(logits_b)
    pa = torch.softmax(la, dim=-1)
    pb = torch.softmax(lb, dim=-1)

    pc = probability_contrastive_loss(pa, pb, critic=config.critic, gamma=config.gamma).loss
    entropy = 0.5 * (marginal_entropy(pa).entropy + marginal_entropy(pb).entropy)
    guard = 0.5 * (
        logit_guard(la, bound=config.guard_bound) + logit_guard(lb, bound=config.guard_bound)
    )
    cluster = pc - config.lambda_ent * entropy + config.guard_weight * guard

    if z_a is None or z_b is None:
        if config.lambda_fc != 0:
            raise ValueError(
                f"z_a/z_b are required when lambda_fc != 0 (got lambda_fc={config.lambda_fc}); "
                "pass lambda_fc=0 for the C-head-only ablation"
            )
        feature = torch.zeros((), dtype=cluster.dtype, device=cluster.device)
        total = cluster.mean()
    else:
        if z_a.dim() != 2 or z_a.shape[0] != batch:
            raise ValueError(
                f"z_a/z_b must be [B, D] with B={batch} (the logits' batch), got {tuple(z_a.shape)}"
            )
        feature = feature_contrastive_loss(z_a, z_b, tau=config.tau).loss
        total = config.lambda_fc * feature + cluster.mean()

    return CRLCLossOutput(
        total=total,
        feature=feature,
        cluster=cluster,
        probability_contrastive=pc,
        entropy=entropy,
        guard=guard,
    )
