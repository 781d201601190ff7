"""Adam for the quick preset's heads, without ``torch.optim``'s import of TorchDynamo.

Building any ``torch.optim`` optimiser imports ``torch._dynamo`` (its ``add_param_group`` is
wrapped to keep the compiler out), and with it SymPy and some 900 modules: about 150 MB of
resident memory that a run of heads on cached features uses for nothing else (measured with
torch 2.14 on the CPU). :class:`HeadsAdam` is the same update as ``torch.optim.Adam`` with
L2 weight decay (``amsgrad``, ``maximize`` and decoupled decay off), on the two parameter
groups of :func:`crlc_engine.training.optim.decay_split`, done with ``torch._foreach_*``
kernels. Its ``state_dict`` has ``torch.optim.Adam``'s layout, so checkpoints written with
either load in the other.

Per parameter ``p`` with gradient ``g`` at step ``t`` (``lr``, betas ``b1``, ``b2``, ``eps``,
weight decay ``wd`` of its group)::

    g <- g + wd * p
    m <- m + (1 - b1) * (g - m)          # lerp, as torch does
    v <- b2 * v + (1 - b2) * g * g
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from crlc_engine.core.errors import CheckpointError
from crlc_engine.training.optim import decay_split

__all__ = ["HeadsAdam"]

_BETAS = (0.9, 0.999)
_EPS = 1e-8
#: The flags ``torch.optim.Adam`` keeps in every group (what its ``load_state_dict`` expects).
_TORCH_FLAGS: dict[str, Any] = {
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": None,
    "decoupled_weight_decay": False,
}


class HeadsAdam:
    """Adam over a module's trainable parameters, weight decay on weights only.

    Args:
        model: The module (its parameters that require gradients train).
        lr: Learning rate (the loop sets each group's ``"lr"`` before every step).
        weight_decay: L2 weight decay of group 0 (weight matrices); group 1 has none.
    """

    def __init__(self, model: nn.Module, lr: float, weight_decay: float) -> None:
        decay, no_decay = decay_split(model)
        self.param_groups: list[dict[str, Any]] = [
            self._group(decay, lr, weight_decay),
            self._group(no_decay, lr, 0.0),
        ]
        self.state: dict[Tensor, dict[str, Tensor]] = {}

    @staticmethod
    def _group(params: list[nn.Parameter], lr: float, weight_decay: float) -> dict[str, Any]:
        return {
            "params": params,
            "lr": lr,
            "betas": _BETAS,
            "eps": _EPS,
            "weight_decay": weight_decay,
            **_TORCH_FLAGS,
        }

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for p in self._params():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    def _state_of(self, p: Tensor) -> dict[str, Tensor]:
        state = self.state.get(p)
        if state is None:
            state = {
                "step": torch.zeros((), dtype=torch.float32),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
            self.state[p] = state
        return state

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            states = [self._state_of(p) for p in params]
            beta1, beta2 = group["betas"]
            if group["weight_decay"] != 0:
                grads = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            for p, state, exp_avg, exp_avg_sq in zip(
                params, states, exp_avgs, exp_avg_sqs, strict=True
            ):
                state["step"] += 1
                t = float(state["step"])
                step_size = group["lr"] / (1 - beta1**t)
                denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(group["eps"])
                p.addcdiv_(exp_avg, denom, value=-step_size)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam``'s layout: per-parameter state by position, groups with the
        positions of their parameters."""
        index = {id(p): k for k, p in enumerate(self._params())}
        groups = [
            {
                **{k: v for k, v in g.items() if k != "params"},
                "params": [index[id(p)] for p in g["params"]],
            }
            for g in self.param_groups
        ]
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Take a state written by :meth:`state_dict` or by ``torch.optim.Adam``.

        Raises:
            CheckpointError: the groups do not match this optimiser's parameters.
        """
        groups = saved.get("param_groups", [])
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise CheckpointError("the optimiser state is for other parameters")
        self.state = {}
        for group, stored in zip(self.param_groups, groups, strict=True):
            group.update({k: v for k, v in stored.items() if k != "params"})
            for position, p in zip(stored["params"], group["params"], strict=True):
                entry = saved["state"].get(position)
                if entry is None:
                    continue
                if entry["exp_avg"].shape != p.shape:
                    raise CheckpointError("the optimiser state is for other parameters")
                self.state[p] = {
                    "step": torch.as_tensor(entry["step"], dtype=torch.float32).clone(),
                    "exp_avg": entry["exp_avg"].to(p.device, p.dtype).clone(),
                    "exp_avg_sq": entry["exp_avg_sq"].to(p.device, p.dtype).clone(),
                }
