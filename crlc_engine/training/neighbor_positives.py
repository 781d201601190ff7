"""Neighbour positives for two-stage CRLC: the positive of an image is one of its kNN.

Stage 2 of two-stage CRLC (and the ``quick`` preset) replaces "the other augmented view of the
same image" by "a view of a neighbour drawn uniformly from the image's K nearest neighbours"
(FAISS cosine kNN on stage-1 features, see :func:`crlc_engine.core.neighbors.all_pairs_knn`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from crlc_engine.core.errors import InvalidSettingError


def check_neighbor_table(knn: Tensor, num_items: int) -> None:
    """Raise if ``knn`` [N, K] is not a table of row indices into ``num_items`` items.

    Raises:
        InvalidSettingError: wrong shape, K < 1, or an index out of range.
    """
    if knn.dim() != 2 or knn.shape[0] != num_items or knn.shape[1] < 1:
        raise InvalidSettingError(
            f"neighbour table must be [{num_items}, K>=1], got {list(knn.shape)}"
        )
    if knn.numel() and (int(knn.min()) < 0 or int(knn.max()) >= num_items):
        raise InvalidSettingError("neighbour table holds an index outside the data set")


def sample_neighbor_positives(
    knn: Tensor, indices: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Draw one neighbour per anchor, uniformly among its K neighbours.

    Args:
        knn: Neighbour table [N, K] of row indices (int64), on the sampling device; row i
            lists image i's neighbours (the image itself excluded by the caller).
        indices: Anchor rows [B] (int64), on the same device.
        generator: Random generator on that device (no host sync).

    Returns:
        Positive rows [B] (int64): ``knn[indices[b], u_b]`` with ``u_b`` uniform in [0, K).
    """
    k = knn.shape[1]
    column = torch.randint(0, k, (indices.shape[0],), generator=generator, device=knn.device)
    return knn[indices, column]


__all__ = ["check_neighbor_table", "sample_neighbor_positives"]
