"""CRLC losses: feature / probability contrastive, marginal entropy, logit guard.

Their settings are :class:`crlc_engine.core.config.LossSettings`.
"""

from crlc_engine.losses.crlc_loss import CRLCLossOutput, combine_loss_parts, crlc_loss
from crlc_engine.losses.feature_contrastive import (
    FeatureContrastiveOutput,
    feature_contrastive_loss,
    nt_xent_from_logits,
)
from crlc_engine.losses.logit_guard import logit_guard
from crlc_engine.losses.marginal_entropy import MarginalEntropyOutput, marginal_entropy
from crlc_engine.losses.probability_contrastive import (
    CRITICS,
    Critic,
    ProbabilityContrastiveOutput,
    critic_matrix,
    probability_contrastive_loss,
    smooth_probabilities,
)

__all__ = [
    "CRITICS",
    "CRLCLossOutput",
    "Critic",
    "FeatureContrastiveOutput",
    "MarginalEntropyOutput",
    "ProbabilityContrastiveOutput",
    "combine_loss_parts",
    "critic_matrix",
    "crlc_loss",
    "feature_contrastive_loss",
    "logit_guard",
    "marginal_entropy",
    "nt_xent_from_logits",
    "probability_contrastive_loss",
    "smooth_probabilities",
]
