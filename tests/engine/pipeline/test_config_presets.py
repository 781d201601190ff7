"""Settings: validation, preset resolution and overrides."""

from __future__ import annotations

import pytest

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.pipeline.presets import (
    PRESETS,
    default_preset_name,
    get_preset,
    quick_conflicts,
    resolve_train_config,
)


def test_paper_preset_matches_official_runner() -> None:
    cfg = resolve_train_config(10, "paper")
    assert (cfg.backbone, cfg.stem, cfg.batch_size, cfg.epochs) == ("resnet34", "cifar", 512, 2000)
    assert (cfg.lambda_ent, cfg.lambda_fc, cfg.gamma, cfg.tau) == (2.0, 10.0, 0.01, 0.1)
    assert (cfg.guard_weight, cfg.guard_bound, cfg.subheads) == (0.01, 25.0, 10)
    assert (cfg.lr, cfg.momentum, cfg.weight_decay) == (0.1, 0.9, 5e-4)


def test_explicit_flags_override_preset_and_minutes_replace_epochs() -> None:
    cfg = resolve_train_config(5, "paper", {"backbone": "resnet18", "minutes": 2.0, "lr": None})
    assert cfg.backbone == "resnet18" and cfg.lr == 0.1
    assert cfg.minutes == 2.0 and cfg.epochs is None
    both = resolve_train_config(5, "paper", {"minutes": 2.0, "epochs": 3})
    assert both.minutes == 2.0 and both.epochs == 3


def test_every_preset_resolves_and_explains_itself() -> None:
    for name, preset in PRESETS.items():
        assert resolve_train_config(3, name).preset == name
        assert len(preset.why) > 40 and preset.summary


def test_default_preset_follows_device_and_installed_weights() -> None:
    assert default_preset_name("cpu", quick_available=True) == "quick"
    assert default_preset_name("cpu", quick_available=False) == "cpu"
    assert default_preset_name("cuda", quick_available=True) == "balanced"
    assert default_preset_name("cuda", quick_available=False) == "balanced"


def test_default_preset_looks_up_the_pretrained_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import crlc_engine.pipeline.presets as presets

    monkeypatch.setattr(presets, "PRETRAINED_EXTRA_MODULE", "json")  # a module that exists
    assert presets.quick_preset_available()
    assert default_preset_name("cpu") == "quick"
    monkeypatch.setattr(presets, "PRETRAINED_EXTRA_MODULE", "no_such_module_crlc_test")
    assert not presets.quick_preset_available()
    assert default_preset_name("cpu") == "cpu"


def test_settings_quick_cannot_honour_move_the_default_to_cpu() -> None:
    def pick(**requested: object) -> str:
        return default_preset_name("cpu", quick_available=True, requested=requested)

    assert pick() == "quick"
    assert pick(epochs=5, image_size=160, lambda_ent=3.0, device="cpu") == "quick"
    # values quick uses itself are no conflict
    assert pick(backbone="efficientnet_lite0", framework="simclr", stage="end_to_end") == "quick"
    assert pick(backbone=None, stem=None) == "quick"  # None = not given
    for name, value in [
        ("backbone", "resnet18"),
        ("stem", "cifar"),
        ("framework", "memorybank"),
        ("stage", "two_stage"),
        ("freeze_backbone", True),
        ("blur", True),
        ("lr", 0.05),
    ]:
        assert pick(**{name: value}) == "cpu", name
    assert pick(optimizer="adam", lr=3e-4) == "quick"  # quick's heads do train with Adam
    assert quick_conflicts({"lr": 0.05, "stem": "cifar", "epochs": 3}) == ["stem", "lr"]


def test_quick_refuses_what_it_cannot_honour() -> None:
    with pytest.raises(InvalidSettingError, match="cannot use stem, blur"):
        resolve_train_config(3, "quick", {"stem": "cifar", "blur": True})
    with pytest.raises(InvalidSettingError, match="cannot use lr"):
        resolve_train_config(3, "quick", {"lr": 0.05})
    assert resolve_train_config(3, "quick", {"optimizer": "adam", "lr": 3e-4}).lr == 3e-4
    for overrides, fragment in [
        ({"backbone": "resnet18"}, "cannot use backbone"),
        ({"stage": "two_stage"}, "cannot use stage"),
        ({"framework": "memorybank"}, "cannot use framework"),
    ]:
        with pytest.raises(InvalidSettingError, match=fragment):
            resolve_train_config(3, "quick", overrides)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"clusters": 1}, "at least 2"),
        ({"backbone": "vgg"}, "unknown backbone"),
        ({"stem": "big"}, "unknown stem"),
        ({"critic": "cosine"}, "unknown critic"),
        ({"gamma": 1.5}, "gamma"),
        ({"tau": 0.0}, "tau"),
        ({"epochs": None, "minutes": None}, "epochs or minutes"),
        ({"framework": "moco"}, "unknown framework"),
        ({"bank_negatives": 0}, "bank negatives"),
        ({"bank_momentum": 1.5}, "bank momentum"),
        ({"stage": "stage3"}, "unknown stage"),
        ({"stage1_epochs": 0}, "stage-1 epochs"),
        ({"neighbors": 0}, "neighbours"),
        ({"freeze_backbone": True}, "stage 2"),
    ],
)
def test_invalid_settings_are_rejected(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidSettingError, match=fragment):
        TrainConfig(**{"clusters": 4, **changes})  # type: ignore[arg-type]


def test_unknown_preset() -> None:
    with pytest.raises(InvalidSettingError, match="unknown preset"):
        get_preset("fast")


def test_auto_stem_rule() -> None:
    assert TrainConfig(clusters=2, image_size=64).resolved_stem() == "cifar"
    assert TrainConfig(clusters=2, image_size=96).resolved_stem() == "imagenet"
    assert TrainConfig(clusters=2, image_size=96, stem="cifar").resolved_stem() == "cifar"


def test_config_round_trips_through_dict() -> None:
    cfg = resolve_train_config(7, "balanced", {"seed": 3})
    assert TrainConfig.from_dict({**cfg.to_dict(), "future_field": 1}) == cfg


def test_new_variant_settings_default_to_end_to_end_simclr() -> None:
    cfg = TrainConfig(clusters=3)
    assert (cfg.framework, cfg.bank_negatives, cfg.bank_momentum) == ("simclr", 4096, 0.5)
    assert (cfg.stage, cfg.stage1_epochs, cfg.neighbors, cfg.freeze_backbone) == (
        "end_to_end",
        None,
        50,
        False,
    )
    # Runs stored before these settings existed still load (with the defaults).
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("framework", "stage")}
    assert TrainConfig.from_dict(old) == cfg
    two = resolve_train_config(3, "cpu", {"stage": "two_stage", "freeze_backbone": True})
    assert two.stage == "two_stage" and two.freeze_backbone and two.lambda_fc == 1.0


def test_pretrained_only_where_weights_exist() -> None:
    from crlc_engine.core.config import PRETRAINED_BACKBONES

    for name in PRETRAINED_BACKBONES:
        assert TrainConfig(clusters=2, backbone=name, pretrained=True).pretrained
    with pytest.raises(InvalidSettingError, match="small has no pretrained weights"):
        TrainConfig(clusters=2, backbone="small", pretrained=True)
    with pytest.raises(InvalidSettingError, match="resnet34 has no pretrained weights"):
        TrainConfig(clusters=2, backbone="resnet34", pretrained=True)


def test_memorybank_gets_a_lambda_fc_its_features_survive() -> None:
    # the paper's lambda_FC 10 at lr 0.1 collapses the bank form's features: lowered to 0.1
    bank = resolve_train_config(3, "balanced", {"framework": "memorybank"})
    assert bank.lambda_fc == pytest.approx(0.1)
    assert resolve_train_config(3, "cpu", {"framework": "memorybank"}).lambda_fc == (
        pytest.approx(0.1)
    )
    slow = resolve_train_config(3, "cpu", {"framework": "memorybank", "lr": 0.001})
    assert slow.lambda_fc == 1.0  # the preset's value already fits: never raised
    mine = resolve_train_config(3, "balanced", {"framework": "memorybank", "lambda_fc": 10.0})
    assert mine.lambda_fc == 10.0  # an explicit value is the user's choice
    assert resolve_train_config(3, "balanced").lambda_fc == 10.0  # SimCLR untouched
