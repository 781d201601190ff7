"""Groups: the user's objects, and how a run's clusters get their names.

A run's clusters are numbers that change with every training; what the user names, merges,
labels, moves and exports are *groups*. A group has a name (unique in the library) and a
colour (the ``groups`` table). A run attaches names to its clusters (``cluster_names``, one
attachment per run): one name on several clusters is a merge, and those clusters are one
group.

**The group view of a run** (:class:`GroupView`, built by :func:`build_group_view`): every
image that is not ignored belongs to exactly one group:

* a labelled image (a label or a move) belongs to the group of its label, wherever the
  model put it (labels win);
* any other image belongs to the group its cluster is attached to, or, for an unnamed
  cluster, to that cluster's own unnamed group (key ``cluster:<n>``).

A group's probability for an image is the sum of the model's probabilities of the group's
clusters, so a merge reads as one probability. The window, ``crlc clusters`` and ``crlc
export`` all show this view.

**A name follows pictures, never a number.** When a run gets new assignments (train,
refine, stage 2, assign), :func:`attach_names` names its clusters from the images they
share with a *reference* view (the run the user was looking at; for a refine its parent):
every image of a new cluster has an origin, its label if it has one, else its group in the
reference view. A cluster takes a group's name when at least :data:`ATTACH_SHARE` of its
images whose origin is known came from that group (so at most one name, and a group split
over two clusters names both when each passes); clusters that match nothing stay unnamed.
:func:`check_groups` then records, per named group of the reference, how many of its
pictures landed under its name; a group that kept less than :data:`KEPT_SHARE` is flagged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from crlc_engine.library.catalog import Catalog
from crlc_engine.results.assignments import ResultStore, RunAssignments

#: A new cluster takes a group's name when at least this share of its images (of known
#: origin) came from the group: a clear majority (3 : 2). Measured with
#: benchmarks/groups_scenario.py and a retraining sweep (docs/benchmarks.md, "Groups"): on
#: 400 Imagenette photos of 5 named groups retrained with 4 clusters (one cluster must hold
#: two groups), 0.3-0.5 put 39.5 % of the pictures under another group's name, 0.6-0.9 only
#: 0.5 % (39 % stay unnamed); with 7 clusters 0.3-0.4 misnamed 6.8 %, 0.5-0.8 1 %, 0.9 none
#: but left 22 % unnamed; the group, correct, refine and retrain scenario gave the same
#: names from 0.3 to 0.7 on real and generated photos, and lost names at 0.9.
ATTACH_SHARE = 0.6
#: A group is flagged when less than this share of its pictures in the reference view are
#: still in it in the new run's view.
KEPT_SHARE = 0.8
#: Key prefix of the group of an unnamed cluster.
UNNAMED_KEY = "cluster:"
NAMED_KEY = "group:"


def named_key(name: str) -> str:
    """The key of the group called ``name``."""
    return NAMED_KEY + name


def unnamed_key(cluster: int) -> str:
    """The key of the unnamed group of cluster ``cluster``."""
    return f"{UNNAMED_KEY}{cluster}"


def default_cluster_name(cluster: int) -> str:
    """What an unnamed cluster is called (and named when an image is moved into it)."""
    return f"Cluster {cluster}"


def free_cluster_name(cluster: int, taken: Iterable[str]) -> str:
    """``Cluster n``, or ``Cluster n (2)``, ``(3)``... when a group already has that name (a
    group named ``Cluster 3`` can follow its pictures to other cluster numbers)."""
    used = set(taken)
    name, number = default_cluster_name(cluster), 1
    while name in used:
        number += 1
        name = f"{default_cluster_name(cluster)} ({number})"
    return name


@dataclass(frozen=True)
class GroupCheck:
    """How one named group of the reference view fared in a new run.

    Attributes:
        name: The group.
        members: Its pictures in the reference view that the new run assigned.
        kept: How many of those are in the group in the new run's view.
        reference_run: The run the new one was compared with.
    """

    name: str
    members: int
    kept: int
    reference_run: str

    @property
    def share(self) -> float:
        """Share of the group's pictures that stayed (1 for an empty group)."""
        return self.kept / self.members if self.members else 1.0

    @property
    def flagged(self) -> bool:
        """Whether the group changed so much that the user should look before exporting."""
        return self.members > 0 and self.share < KEPT_SHARE

    def flag_text(self) -> str:
        """The flag in words."""
        return (
            f"changed: only {self.kept} of its {self.members} pictures in run "
            f"{self.reference_run} ({self.share:.0%}) are still in it"
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


# --------------------------------------------------------------------------- naming runs
def attach_names(
    reference: Mapping[int, str | None],
    labels: Mapping[int, str],
    new_clusters: Mapping[int, int],
    ignored: Iterable[int] = (),
    share: float | None = None,
) -> dict[int, str]:
    """Name a new run's clusters by the pictures they share with the reference view.

    A cluster takes the name of group g when

    1. at least ``share`` of its pictures came from g (a picture's origin is its label, else
       its group in the reference view; a picture in an unnamed cluster of the reference,
       or new since the reference, came from no named group) and more than from any other
       origin, or else
    2. (labels only: none of its unlabelled pictures came from a named group of the
       reference) at least ``share`` of its labelled pictures are labelled g and it holds
       at least ``share`` of g's labelled pictures: the cluster is where g's labels went.

    Args:
        reference: image id -> its group's name in the reference view (``None`` in an
            unnamed cluster); pictures absent from it (new since) came from no named group.
        labels: image id -> label.
        new_clusters: image id -> cluster in the new run.
        ignored: Pictures left out.
        share: See :data:`ATTACH_SHARE` (the default).

    Returns:
        cluster -> name, for the clusters that take one.
    """
    share = ATTACH_SHARE if share is None else share
    skip = set(ignored)
    origins: dict[int, Counter[str | None]] = {}
    labelled: dict[int, Counter[str]] = {}
    from_named: Counter[int] = Counter()  # unlabelled pictures from a named reference group
    for image, cluster in new_clusters.items():
        if image in skip:
            continue
        if image in labels:
            labelled.setdefault(cluster, Counter())[labels[image]] += 1
            origins.setdefault(cluster, Counter())[labels[image]] += 1
        else:
            origin = reference.get(image)
            origins.setdefault(cluster, Counter())[origin] += 1
            from_named[cluster] += origin is not None
    label_totals: Counter[str] = Counter()
    for held_labels in labelled.values():
        label_totals.update(held_labels)
    names = {}
    for cluster, counts in origins.items():
        name = _majority(counts, share)
        if name is None and cluster in labelled and not from_named[cluster]:
            candidate = _majority(dict(labelled[cluster]), share)
            if candidate is not None:
                held = labelled[cluster][candidate]
                name = candidate if held >= share * label_totals[candidate] else None
        if name is not None:
            names[cluster] = name
    return names


def _majority(counts: Mapping[str, int] | Mapping[str | None, int], share: float) -> str | None:
    """The named origin holding at least ``share`` of all counts and more than any other
    origin (a tie names nothing)."""
    total = sum(counts.values())
    ranked = sorted(counts.values(), reverse=True)
    named = sorted((-n, name) for name, n in counts.items() if name is not None)
    if not named:
        return None
    count, name = -named[0][0], named[0][1]
    runner_up = ranked[1] if len(ranked) > 1 else 0
    return name if count >= share * total and count > runner_up else None


def check_groups(
    reference: Mapping[int, str | None],
    reference_run: str,
    labels: Mapping[int, str],
    new_clusters: Mapping[int, int],
    new_names: Mapping[int, str],
    ignored: Iterable[int] = (),
) -> list[GroupCheck]:
    """How many pictures of each named reference group are in it in the new run's view."""
    skip = set(ignored)
    members: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    for image, name in reference.items():
        if name is None or image in skip or image not in new_clusters:
            continue
        members[name] += 1
        now = labels.get(image) or new_names.get(new_clusters[image])
        kept[name] += now == name
    return [GroupCheck(n, members[n], kept[n], reference_run) for n in sorted(members)]


# --------------------------------------------------------------------------- catalog
class GroupStore:
    """Groups, names, labels and checks of one library's catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.db = catalog.db
        self.results = ResultStore(catalog)

    def colours(self) -> dict[str, int]:
        """name -> palette index of every group."""
        return {str(n): int(c) for n, c in self.db.execute("SELECT name, colour FROM groups")}

    def ensure(self, names: Iterable[str]) -> None:
        """Give new group names a colour: the lowest index no group has (inside the caller's
        transaction, or alone)."""
        taken = self.colours()
        used = set(taken.values())
        for name in names:
            if name in taken:
                continue
            colour = next(c for c in range(len(used) + 1) if c not in used)
            self.db.execute("INSERT INTO groups(name, colour) VALUES (?, ?)", (name, colour))
            taken[name] = colour
            used.add(colour)

    def checks(self, run_id: str) -> list[GroupCheck]:
        """The stored checks of a run (see :func:`check_groups`)."""
        rows = self.db.execute(
            "SELECT name, members, kept, reference_run FROM group_checks WHERE run_id=? "
            "ORDER BY name",
            (run_id,),
        )
        return [GroupCheck(str(n), int(m), int(k), str(r)) for n, m, k, r in rows]

    def has_checks(self, name: str) -> bool:
        """Whether a run has a stored check of the group ``name``."""
        found = self.db.execute("SELECT 1 FROM group_checks WHERE name=? LIMIT 1", (name,))
        return found.fetchone() is not None

    def rename_checks(self, old: str, new: str) -> None:
        """The checks of group ``old`` (every run) become those of ``new`` (a rename)."""
        self.db.execute("UPDATE group_checks SET name=? WHERE name=?", (new, old))

    def labels(self) -> dict[int, str]:
        """image id -> label."""
        rows = self.db.execute("SELECT image_id, class_name FROM labels")
        return {int(i): str(c) for i, c in rows}

    def ignored(self) -> set[int]:
        """Ignored picture ids."""
        return {int(i) for (i,) in self.db.execute("SELECT image_id FROM ignored")}

    def view(self, run_id: str, top: int = 5, data: RunAssignments | None = None) -> GroupView:
        """The group view of a run (``data``: its assignments, when already loaded)."""
        return build_group_view(
            run_id,
            data if data is not None else self.results.load(run_id),
            self.results.names(run_id),
            self.labels(),
            self.ignored(),
            self.colours(),
            self.checks(run_id),
            top,
        )

    def attach(
        self,
        run_id: str,
        reference: Mapping[int, str | None],
        reference_run: str | None,
    ) -> dict[int, str]:
        """Name the run's clusters from a reference view and record the checks (replaces
        the run's names and checks; one transaction). Returns cluster -> name."""
        labels, ignored = self.labels(), self.ignored()
        new_clusters = self.results.load(run_id).cluster_of()
        names = attach_names(reference, labels, new_clusters, ignored)
        checks = (
            check_groups(reference, reference_run, labels, new_clusters, names, ignored)
            if reference_run is not None
            else []
        )
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("DELETE FROM cluster_names WHERE run_id=?", (run_id,))
            self.db.executemany(
                "INSERT INTO cluster_names(run_id, cluster, name) VALUES (?, ?, ?)",
                [(run_id, c, n) for c, n in sorted(names.items())],
            )
            self.db.execute("DELETE FROM group_checks WHERE run_id=?", (run_id,))
            self.db.executemany(
                "INSERT INTO group_checks(run_id, name, reference_run, members, kept) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, c.name, c.reference_run, c.members, c.kept) for c in checks],
            )
            self.ensure(sorted(set(names.values())))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return names

    def refine_report(
        self, run_id: str, reference: Mapping[int, str | None]
    ) -> dict[str, float | None]:
        """How a refine run kept the labelled groups (``None`` where there is nothing to
        count):

        * ``labelled_in_group``: share of the labelled pictures that the model put in a
          cluster attached to their group;
        * ``unlabelled_in_group``: share of the other pictures of labelled groups (their
          group in ``reference``, the parent's view) that are in their group in this run's
          view.
        """
        labels, ignored = self.labels(), self.ignored()
        clusters = self.results.load(run_id).cluster_of()
        names = self.results.names(run_id)
        view = self.view(run_id)
        labelled = [i for i in labels if i in clusters and i not in ignored]
        agree = [names.get(clusters[i]) == labels[i] for i in labelled]
        groups = set(labels[i] for i in labelled)
        others = [
            i
            for i, g in reference.items()
            if g in groups and i not in labels and i not in ignored and i in clusters
        ]
        stayed = [view.key_of(i) == named_key(str(reference[i])) for i in others]
        return {
            "labelled_in_group": _share(agree),
            "unlabelled_in_group": _share(stayed),
        }

    def reference(self, run_id: str | None) -> dict[int, str | None]:
        """What a new run is compared with: the group of every picture in ``run_id``'s view
        (empty without a run)."""
        if run_id is None or not self.results.has(run_id):
            return {}
        return self.view(run_id).names_by_image()


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None
