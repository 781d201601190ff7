"""The heads' two initialisations: PyTorch's default and the official He-uniform."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from crlc_engine.cli.main import main
from crlc_engine.core.config import HEAD_INITS, TrainConfig
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.models import ClusterHeads, CRLCModel
from crlc_engine.models.heads import RepresentationHead
from crlc_engine.pipeline.presets import PRESETS, quick_conflicts, resolve_train_config
from tests.conftest import CapturedError


def test_he_uniform_bounds_and_zero_biases() -> None:
    torch.manual_seed(0)
    heads = ClusterHeads(in_dim=64, clusters=5, subheads=4, init="he_uniform")
    bound = math.sqrt(6 / 64)
    for weight in (heads.weight1, heads.weight2):
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.95 * bound  # uniform over the whole range
        assert abs(float(weight.detach().std()) - bound / math.sqrt(3)) < 0.05 * bound
    assert not heads.bias1.any() and not heads.bias2.any()
    assert not torch.equal(heads.weight1[0], heads.weight1[1])  # independent sub-heads
    rl = RepresentationHead(64, 16, init="he_uniform")
    for layer in (rl.net[0], rl.net[2]):
        assert isinstance(layer, torch.nn.Linear)
        assert layer.weight.abs().max() <= math.sqrt(6 / layer.in_features)
        assert layer.bias is not None and not layer.bias.any()


def test_torch_init_is_unchanged() -> None:
    """The default keeps nn.Linear's uniform(+-1/sqrt(d)) for weights and biases."""
    torch.manual_seed(0)
    heads = ClusterHeads(in_dim=64, clusters=5, subheads=4)
    assert heads.init == "torch"
    for p in (heads.weight1, heads.bias1, heads.weight2, heads.bias2):
        assert p.abs().max() <= 1 / 8
    assert heads.bias1.abs().max() > 0


def test_he_uniform_starts_the_subheads_away_from_the_uniform_prediction() -> None:
    """About 6x larger logits at the start of training (sqrt 6 per layer; train mode, as the
    first step sees it), so a lower entropy than the uniform saddle point log C."""
    images = torch.randn(32, 3, 32, 32)
    starts = {}
    for init in HEAD_INITS:
        torch.manual_seed(0)
        model = CRLCModel("small", "cifar", clusters=10, subheads=3, head_init=init)
        with torch.no_grad():
            logits = model(images).logits
        p = logits.softmax(-1)
        entropy = float(-(p * p.log()).sum(-1).mean())
        starts[init] = (float(logits.abs().mean()), entropy)
    ratio = starts["he_uniform"][0] / starts["torch"][0]
    assert 4 < ratio < 9
    assert starts["he_uniform"][1] < starts["torch"][1] < math.log(10)


def test_the_setting_checks_reaches_the_model_and_suits_only_pixel_runs() -> None:
    with pytest.raises(InvalidSettingError, match="unknown head init 'xavier'"):
        TrainConfig(clusters=3, head_init="xavier")
    assert TrainConfig(clusters=3).head_init == "torch"
    assert TrainConfig.from_dict({"clusters": 3}).head_init == "torch"  # older config.json
    assert PRESETS["paper"].settings["head_init"] == "he_uniform"
    config = resolve_train_config(3, "paper", {"backbone": "small"})
    model = CRLCModel.for_settings(config)
    assert model.c_head.init == "he_uniform" and not model.c_head.bias2.any()
    assert quick_conflicts({"head_init": "he_uniform"}) == ["head_init"]
    assert quick_conflicts({"head_init": "torch"}) == []


def test_the_cli_flag_reaches_the_config(
    tmp_path: Path,
    captured_settings: list[CapturedError],
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["train", str(tmp_path), "-k", "3", "--preset", "cpu", "--device", "cpu", "--json"]
    assert main([*base, "--head-init", "he_uniform"]) == 1
    config = captured_settings[-1].config
    assert config is not None and config.head_init == "he_uniform"
    assert main([*base, "--head-init", "cubic"]) == 2
    assert "invalid choice: 'cubic'" in capsys.readouterr().out
