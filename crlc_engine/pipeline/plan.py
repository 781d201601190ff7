"""Planning a run: from what was asked (:class:`RunRequest`) to what will run (:class:`RunPlan`).

:func:`plan_run` is the one place where settings are resolved (presets and overrides,
:func:`~crlc_engine.pipeline.presets.resolve_train_config`; a stage-2 run's from its stage-1
run; a refine run's from its parent and the user's labels; a resumed run's from its folder)
and checked, before any image is read. The command line, the dialogs (through the facade),
stage 2 and refine all plan through it; the run driver (:mod:`crlc_engine.pipeline.driver`)
carries a plan out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.library import ImageLibrary, ImageRecord
from crlc_engine.library.runs import RunDir
from crlc_engine.pipeline.method_base import TrainingMethod
from crlc_engine.pipeline.methods import method_for
from crlc_engine.pipeline.refine import group_targets, labelled_rows, refine_settings
from crlc_engine.pipeline.request import RunRequest, settings_of
from crlc_engine.pipeline.run_records import load_labelled, unfinished_run
from crlc_engine.pipeline.stage2 import completed_stage1, stage2_settings
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.training.two_stage import stage_configs


@dataclass(frozen=True)
class RunPlan:
    """What will run.

    Attributes:
        kind: The run's kind: ``train``, ``stage1``, ``stage2`` or ``refine``.
        config: Its settings (of stage 1 for a two-stage job).
        method: The training method for ``config``.
        parent: The run it starts from (stage 2: the stage-1 run; refine: the refined run).
        resume: The unfinished run to continue, if any.
        follow_up: Stage 2's settings, when stage 2 follows this stage-1 run.
        extra: More ``config.json`` entries of a new run.
        labels: Refine: image id -> group name of the labelled images.
        targets: Refine: group name -> the clusters it is one class over.
    """

    kind: str
    config: TrainConfig
    method: TrainingMethod
    parent: str | None = None
    resume: RunDir | None = None
    follow_up: TrainConfig | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[int, str] = field(default_factory=dict)
    targets: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def lock_reason(self) -> str:
        """What the workspace lock says while this plan runs."""
        if self.kind == "refine" and self.resume is None:
            return "refining with labels"
        if self.kind == "stage2" and self.resume is None:
            return "training (two-stage CRLC, stage 2)"
        return f"training ({self.config.preset} preset)"

    def labelled(self, records: list[ImageRecord]) -> tuple[np.ndarray, np.ndarray] | None:
        """Refine: the labelled rows among ``records`` and the clusters each may take;
        a resumed run: its stored ones."""
        if self.resume is not None:
            return load_labelled(self.resume)
        if not self.labels:
            return None
        ids = [r.id for r in records]
        return labelled_rows(dict(self.labels), dict(self.targets), ids, self.config.clusters)


def plan_run(request: RunRequest, library: ImageLibrary | None = None) -> RunPlan:
    """Resolve and check the settings of ``request``.

    ``library`` is needed for every kind but a new ``train`` run.

    Raises:
        InvalidSettingError: bad settings, or settings a method cannot honour.
        RunNotFoundError: the run to resume, refine or continue from does not exist.
    """
    if request.kind == "train":
        plan = _plan_new(request)
    else:
        if library is None:
            raise ValueError(f"planning a {request.kind} run needs the open library")
        planners = {"resume": _plan_resume, "stage2": _plan_stage2, "refine": _plan_refine}
        plan = planners[request.kind](request, library)
    plan.method.check(plan.config)
    return plan


def _plan_new(request: RunRequest) -> RunPlan:
    config = settings_of(request)
    if config.stage == "stage2":
        raise InvalidSettingError(
            "stage 2 starts from a completed stage-1 run: use `crlc train FOLDER "
            "--stage2-from RUN_ID` (jobs.train_stage2_folder)"
        )
    extra: dict[str, Any] = {"names_from": request.names_from}
    follow_up = None
    if config.stage == "two_stage":
        config, follow_up = stage_configs(config)
        extra = {"then_stage2": follow_up.to_dict(), **extra}
    kind = "stage1" if config.stage == "stage1" else "train"
    return RunPlan(kind, config, method_for(config), follow_up=follow_up, extra=extra)


def _plan_resume(request: RunRequest, library: ImageLibrary) -> RunPlan:
    run_id = None if request.run_id in (None, "latest") else request.run_id
    run = unfinished_run(library.runs, run_id)
    stored = run.read_config()
    config = TrainConfig.from_dict(stored["train"])
    then = stored.get("then_stage2")
    follow_up = TrainConfig.from_dict(then) if then else None
    return RunPlan(
        run.kind, config, method_for(config), stored.get("parent"), run, follow_up=follow_up
    )


def _plan_stage2(request: RunRequest, library: ImageLibrary) -> RunPlan:
    if request.run_id is None:
        raise InvalidSettingError("stage 2 needs the id of a completed stage-1 run")
    stage1 = completed_stage1(library.runs, request.run_id)
    return stage2_plan(stage1, stage2_settings(stage1, dict(request.overrides)))


def stage2_plan(stage1: RunDir, config: TrainConfig) -> RunPlan:
    """The plan of the stage-2 run of ``stage1`` (also what follows a stage-1 run)."""
    # named after the run the user was looking at when stage 1 started
    names_from = stage1.read_config().get("names_from")
    return RunPlan(
        "stage2", config, method_for(config), stage1.run_id, extra={"names_from": names_from}
    )


def _plan_refine(request: RunRequest, library: ImageLibrary) -> RunPlan:
    parent = library.runs.get(request.run_id, state="completed")
    base = TrainConfig.from_dict(parent.read_config()["train"])
    notes = Annotations(library.catalog)
    ignored = notes.ignored()
    labels = {i: c for i, c in notes.labels().items() if i not in ignored}
    if not labels:
        raise InvalidSettingError(
            "there are no labels to refine with: label a few images first "
            "(`crlc label FOLDER IMAGE... --as NAME`, `crlc name FOLDER CLUSTER NAME`)"
        )
    parent_assign = ResultStore(library.catalog).load(parent.run_id).cluster_of()
    targets = group_targets(labels, notes.names(parent.run_id), parent_assign, base.clusters)
    width = max(base.clusters, 1 + max(c for group in targets.values() for c in group))
    budget = dict(request.overrides)
    epochs, minutes = budget.pop("epochs", None), budget.pop("minutes", None)
    config = refine_settings(base, width, epochs, minutes, budget)
    extra = {
        "class_to_clusters": {g: list(c) for g, c in targets.items()},
        "names_from": parent.run_id,
    }
    return RunPlan(
        "refine",
        config,
        method_for(config),
        parent.run_id,
        extra=extra,
        labels=labels,
        targets=targets,
    )
