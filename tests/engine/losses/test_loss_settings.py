"""One loss-settings type: :class:`LossSettings`, extended by :class:`TrainConfig` (whose
``config.json`` form stays as it was) and by the quick method's settings."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch

from crlc_engine.core.config import LOSS_FIELDS, LossSettings, TrainConfig
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.losses import combine_loss_parts

#: The keys of a ``config.json`` in the order runs wrote them before the loss settings had
#: their own type.
CONFIG_JSON_KEYS = [
    "clusters", "preset", "backbone", "pretrained", "stem", "image_size", "batch_size",
    "epochs", "minutes", "lr", "momentum", "weight_decay", "lambda_fc", "lambda_ent", "tau",
    "gamma", "critic", "guard_weight", "guard_bound", "subheads", "feature_dim", "blur",
    "crop_min_scale", "lambda_xent", "labelled_batch", "lr_schedule", "lr_min", "device",
    "seed", "checkpoint_every", "framework", "bank_negatives", "bank_momentum", "stage",
    "stage1_epochs", "neighbors", "freeze_backbone", "optimizer", "stage_optim",
    "precision", "memory_format", "compile", "head_init",
]  # fmt: skip


def test_train_config_is_loss_settings_with_the_same_json() -> None:
    config = TrainConfig(clusters=4, lambda_fc=3.0, tau=0.2, critic="dot")
    assert isinstance(config, LossSettings)
    assert list(config.to_dict()) == CONFIG_JSON_KEYS
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    loss = config.loss_settings()
    assert type(loss) is LossSettings
    assert dataclasses.asdict(loss) == {name: getattr(config, name) for name in LOSS_FIELDS}
    assert config.loss_settings(lambda_fc=0.0).lambda_fc == 0.0
    defaults = TrainConfig(clusters=2)
    assert defaults.loss_settings() == LossSettings()  # one set of defaults


def test_an_older_config_json_still_loads() -> None:
    """A config.json written before ``stage_optim``, ``optimizer``, ``freeze_backbone`` and
    the memory bank existed, with a key a later version dropped."""
    old: dict[str, Any] = {
        "clusters": 5, "preset": "cpu", "backbone": "small", "pretrained": False,
        "stem": "auto", "image_size": 32, "batch_size": 64, "epochs": 30, "minutes": None,
        "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005, "lambda_fc": 1.0,
        "lambda_ent": 2.0, "tau": 0.1, "gamma": 0.01, "critic": "log_dot",
        "guard_weight": 0.01, "guard_bound": 25.0, "subheads": 10, "feature_dim": 128,
        "blur": False, "crop_min_scale": 0.2, "lambda_xent": 0.0, "labelled_batch": 64,
        "lr_schedule": "constant", "lr_min": 0.001, "device": "auto", "seed": 3,
        "checkpoint_every": 10, "retired_setting": 1,
    }  # fmt: skip
    config = TrainConfig.from_dict(old)
    assert config.stage_optim == "run" and config.optimizer == "sgd"
    assert config.lambda_fc == 1.0 and config.seed == 3 and config.framework == "simclr"
    assert {k: v for k, v in config.to_dict().items() if k in old} == {
        k: v for k, v in old.items() if k != "retired_setting"
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lambda_fc": -1.0}, "lambda-fc must be >= 0 (got -1.0)"),
        ({"lambda_ent": -1.0}, "lambda-ent must be >= 0 (got -1.0)"),
        ({"tau": 0.0}, "tau must be > 0 (got 0.0)"),
        ({"gamma": 2.0}, "gamma must be in [0, 1] (got 2.0)"),
        ({"critic": "cosine"}, "unknown critic 'cosine'"),
        ({"guard_bound": 0.0}, "guard weight/bound out of range"),
        ({"tau": float("inf")}, "number settings must be finite (no inf or nan): tau inf"),
    ],
)
def test_loss_checks_are_the_same_everywhere(changes: dict[str, Any], message: str) -> None:
    for make in (LossSettings, lambda **kw: TrainConfig(clusters=3, **kw)):
        with pytest.raises(InvalidSettingError) as error:
            make(**changes)
        assert message in str(error.value)


def test_combine_loss_parts() -> None:
    pc, entropy, guard = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.25]), torch.ones(2)
    settings = LossSettings(lambda_fc=3.0, lambda_ent=2.0, guard_weight=0.5)
    out = combine_loss_parts(torch.tensor(0.5), pc, entropy, guard, settings)
    assert out.cluster.tolist() == [0.5, 2.0]  # pc - 2 H + 0.5 G
    assert out.total.item() == pytest.approx(3.0 * 0.5 + 1.25)
    without = combine_loss_parts(None, pc, entropy, guard, settings.loss_settings(lambda_fc=0))
    assert without.feature.item() == 0.0 and without.total.item() == pytest.approx(1.25)
    with pytest.raises(ValueError, match="lambda_fc"):
        combine_loss_parts(None, pc, entropy, guard, settings)
