"""CRLC-semi (refine): the settings of a run that continues another with the user's labels.

A labelled group is one class over all the clusters it is attached to
(:func:`group_targets`); the refine run trains the CRLC loss plus ``lambda_xent`` x
cross-entropy on the labelled images with the paper's semi settings
(:func:`refine_settings`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from crlc_engine.core.config import TrainConfig
from crlc_engine.pipeline.presets import explicit_settings, memorybank_lambda_fc


def group_targets(
    labels: dict[int, str], names: dict[int, str], clusters: dict[int, int], num_clusters: int
) -> dict[str, tuple[int, ...]]:
    """The clusters of the head that each labelled group is one class over.

    A labelled group attached to clusters of the parent run is all of them (a merge stays
    one class: see :mod:`crlc_engine.losses.group_cross_entropy`); groups without labels
    get no class, so nothing forces their pictures anywhere. A labelled group without a
    cluster (a new name) takes the free unnamed cluster holding most of its labelled
    images, else the lowest free unnamed cluster, else a new cluster index (the head grows).

    Args:
        labels: image id -> group name.
        names: cluster -> name in the parent run.
        clusters: image id -> cluster in the parent run.
        num_clusters: C of the parent run's head. Clusters made by a split (at or above
            it) become outputs of the refined head too: it grows to cover every target.
    """
    attached: dict[str, list[int]] = {}
    for cluster, name in sorted(names.items()):
        attached.setdefault(name, []).append(cluster)
    wanted = sorted(set(labels.values()))
    targets = {g: tuple(attached[g]) for g in wanted if g in attached}
    taken = set(names) | {c for group in targets.values() for c in group}
    votes: dict[str, Counter[int]] = {}
    for image, group in labels.items():
        if group not in targets and image in clusters:
            votes.setdefault(group, Counter())[clusters[image]] += 1
    claims = sorted((-n, g, c) for g, counts in votes.items() for c, n in counts.items())
    for _, group, cluster in claims:
        if group not in targets and cluster not in taken:
            targets[group] = (cluster,)
            taken.add(cluster)
    for group in wanted:
        if group not in targets:
            free = [c for c in range(num_clusters) if c not in taken]
            choice = free[0] if free else max([num_clusters - 1, *taken]) + 1
            targets[group] = (choice,)
            taken.add(choice)
    return targets


def allowed_clusters(
    targets: dict[str, tuple[int, ...]], classes: list[str], width: int
) -> np.ndarray:
    """bool [L, width]: the clusters each labelled image (of group ``classes[k]``) may take."""
    allowed = np.zeros((len(classes), width), dtype=bool)
    for row, group in enumerate(classes):
        allowed[row, list(targets[group])] = True
    return allowed


#: CRLC-semi's settings in the paper: lambda_FC 5 and SGD lr 0.1 with cosine decay to 0.001.
SEMI_LAMBDA_FC = 5.0
SEMI_LR = 0.1
SEMI_LR_MIN = 0.001


def semi_optimizer(parent: TrainConfig) -> dict[str, Any]:
    """The optimiser settings of a refine run (CRLC-semi) that continues ``parent``.

    SGD with cosine decay to 0.001 (at most the start rate). An end-to-end SGD parent keeps
    its own lr, momentum and weight decay; any other parent (a stage-2 run with the paper's
    Adam 1e-4 or frozen-backbone SGD 5.0, or an Adam run) gets the paper's CRLC-semi SGD:
    lr 0.1, momentum 0.9, weight decay 5e-4, since refine trains the whole network.
    """
    if parent.optimizer == "sgd" and parent.stage == "end_to_end":
        lr, momentum, weight_decay = parent.lr, parent.momentum, parent.weight_decay
    else:
        defaults = TrainConfig(clusters=2)
        lr, momentum, weight_decay = SEMI_LR, defaults.momentum, defaults.weight_decay
    return {
        "optimizer": "sgd",
        "lr": lr,
        "lr_schedule": "cosine",
        "lr_min": min(SEMI_LR_MIN, lr),
        "momentum": momentum,
        "weight_decay": weight_decay,
    }


def semi_lambda_fc(parent: TrainConfig) -> float:
    """lambda_FC of a refine run: 5, lowered for the MemoryBank framework so that its
    features survive (:func:`crlc_engine.pipeline.presets.memorybank_lambda_fc`)."""
    if parent.framework == "memorybank":
        return memorybank_lambda_fc(SEMI_LAMBDA_FC, semi_optimizer(parent)["lr"])
    return SEMI_LAMBDA_FC


def refine_settings(
    base: TrainConfig,
    clusters: int,
    epochs: int | None,
    minutes: float | None,
    overrides: dict[str, Any] | None,
) -> TrainConfig:
    """The settings of a refine run of a run with settings ``base`` (CRLC-semi's): also what
    the Refine dialog estimates."""
    budget: dict[str, Any] = {"epochs": epochs, "minutes": minutes}
    if epochs is None and minutes is None:
        budget["epochs"] = max(1, (base.epochs or 50) // 4)
    return base.replace(
        clusters=clusters,
        lambda_ent=1.0,
        lambda_fc=semi_lambda_fc(base),
        lambda_xent=1.0,
        **semi_optimizer(base),
        labelled_batch=64,
        stage="end_to_end",
        freeze_backbone=False,
        **{**budget, **explicit_settings(overrides)},
    )


def labelled_rows(
    labels: dict[int, str],
    targets: dict[str, tuple[int, ...]],
    image_ids: list[int],
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, allowed): the rows of the labelled images among ``image_ids`` (a run's images,
    in order) and the clusters each may take (bool [L, width])."""
    row_of = {image_id: k for k, image_id in enumerate(image_ids)}
    chosen = [(row_of[i], c) for i, c in sorted(labels.items()) if i in row_of]
    rows = np.array([row for row, _ in chosen], dtype=np.int64)
    return rows, allowed_clusters(targets, [c for _, c in chosen], width)
