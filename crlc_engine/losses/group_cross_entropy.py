"""Cross-entropy of a labelled image against its group, which may span several clusters.

CRLC-semi (paper Sec. 3.3) adds the cross-entropy of the labelled images to the CRLC loss.
Here a label names a *group*, and a group may be several clusters of the head (a merge: one
name on several clusters). Its class probability is the sum of those clusters'
probabilities, so the loss of image i with allowed clusters G_i is

    L = mean_i [ log sum_c exp(u_ic) - log sum_{c in G_i} exp(u_ic) ] = -mean_i log p_i(G_i)

for logits u [N, C]. With one allowed cluster per row it is ``F.cross_entropy``; the
labelled image is not pushed into one cluster of its group rather than another.
"""

from __future__ import annotations

import torch
from torch import Tensor


def group_cross_entropy(logits: Tensor, allowed: Tensor) -> Tensor:
    """Mean of -log(summed probability of each row's allowed clusters).

    Args:
        logits: float [N, C] cluster logits (computed in float32 by the caller).
        allowed: bool [N, C]; every row allows at least one cluster.

    Returns:
        Scalar loss.
    """
    log_all = torch.logsumexp(logits, dim=-1)
    log_group = torch.logsumexp(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    return (log_all - log_group).mean()
