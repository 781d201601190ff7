"""MemoryBank framework of CRLC (paper Sec. 3.1, Eq. 10; the bank of Wu et al., 2018).

Instead of a second augmented view per image (SimCLR framework), the network sees ONE view
per image and every contrastive term compares it with rows of a non-parametric memory bank
that holds an exponential moving average of each image's past outputs:

* a probability bank ``[H, N, C]`` (one ``N x C`` matrix per sub-head), every row
  initialised to the uniform distribution ``1/C`` as in the paper;
* a feature bank ``[N, D]`` for L_FC, initialised to random unit vectors (the
  initialisation of Wu et al.): a row that was never visited is then an uninformative
  negative, where a zero row would give every anchor the same constant logit.

Per step, the positive of anchor ``i`` is a bank row (its own, or a neighbour's in stage 2
of two-stage CRLC) and its negatives are ``M`` distinct bank rows drawn uniformly, shared by
the batch. A negative that is the anchor's own row or its positive's row is left out of
that anchor's denominator (it is not a negative). L_FC and L_PC keep the NT-Xent structure
and the critics of the SimCLR losses; the entropy term and the logit guard are computed on
the one view. After the optimiser step the batch's rows are updated
``q <- alpha q + (1 - alpha) q_new`` (feature rows re-normalised to unit length).

Stability (measured on the CPU with ``benchmarks/memorybank_probe.py``: the three-shape
toy of docs/benchmarks.md, 300 images, cpu preset, tau 0.1, 60 epochs, seeds 0 and 1).
The feature part collapses, every ``z`` at one point and L_FC stuck at ``log(1 + M)``,
when ``lambda_fc * lr >= 0.1``: the paper's 10 x 0.1, also 10 x 0.01 and 1 x 0.1 (at
10 x 0.1 for batch sizes 16-256 and for 1,200 images as well). It learns at 0.01:
``lambda_fc`` 0.1 with lr 0.1 gave L_FC 4.3 against a chance of 5.7 and ACC 99.0 / 95.3,
against 47.7 / 39.0 with ``lambda_fc`` 0 and 40.0 / 38.3 with 10. The code follows the
paper and Wu et al. (one view, own bank row as positive, uniform bank negatives, rows
updated after the step, feature rows re-normalised); the cause is the bank form: only the
anchors receive gradients (bank rows are constants), so the batch-common part of
``dL/dz`` is not cancelled by a reaction on the negatives as in the SimCLR loss. The
first large steps move every ``z`` the same way, the un-normalised RL-head output grows
to a norm of about 3,000 (SimCLR at the same settings: about 400), which scales the
gradient through the L2 normalisation down to nothing, and the bank, an average of those
collapsed outputs, gives no restoring force. Removing the batch mean of ``dL/dz`` (a
diagnostic, not part of the method) prevented the collapse at ``lambda_fc`` 10 (ACC
78.3 / 85.7). A run with a collapsed RL-head can still cluster when the C-head alone
manages (``lambda_fc`` 1: ACC 94.3 / 55.7).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor
from torch.nn import functional as F

from crlc_engine.core.config import LossSettings
from crlc_engine.losses._precision import at_least_float32
from crlc_engine.losses.crlc_loss import CRLCLossOutput, combine_loss_parts
from crlc_engine.losses.logit_guard import logit_guard
from crlc_engine.losses.marginal_entropy import marginal_entropy
from crlc_engine.losses.probability_contrastive import (
    Critic,
    critic_matrix,
    smooth_probabilities,
)

__all__ = [
    "BankSample",
    "MemoryBank",
    "bank_feature_loss",
    "bank_nt_xent",
    "bank_probability_loss",
    "excluded_negatives",
    "memory_bank_crlc_loss",
    "momentum_update",
    "sample_feature_loss",
    "sample_negative_rows",
]


def momentum_update(old: Tensor, new: Tensor, momentum: float) -> Tensor:
    """Paper Eq. 10: ``momentum * old + (1 - momentum) * new``.

    Args:
        old: ``[..., X]`` bank rows before the update.
        new: ``[..., X]`` freshly computed rows (same shape).
        momentum: alpha in ``[0, 1]``: 0 replaces the rows, 1 keeps them.

    Returns:
        ``[..., X]`` updated rows (not re-normalised).

    Raises:
        ValueError: ``momentum`` outside ``[0, 1]`` or mismatched shapes.
    """
    if not (math.isfinite(momentum) and 0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if old.shape != new.shape:
        raise ValueError(f"old and new rows differ in shape: {old.shape} vs {new.shape}")
    return momentum * old + (1.0 - momentum) * new.to(old.dtype)


def sample_negative_rows(
    num_items: int, count: int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Draw ``count`` distinct bank rows uniformly (without replacement).

    Args:
        num_items: Rows N in the bank.
        count: M, at most N.
        generator: Random generator on ``device`` (no host sync).
        device: Where the rows are drawn.

    Returns:
        ``[M]`` int64 row indices, distinct, in random order.

    Raises:
        ValueError: ``count`` not in ``[1, N]``.
    """
    if not 1 <= count <= num_items:
        raise ValueError(f"cannot draw {count} distinct rows from {num_items}")
    return torch.randperm(num_items, generator=generator, device=device)[:count]


def excluded_negatives(negatives: Tensor, *rows: Tensor) -> Tensor:
    """Which drawn negatives are not negatives of an anchor.

    Args:
        negatives: ``[M]`` drawn bank rows.
        *rows: ``[B]`` row indices each (e.g. the anchors' own rows, their positives' rows).

    Returns:
        ``[B, M]`` bool, True where ``negatives[m]`` equals one of ``rows[k][b]``.
    """
    if not rows:
        raise ValueError("give at least one [B] row tensor")
    mask = rows[0].unsqueeze(1) == negatives.unsqueeze(0)
    for more in rows[1:]:
        mask = mask | (more.unsqueeze(1) == negatives.unsqueeze(0))
    return mask


def bank_nt_xent(
    positive_logits: Tensor, negative_logits: Tensor, excluded: Tensor | None = None
) -> Tensor:
    """NT-Xent (InfoNCE) of B anchors against one positive and M bank negatives each.

    Per anchor ``b``: ``log(exp(s_pos) + sum_m exp(s_neg[m])) - s_pos`` where the sum skips
    the ``excluded`` negatives (the positive is always in the denominator, as in the SimCLR
    loss). No temperature is applied here.

    Args:
        positive_logits: ``[..., B]`` logit of each anchor with its positive.
        negative_logits: ``[..., B, M]`` logits of each anchor with the drawn negatives.
        excluded: ``[B, M]`` bool (broadcast over leading dims) or ``None``.

    Returns:
        ``[...]`` loss: mean over the B anchors.

    Raises:
        ValueError: On mismatched shapes or an empty batch.
    """
    if negative_logits.dim() < 2 or negative_logits.shape[:-1] != positive_logits.shape:
        raise ValueError(
            f"negative logits must be [..., B, M] matching positive logits [..., B], got "
            f"{tuple(negative_logits.shape)} and {tuple(positive_logits.shape)}"
        )
    if positive_logits.shape[-1] == 0:
        raise ValueError("bank_nt_xent needs a non-empty batch")
    if excluded is not None:
        negative_logits = negative_logits.masked_fill(excluded, -math.inf)
    # log(e^pos + sum_m e^neg_m) without a [..., B, 1 + M] copy.
    denominator = torch.logaddexp(positive_logits, torch.logsumexp(negative_logits, dim=-1))
    return (denominator - positive_logits).mean(dim=-1)


def bank_feature_loss(
    z: Tensor,
    positive: Tensor,
    negatives: Tensor,
    tau: float = 0.1,
    excluded: Tensor | None = None,
) -> Tensor:
    """L_FC against the feature bank: critic ``z . r / tau`` (unit vectors: cosine / tau).

    Args:
        z: ``[B, D]`` L2-normalised features of the anchors' one view (gradient flows).
        positive: ``[B, D]`` bank rows of the positives (treated as constants).
        negatives: ``[M, D]`` drawn bank rows (constants).
        tau: Temperature, > 0.
        excluded: ``[B, M]`` negatives left out per anchor, or ``None``.

    Returns:
        Scalar loss, mean over the B anchors, in at least float32.

    Raises:
        ValueError: On bad shapes or ``tau``.
    """
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a finite number > 0, got {tau}")
    if z.dim() != 2 or positive.shape != z.shape or negatives.dim() != 2:
        raise ValueError(
            f"need z [B, D], positive [B, D], negatives [M, D]; got {tuple(z.shape)}, "
            f"{tuple(positive.shape)}, {tuple(negatives.shape)}"
        )
    anchors = at_least_float32(z)
    pos = positive.detach().to(anchors.dtype)
    neg = negatives.detach().to(anchors.dtype)
    positive_logits = (anchors * pos).sum(dim=-1) / tau  # [B]
    negative_logits = anchors @ neg.transpose(0, 1) / tau  # [B, M]
    return bank_nt_xent(positive_logits, negative_logits, excluded)


def bank_probability_loss(
    p: Tensor,
    positive: Tensor,
    negatives: Tensor,
    critic: Critic = "log_dot",
    gamma: float = 0.01,
    excluded: Tensor | None = None,
) -> Tensor:
    """L_PC against the probability bank, per sub-head, with the SimCLR loss's critics.

    Anchors and bank rows are smoothed with ``gamma`` (the bank stores unsmoothed
    probabilities) and compared with ``critic`` (no temperature).

    With the paper's ``log_dot`` critic, ``exp(f(p, q)) = p . q``, so the denominator is
    ``p . (q_pos + sum of the kept negatives)``: computed that way it needs ``[H, B, C]``
    memory instead of ``[H, B, M]`` (the same value up to rounding).

    Args:
        p: ``[H, B, C]`` (or ``[B, C]``) softmax probabilities of the anchors' one view.
        positive: Same shape: bank rows of the positives (constants).
        negatives: ``[H, M, C]`` (or ``[M, C]``) drawn bank rows (constants).
        critic: One of ``crlc_engine.losses.CRITICS``.
        gamma: Smoothing coefficient in ``[0, 1]``.
        excluded: ``[B, M]`` negatives left out per anchor, or ``None``.

    Returns:
        ``[H]`` (or scalar) loss, mean over the B anchors, in at least float32.

    Raises:
        ValueError: On bad shapes, critic or gamma.
    """
    if p.dim() < 2 or positive.shape != p.shape or negatives.dim() != p.dim():
        raise ValueError(
            f"need p [..., B, C], positive like p, negatives [..., M, C]; got "
            f"{tuple(p.shape)}, {tuple(positive.shape)}, {tuple(negatives.shape)}"
        )
    anchors = smooth_probabilities(p, gamma)
    pos = smooth_probabilities(positive.detach(), gamma).to(anchors.dtype)
    neg = smooth_probabilities(negatives.detach(), gamma).to(anchors.dtype)
    if critic == "log_dot":
        return _log_dot_bank_loss(anchors, pos, neg, excluded)
    positive_logits = critic_matrix(anchors.unsqueeze(-2), pos.unsqueeze(-2), critic)
    negative_logits = critic_matrix(anchors, neg, critic)  # [..., B, M]
    return bank_nt_xent(positive_logits[..., 0, 0], negative_logits, excluded)


def _log_dot_bank_loss(
    anchors: Tensor, positive: Tensor, negatives: Tensor, excluded: Tensor | None
) -> Tensor:
    """``mean_b [log(p.q_pos + sum_kept p.q_m) - log(p.q_pos)]`` in ``O(H B C)`` memory.

    Args:
        anchors: ``[..., B, C]`` smoothed anchor probabilities.
        positive: ``[..., B, C]`` smoothed positive rows.
        negatives: ``[..., M, C]`` smoothed negative rows.
        excluded: ``[B, M]`` negatives left out per anchor, or ``None``.

    Returns:
        ``[...]`` loss.
    """
    positive_dot = (anchors * positive).sum(dim=-1)  # [..., B]
    kept = negatives.sum(dim=-2, keepdim=True)  # [..., 1, C]
    if excluded is not None:
        kept = kept - excluded.to(negatives.dtype) @ negatives  # [..., B, C]
    denominator = positive_dot + (anchors * kept).sum(dim=-1)
    return (torch.log(denominator) - torch.log(positive_dot)).mean(dim=-1)


class BankSample(NamedTuple):
    """The bank rows one step compares its anchors with (all detached).

    Attributes:
        feature_positive: ``[B, D]`` feature rows of the positives.
        feature_negative: ``[M, D]`` feature rows of the negatives.
        probability_positive: ``[H, B, C]`` probability rows of the positives.
        probability_negative: ``[H, M, C]`` probability rows of the negatives.
        excluded: ``[B, M]`` bool, negatives left out of an anchor's denominator.
    """

    feature_positive: Tensor
    feature_negative: Tensor
    probability_positive: Tensor
    probability_negative: Tensor
    excluded: Tensor


def memory_bank_crlc_loss(
    z: Tensor | None,
    logits: Tensor,
    sample: BankSample,
    config: LossSettings,
) -> CRLCLossOutput:
    """The CRLC objective in the MemoryBank framework, for one view of B images.

    ``total = lambda_fc * L_FC + mean_h L_cluster,h`` with
    ``L_cluster,h = L_PC,h - lambda_ent * H_h + guard_weight * G_h``; L_FC and L_PC as in
    :func:`bank_feature_loss` / :func:`bank_probability_loss`, ``H_h`` the marginal entropy
    of the unsmoothed probabilities of the view and ``G_h`` its logit guard.

    Args:
        z: ``[B, D]`` L2-normalised RL-head output, or ``None`` when ``lambda_fc == 0``.
        logits: ``[H, B, C]`` raw C-head logits.
        sample: Bank rows from :meth:`MemoryBank.sample`.
        config: Loss hyper-parameters.

    Returns:
        CRLCLossOutput (``feature`` scalar, the other parts ``[H]``).

    Raises:
        ValueError: ``z`` missing while ``lambda_fc > 0``, or bad shapes.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [H, B, C], got {tuple(logits.shape)}")
    u = at_least_float32(logits)
    p = torch.softmax(u, dim=-1)
    pc = bank_probability_loss(
        p,
        sample.probability_positive,
        sample.probability_negative,
        critic=cast(Critic, config.critic),
        gamma=config.gamma,
        excluded=sample.excluded,
    )
    entropy = marginal_entropy(p).entropy
    guard = logit_guard(u, bound=config.guard_bound)
    feature = None if z is None else sample_feature_loss(z, sample, config.tau)
    return combine_loss_parts(feature, pc, entropy, guard, config)


def sample_feature_loss(z: Tensor, sample: BankSample, tau: float) -> Tensor:
    """L_FC of anchors z [B, D] against a drawn sample's feature positive and negatives
    (:func:`bank_feature_loss` with the sample's rows and exclusions)."""
    return bank_feature_loss(
        z, sample.feature_positive, sample.feature_negative, tau=tau, excluded=sample.excluded
    )


class MemoryBank:
    """Probability bank ``[H, N, C]`` and feature bank ``[N, D]`` on one device.

    Args:
        num_items: N, rows per bank (the images of the run).
        subheads: H.
        clusters: C.
        feature_dim: D.
        device: Where the banks live (the training device).
        seed: Seed of the random unit vectors that initialise the feature bank.

    Attributes:
        probabilities: float32 ``[H, N, C]``, rows start at ``1/C``.
        features: float32 ``[N, D]`` unit rows, start as random unit vectors.
    """

    def __init__(
        self,
        num_items: int,
        subheads: int,
        clusters: int,
        feature_dim: int,
        device: torch.device,
        seed: int = 0,
    ) -> None:
        if num_items < 2:
            raise ValueError(f"a memory bank needs at least 2 rows, got {num_items}")
        self.num_items = num_items
        self.device = device
        self.probabilities = torch.full(
            (subheads, num_items, clusters), 1.0 / clusters, dtype=torch.float32, device=device
        )
        generator = torch.Generator(device=device).manual_seed(seed)
        noise = torch.randn(
            num_items, feature_dim, generator=generator, device=device, dtype=torch.float32
        )
        self.features = F.normalize(noise, dim=1)

    def negatives_per_step(self, requested: int) -> int:
        """M actually used: ``requested`` capped at ``N - 1``."""
        return max(1, min(requested, self.num_items - 1))

    def sample(
        self,
        anchors: Tensor,
        positives: Tensor,
        count: int,
        generator: torch.Generator | None,
    ) -> BankSample:
        """Positive rows and ``count`` uniformly drawn negative rows for a batch.

        Args:
            anchors: ``[B]`` rows of the batch's images.
            positives: ``[B]`` rows of their positives (``anchors`` itself, or neighbours).
            count: Negatives M (capped with :meth:`negatives_per_step`).
            generator: Random generator on the bank's device.

        Returns:
            BankSample (copies, so a later :meth:`update` does not change them).
        """
        negatives = sample_negative_rows(
            self.num_items, self.negatives_per_step(count), generator, self.device
        )
        return BankSample(
            feature_positive=self.features.index_select(0, positives),
            feature_negative=self.features.index_select(0, negatives),
            probability_positive=self.probabilities.index_select(1, positives),
            probability_negative=self.probabilities.index_select(1, negatives),
            excluded=excluded_negatives(negatives, anchors, positives),
        )

    @torch.no_grad()
    def update(
        self,
        rows: Tensor,
        momentum: float,
        probabilities: Tensor | None = None,
        features: Tensor | None = None,
    ) -> None:
        """Paper Eq. 10 for the batch's rows; feature rows are re-normalised.

        Args:
            rows: ``[B]`` distinct row indices (a slice of the epoch's permutation).
            momentum: alpha in ``[0, 1]``.
            probabilities: ``[H, B, C]`` new softmax outputs, or ``None`` (not updated).
            features: ``[B, D]`` new unit features, or ``None`` (not updated).
        """
        if probabilities is not None:
            old = self.probabilities.index_select(1, rows)
            new = momentum_update(old, probabilities.detach().float(), momentum)
            self.probabilities.index_copy_(1, rows, new)
        if features is not None:
            old = self.features.index_select(0, rows)
            new = momentum_update(old, features.detach().float(), momentum)
            self.features.index_copy_(0, rows, F.normalize(new, dim=1))

    def state_dict(self) -> dict[str, Any]:
        """The banks (for checkpoints)."""
        return {"probabilities": self.probabilities, "features": self.features}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore banks saved by :meth:`state_dict`.

        Raises:
            ValueError: The saved banks have other shapes.
        """
        probabilities = state["probabilities"]
        features = state["features"]
        if probabilities.shape != self.probabilities.shape or (
            features.shape != self.features.shape
        ):
            raise ValueError(
                f"saved memory bank is {tuple(probabilities.shape)} / {tuple(features.shape)}, "
                f"expected {tuple(self.probabilities.shape)} / {tuple(self.features.shape)}"
            )
        self.probabilities = probabilities.to(self.device, torch.float32).clone()
        self.features = features.to(self.device, torch.float32).clone()
