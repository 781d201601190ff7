"""One rank of the two-process data-parallel check in ``test_distributed.py``, and the network,
data and single-process reference that check shares with it.

Run by the test as ``python distributed_worker.py RESULT_FILE`` with torchrun's variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) set; it writes
what it measured to ``RESULT_FILE`` (``torch.save``). Everything is float64 on the CPU.
"""

from __future__ import annotations

import copy
import datetime
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from crlc_engine.core.config import LossSettings
from crlc_engine.losses import crlc_loss
from crlc_engine.models.heads import ClusterHeads
from crlc_engine.training.distributed import (
    DistributedContext,
    barrier,
    broadcast_object,
    gather_with_grad,
    process_group,
    shard_of,
    unwrap,
    wrap_ddp,
)
from crlc_engine.training.synced_batch_norm import convert_batch_norms

GLOBAL_BATCH = 8
STEPS = 3
LEARNING_RATE = 1e-4
#: A tight guard bound, so the logit guard's gradient takes part too.
LOSS_SETTINGS = LossSettings(guard_bound=0.2, guard_weight=1.0)


class TinyCRLC(nn.Module):
    """A small stand-in for CRLCModel: conv + BatchNorm2d backbone, an RL-head with a
    BatchNorm1d (normalised in its own dtype), and the real C-head. forward: views
    [V, 3, 8, 8] -> (z [V, 4], logits [2, V, 3])."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1, bias=False),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(8, momentum=None),  # the cumulative average as well
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.rl_head = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4))
        self.c_head = ClusterHeads(8, clusters=3, subheads=2)

    def forward(self, views: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone(views)
        return F.normalize(self.rl_head(features), dim=1), self.c_head(features)


def build_network() -> TinyCRLC:
    """The network every process starts from (seeded, float64)."""
    torch.manual_seed(0)
    return TinyCRLC().double()


def prepared_views() -> tuple[Tensor, Tensor]:
    """Two fixed views [GLOBAL_BATCH, 3, 8, 8] of the global batch (no augmentation)."""
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=generator, dtype=torch.float64)
    noise = torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=generator, dtype=torch.float64)
    return base + 0.5, 0.8 * base + 0.3 * noise - 0.2


#: Batch norms checked alone, each with an input [N, C, ...] that the two ranks split unevenly
#: at ``cut`` rows: (layer, input shape, cut).
NORM_CASES: list[tuple[nn.Module, tuple[int, ...], int]] = [
    (nn.BatchNorm1d(3, affine=False, momentum=0.3), (7, 3, 5), 3),
    (nn.BatchNorm2d(4, eps=1e-3, momentum=None), (5, 4, 2, 3), 2),
    (nn.BatchNorm1d(2), (3, 2), 1),
]


def norm_case(case: int, rows: slice, synced: bool) -> dict[str, Tensor]:
    """Two training calls of NORM_CASES[case] on ``rows`` of its input, with the partial loss
    ``sum(out * c)`` of those rows (the ranks' partial losses add up to the whole batch's):
    the second call's output and input gradient, the parameter gradients summed over the
    ranks, and the buffers."""
    layer, shape, _ = NORM_CASES[case]
    norm = copy.deepcopy(layer).double()
    if synced:
        norm = convert_batch_norms(norm)
    generator = torch.Generator().manual_seed(10 + case)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 3 + 5
    c = torch.randn(shape, generator=generator, dtype=torch.float64)
    for step in range(2):
        norm.zero_grad(set_to_none=True)
        xi = (x * (1 + step))[rows].requires_grad_(True)
        out = norm(xi)
        (out * c[rows]).sum().backward()
    assert xi.grad is not None
    found = {"out": out.detach(), "x_grad": xi.grad}
    for name, parameter in norm.named_parameters():
        assert parameter.grad is not None
        if synced:
            dist.all_reduce(parameter.grad)
        found[name] = parameter.grad
    return found | {name: b.clone() for name, b in norm.named_buffers()}


def _loss(z: Tensor, logits: Tensor, batch: int) -> Tensor:
    """The CRLC loss of outputs of [view a; view b] (``batch`` rows each)."""
    return crlc_loss(
        z[:batch], z[batch:], logits[:, :batch], logits[:, batch:], LOSS_SETTINGS
    ).total


def _gathered_loss(z: Tensor, logits: Tensor, batch: int) -> Tensor:
    """The CRLC loss of the global batch from this rank's outputs (``batch`` rows per view),
    each view gathered on its own."""
    return crlc_loss(
        gather_with_grad(z[:batch], 0),
        gather_with_grad(z[batch:], 0),
        gather_with_grad(logits[:, :batch], 1),
        gather_with_grad(logits[:, batch:], 1),
        LOSS_SETTINGS,
    ).total


def train(model: nn.Module, views: Tensor, batch: int, gathered: bool) -> dict[str, Any]:
    """STEPS SGD steps on ``views`` [2 * batch, 3, 8, 8]; the losses, every step's gradients
    and the final state dict and eval-mode outputs of the full batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    losses: list[float] = []
    grads: list[dict[str, Tensor]] = []
    for _ in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        z, logits = model(views)
        loss = (_gathered_loss if gathered else _loss)(z, logits, batch)
        loss.backward()  # type: ignore[no-untyped-call]
        losses.append(float(loss.detach()))
        inner = unwrap(model)
        grads.append({n: p.grad.clone() for n, p in inner.named_parameters() if p.grad is not None})
        optimizer.step()
    inner = unwrap(model)
    inner.eval()
    with torch.no_grad():
        z, logits = inner(torch.cat(prepared_views()))
    return {
        "losses": losses,
        "grads": grads,
        "state": {k: v.clone() for k, v in inner.state_dict().items()},
        "eval_z": z,
        "eval_logits": logits,
    }


def reference() -> dict[str, Any]:
    """One process, plain BatchNorm, on the combined batch."""
    return train(build_network(), torch.cat(prepared_views()), GLOBAL_BATCH, gathered=False)


def run_rank(result_file: Path) -> None:
    """This rank's part of the data-parallel run, from torchrun's environment."""
    torch.set_num_threads(1)
    context = DistributedContext.from_environment(device="cpu")
    with process_group(context, timeout=datetime.timedelta(seconds=60)):
        message = broadcast_object({"from": context.rank}, context)
        model = wrap_ddp(convert_batch_norms(build_network()), context)
        rows = shard_of(torch.arange(GLOBAL_BATCH), context.rank, context.world_size)
        view_a, view_b = prepared_views()
        views = torch.cat([view_a[rows], view_b[rows]])
        result = train(model, views, rows.shape[0], gathered=True)
        norms = []
        for case, (_, _, cut) in enumerate(NORM_CASES):
            mine = slice(0, cut) if context.rank == 0 else slice(cut, None)
            norms.append(norm_case(case, mine, synced=True))
        barrier(context)
    result.update(context=context, message=message, ddp=type(model).__name__, norms=norms)
    torch.save(result, result_file)


if __name__ == "__main__":
    run_rank(Path(sys.argv[1]))
