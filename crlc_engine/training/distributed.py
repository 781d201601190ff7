"""Data-parallel training over several processes (``torchrun``): the process group, the
gather of the contrastive batch and this rank's shard of a global batch.

Layout. ``torchrun`` starts one process (rank) per GPU, on one or more nodes; the global batch
of ``B`` images is cut into ``world_size`` contiguous shards of ``n = B / world_size`` rows
(:func:`shard_of`, the same global order on every rank), and each rank runs the network on the
two views of its own shard. The process group uses NCCL for CUDA devices and gloo otherwise
(so the whole path runs, and is tested, on the CPU).

The loss. CRLC's parts are not sums over rows: the NT-Xent losses take their negatives from
the whole batch and the marginal entropy is taken of the batch's mean prediction. Every rank
therefore gathers the outputs of all ranks in rank order with :func:`gather_with_grad`
(``z_a`` and ``z_b`` [n, D] along dim 0, ``logits_a`` and ``logits_b`` [H, n, C] along dim 1,
each view gathered on its own: gathering the local ``[view a; view b]`` would interleave the
shards) and computes the *same* global loss ``L`` on ``[B, D]`` / ``[H, B, C]``, exactly the
loss one process computes on the combined batch.

Why the loss is not scaled (by ``world_size`` or otherwise). Write ``W`` for the world size
and ``y_r`` for rank ``r``'s outputs. Each rank's backward of ``L`` hands the gather the same
gradient ``dL/dY`` of the gathered outputs ``Y``; the gather's backward all-reduces it (sum)
and keeps this rank's slice, so rank ``r``'s local graph receives ``W * dL/dy_r``: ``W`` times
its share of the true gradient. Everything after that is linear in the incoming gradient, so
the factor ``W`` stays on every path inside the rank: the parameters' gradients are
``W * (dL/dy_r)(dy_r/dtheta)``, and the synced batch norm's cross-rank paths (the gradient of
the global mean and variance, :mod:`~crlc_engine.training.synced_batch_norm`) sum the ranks'
``W``-scaled shares with another all-reduce and so carry ``W`` times the true gradient of the
global statistics back into each rank's input. DDP then *averages* the parameter gradients,
dividing by ``W``: ``(1/W) sum_r W * share_r = dL/dtheta``, the gradient of one process on the
combined batch. Two neighbouring designs need a factor and are not used: a gather whose
backward keeps only this rank's slice of its own gradient (no all-reduce) leaves ``1 * share``
on each rank, and each rank computing only its own rows' part ``L_r`` (with
``sum_r L_r = L``) leaves ``1 * share`` too; both would need ``W * loss``. A term computed on
local rows only as a *mean* over them (e.g. a labelled cross-entropy not gathered) gets
``1 * its own gradient`` and DDP's average turns the ranks' means into the global mean, also
unscaled (equal shards).

Cost of the design: each rank computes the full global loss (the ``[H, 2B, 2B]`` critic
matrix included), duplicated on every rank; the network itself runs only on the shard.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import inspect
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from crlc_engine.core.device import resolve_device
from crlc_engine.core.errors import InvalidSettingError

__all__ = [
    "DistributedContext",
    "barrier",
    "broadcast_object",
    "current_context",
    "gather_with_grad",
    "group_size",
    "main_rank_values",
    "process_group",
    "shard_of",
    "shutdown",
    "start_process_group",
    "unwrap",
    "wrap_ddp",
]

T = TypeVar("T")

#: The variables ``torchrun`` sets for every process (``MASTER_*``: where rank 0 listens).
ENV_NAMES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long a collective waits for the other ranks before it fails.
DEFAULT_TIMEOUT = datetime.timedelta(minutes=10)

#: The context of the process group this process joined (``None``: none joined).
_current: DistributedContext | None = None
#: A gloo group for the small decisions rank 0 takes for every rank (stop, cancel), so that
#: they travel between CPUs without waiting for a GPU (``None``: use the default group).
_control_group: dist.ProcessGroup | None = None


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the processes of one training run.

    Attributes:
        rank: Global index of this process, ``0 <= rank < world_size``.
        world_size: Number of processes (1: a single process, no process group).
        local_rank: Index of this process on its node (its GPU there).
        device: The device this process trains on (``cuda:<local_rank>`` for CUDA).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes checkpoints, records and logs)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process (so a process group is needed)."""
        return self.world_size > 1

    @property
    def backend(self) -> str:
        """``nccl`` for CUDA devices, ``gloo`` otherwise."""
        return "nccl" if self.device.type == "cuda" else "gloo"

    @classmethod
    def from_environment(
        cls, device: str = "auto", environ: Mapping[str, str] | None = None
    ) -> DistributedContext:
        """The context ``torchrun`` describes in the environment (``os.environ`` by default).

        Without ``WORLD_SIZE`` this is a single process (rank 0 of 1, no process group).
        Otherwise ``RANK``, ``LOCAL_RANK`` and (for more than one process) ``MASTER_ADDR``
        and ``MASTER_PORT`` must be set too. ``device`` is a request for
        :func:`~crlc_engine.core.device.resolve_device`; a CUDA device becomes
        ``cuda:<LOCAL_RANK>``.

        Raises:
            InvalidSettingError: A variable is missing or not a valid number, the rank is out
                of range, the node has no GPU of that local rank, or several processes were
                asked to train on MPS (gloo cannot carry MPS tensors).
            DeviceUnavailableError: The requested device is not available.
        """
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return cls(device=resolve_device(device).device)
        world_size = _env_int(env, "WORLD_SIZE")
        rank = _env_int(env, "RANK")
        local_rank = _env_int(env, "LOCAL_RANK")
        if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
            raise InvalidSettingError(
                f"invalid torchrun environment: RANK={rank}, WORLD_SIZE={world_size}, "
                f"LOCAL_RANK={local_rank} (need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0)"
            )
        if world_size > 1:
            missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
            if missing:
                raise InvalidSettingError(
                    f"{' and '.join(missing)} must be set when WORLD_SIZE > 1 (torchrun sets "
                    "them; a launcher of its own must too)"
                )
        resolved = resolve_device(device).device
        return cls(rank, world_size, local_rank, _rank_device(resolved, local_rank, world_size))


def _env_int(env: Mapping[str, str], name: str) -> int:
    """The integer value of ``env[name]``."""
    text = env.get(name)
    if text is None:
        raise InvalidSettingError(f"{name} must be set when WORLD_SIZE is (torchrun sets both)")
    try:
        return int(text)
    except ValueError:
        raise InvalidSettingError(f"{name} must be an integer, got {text!r}") from None


def _rank_device(device: torch.device, local_rank: int, world_size: int) -> torch.device:
    """The device of the process with this local rank: its own GPU for CUDA."""
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise InvalidSettingError(
                f"LOCAL_RANK={local_rank} but this node has {count} CUDA device(s); start at "
                "most one process per GPU (torchrun --nproc-per-node)"
            )
        return torch.device("cuda", local_rank)
    if device.type == "mps" and world_size > 1:
        raise InvalidSettingError("training on several processes needs CUDA or the CPU, not MPS")
    return device


def start_process_group(
    context: DistributedContext, timeout: datetime.timedelta = DEFAULT_TIMEOUT
) -> None:
    """Join the run's default process group (nothing for a single process).

    Rendezvous is ``env://`` (``MASTER_ADDR``/``MASTER_PORT``; under ``torchrun`` its agent's
    store). A CUDA process is bound to its GPU first (NCCL and
    :func:`broadcast_object` use the current device).
    """
    if not context.distributed:
        return
    global _current, _control_group
    if context.device.type == "cuda":
        torch.cuda.set_device(context.device)
    dist.init_process_group(
        backend=context.backend,
        init_method="env://",
        rank=context.rank,
        world_size=context.world_size,
        timeout=timeout,
    )
    if context.backend != "gloo":
        group = dist.new_group(backend="gloo", timeout=timeout)
        _control_group = group if isinstance(group, dist.ProcessGroup) else None
    _current = context


def shutdown(wait_for_others: bool = False) -> None:
    """Leave the default process group, if this process is in one.

    Args:
        wait_for_others: Meet the other ranks at a barrier first, so that no message is in
            flight when the group goes (without it gloo may abort the process at exit). Not
            after an error: the other ranks may be inside a collective then.
    """
    global _current, _control_group
    context = _current
    _current, _control_group = None, None
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()  # DDP wrappers left in reference cycles let go of the group first
    if wait_for_others and context is not None:
        with contextlib.suppress(Exception):  # a rank that failed has left already
            barrier(context)
    dist.destroy_process_group()


def current_context(device: torch.device | None = None) -> DistributedContext:
    """The context of the process group this process joined (:func:`start_process_group`),
    else a single process on ``device`` (CPU by default)."""
    if _current is not None:
        return _current
    return DistributedContext(device=device or torch.device("cpu"))


def main_rank_values(values: list[float], context: DistributedContext) -> list[float]:
    """Rank 0's ``values`` on every rank (what all must follow: stop now, the training
    time), sent between CPUs as float64; ``values`` themselves for a single process. Every
    rank must call it with as many values."""
    if not context.distributed:
        return values
    holder = torch.tensor(values if context.is_main else [0.0] * len(values), dtype=torch.float64)
    dist.broadcast(holder, src=0, group=_control_group)
    return [float(v) for v in holder.tolist()]


@contextlib.contextmanager
def process_group(
    context: DistributedContext, timeout: datetime.timedelta = DEFAULT_TIMEOUT
) -> Iterator[DistributedContext]:
    """``with process_group(context):`` joins the process group and always leaves it."""
    start_process_group(context, timeout)
    try:
        yield context
    except BaseException:
        shutdown()
        raise
    shutdown(wait_for_others=True)


def group_size(group: dist.ProcessGroup | None = None) -> int:
    """The number of processes in ``group`` (default group: ``None``); 1 without one."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def barrier(context: DistributedContext) -> None:
    """Wait until every rank got here (nothing for a single process)."""
    if not context.distributed:
        return
    if context.device.type == "cuda":
        dist.barrier(device_ids=[context.device.index or 0])
    else:
        dist.barrier()


def broadcast_object(value: T, context: DistributedContext) -> T:
    """Rank 0's ``value`` (any picklable object), on every rank; ``value`` itself for a
    single process. Every rank must call it; the other ranks' ``value`` is ignored."""
    if not context.distributed:
        return value
    holder: list[Any] = [value if context.is_main else None]
    device = context.device if context.device.type == "cuda" else None
    dist.broadcast_object_list(holder, src=0, device=device)
    received: T = holder[0]
    return received


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along a dim; backward: the sum of every rank's gradient, this rank's slice."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, dim: int, group: dist.ProcessGroup | None) -> Tensor:
        world = dist.get_world_size(group)
        ctx.dim = dim
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        ctx.size = tensor.shape[dim]
        local = tensor.movedim(dim, 0).contiguous()  # [n, ...]
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local, group=group)
        return torch.cat(parts, dim=0).movedim(0, dim)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        total = grad.movedim(ctx.dim, 0).contiguous()  # a copy: the reduce works in place
        if total.data_ptr() == grad.data_ptr():
            total = total.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        mine = total.narrow(0, ctx.rank * ctx.size, ctx.size)
        return mine.movedim(0, ctx.dim), None, None


def gather_with_grad(
    tensor: Tensor, dim: int = 0, group: dist.ProcessGroup | None = None
) -> Tensor:
    """Every rank's ``tensor`` concatenated along ``dim`` in rank order, differentiably.

    The backward all-reduces (sums) the gradient of the gathered tensor over the ranks and
    returns this rank's slice: the gradient of a loss every rank computes on the gathered
    tensor reaches each rank's own rows (``world_size`` times that loss's gradient when every
    rank computes the same loss; see the module docstring for why that is the right factor).
    Without a process group (or with one process) ``tensor`` is returned as it is.

    Args:
        tensor: This rank's part, e.g. ``z`` [n, D] (``dim=0``) or logits [H, n, C]
            (``dim=1``); the same shape on every rank.
        dim: The dim to concatenate along.
        group: The process group (``None``: the default one).

    Returns:
        ``[..., world_size * n, ...]``: rank 0's rows first, then rank 1's, and so on.
    """
    if group_size(group) == 1:
        return tensor
    dim = dim % tensor.dim()
    gathered: Tensor = _GatherWithGrad.apply(tensor, dim, group)
    return gathered


def shard_of(global_indices: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's contiguous slice of a global batch of row indices.

    Args:
        global_indices: ``[B]`` rows of the global batch (the same on every rank).
        rank: This process's rank, ``0 <= rank < world_size``.
        world_size: The number of processes; must divide ``B``.

    Returns:
        ``[B / world_size]``: rows ``rank * n`` to ``(rank + 1) * n - 1`` of the batch (a view).

    Raises:
        InvalidSettingError: ``B`` not divisible by ``world_size``, or a rank out of range.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise InvalidSettingError(f"rank {rank} is not one of the {world_size} processes")
    if global_indices.dim() != 1:
        raise InvalidSettingError(
            f"the global batch must be a 1-D tensor of rows, got {tuple(global_indices.shape)}"
        )
    batch = global_indices.shape[0]
    if batch % world_size:
        raise InvalidSettingError(
            f"the batch size {batch} must be divisible by the number of processes {world_size}"
        )
    size = batch // world_size
    return global_indices[rank * size : (rank + 1) * size]


def wrap_ddp(
    module: nn.Module, context: DistributedContext, find_unused_parameters: bool = False
) -> nn.Module:
    """``module`` in :class:`DistributedDataParallel` (``device_ids``: its GPU on CUDA, ``None``
    on the CPU); ``module`` itself for a single process.

    Only calls of the wrapper's own ``forward`` synchronise gradients: wrap the module whose
    forward returns everything the loss uses. ``module`` must already be on
    ``context.device``; its parameters and buffers are broadcast from rank 0 here.
    """
    if not context.distributed:
        return module
    device_ids = [context.device] if context.device.type == "cuda" else None
    # Synced batch norm keeps the buffers equal on every rank: no broadcast before each
    # forward (newer PyTorch names that switch forward_sync_buffers).
    no_buffer_sync: dict[str, Any] = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        else {"broadcast_buffers": False}
    )
    return DistributedDataParallel(
        module,
        device_ids=device_ids,
        output_device=device_ids[0] if device_ids else None,
        find_unused_parameters=find_unused_parameters,
        **no_buffer_sync,
    )


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a :class:`DistributedDataParallel` wrapper (whose state dict has
    the plain keys, without ``module.``); any other module as it is."""
    if isinstance(module, DistributedDataParallel):
        inner: nn.Module = module.module
        return inner
    return module
