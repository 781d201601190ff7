"""One training step of the bare network on ready views (:class:`ModelStep`): forward, the
CRLC losses of the SimCLR framework, backward and the optimiser step. The model-only ceiling
and the official-code-style reference both run it; the trainer has its own step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from crlc_engine.core.config import TrainConfig
from crlc_engine.losses import crlc_loss
from crlc_engine.models import CRLCModel
from crlc_engine.training.optim import make_optimizer

#: A function from views [2B, 3, S, S] (the first B the images' view a, the next B view b) to
#: the scalar loss to back-propagate.
Objective = Callable[[Tensor], Tensor]


class ModelStep:
    """The network, optimiser and losses of ``config``, stepped on views given to it.

    Args:
        config: Network, loss and optimiser settings (``make_optimizer``: SGD by default).
        device: Where the network lives.
        channels_last: Keep the network's weights channels-last (the views must match).
        autocast: Run the network (not the losses) under bf16 autocast.
    """

    def __init__(
        self, config: TrainConfig, device: torch.device, channels_last: bool, autocast: bool
    ) -> None:
        torch.manual_seed(config.seed)
        model = CRLCModel.for_settings(config, pretrained=config.pretrained).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        self.model = model
        self.device = device
        self.autocast = autocast
        self.optimizer = make_optimizer(model, config)
        self.loss_settings = config.loss_settings()

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def objective(self, views: Tensor) -> Tensor:
        """The CRLC loss of views [2B, 3, S, S]: each image's two views are rows i and B + i."""
        b = views.shape[0] // 2
        with self._precision():
            out = self.model(views)
        return crlc_loss(
            out.z[:b], out.z[b:], out.logits[:, :b], out.logits[:, b:], self.loss_settings
        ).total

    def step(self, views: Tensor, objective: Objective | None = None) -> None:
        """One optimiser step on ``views``; ``objective`` replaces :meth:`objective` (a
        compiled version of it)."""
        loss = (objective or self.objective)(views)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
