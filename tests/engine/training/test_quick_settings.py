"""The quick method's settings: loss settings and check messages shared with TrainConfig,
a lossless checkpoint form, and a config.json that records what really ran."""

from __future__ import annotations

from typing import Any

import pytest

from crlc_engine.core.config import LossSettings, TrainConfig
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.training.quick_settings import QuickSettings

#: ``QuickSettings.as_dict()`` as checkpoints stored it before the step cap (written before
#: the loss settings had their own type); today's form adds ``max_steps``.
STORED: dict[str, Any] = {
    "clusters": 7, "seed": 1, "epochs": 20, "minutes": None, "batch_size": 256, "lr": 0.001,
    "weight_decay": 0.0, "lr_schedule": "constant", "lr_min": 1e-05, "lambda_fc": 1.0,
    "lambda_ent": 2.0, "tau": 0.1, "gamma": 0.01, "critic": "log_dot", "guard_weight": 0.01,
    "guard_bound": 25.0, "subheads": 10, "feature_dim": 128, "hidden": 512, "neighbors": 20,
    "feature_dropout": 0.2, "feature_noise": 0.0, "lambda_xent": 0.0, "labelled_batch": 64,
    "checkpoint_every": 10, "min_steps": 300, "precision": "auto",
}  # fmt: skip


def test_stored_settings_load_both_ways() -> None:
    settings = QuickSettings(**STORED)
    assert settings == QuickSettings(clusters=7, seed=1, hidden=512)  # today's but the width
    assert settings.as_dict() == {**STORED, "max_steps": 300}
    assert QuickSettings.stored(settings.as_dict()) == settings
    old = QuickSettings.stored(STORED)  # a run planned before the cap resumes uncapped
    assert old.max_steps == 0 and old.min_steps == 300
    assert isinstance(settings, LossSettings)
    assert settings.loss_settings() == LossSettings(lambda_fc=1.0)


def test_the_quick_presets_adam_config_gives_the_same_settings() -> None:
    """The quick preset's TrainConfig names what its heads train with (Adam, lr 1e-3, no
    weight decay): the settings are the same as from an SGD config, whose lr is ignored."""
    sgd = TrainConfig(clusters=7, seed=1, batch_size=256, epochs=20, neighbors=20)
    sgd = sgd.replace(lambda_fc=1.0)
    adam = sgd.replace(optimizer="adam", lr=1e-3, weight_decay=0.0, lr_min=1e-5)
    for config in (sgd, adam):
        assert QuickSettings.from_train_config(config) == QuickSettings(**{**STORED, "hidden": 256})
    cosine = QuickSettings.from_train_config(adam.replace(lr_schedule="cosine"))
    assert cosine.lr == 1e-3 and cosine.lr_min == pytest.approx(1e-5)


@pytest.mark.parametrize(
    "changes",
    [
        {"clusters": 1},
        {"epochs": 0},
        {"minutes": -1.0},
        {"batch_size": 1},
        {"lr": 0.0},
        {"lr_schedule": "step"},
        {"lambda_fc": -1.0},
        {"tau": 0.0},
        {"critic": "cosine"},
        {"subheads": 0},
        {"neighbors": 0},
        {"lambda_xent": -1.0},
        {"checkpoint_every": 0},
    ],
)
def test_shared_checks_give_the_same_messages(changes: dict[str, Any]) -> None:
    messages = []
    for make in (QuickSettings, TrainConfig):
        with pytest.raises(InvalidSettingError) as error:
            make(**{"clusters": 3, **changes})
        messages.append(str(error.value))
    assert messages[0] == messages[1]


def test_quick_only_checks() -> None:
    for changes, message in (
        ({"hidden": 0}, "hidden width"),
        ({"feature_dropout": 1.0}, "feature dropout"),
        ({"min_steps": -1}, "min steps"),
        ({"precision": "fp8"}, "unknown precision"),
    ):
        with pytest.raises(InvalidSettingError, match=message):
            QuickSettings(**{"clusters": 3, **changes})
