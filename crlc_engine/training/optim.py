"""Optimiser set-up: SGD or Adam, weight decay on weight matrices and conv kernels only."""

from __future__ import annotations

from torch import nn, optim

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import InvalidSettingError


def decay_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split parameters into (decayed, not decayed), as the official CRLC code does.

    A parameter is decayed when its name ends in ``weight...`` and it has >= 2 dimensions
    (linear weights, conv kernels, stacked sub-head weights); biases and norm scales/shifts
    are not. Parameters that do not require gradients (a frozen backbone) are left out.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        (decay if leaf.startswith("weight") and param.ndim >= 2 else no_decay).append(param)
    return decay, no_decay


def make_sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> optim.SGD:
    """SGD (no Nesterov) with the weight-decay split of :func:`decay_split`."""
    decay, no_decay = decay_split(model)
    return optim.SGD(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=momentum,
        nesterov=False,
    )


def make_adam(model: nn.Module, lr: float, weight_decay: float, fused: bool = False) -> optim.Adam:
    """Adam (betas 0.9, 0.999) with L2 weight decay on the :func:`decay_split` weights.

    This is L2-in-Adam (``torch.optim.Adam``'s ``weight_decay``: ``wd x w`` is added to the
    gradient before the moment estimates), not AdamW's decoupled decay. The paper's stage 2
    says "Adam ... weight decay = 1e-4" and follows SCAN, whose code uses ``torch.optim.Adam``
    with ``weight_decay=1e-4``. AdamW with the same numbers would shrink each weight by
    ``lr x wd = 1e-8`` per step (no decay in practice): a different method, not the paper's.
    ``fused``: one fused kernel per parameter group (the same update, rounded differently).
    """
    decay, no_decay = decay_split(model)
    return optim.Adam(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        fused=fused or None,
    )


def make_optimizer(model: nn.Module, config: TrainConfig) -> optim.Optimizer:
    """The optimiser ``config.optimizer`` names, over the parameters of ``model`` that train.

    Two param groups: 0 = weight matrices and conv kernels (``config.weight_decay``), 1 = the
    rest (no decay). ``sgd`` uses ``config.momentum`` (no Nesterov); ``adam`` ignores it.

    Raises:
        InvalidSettingError: an optimiser name this function does not know.
    """
    if config.optimizer == "sgd":
        return make_sgd(model, config.lr, config.momentum, config.weight_decay)
    if config.optimizer == "adam":
        return make_adam(model, config.lr, config.weight_decay)
    raise InvalidSettingError(f"unknown optimizer {config.optimizer!r}; choose sgd or adam")


__all__ = ["decay_split", "make_adam", "make_optimizer", "make_sgd"]
