"""Optimiser set-up: SGD with weight decay on weight matrices and conv kernels only."""

from __future__ import annotations

from torch import nn, optim


def decay_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split parameters into (decayed, not decayed), as the official CRLC code does.

    A parameter is decayed when its name ends in ``weight...`` and it has >= 2 dimensions
    (linear weights, conv kernels, stacked sub-head weights); biases and norm scales/shifts
    are not.
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
