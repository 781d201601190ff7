"""Backbones, heads and the CRLC model: shapes, normalisation, registry, weight decay split."""

from __future__ import annotations

import pytest
import torch

from crlc_engine.errors import InvalidSettingError
from crlc_engine.models import BACKBONES, ClusterHeads, CRLCModel, build_backbone
from crlc_engine.training.optim import decay_split


@pytest.mark.parametrize(("name", "dim"), [("small", 256), ("resnet18", 512), ("resnet50", 2048)])
def test_backbone_feature_width(name: str, dim: int) -> None:
    net = build_backbone(name, "cifar")
    assert net.feature_dim == dim
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, dim)


def test_cifar_stem_keeps_resolution_imagenet_stem_downsamples() -> None:
    cifar = build_backbone("resnet18", "cifar").body
    imagenet = build_backbone("resnet18", "imagenet").body
    assert cifar.conv1.stride == (1, 1) and cifar.conv1.kernel_size == (3, 3)
    assert isinstance(cifar.maxpool, torch.nn.Identity)
    assert imagenet.conv1.stride == (2, 2) and not isinstance(imagenet.maxpool, torch.nn.Identity)


def test_registry_is_explicit_and_rejects_unknown() -> None:
    assert set(BACKBONES) == {"small", "resnet18", "resnet34", "resnet50"}
    with pytest.raises(InvalidSettingError, match="unknown backbone"):
        build_backbone("alexnet", "cifar")


def test_model_output_shapes_and_unit_norm() -> None:
    model = CRLCModel("small", "cifar", clusters=5, subheads=3, feature_dim=16)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.features.shape == (4, 256)
    assert out.z.shape == (4, 16)
    assert out.logits.shape == (3, 4, 5)
    torch.testing.assert_close(out.z.norm(dim=1), torch.ones(4))


def test_cluster_heads_equal_independent_linear_stacks() -> None:
    heads = ClusterHeads(in_dim=6, clusters=4, subheads=3)
    x = torch.randn(5, 6)
    logits = heads(x)
    for h in range(3):
        hidden = torch.relu(x @ heads.weight1[h] + heads.bias1[h])
        torch.testing.assert_close(logits[h], hidden @ heads.weight2[h] + heads.bias2[h])
    assert not torch.equal(heads.weight1[0], heads.weight1[1])  # independent initialisation


def test_weight_decay_only_on_weight_matrices_and_kernels() -> None:
    model = CRLCModel("small", "cifar", clusters=3, subheads=2)
    decay, no_decay = decay_split(model)
    decay_ids = {id(p) for p in decay}
    for name, param in model.named_parameters():
        expected = name.rsplit(".", 1)[-1].startswith("weight") and param.ndim >= 2
        assert (id(param) in decay_ids) == expected, name
    assert any(p.ndim == 1 for p in no_decay)  # batch-norm scales and biases
    assert id(model.c_head.weight1) in decay_ids
    assert id(model.c_head.bias1) in {id(p) for p in no_decay}
