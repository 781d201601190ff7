"""How a run's clusters get their names: group keys, the default cluster names, and the
rules that attach a name to a new cluster (:data:`ATTACH_SHARE`) and flag a group that lost
its pictures (:data:`KEPT_SHARE`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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
