"""HeadsAdam against torch.optim.Adam, its checkpoint layout, and the memory it saves."""

from __future__ import annotations

import copy
import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from crlc_engine.core.errors import CheckpointError
from crlc_engine.core.memory import return_freed_memory
from crlc_engine.training.feature_heads import FeatureHeads
from crlc_engine.training.heads_adam import HeadsAdam
from crlc_engine.training.optim import make_adam


def _heads(seed: int = 0) -> FeatureHeads:
    torch.manual_seed(seed)
    return FeatureHeads(24, 12, 5, 3, 8)


def _train(heads: FeatureHeads, optimizer: HeadsAdam | torch.optim.Adam, steps: int) -> None:
    x = torch.randn(40, 24, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        out = heads(x)
        assert out.z is not None
        (out.logits.square().mean() + out.z.square().mean()).backward()
        optimizer.step()


def _assert_same_parameters(a: FeatureHeads, b: FeatureHeads) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_same_updates_as_torch_adam(weight_decay: float) -> None:
    ours = _heads()
    reference = copy.deepcopy(ours)
    _train(ours, HeadsAdam(ours, 1e-2, weight_decay), 15)
    _train(reference, make_adam(reference, 1e-2, weight_decay), 15)
    _assert_same_parameters(ours, reference)
    assert any(
        not torch.equal(p, q) for p, q in zip(ours.parameters(), _heads().parameters(), strict=True)
    )


def test_learning_rate_set_by_the_loop_is_used() -> None:
    ours = _heads()
    reference = copy.deepcopy(ours)
    optimizers = (HeadsAdam(ours, 1e-2, 0.0), make_adam(reference, 1e-2, 0.0))
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = 3e-3
    _train(ours, optimizers[0], 5)
    _train(reference, optimizers[1], 5)
    _assert_same_parameters(ours, reference)


@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_state_dict_moves_between_the_two(direction: str) -> None:
    """A checkpoint of either optimiser continues in the other exactly."""
    first = _heads()
    start = make_adam(first, 1e-2, 1e-3) if direction == "torch_to_ours" else None
    optimizer = start or HeadsAdam(first, 1e-2, 1e-3)
    _train(first, optimizer, 6)
    saved = copy.deepcopy(optimizer.state_dict())
    continued = copy.deepcopy(first)
    uninterrupted = copy.deepcopy(first)
    target = (
        HeadsAdam(continued, 1e-2, 1e-3)
        if direction == "torch_to_ours"
        else make_adam(continued, 1e-2, 1e-3)
    )
    target.load_state_dict(saved)
    same_kind = make_adam if direction == "torch_to_ours" else HeadsAdam
    reference = same_kind(uninterrupted, 1e-2, 1e-3)
    reference.load_state_dict(copy.deepcopy(saved))
    _train(continued, target, 4)
    _train(uninterrupted, reference, 4)
    _assert_same_parameters(continued, uninterrupted)


def test_state_for_other_parameters_is_refused() -> None:
    small = _heads()
    optimizer = HeadsAdam(small, 1e-2, 0.0)
    _train(small, optimizer, 1)
    other = FeatureHeads(24, 16, 5, 3, 8)
    with pytest.raises(CheckpointError, match="other parameters"):
        HeadsAdam(other, 1e-2, 0.0).load_state_dict(optimizer.state_dict())
    saved = optimizer.state_dict()
    saved["param_groups"] = saved["param_groups"][:1]
    with pytest.raises(CheckpointError, match="other parameters"):
        HeadsAdam(small, 1e-2, 0.0).load_state_dict(saved)


def test_quick_heads_train_without_importing_dynamo() -> None:
    """The point of HeadsAdam: a run of heads never imports torch._dynamo (about 150 MB)."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from crlc_engine.training.feature_trainer import FeatureTrainer, QuickSettings
        x = np.random.default_rng(0).random((64, 16), dtype=np.float32)
        settings = QuickSettings(clusters=3, epochs=1, batch_size=16, min_steps=3, max_steps=3)
        trainer = FeatureTrainer(settings, x)
        trainer.fit()
        trainer.predict()
        print("torch._dynamo" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"


def test_return_freed_memory_reports_what_it_did() -> None:
    done = return_freed_memory()
    assert done is (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")
