"""The feature extractor's runtimes: a traced + frozen graph where it works, else eager."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.training.frozen_features import (
    FeatureExtractor,
    FeatureSpec,
    fold_batchnorm,
    lite0_extractor,
    relative_difference,
)

SIDE = 16
#: Largest per-image relative L2 difference between the graph and the eager module: float32
#: graphs only reorder sums; a bf16 graph has its BatchNorm folded in float32 before the
#: weights are rounded to bf16, where eager rounds the convolution's output (a few bf16 ulps).
TOLERANCE = {"float32": 1e-5, "bfloat16": 0.03}


def conv_net() -> nn.Module:
    """Conv -> BatchNorm (non-trivial statistics) -> ReLU -> pooled 8-d features."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(8)
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.2, 0.2)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        bn,
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class FixedBatch(nn.Module):
    """Traces into a graph that keeps the example's batch size (``int`` of a traced size)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).reshape(int(x.shape[0]), 8, -1).mean(dim=2)


class Branchy(nn.Module):
    """Python control flow on a size: ``torch.jit.trace`` takes it, ``torch.fx`` cannot."""

    def __init__(self) -> None:
        super().__init__()
        self.net = conv_net()

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] > 0:
            x = x * 1.0
        out: Tensor = self.net(x)
        return out


def spec(precision: str = "float32") -> FeatureSpec:
    return FeatureSpec("tiny", "seed0", SIDE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 8, precision)


def extractor(
    module: nn.Module, precision: str = "float32", runtime: str = "auto"
) -> FeatureExtractor:
    return FeatureExtractor(module, spec(precision), torch.device("cpu"), runtime=runtime)


def images(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, SIDE, SIDE, 3), dtype=np.uint8)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_graph_agrees_with_eager_for_any_batch_size(precision: str) -> None:
    module = conv_net()
    jit = extractor(module, precision, "jit")
    eager = extractor(module, precision, "eager")
    assert jit.runtime == "jit" and eager.runtime == "eager"
    assert jit.build_seconds > 0 and eager.build_seconds == 0
    for size in (1, 5, 3):  # the trace example has 2 images, its check 3
        batch = images(size, seed=size)
        got, expected = jit(batch), eager(batch)
        assert got.shape == (size, 8) and got.dtype == np.float32
        difference = relative_difference(torch.from_numpy(got), torch.from_numpy(expected))
        assert difference <= TOLERANCE[precision]
    assert jit.fallback_reason == ""


def test_the_graph_leaves_the_module_as_it_was() -> None:
    module = conv_net()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    jit = extractor(module, runtime="jit")
    jit(images(2))
    after = jit.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(jit.module[1], nn.BatchNorm2d) and not jit.module.training


@pytest.mark.parametrize("broken", ["trace", "freeze"])
def test_auto_falls_back_to_eager_quietly_when_the_graph_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no such instruction\nmore detail")

    monkeypatch.setattr(torch.jit, broken, fail)
    module = conv_net()
    auto = extractor(module)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing scary: no warning either
        features = auto(images(4))
    assert auto.runtime == "eager"
    assert auto.fallback_reason == "RuntimeError: no such instruction"
    np.testing.assert_array_equal(features, extractor(module, runtime="eager")(images(4)))
    with pytest.raises(InvalidSettingError, match="cannot run as a traced graph"):
        extractor(module, runtime="jit").prepare()


def test_a_graph_tied_to_the_example_batch_size_is_refused() -> None:
    auto = extractor(FixedBatch())
    assert auto.runtime == "eager"
    assert auto.fallback_reason.startswith("RuntimeError")
    assert auto(images(1)).shape == (1, 8) and auto(images(5)).shape == (5, 8)
    with pytest.raises(InvalidSettingError, match="use the eager runtime"):
        extractor(FixedBatch(), runtime="jit").prepare()


def test_a_graph_that_fails_later_is_replaced_by_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    module = conv_net()
    auto = extractor(module)
    assert auto.runtime == "jit"

    def fail(x: Tensor) -> Tensor:
        raise RuntimeError("could not create a primitive")

    monkeypatch.setattr(auto, "_graph", fail)
    expected = extractor(module, runtime="eager")(images(3))
    np.testing.assert_array_equal(auto(images(3)), expected)
    assert auto.runtime == "eager" and "primitive" in auto.fallback_reason
    forced = extractor(module, runtime="jit")
    forced.prepare()
    monkeypatch.setattr(forced, "_graph", fail)
    with pytest.raises(RuntimeError, match="primitive"):
        forced(images(3))


def test_auto_runs_a_module_with_forward_hooks_eagerly() -> None:
    module = conv_net()
    seen: list[int] = []
    module.register_forward_hook(lambda m, inputs, out: seen.append(int(inputs[0].shape[0])))
    auto = extractor(module)
    auto(images(3))
    assert auto.runtime == "eager" and "hooks" in auto.fallback_reason
    assert seen == [3]


def test_a_module_torch_fx_cannot_trace_still_gets_a_graph() -> None:
    module = Branchy().eval()
    assert fold_batchnorm(module) == (module, False)
    folded, ok = fold_batchnorm(conv_net().eval())
    assert ok and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    for precision in ("float32", "bfloat16"):
        jit = extractor(Branchy(), precision, "jit")
        eager = extractor(Branchy(), precision, "eager")
        batch = images(5)
        difference = relative_difference(
            torch.from_numpy(jit(batch)), torch.from_numpy(eager(batch))
        )
        assert jit.runtime == "jit" and difference <= TOLERANCE["float32"]  # unfolded: same ops


def test_an_unknown_runtime_is_refused_with_a_plain_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = "unknown feature runtime 'fast'; choose one of auto, jit, eager"
    with pytest.raises(InvalidSettingError) as caught:
        extractor(conv_net(), runtime="fast")
    assert str(caught.value) == message
    with pytest.raises(InvalidSettingError) as caught:
        lite0_extractor(SIDE, runtime="fast")  # before the weights are even looked for
    assert str(caught.value) == message


def test_the_runtime_is_not_part_of_the_spec_and_old_specs_load() -> None:
    old = {
        "backbone": "tiny",
        "weights": "seed0",
        "side": 32,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "dim": 8,
        "precision": "float32",
    }
    loaded = FeatureSpec.from_dict(old)
    assert loaded.key == "fdbf19147393e299"  # the key workspaces were written under
    assert set(loaded.as_dict()) == set(old)
    module = conv_net()
    keys = {extractor(module, runtime=r).spec.key for r in ("auto", "jit", "eager")}
    assert keys == {spec().key}
