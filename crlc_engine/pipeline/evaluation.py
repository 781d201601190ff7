"""Scores of a run against the folder-name ground truth (``crlc evaluate``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crlc_engine.core.errors import NoGroundTruthError, RunNotFoundError
from crlc_engine.library import ImageLibrary
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.groundtruth import class_indices, class_of
from crlc_engine.results.metrics import ClusteringScores, score_clustering


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of a run against the folder-name ground truth.

    Attributes:
        run_id: The evaluated run.
        chosen_head: The label-free choice (lowest L_cluster).
        best_head: The sub-head with the highest ACC (needs ground truth).
        chosen: Scores of the chosen sub-head.
        best: Scores of the best sub-head.
        per_head: ACC of every sub-head.
        images: Images that have a ground-truth class.
        classes: Number of ground-truth classes.
    """

    run_id: str
    chosen_head: int
    best_head: int
    chosen: ClusteringScores
    best: ClusteringScores
    per_head: list[float]
    images: int
    classes: int

    def summary(self) -> dict[str, Any]:
        """The CLI's ``--json`` object for ``crlc evaluate``."""
        return {
            "run_id": self.run_id,
            "chosen": {**self.chosen.as_dict(), "head": self.chosen_head},
            "best": {**self.best.as_dict(), "head": self.best_head},
            "per_head_acc": [round(v, 6) for v in self.per_head],
            "images": self.images,
            "classes": self.classes,
        }


def evaluate_folder(
    folders: str | Path | Sequence[str | Path],
    run_id: str | None = None,
    workspace: str | Path | None = None,
    unlabelled_only: bool = False,
) -> EvaluationResult:
    """ACC / NMI / ARI of a completed run against the class sub-folders of ``folders``.

    With ``unlabelled_only``, images the user labelled are left out (to measure what labels
    taught the model about the other images).

    Raises:
        RunNotFoundError: no completed run (or no run ``run_id``).
        NoGroundTruthError: no image lies in a class sub-folder.
    """
    with ImageLibrary.open(folders, workspace, read_only=True) as library:
        run = library.runs.get(run_id, state="completed")
        labelled = set(Annotations(library.catalog).labels()) if unlabelled_only else set()
    if not run.predictions_path.exists():
        raise RunNotFoundError(f"run {run.run_id} has no predictions (state {run.state})")
    with np.load(run.predictions_path) as stored:
        paths = [str(p) for p in stored["paths"]]
        head_labels = stored["head_labels"]
        chosen_head = int(stored["chosen_head"])
        image_ids = stored["image_ids"]
    truth, names = class_indices([class_of(p) for p in paths])
    mask = (truth >= 0) & ~np.isin(image_ids, np.array(sorted(labelled), dtype=np.int64))
    if not mask.any():
        raise NoGroundTruthError(
            "no image is inside a class sub-folder (ground truth = parent folder name), "
            "so there is nothing to evaluate against"
        )
    scores = [score_clustering(truth[mask], labels[mask]) for labels in head_labels]
    best_head = int(np.argmax([s.acc for s in scores]))
    return EvaluationResult(
        run_id=run.run_id,
        chosen_head=chosen_head,
        best_head=best_head,
        chosen=scores[chosen_head],
        best=scores[best_head],
        per_head=[s.acc for s in scores],
        images=int(mask.sum()),
        classes=len(names),
    )
