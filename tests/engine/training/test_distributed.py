"""Data-parallel building blocks: the synced batch norm against nn.BatchNorm, the converter's
state dict, shard_of, the torchrun environment, and two gloo processes under DDP against one
process on the combined batch (float64, CPU)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.training.distributed import (
    DistributedContext,
    broadcast_object,
    gather_with_grad,
    shard_of,
    unwrap,
    wrap_ddp,
)
from crlc_engine.training.synced_batch_norm import SyncedBatchNorm, convert_batch_norms
from tests.engine.training import distributed_worker
from tests.engine.training.distributed_worker import NORM_CASES, build_network, norm_case
from tests.engine.training.rank_launcher import run_ranks

WORKER = Path(distributed_worker.__file__)
#: Two float64 processes against one: what may differ (measured: at most 3e-14 relative to
#: each tensor's largest magnitude).
RTOL, ATOL = 1e-9, 1e-11


# ------------------------------------------------------------------ synced batch norm, one process
def _run_norm(norm: nn.Module, x: Tensor, steps: int = 3) -> list[Tensor]:
    """Outputs, input grads and parameter grads of ``steps`` training calls, then an eval call."""
    found: list[Tensor] = []
    norm.train()
    for step in range(steps):
        xi = (x * (1 + step)).requires_grad_(True)
        out = norm(xi)
        (out * torch.linspace(-1, 2, out.numel()).reshape(out.shape)).sum().backward()
        assert xi.grad is not None
        found += [out.detach(), xi.grad]
    found += [p.grad for p in norm.parameters() if p.grad is not None]
    norm.eval()
    found.append(norm(x).detach())
    found += [b.clone() for b in norm.buffers()]
    return found


@pytest.mark.parametrize(
    ("plain", "shape"),
    [
        (nn.BatchNorm2d(4), (5, 4, 3, 3)),
        (nn.BatchNorm2d(4, momentum=None, affine=False), (5, 4, 3, 3)),
        (nn.BatchNorm1d(3, eps=1e-3, momentum=0.3), (6, 3)),
        (nn.BatchNorm1d(3), (6, 3, 5)),
    ],
)
def test_synced_batch_norm_is_batch_norm_without_process_group(
    plain: nn.Module, shape: tuple[int, ...]
) -> None:
    synced = convert_batch_norms(copy.deepcopy(plain))
    assert isinstance(synced, SyncedBatchNorm)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    for ours, theirs in zip(_run_norm(synced, x), _run_norm(plain, x), strict=True):
        assert torch.equal(ours, theirs)


def test_converter_keeps_parameters_buffers_and_state_dict() -> None:
    plain = build_network()
    plain.train()
    plain(torch.randn(4, 3, 8, 8, dtype=torch.float64))  # running stats that are not defaults
    before = plain.state_dict()
    parameters = dict(plain.named_parameters())
    converted = convert_batch_norms(copy.deepcopy(plain))
    norms = [m for m in converted.modules() if isinstance(m, SyncedBatchNorm)]
    assert len(norms) == 3
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in converted.modules())
    after = converted.state_dict()
    assert list(after) == list(before)
    assert all(
        torch.equal(after[k], before[k]) and after[k].dtype == before[k].dtype for k in after
    )
    same = convert_batch_norms(plain)  # in place: the very tensors are kept
    assert same is plain
    assert all(p is parameters[n] for n, p in plain.named_parameters())
    fresh = build_network()
    fresh.load_state_dict(after)  # into a plain network ...
    converted.load_state_dict(fresh.state_dict())  # ... and back


def test_gather_and_broadcast_are_identity_for_one_process() -> None:
    x = torch.randn(2, 3, requires_grad=True)
    assert gather_with_grad(x, 1) is x
    context = DistributedContext()
    assert broadcast_object({"a": 1}, context) == {"a": 1}
    module = nn.Linear(2, 2)
    assert wrap_ddp(module, context) is module
    assert unwrap(module) is module


# ------------------------------------------------------------------ shard_of and the environment
def test_shard_of_cuts_contiguous_equal_slices() -> None:
    batch = torch.tensor([9, 4, 7, 1, 0, 5])
    shards = [shard_of(batch, rank, 3) for rank in range(3)]
    assert [s.tolist() for s in shards] == [[9, 4], [7, 1], [0, 5]]
    assert torch.equal(shard_of(batch, 0, 1), batch)
    with pytest.raises(InvalidSettingError, match="divisible"):
        shard_of(batch, 0, 4)
    with pytest.raises(InvalidSettingError):
        shard_of(batch, 2, 2)
    with pytest.raises(InvalidSettingError):
        shard_of(batch.reshape(2, 3), 0, 2)


def test_context_from_environment() -> None:
    single = DistributedContext.from_environment(device="cpu", environ={})
    assert single == DistributedContext()
    assert single.is_main and not single.distributed and single.backend == "gloo"
    env = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29500",
    }
    context = DistributedContext.from_environment(device="cpu", environ=env)
    assert (context.rank, context.world_size, context.local_rank) == (3, 4, 1)
    assert context.device == torch.device("cpu") and context.backend == "gloo"
    assert not context.is_main and context.distributed


def test_context_from_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    context = DistributedContext.from_environment(device="cpu")
    assert context == DistributedContext()  # one process needs no MASTER_*


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"RANK": "4"}, "RANK=4"),
        ({"RANK": "x"}, "integer"),
        ({"LOCAL_RANK": None}, "LOCAL_RANK"),
        ({"MASTER_PORT": None}, "MASTER_PORT"),
        ({"WORLD_SIZE": "0", "RANK": "0"}, "WORLD_SIZE=0"),
    ],
)
def test_context_rejects_a_broken_environment(changes: dict[str, str | None], message: str) -> None:
    env = {
        "RANK": "1",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "h",
        "MASTER_PORT": "1",
    }
    for name, value in changes.items():
        if value is None:
            del env[name]
        else:
            env[name] = value
    with pytest.raises(InvalidSettingError, match=message):
        DistributedContext.from_environment(device="cpu", environ=env)


# ------------------------------------------------------------------ two gloo processes under DDP
def _run_two_ranks(folder: Path) -> list[dict[str, Any]]:
    """Start two worker processes as torchrun would and read what they measured."""
    run_ranks(lambda rank: [str(WORKER), str(folder / f"rank{rank}.pt")], timeout=90)
    return [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


def _largest_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The largest difference of any loss, gradient, state or output of ``a`` from ``b``'s,
    relative to the largest magnitude of that tensor in ``b`` (at least 1)."""
    pairs = [(torch.tensor(a["losses"]), torch.tensor(b["losses"]))]
    for grads_a, grads_b in zip(a["grads"], b["grads"], strict=True):
        pairs += [(grads_a[k], grads_b[k]) for k in grads_b]
    pairs += [(a["state"][k].double(), b["state"][k].double()) for k in b["state"]]
    pairs += [(a["eval_z"], b["eval_z"]), (a["eval_logits"], b["eval_logits"])]
    return max(float((x - y).abs().max() / y.abs().max().clamp_min(1)) for x, y in pairs)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The two workers' results, run once for the tests that read them."""
    return _run_two_ranks(tmp_path_factory.mktemp("ranks"))


def test_two_gloo_ranks_equal_one_process_on_the_combined_batch(
    ranks: list[dict[str, Any]],
) -> None:
    expected = distributed_worker.reference()
    for rank, found in enumerate(ranks):
        assert found["context"] == DistributedContext(rank, 2, rank, torch.device("cpu"))
        assert found["message"] == {"from": 0}
        assert found["ddp"] == "DistributedDataParallel"
        torch.testing.assert_close(found["losses"], expected["losses"], rtol=RTOL, atol=ATOL)
        for step, (grads, want) in enumerate(zip(found["grads"], expected["grads"], strict=True)):
            assert list(grads) == list(want), step
            for name in want:
                torch.testing.assert_close(grads[name], want[name], rtol=RTOL, atol=ATOL, msg=name)
        assert list(found["state"]) == list(expected["state"])  # plain keys, no "module."
        for name, value in expected["state"].items():
            torch.testing.assert_close(found["state"][name], value, rtol=RTOL, atol=ATOL, msg=name)
        torch.testing.assert_close(found["eval_z"], expected["eval_z"], rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(
            found["eval_logits"], expected["eval_logits"], rtol=RTOL, atol=ATOL
        )
        difference = _largest_difference(found, expected)
        print(f"rank {rank}: largest relative difference {difference:.1e}")
        assert difference < 1e-12
    assert expected["losses"][1] < expected["losses"][0]  # the steps did something


def test_two_gloo_ranks_batch_norm_over_uneven_shards(ranks: list[dict[str, Any]]) -> None:
    """The same run's batch norms alone: 1-D and 2-D, without affine parameters, with the
    cumulative average, on shards of different sizes."""
    for case, (_, _, cut) in enumerate(NORM_CASES):
        expected = norm_case(case, slice(None), synced=False)
        for rank, found in enumerate(ranks):
            mine = slice(0, cut) if rank == 0 else slice(cut, None)
            found_case = found["norms"][case]
            assert list(found_case) == list(expected)
            for name, value in expected.items():
                want = value[mine] if name in ("out", "x_grad") else value
                torch.testing.assert_close(found_case[name], want, rtol=RTOL, atol=ATOL, msg=name)
