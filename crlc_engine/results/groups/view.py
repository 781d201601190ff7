"""The group view of a run: every picture that is not ignored in exactly one group, with
the group's summed probability, from the run's assignments and the user's names and labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from crlc_engine.results.assignments import RunAssignments
from crlc_engine.results.groups.naming import (
    NAMED_KEY,
    GroupCheck,
    default_cluster_name,
    free_cluster_name,
    named_key,
    unnamed_key,
)


@dataclass(frozen=True)
class GroupSummary:
    """One group of a run's group view.

    Attributes:
        key: ``group:<name>`` for a named group, ``cluster:<n>`` for an unnamed cluster.
        name: The group's name, ``None`` for an unnamed cluster.
        clusters: The run's clusters attached to it (empty for a group held by labels only).
        size: Its pictures (ignored ones left out).
        mean_confidence: Mean of its pictures' probability of the group.
        top_image_ids: Its most probable pictures, most probable first.
        labelled: How many of its pictures are held there by a label or a move.
        colour: Palette index of its colour.
        flags: Warnings in words (e.g. the group changed a lot with this run).
    """

    key: str
    name: str | None
    clusters: tuple[int, ...]
    size: int
    mean_confidence: float
    top_image_ids: list[int]
    labelled: int
    colour: int
    flags: tuple[str, ...] = ()
    unnamed_title: str | None = None

    @property
    def title(self) -> str:
        """The name, or ``Cluster n`` for an unnamed cluster (``Cluster n (2)`` when a named
        group of the view is called ``Cluster n``: ``unnamed_title``)."""
        if self.name is not None:
            return self.name
        if self.unnamed_title is not None:
            return self.unnamed_title
        return default_cluster_name(self.clusters[0]) if self.clusters else "?"


@dataclass(frozen=True)
class GroupView:
    """Every group of one run and the group of every picture (see the module docstring).

    Attributes:
        run_id: The run.
        groups: Ordered by their lowest cluster; then groups held by labels only; last,
            flagged groups left with no picture (empty rows that carry the warning).
        image_ids: int64 [N], the run's pictures that are not ignored, ascending.
        group_index: int64 [N], each picture's row in ``groups``.
        confidences: float32 [N], each picture's probability of its group.
        probabilities: float32 [N, G], each picture's probability of every group.
        labelled: bool [N], whether a label (or move) holds the picture in its group.
    """

    run_id: str
    groups: tuple[GroupSummary, ...]
    image_ids: np.ndarray
    group_index: np.ndarray
    confidences: np.ndarray
    probabilities: np.ndarray
    labelled: np.ndarray
    _rows: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._rows.update({g.key: k for k, g in enumerate(self.groups)})

    def group(self, key: str) -> GroupSummary:
        """The group with ``key`` (KeyError when the view has none)."""
        return self.groups[self._rows[key]]

    def has(self, key: str) -> bool:
        """Whether the view has a group with ``key``."""
        return key in self._rows

    def key_of(self, image_id: int) -> str | None:
        """The key of a picture's group (``None``: ignored or not in the run)."""
        row = self._row(image_id)
        return None if row is None else self.groups[int(self.group_index[row])].key

    def _row(self, image_id: int) -> int | None:
        row = int(np.searchsorted(self.image_ids, image_id))
        if row < len(self.image_ids) and int(self.image_ids[row]) == image_id:
            return row
        return None

    def members(self, key: str, low_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A group's picture ids and probabilities, most probable first (or least)."""
        rows = np.flatnonzero(self.group_index == self._rows[key])
        ids, conf = self.image_ids[rows], self.confidences[rows]
        order = np.lexsort((ids, conf if low_first else -conf))
        return ids[order], conf[order]

    def ranked(self, image_id: int, top: int = 5) -> list[tuple[GroupSummary, float]]:
        """A picture's ``top`` most probable groups with their probabilities."""
        row = self._row(image_id)
        if row is None:
            return []
        probs = self.probabilities[row]
        order = np.argsort(-probs, kind="stable")[:top]
        return [(self.groups[int(g)], float(probs[g])) for g in order.tolist()]

    def names_by_image(self) -> dict[int, str | None]:
        """image id -> its group's name (``None`` in an unnamed cluster): what a new run is
        compared with (:func:`attach_names`)."""
        names = [g.name for g in self.groups]
        return {
            int(i): names[int(g)]
            for i, g in zip(self.image_ids.tolist(), self.group_index.tolist(), strict=True)
        }


def build_group_view(
    run_id: str,
    data: RunAssignments,
    names: Mapping[int, str],
    labels: Mapping[int, str],
    ignored: Iterable[int] = (),
    colours: Mapping[str, int] | None = None,
    checks: Iterable[GroupCheck] = (),
    top: int = 5,
) -> GroupView:
    """The group view of a run from its assignments and the user's names and labels.

    Args:
        run_id: The run.
        data: Its assignments (clusters, confidences, probabilities [N, C]).
        names: cluster -> name attached in this run.
        labels: image id -> label (a group name).
        ignored: Ignored pictures (left out).
        colours: Palette index of each named group (the others get free indices).
        checks: How the run's named groups fared (flags).
        top: Most probable pictures listed per group.
    """
    keep = ~np.isin(data.image_ids, np.fromiter(ignored, dtype=np.int64))
    ids = data.image_ids[keep]
    clusters = data.clusters[keep]
    own_conf = data.confidences[keep].astype(np.float32)
    probs = data.probabilities[keep] if data.probabilities.size else np.zeros((len(ids), 0))
    cluster_keys = {
        int(c): named_key(names[int(c)]) if int(c) in names else unnamed_key(int(c))
        for c in {*np.unique(data.clusters).tolist(), *names}
    }
    label_of = [labels.get(int(i)) for i in ids.tolist()]
    image_keys = [
        named_key(label) if label is not None else cluster_keys[int(c)]
        for label, c in zip(label_of, clusters.tolist(), strict=True)
    ]
    keys = _ordered_keys(cluster_keys, image_keys)
    checks = list(checks)
    # a flagged group that kept no cluster and no picture still has a row (empty, with its
    # warning), so the window, `crlc clusters` and the export say what became of it
    vanished = {c.name for c in checks if c.flagged} - {
        key[len(NAMED_KEY) :] for key in keys if key.startswith(NAMED_KEY)
    }
    keys += [named_key(name) for name in sorted(vanished)]
    rows = {key: k for k, key in enumerate(keys)}
    group_index = np.array([rows[k] for k in image_keys], dtype=np.int64)
    group_probs = _group_probabilities(probs, clusters, own_conf, cluster_keys, rows)
    confidences = group_probs[np.arange(len(ids)), group_index] if len(ids) else own_conf
    labelled = np.array([label is not None for label in label_of], dtype=bool)
    summaries = _summaries(
        keys, cluster_keys, ids, group_index, confidences, labelled, colours or {}, checks, top
    )
    return GroupView(run_id, tuple(summaries), ids, group_index, confidences, group_probs, labelled)


def _ordered_keys(cluster_keys: dict[int, str], image_keys: list[str]) -> list[str]:
    """Groups with clusters by their lowest cluster, then label-only groups by name."""
    first: dict[str, int] = {}
    for cluster, key in sorted(cluster_keys.items()):
        first.setdefault(key, cluster)
    extra = sorted(set(image_keys) - set(first))
    return sorted(first, key=lambda k: first[k]) + extra


def _group_probabilities(
    probs: np.ndarray,
    clusters: np.ndarray,
    own_conf: np.ndarray,
    cluster_keys: dict[int, str],
    rows: dict[str, int],
) -> np.ndarray:
    """float32 [N, G]: the summed probability of each group's clusters.

    A cluster made by a split (index past the model's C outputs) has no column: its
    pictures get their own stored confidence for its group.
    """
    n, head = probs.shape if probs.ndim == 2 else (len(clusters), 0)
    to_group = np.zeros((head, len(rows)), dtype=np.float32)
    for cluster, key in cluster_keys.items():
        if 0 <= cluster < head:
            to_group[cluster, rows[key]] = 1.0
    out = (probs.astype(np.float32) @ to_group) if head else np.zeros((n, len(rows)), np.float32)
    split = np.flatnonzero(clusters >= head)
    if split.size:
        columns = [rows[cluster_keys[int(c)]] for c in clusters[split].tolist()]
        out[split, columns] = own_conf[split]
    return out


def _summaries(
    keys: list[str],
    cluster_keys: dict[int, str],
    ids: np.ndarray,
    group_index: np.ndarray,
    confidences: np.ndarray,
    labelled: np.ndarray,
    colours: Mapping[str, int],
    checks: Iterable[GroupCheck],
    top: int,
) -> list[GroupSummary]:
    flags = {c.name: (c.flag_text(),) for c in checks if c.flagged}
    members: dict[int, list[int]] = {}
    for row, g in enumerate(group_index.tolist()):
        members.setdefault(g, []).append(row)
    attached: dict[str, list[int]] = {}
    for cluster, key in sorted(cluster_keys.items()):
        attached.setdefault(key, []).append(cluster)
    palette = _colours(keys, colours)
    taken = {key[len(NAMED_KEY) :] for key in keys if key.startswith(NAMED_KEY)}
    out = []
    for g, key in enumerate(keys):
        rows = np.array(members.get(g, []), dtype=np.int64)
        conf = confidences[rows] if len(rows) else np.zeros(0, np.float32)
        order = np.lexsort((ids[rows], -conf)) if len(rows) else rows
        name = key[len(NAMED_KEY) :] if key.startswith(NAMED_KEY) else None
        own = attached.get(key, ())
        unnamed_title = None
        if name is None and own and default_cluster_name(own[0]) in taken:
            unnamed_title = free_cluster_name(own[0], taken)
            taken.add(unnamed_title)
        out.append(
            GroupSummary(
                key=key,
                name=name,
                clusters=tuple(attached.get(key, ())),
                size=len(rows),
                mean_confidence=float(conf.mean()) if len(rows) else 0.0,
                top_image_ids=[int(i) for i in ids[rows][order][:top].tolist()],
                labelled=int(labelled[rows].sum()) if len(rows) else 0,
                colour=palette[key],
                flags=flags.get(name or "", ()),
                unnamed_title=unnamed_title,
            )
        )
    return out


def _colours(keys: list[str], colours: Mapping[str, int]) -> dict[str, int]:
    """Named groups keep their stored colour; the others take the lowest free indices."""
    out: dict[str, int] = {}
    for key in keys:
        if key.startswith(NAMED_KEY) and key[len(NAMED_KEY) :] in colours:
            out[key] = colours[key[len(NAMED_KEY) :]]
    used = set(out.values())
    free = (c for c in range(len(keys) + len(used) + 1) if c not in used)
    for key in keys:
        if key not in out:
            out[key] = next(free)
    return out
