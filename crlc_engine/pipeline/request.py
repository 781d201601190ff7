"""What the user asks for when a run starts (:class:`RunRequest`), and a new run's settings.

Torch-free: the command line and the dialogs resolve settings with :func:`settings_of`
before anything heavy is imported; :func:`crlc_engine.pipeline.plan.plan_run` turns a request
into the plan the driver runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.pipeline.presets import resolve_train_config

RequestKind = Literal["train", "resume", "stage2", "refine"]


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for.

    Attributes:
        kind: ``train`` (a new run), ``resume`` (continue an unfinished run), ``stage2`` (a
            stage-2 run of a completed stage-1 run) or ``refine`` (CRLC-semi on a completed
            run with the user's labels).
        config: A new run's resolved settings; else they come from ``clusters``, ``preset``
            and ``overrides``.
        clusters: Clusters of a new run (with ``preset``).
        preset: Preset of a new run.
        overrides: Settings on top of the preset (new run), of the stage-1 run's planned
            stage 2, or of the refine settings; ``None`` values are ignored.
        run_id: The run to resume (``None``/"latest": the newest unfinished), the stage-1
            run (stage2) or the run to refine (``None``: the newest completed).
        names_from: The run whose groups name the new run's clusters (default: the newest
            completed run).
    """

    kind: RequestKind = "train"
    config: TrainConfig | None = None
    clusters: int | None = None
    preset: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    names_from: str | None = None


def settings_of(request: RunRequest) -> TrainConfig:
    """A new run's settings: ``request.config``, else its preset with the overrides."""
    if request.config is not None:
        return request.config
    if request.clusters is None or request.preset is None:
        raise InvalidSettingError("a new run needs a number of clusters and a preset")
    return resolve_train_config(request.clusters, request.preset, dict(request.overrides))
