"""Two-stage CRLC, stage 2 alone: the settings of a stage-2 run of a completed stage-1 run.

The settings are the stage-1 run's planned stage-2 settings (those of its two-stage job, else
its own with ``stage="stage2"``) with the caller's overrides; the backbone, stem, image size
and feature width stay the stage-1 run's (see :mod:`crlc_engine.training.two_stage`).
"""

from __future__ import annotations

from typing import Any

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import InvalidSettingError, RunNotFoundError
from crlc_engine.library.runs import RunDir, RunStore
from crlc_engine.pipeline.presets import explicit_settings
from crlc_engine.training.two_stage import with_stage_optimizer


def completed_stage1(runs: RunStore, run_id: str) -> RunDir:
    """The completed stage-1 run ``run_id`` (with its checkpoint)."""
    run = runs.get(run_id, state=None, clusters_only=False)
    if run.kind != "stage1":
        raise InvalidSettingError(
            f"run {run_id} is a {run.kind} run, not stage 1 of two-stage training; stage 2 "
            "needs a stage-1 run (`crlc train FOLDER --two-stage` makes one)"
        )
    if run.state != "completed":
        raise InvalidSettingError(
            f"stage-1 run {run_id} is {run.state}, not completed; finish it first with "
            f"`crlc train FOLDER --resume {run_id}`"
        )
    if not run.checkpoint_path.exists():
        raise RunNotFoundError(f"stage-1 run {run_id} has no checkpoint")
    return run


_OPTIMIZER_FIELDS = {"optimizer", "lr", "lr_schedule", "lr_min", "momentum", "weight_decay"}


def stage2_settings(stage1: RunDir, overrides: dict[str, Any] | None) -> TrainConfig:
    """The settings of a stage-2 run of ``stage1`` with ``overrides``.

    Raises:
        InvalidSettingError: an override changes what stage 2 keeps from stage 1.
    """
    stored = stage1.read_config()
    first = TrainConfig.from_dict(stored["train"])
    planned = stored.get("then_stage2")
    base = TrainConfig.from_dict(planned) if planned else first.replace(stage="stage2")
    explicit = explicit_settings(overrides)
    explicit.pop("stage", None)
    if _OPTIMIZER_FIELDS & explicit.keys():  # the caller's own optimiser settings
        explicit.setdefault("stage_optim", "run")
        if base.stage_optim == "paper" and explicit["stage_optim"] == "run":
            # the plan holds the paper's stage-2 optimiser: start from the plain defaults
            # (SGD, constant lr) so that e.g. --lr 0.2 alone means SGD at 0.2, not Adam
            defaults = TrainConfig(clusters=2)
            for name in _OPTIMIZER_FIELDS - explicit.keys():
                explicit[name] = getattr(defaults, name)
    # stage_optim "paper": the paper's stage-2 optimiser for the (possibly new) freeze setting
    config = with_stage_optimizer(base.replace(**explicit, stage="stage2"))
    for name in ("backbone", "image_size", "feature_dim"):
        if getattr(config, name) != getattr(first, name):
            raise InvalidSettingError(
                f"stage 2 keeps the stage-1 run's {name.replace('_', ' ')} "
                f"({getattr(first, name)!r}); leave that option out"
            )
    if config.resolved_stem() != first.resolved_stem():
        raise InvalidSettingError(
            f"stage 2 keeps the stage-1 run's stem ({first.resolved_stem()!r}); leave --stem out"
        )
    return config
