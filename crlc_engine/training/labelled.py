"""The labelled images of CRLC-semi, checked and turned into allowed-cluster masks.

A refine run's labels come as ``(rows, targets)``: row indices into the run's images [L]
and, per row, either one cluster index (int [L], runs refined before groups existed) or the
clusters of its group (bool [L, C], see :mod:`crlc_engine.losses.group_cross_entropy`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from crlc_engine.core.errors import InvalidSettingError


def labelled_masks(
    labelled: tuple[np.ndarray, np.ndarray], images: int, clusters: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """(rows int64 [L], allowed bool [L, C]) on ``device``, checked.

    Raises:
        InvalidSettingError: rows outside the images, a target that is no cluster, a row
            allowing no cluster.
    """
    rows = torch.as_tensor(np.asarray(labelled[0]), dtype=torch.long)
    targets = np.asarray(labelled[1])
    if targets.ndim == 1:
        if targets.size and (int(targets.max()) >= clusters or int(targets.min()) < 0):
            raise InvalidSettingError("a labelled target is not a cluster index")
        allowed = torch.zeros((len(targets), clusters), dtype=torch.bool)
        allowed[torch.arange(len(targets)), torch.as_tensor(targets, dtype=torch.long)] = True
    else:
        allowed = torch.as_tensor(targets.astype(bool))
        if allowed.shape[1] != clusters or not bool(allowed.any(dim=1).all()):
            raise InvalidSettingError("a labelled target allows no cluster of the head")
    if rows.shape[0] != allowed.shape[0] or int(rows.max()) >= images or int(rows.min()) < 0:
        raise InvalidSettingError("labelled rows/targets do not match the images")
    return rows.to(device), allowed.to(device)


def uses_labelled(labelled: tuple[np.ndarray, np.ndarray] | None, lambda_xent: float) -> bool:
    """Whether a trainer given ``labelled`` images trains CRLC-semi: some labelled rows and a
    cross-entropy weight above 0."""
    return labelled is not None and len(labelled[0]) > 0 and lambda_xent > 0
