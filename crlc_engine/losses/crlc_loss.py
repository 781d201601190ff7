"""Combined CRLC training objective: the parts of one batch and the one place they are
weighted into the total (:func:`combine_loss_parts`, also used by the MemoryBank framework).

The settings are :class:`~crlc_engine.core.config.LossSettings`.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
from torch import Tensor

from crlc_engine.core.config import LossSettings
from crlc_engine.losses._precision import at_least_float32
from crlc_engine.losses.feature_contrastive import feature_contrastive_loss
from crlc_engine.losses.logit_guard import logit_guard
from crlc_engine.losses.marginal_entropy import marginal_entropy
from crlc_engine.losses.probability_contrastive import Critic, probability_contrastive_loss

__all__ = ["CRLCLossOutput", "combine_loss_parts", "crlc_loss"]

#: The paper's loss settings (the default of :func:`crlc_loss`).
DEFAULT_LOSS_SETTINGS = LossSettings()


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


def combine_loss_parts(
    feature: Tensor | None,
    probability_contrastive: Tensor,
    entropy: Tensor,
    guard: Tensor,
    settings: LossSettings,
) -> CRLCLossOutput:
    """Weight the parts of the CRLC loss into its total.

    ``total = lambda_fc * L_FC + mean_h L_cluster,h`` with
    ``L_cluster,h = L_PC,h - lambda_ent * H_h + guard_weight * G_h``.

    Args:
        feature: Scalar L_FC, or ``None`` when no features were given (then
            ``lambda_fc`` must be 0 and ``feature`` is a 0-d zero).
        probability_contrastive: ``[H]`` L_PC per sub-head.
        entropy: ``[H]`` marginal entropy per sub-head.
        guard: ``[H]`` unweighted logit guard per sub-head.
        settings: The loss weights.

    Raises:
        ValueError: ``feature`` missing while ``lambda_fc != 0``.
    """
    cluster = probability_contrastive - settings.lambda_ent * entropy
    cluster = cluster + settings.guard_weight * guard
    if feature is None:
        if settings.lambda_fc != 0:
            raise ValueError(
                f"the features z are required when lambda_fc != 0 (got lambda_fc="
                f"{settings.lambda_fc}); pass lambda_fc=0 for the C-head-only ablation"
            )
        feature = torch.zeros((), dtype=cluster.dtype, device=cluster.device)
        total = cluster.mean()
    else:
        total = settings.lambda_fc * feature + cluster.mean()
    return CRLCLossOutput(
        total=total,
        feature=feature,
        cluster=cluster,
        probability_contrastive=probability_contrastive,
        entropy=entropy,
        guard=guard,
    )


def crlc_loss(
    z_a: Tensor | None,
    z_b: Tensor | None,
    logits_a: Tensor,
    logits_b: Tensor,
    config: LossSettings = DEFAULT_LOSS_SETTINGS,
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

    critic = cast(Critic, config.critic)
    pc = probability_contrastive_loss(pa, pb, critic=critic, gamma=config.gamma).loss
    entropy = 0.5 * (marginal_entropy(pa).entropy + marginal_entropy(pb).entropy)
    guard = 0.5 * (
        logit_guard(la, bound=config.guard_bound) + logit_guard(lb, bound=config.guard_bound)
    )
    feature = None
    if z_a is not None and z_b is not None:
        if z_a.dim() != 2 or z_a.shape[0] != batch:
            raise ValueError(
                f"z_a/z_b must be [B, D] with B={batch} (the logits' batch), got {tuple(z_a.shape)}"
            )
        feature = feature_contrastive_loss(z_a, z_b, tau=config.tau).loss
    return combine_loss_parts(feature, pc, entropy, guard, config)
