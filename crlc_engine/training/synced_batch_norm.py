"""Batch normalisation with the statistics of the global batch of all ranks, on the CPU (gloo)
and on CUDA (NCCL).

``torch.nn.SyncBatchNorm`` refuses CPU tensors; :class:`SyncedBatchNorm` does the same job
anywhere. In training mode, with a process group of more than one rank, it normalises with the
mean and (biased) variance of the global batch and updates ``running_mean`` and
``running_var`` exactly as ``nn.BatchNorm`` does for that batch (unbiased variance, the same
momentum or cumulative average, ``num_batches_tracked``). In eval mode, and with one process
or no process group, it *is* ``nn.BatchNorm`` (the same call, bit for bit).

Statistics. Each rank computes its count, per-channel mean and sum of squared deviations in
at least float32 and all ranks gather them ([W, 2C + 1], one collective) and combine them
with Chan's parallel formula (no ``E[x^2] - E[x]^2`` cancellation). The backward all-reduces
(sums) ``sum dy`` and ``sum dy * x_hat`` over the ranks ([2C], one collective) and uses the
global sums in the usual batch-norm input gradient; the weight's and bias's gradients are the
rank's own sums, which DDP adds up (averages). Why the result, averaged by DDP, is the
gradient of one process on the combined batch without any loss scaling: see
:mod:`crlc_engine.training.distributed`. Only the input is saved for the backward, as
``nn.BatchNorm`` does.

:func:`convert_batch_norms` swaps every ``nn.BatchNorm1d/2d/3d`` of a module tree for one,
keeping the very parameter and buffer tensors, so the state dict (keys and values) stays
that of the plain network: checkpoints load into either.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from crlc_engine.training.distributed import group_size

__all__ = ["SyncedBatchNorm", "convert_batch_norms"]

#: The layers :func:`convert_batch_norms` replaces (subclasses such as SyncBatchNorm are kept).
_PLAIN_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _channel_view(values: Tensor, dims: int) -> Tensor:
    """Per-channel values [C] shaped to broadcast over an input of ``dims`` dims: [1, C, 1...]."""
    return values.reshape(1, -1, *([1] * (dims - 2)))


def _reduced_dims(x: Tensor) -> list[int]:
    """Every dim of ``x`` [N, C, ...] except the channels."""
    return [0, *range(2, x.dim())]


def _local_moments(x: Tensor, dtype: torch.dtype) -> Tensor:
    """This rank's ``[count, mean (C), sum of squared deviations (C)]``, [2C + 1] in ``dtype``.

    Raises:
        ValueError: ``x`` holds no value per channel (an empty shard).
    """
    channels = x.shape[1]
    count = x.numel() // channels
    if count == 0:
        raise ValueError(f"batch norm got an empty batch on this rank: {tuple(x.shape)}")
    var, mean = torch.var_mean(x.to(dtype), dim=_reduced_dims(x), correction=0)
    head = torch.full((1,), float(count), dtype=dtype, device=x.device)
    return torch.cat([head, mean, var * count])


def _global_moments(
    local: Tensor, group: dist.ProcessGroup | None
) -> tuple[Tensor, Tensor, Tensor]:
    """The global mean [C], biased variance [C] and count (0-d) from every rank's moments
    [2C + 1] (Chan et al.'s pairwise update, all ranks at once). No host sync: the count
    stays on the device (it exceeds 1: every rank has at least one value per channel)."""
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, local, group=group)
    moments = torch.stack(parts)  # [W, 2C + 1]
    channels = (local.shape[0] - 1) // 2
    counts = moments[:, :1]  # [W, 1]
    means = moments[:, 1 : 1 + channels]  # [W, C]
    squares = moments[:, 1 + channels :]  # [W, C]
    total = counts.sum()
    mean = (counts * means).sum(dim=0) / total
    spread = (squares + counts * (means - mean).square()).sum(dim=0)
    return mean, spread / total, total


class _SyncedBatchNormFunction(torch.autograd.Function):
    """The training-mode batch norm over all ranks (see the module docstring)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        running: tuple[Tensor, Tensor] | None,
        factor: float,
        eps: float,
        group: dist.ProcessGroup | None,
    ) -> Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        mean, var, count = _global_moments(_local_moments(x, dtype), group)
        if running is not None:
            running_mean, running_var = running
            unbiased = var * (count / (count - 1))
            running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
            running_var.mul_(1 - factor).add_(unbiased.to(running_var.dtype), alpha=factor)
        invstd = torch.rsqrt(var + eps)
        scale = invstd if weight is None else invstd * weight.to(dtype)
        shift = -mean * scale
        if bias is not None:
            shift = shift + bias.to(dtype)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.count = count
        ctx.group = group
        ctx.bias_dtype = None if bias is None else bias.dtype
        dims = x.dim()
        out = x.to(dtype) * _channel_view(scale, dims) + _channel_view(shift, dims)
        return out.to(x.dtype)

    @staticmethod
    def backward(
        ctx: Any, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None, None, None]:
        x, weight, mean, invstd = ctx.saved_tensors
        dims = x.dim()
        dtype = mean.dtype
        dy = grad.to(dtype)
        x_hat = (x.to(dtype) - _channel_view(mean, dims)) * _channel_view(invstd, dims)
        reduced = _reduced_dims(x)
        sum_dy = dy.sum(dim=reduced)  # [C]
        sum_dy_x_hat = (dy * x_hat).sum(dim=reduced)  # [C]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            sums = torch.cat([sum_dy, sum_dy_x_hat])  # [2C]
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=ctx.group)
            global_dy, global_dy_x_hat = sums.chunk(2)
            scale = invstd if weight is None else invstd * weight.to(dtype)
            centred = dy - _channel_view(global_dy / ctx.count, dims)
            centred = centred - x_hat * _channel_view(global_dy_x_hat / ctx.count, dims)
            grad_x = (centred * _channel_view(scale, dims)).to(x.dtype)
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = sum_dy_x_hat.to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            grad_bias = sum_dy.to(ctx.bias_dtype)
        return grad_x, grad_weight, grad_bias, None, None, None, None


class SyncedBatchNorm(_BatchNorm):
    """``nn.BatchNorm1d/2d/3d`` whose training-mode statistics are those of all ranks.

    Inputs are ``[N, C]`` or ``[N, C, *spatial]`` (up to 3 spatial dims); the statistics run
    over every dim but C. Parameters, buffers and state-dict keys are ``nn.BatchNorm``'s.

    Args:
        num_features: Channels C.
        eps, momentum, affine, track_running_stats: As for ``nn.BatchNorm2d``.
        process_group: The ranks whose batches are normalised together (``None``: the
            default group).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: dist.ProcessGroup | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if not 2 <= input.dim() <= 5:
            raise ValueError(f"expected a 2-D to 5-D input [N, C, ...], got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        """Normalise ``input`` [N, C, ...]; same shape and dtype out."""
        if not self.training or group_size(self.process_group) == 1:
            out: Tensor = super().forward(input)
            return out
        self._check_input_dim(input)
        factor = self._average_factor()
        running = None
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None
            running = (self.running_mean, self.running_var)
        result: Tensor = _SyncedBatchNormFunction.apply(
            input, self.weight, self.bias, running, factor, self.eps, self.process_group
        )
        return result

    def _average_factor(self) -> float:
        """The running statistics' update weight, counting this batch (as ``nn.BatchNorm``)."""
        if not self.track_running_stats or self.num_batches_tracked is None:
            return 0.0 if self.momentum is None else self.momentum
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum


def convert_batch_norms(
    module: nn.Module, process_group: dist.ProcessGroup | None = None
) -> nn.Module:
    """Replace every ``nn.BatchNorm1d/2d/3d`` in ``module``'s tree by a
    :class:`SyncedBatchNorm` that holds the same parameter and buffer tensors (so the state
    dict keeps its keys and values), in place.

    Returns:
        ``module`` (or its replacement when ``module`` is itself a batch norm).
    """
    if type(module) in _PLAIN_BATCH_NORMS:
        assert isinstance(module, _BatchNorm)
        return _synced_copy(module, process_group)
    for name, child in module.named_children():
        replacement = convert_batch_norms(child, process_group)
        if replacement is not child:
            setattr(module, name, replacement)
    return module


def _synced_copy(norm: _BatchNorm, process_group: dist.ProcessGroup | None) -> SyncedBatchNorm:
    """A :class:`SyncedBatchNorm` sharing ``norm``'s parameters, buffers and mode."""
    synced = SyncedBatchNorm(
        norm.num_features,
        norm.eps,
        norm.momentum,
        norm.affine,
        norm.track_running_stats,
        process_group,
        device=torch.device("meta"),
    )
    synced.weight = norm.weight
    synced.bias = norm.bias
    synced.running_mean = norm.running_mean
    synced.running_var = norm.running_var
    synced.num_batches_tracked = norm.num_batches_tracked
    synced.train(norm.training)
    return synced
