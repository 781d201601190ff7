"""Settings of CRLC head training on cached, frozen features (the ``quick`` method).

:class:`QuickSettings` extends :class:`~crlc_engine.core.config.LossSettings` (the loss
fields, their defaults and checks are declared there) and shares the messages of the checks
it has in common with :class:`~crlc_engine.core.config.TrainConfig`
(:func:`~crlc_engine.core.config.shared_checks`). It is stored in the heads' checkpoints
(:meth:`QuickSettings.as_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from crlc_engine.core.config import (
    LOSS_FIELDS,
    QUICK_MAX_STEPS,
    QUICK_MIN_STEPS,
    LossSettings,
    TrainConfig,
    finite_check,
    raise_first_problem,
    shared_checks,
)
from crlc_engine.training.frozen_features import PRECISIONS

__all__ = ["QuickSettings"]

#: Fields a :class:`~crlc_engine.core.config.TrainConfig` shares with :class:`QuickSettings`
#: (besides the loss settings).
_SHARED_FIELDS = (
    "clusters",
    "seed",
    "epochs",
    "minutes",
    "batch_size",
    "subheads",
    "feature_dim",
    "neighbors",
    "lambda_xent",
    "labelled_batch",
    "lr_schedule",
    "checkpoint_every",
)


@dataclass(frozen=True)
class QuickSettings(LossSettings):
    """Settings of CRLC head training on cached features.

    Attributes:
        clusters: Clusters C (>= 2).
        seed: Seed of the head initialisation, data order, neighbour draws and noise.
        epochs: Epochs, or ``None`` with a time budget. Raised to reach ``min_steps``.
        minutes: Time budget in minutes, or ``None``.
        batch_size: Anchor images per step (capped at N); each brings one neighbour.
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay on weight matrices only.
        lr_schedule: ``constant`` or ``cosine`` (decay to ``lr_min`` over the budget).
        lr_min: Final learning rate of the cosine schedule.
        lambda_fc: Weight of L_FC between the RL-head outputs of image and neighbour
            (1.0 here; the other loss settings keep the defaults of
            :class:`~crlc_engine.core.config.LossSettings`).
        subheads: C-sub-heads H.
        feature_dim: Width of the RL-head output z (stored as the images' features).
        hidden: Hidden width of every head.
        neighbors: Neighbours K per image (capped at N - 1).
        feature_dropout: Dropout probability on the standardised inputs during training.
        feature_noise: Standard deviation of Gaussian noise added to the standardised inputs
            during training.
        lambda_xent: Weight of the cross-entropy on labelled images (CRLC-semi; 0: off).
        labelled_batch: Labelled images per step.
        checkpoint_every: Checkpoint every this many epochs (and at the end / on cancel).
        min_steps: With an epoch count, train at least this many steps: a small library has
            few steps per epoch (500 images, batch 256: one), too few to converge.
        max_steps: With an epoch count, train at most about this many steps (whole epochs;
            0: no cap): a big library converges in a fraction of its epochs. Checkpoints
            written before it existed read as 0, so their runs resume as they were planned.
        precision: Matrix products of the heads in ``float32`` or ``bfloat16`` (autocast;
            losses and optimiser state stay float32); ``auto`` picks bfloat16 where the
            hardware runs it natively (see
            :func:`crlc_engine.training.frozen_features.resolve_precision`).
    """

    clusters: int
    seed: int = 0
    epochs: int | None = 20
    minutes: float | None = None
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_min: float = 1e-5
    lambda_fc: float = field(default=1.0, kw_only=True)
    subheads: int = 10
    feature_dim: int = 128
    hidden: int = 256
    neighbors: int = 20
    feature_dropout: float = 0.2
    feature_noise: float = 0.0
    lambda_xent: float = 0.0
    labelled_batch: int = 64
    checkpoint_every: int = 10
    min_steps: int = QUICK_MIN_STEPS
    max_steps: int = QUICK_MAX_STEPS
    precision: str = "auto"

    def __post_init__(self) -> None:
        shared = shared_checks(self)
        budget = [shared[name] for name in ("clusters", "seed", "epochs", "minutes", "budget")]
        optimizer = [shared[name] for name in ("lr", "weight_decay", "lr_schedule", "lr_min")]
        heads = [shared[name] for name in ("subheads", "feature_dim", "neighbors")]
        semi = [shared[name] for name in ("lambda_xent", "labelled_batch", "checkpoint_every")]
        raise_first_problem(
            [
                finite_check(self),
                *budget,
                shared["batch_size"],
                *optimizer,
                *self.loss_checks(),
                *heads,
                (self.hidden >= 1, f"hidden width must be >= 1 (got {self.hidden})"),
                (0 <= self.feature_dropout < 1, "feature dropout must be in [0, 1)"),
                (self.feature_noise >= 0, "feature noise must be >= 0"),
                *semi,
                (self.min_steps >= 0, f"min steps must be >= 0 (got {self.min_steps})"),
                (self.max_steps >= 0, f"max steps must be >= 0 (got {self.max_steps})"),
                (
                    self.precision in PRECISIONS,
                    f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}",
                ),
            ]
        )

    @classmethod
    def from_train_config(cls, config: TrainConfig, **overrides: Any) -> QuickSettings:
        """Quick settings from a run's :class:`TrainConfig` (plus explicit ``overrides``).

        Shared fields and the loss settings are copied. ``TrainConfig.lr`` /
        ``weight_decay`` are SGD values unless the config names ``optimizer="adam"``: only
        then are they used; the Adam defaults here apply otherwise. A cosine schedule keeps
        the config's ratio ``lr_min / lr``. ``head_hidden``, ``feature_dropout`` and
        ``feature_noise`` are read when the config has them.
        """
        names = (*_SHARED_FIELDS, *LOSS_FIELDS)
        values: dict[str, Any] = {name: getattr(config, name) for name in names}
        if getattr(config, "optimizer", "sgd") == "adam":
            values["lr"] = config.lr
            values["weight_decay"] = config.weight_decay
        for source, target in (
            ("head_hidden", "hidden"),
            ("feature_dropout", "feature_dropout"),
            ("feature_noise", "feature_noise"),
        ):
            value = getattr(config, source, None)
            if value is not None:
                values[target] = value
        values.update(overrides)
        if values["lr_schedule"] == "cosine" and "lr_min" not in overrides:
            lr = float(values.get("lr", cls.lr))
            values["lr_min"] = lr * config.lr_min / config.lr
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in the heads' checkpoints; :meth:`stored` reads it)."""
        return dataclasses.asdict(self)

    @classmethod
    def stored(cls, data: dict[str, Any]) -> QuickSettings:
        """The settings a checkpoint recorded (:meth:`as_dict`); fields added since read as
        what the run was planned with (``max_steps`` 0: no cap)."""
        return cls(**{"max_steps": 0, **data})
