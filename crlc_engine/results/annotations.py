"""What the user says about images: labels, cluster names, ignores, with undo and redo.

A label is (image, group name). Naming a cluster attaches it to the group of that name (see
:mod:`crlc_engine.results.groups`); moving an image to a cluster or a group labels it with that
group's name (an unnamed cluster is named ``Cluster <n>`` first, n its 0-based index as
everywhere in the CLI); giving two clusters one name merges them; renaming a group renames
it in every run and its labels; splitting a cluster (:mod:`crlc_engine.results.cluster_split`)
moves some of
its images to new cluster indices of the run. Every change is one row of the ``history``
table holding the before and after state of what it touched, so undo and redo are exact; a
new change after an undo drops the redo stack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.library.catalog import Catalog
from crlc_engine.results.assignments import ResultStore
from crlc_engine.results.cluster_split import SplitPlan, next_cluster_ids, plan_split
from crlc_engine.results.groups import (
    NAMED_KEY,
    UNNAMED_KEY,
    GroupStore,
    default_cluster_name,
    free_cluster_name,
)


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidSettingError("a class or cluster name cannot be empty")
    if len(cleaned) > 200:
        raise InvalidSettingError("a class or cluster name can have at most 200 characters")
    return cleaned


class Annotations:
    """Labels, names and ignores of one library, with an undo/redo history."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.db = catalog.db
        self.results = ResultStore(catalog)
        self.groups = GroupStore(catalog)

    # ------------------------------------------------------------------ state
    def labels(self) -> dict[int, str]:
        """image id -> class name."""
        return {
            int(i): str(c) for i, c in self.db.execute("SELECT image_id, class_name FROM labels")
        }

    def ignored(self) -> set[int]:
        """Ids of ignored images."""
        return {int(i) for (i,) in self.db.execute("SELECT image_id FROM ignored")}

    def names(self, run_id: str) -> dict[int, str]:
        """cluster -> name of a run."""
        return self.results.names(run_id)

    # ------------------------------------------------------------------ changes
    def label(self, image_ids: Iterable[int], class_name: str) -> None:
        """Label images as ``class_name`` (one undoable step)."""
        name = _clean_name(class_name)
        ids = sorted(set(image_ids))
        current = self.labels()
        change = {"labels": {str(i): [current.get(i), name] for i in ids}}
        self._commit(f"label {len(ids)} image(s) as {name!r}", change)

    def unlabel(self, image_ids: Iterable[int]) -> None:
        """Remove the labels of images (one undoable step)."""
        current = self.labels()
        ids = sorted(i for i in set(image_ids) if i in current)
        change = {"labels": {str(i): [current[i], None] for i in ids}}
        self._commit(f"remove the labels of {len(ids)} image(s)", change)

    def name_cluster(self, run_id: str, cluster: int, name: str | None) -> None:
        """Name (or, with ``None``, un-name) a cluster of a run (one undoable step)."""
        new = None if name is None else _clean_name(name)
        old = self.names(run_id).get(cluster)
        change = {"names": [[run_id, cluster, old, new]]}
        self._commit(f"name cluster {cluster} {new!r}", change)

    def move_to_cluster(self, run_id: str, image_ids: Iterable[int], cluster: int) -> str:
        """Label images with a cluster's name, naming the cluster first if needed.

        Returns:
            The class name the images got.
        """
        ids = sorted(set(image_ids))
        names = self.names(run_id)
        change: dict[str, Any] = {}
        name = names.get(cluster)
        if name is None:  # a name no group has: moving never merges two groups unasked
            name = free_cluster_name(cluster, self._names_in_use())
            change["names"] = [[run_id, cluster, None, name]]
        current = self.labels()
        change["labels"] = {str(i): [current.get(i), name] for i in ids}
        self._commit(f"move {len(ids)} image(s) to {name!r}", change)
        return name

    def rename_group(self, old: str, new: str) -> None:
        """Rename the group ``old`` everywhere (one undoable step): its clusters in every run
        and its labels. A name another group has merges the two."""
        name = _clean_name(new)
        if name == old:
            return
        rows = self.db.execute(
            "SELECT run_id, cluster FROM cluster_names WHERE name=? ORDER BY run_id, cluster",
            (old,),
        ).fetchall()
        change: dict[str, Any] = {"names": [[r, int(c), old, name] for r, c in rows]}
        change["labels"] = {str(i): [old, name] for i, c in self.labels().items() if c == old}
        if not rows and not change["labels"]:
            raise InvalidSettingError(f"there is no group called {old!r}")
        if not self.groups.has_checks(name):  # its warnings follow it (a merge keeps both)
            change["checks"] = [old, name]
        self._commit(f"rename {old!r} to {name!r}", change)

    def _names_in_use(self) -> set[str]:
        """Every group name the library uses: cluster names of all runs and labels (a name
        whose last use was undone is free again)."""
        taken = set(self.labels().values())
        taken |= {n for (n,) in self.db.execute("SELECT DISTINCT name FROM cluster_names")}
        return taken

    def separate_clusters(self, run_id: str, name: str, clusters: Sequence[int]) -> list[str]:
        """Give each cluster of a merged group of a run its own group (one undoable step): the
        first keeps ``name``, the others get ``<name> 2``, ``<name> 3``... (a free name).
        Labels stay with ``name``. Returns the names in cluster order."""
        taken = self._names_in_use()
        names, number = [name], 1
        for _ in clusters[1:]:
            number += 1
            while f"{name} {number}" in taken:
                number += 1
            names.append(f"{name} {number}")
        change = {
            "names": [[run_id, int(c), name, n] for c, n in zip(clusters, names, strict=True)]
        }
        self._commit(f"separate the {len(clusters)} clusters of {name!r}", change)
        return names

    def move_to_group(self, run_id: str, image_ids: Iterable[int], key: str) -> str:
        """Move pictures into a group of a run's group view (see :mod:`crlc_engine.results.groups`):
        a named group labels them with its name; an unnamed cluster is named ``Cluster n``
        first (:meth:`move_to_cluster`). Returns the name they got."""
        if key.startswith(NAMED_KEY):
            name = key[len(NAMED_KEY) :]
            self.label(image_ids, name)
            return name
        if not key.startswith(UNNAMED_KEY):
            raise InvalidSettingError(f"unknown group {key!r}")
        return self.move_to_cluster(run_id, image_ids, int(key[len(UNNAMED_KEY) :]))

    def set_ignored(self, image_ids: Iterable[int], ignored: bool = True) -> None:
        """Exclude images from training and export (or include them again)."""
        current = self.ignored()
        ids = sorted(set(image_ids))
        change = {"ignored": {str(i): [i in current, ignored] for i in ids}}
        verb = "ignore" if ignored else "stop ignoring"
        self._commit(f"{verb} {len(ids)} image(s)", change)

    def plan_split(self, run_id: str, cluster: int, parts: int = 2, seed: int = 0) -> SplitPlan:
        """How :meth:`split_cluster` would divide a cluster (changes nothing; for previews).

        Raises:
            RunNotFoundError: the run has no assignments.
            InvalidSettingError: unknown cluster, bad ``parts``, too few images.
        """
        return plan_split(self.results, run_id, cluster, parts, self.ignored(), seed)

    def split_cluster(
        self,
        run_id: str,
        cluster: int,
        parts: int = 2,
        names: Sequence[str | None] | None = None,
        seed: int = 0,
        label: bool = False,
    ) -> SplitPlan:
        """Split a cluster by k-means on its images' features (one undoable step).

        See :meth:`apply_split` for ``names`` and ``label``.

        Returns:
            The plan that was applied.
        """
        plan = self.plan_split(run_id, cluster, parts, seed)
        self.apply_split(plan, names, label)
        return plan

    def apply_split(
        self, plan: SplitPlan, names: Sequence[str | None] | None = None, label: bool = False
    ) -> None:
        """Apply a planned split (one undoable step).

        Part 0 (the largest) keeps the cluster and its name; the other parts move to the
        plan's new cluster indices.

        Args:
            plan: From :meth:`plan_split`, still current.
            names: One entry per part, largest part first; ``None`` or "" keeps the cluster's
                name for part 0 and leaves a new part unnamed (shown as ``Cluster <n>``).
                A name another cluster has merges the part into it, as with renaming.
            label: Also label every unlabelled image of every part with its part's name (so
                that ``refine`` learns the split; unnamed parts are named ``Cluster <n>``).

        Raises:
            InvalidSettingError: wrong number of names, two parts with one name, a bad
                name, or the cluster changed since the plan was made.
        """
        parts = len(plan.clusters)
        given = list(names) if names is not None else [None] * parts
        if len(given) != parts:
            raise InvalidSettingError(f"give {parts} names (one per part), not {len(given)}")
        cleaned = [_clean_name(n) if n is not None and n.strip() else None for n in given]
        self._check_plan_is_current(plan)
        old_names = self.names(plan.run_id)
        final = [cleaned[0] or old_names.get(plan.cluster), *cleaned[1:]]
        if label:
            final = [
                n or default_cluster_name(c) for n, c in zip(final, plan.clusters, strict=True)
            ]
        chosen = [n for n in final if n is not None]
        if len(set(chosen)) != len(chosen):
            raise InvalidSettingError("two parts of a split cannot have the same name")
        change: dict[str, Any] = {
            "assignments": [
                [plan.run_id, image, plan.cluster, cluster]
                for image, cluster in sorted(plan.moves().items())
            ]
        }
        renames = [
            [plan.run_id, cluster, old_names.get(cluster), name]
            for cluster, name in zip(plan.clusters, final, strict=True)
            if name is not None and name != old_names.get(cluster)
        ]
        if renames:
            change["names"] = renames
        if label:
            current = self.labels()
            change["labels"] = {
                str(i): [None, name]
                for ids, name in zip(plan.image_ids, final, strict=True)
                for i in ids.tolist()
                if i not in current
            }
        sizes = "+".join(str(n) for n in plan.sizes)
        self._commit(f"split cluster {plan.cluster} into {parts} parts ({sizes})", change)

    def _check_plan_is_current(self, plan: SplitPlan) -> None:
        """The cluster's non-ignored images and the new indices are as when planned."""
        data = self.results.load(plan.run_id)
        ignored = self.ignored()
        members = {
            i
            for i, c in zip(data.image_ids.tolist(), data.clusters.tolist(), strict=True)
            if c == plan.cluster and i not in ignored
        }
        planned = {i for ids in plan.image_ids for i in ids.tolist()}
        free = next_cluster_ids(self.results, plan.run_id, 1)[0]
        if members != planned or min(plan.new_clusters) < free:
            raise InvalidSettingError(
                f"cluster {plan.cluster} of run {plan.run_id} changed since the split was "
                "planned; plan it again"
            )

    # ------------------------------------------------------------------ history
    def undo(self) -> str | None:
        """Revert the newest change not yet undone; returns its description (None: nothing)."""
        row = self.db.execute(
            "SELECT seq, description, change FROM history WHERE undone=0 ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        self._transaction(lambda: self._step(int(row[0]), json.loads(row[2]), undone=True))
        return str(row[1])

    def redo(self) -> str | None:
        """Re-apply the oldest undone change; returns its description (None: nothing)."""
        row = self.db.execute(
            "SELECT seq, description, change FROM history WHERE undone=1 ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        self._transaction(lambda: self._step(int(row[0]), json.loads(row[2]), undone=False))
        return str(row[1])

    def next_undo(self) -> str | None:
        """What :meth:`undo` would revert (its description), or None."""
        row = self.db.execute(
            "SELECT description FROM history WHERE undone=0 ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row[0])

    def next_redo(self) -> str | None:
        """What :meth:`redo` would re-apply (its description), or None."""
        row = self.db.execute(
            "SELECT description FROM history WHERE undone=1 ORDER BY seq LIMIT 1"
        ).fetchone()
        return None if row is None else str(row[0])

    def _step(self, seq: int, change: dict[str, Any], undone: bool) -> None:
        self._apply(change, 0 if undone else 1)
        self.db.execute("UPDATE history SET undone=? WHERE seq=?", (int(undone), seq))

    def history(self) -> list[tuple[int, str, bool]]:
        """(seq, description, undone) of every recorded change, oldest first."""
        return [
            (int(s), str(d), bool(u))
            for s, d, u in self.db.execute(
                "SELECT seq, description, undone FROM history ORDER BY seq"
            )
        ]

    def _commit(self, description: str, change: dict[str, Any]) -> None:
        def work() -> None:
            self.db.execute("DELETE FROM history WHERE undone=1")
            self._apply(change, 1)
            self.db.execute(
                "INSERT INTO history(description, change) VALUES (?, ?)",
                (description, json.dumps(change)),
            )

        self._transaction(work)

    def _transaction(self, work: Callable[[], None]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            work()
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _apply(self, change: dict[str, Any], side: int) -> None:
        """Set the state to the ``side`` (0 before, 1 after) of a recorded change."""
        for image, values in change.get("labels", {}).items():
            value = values[side]
            if value is None:
                self.db.execute("DELETE FROM labels WHERE image_id=?", (int(image),))
            else:
                self.db.execute("INSERT OR REPLACE INTO labels VALUES (?, ?)", (int(image), value))
        for image, values in change.get("ignored", {}).items():
            if values[side]:
                self.db.execute("INSERT OR IGNORE INTO ignored VALUES (?)", (int(image),))
            else:
                self.db.execute("DELETE FROM ignored WHERE image_id=?", (int(image),))
        for run_id, cluster, *values in change.get("names", []):
            self.results.set_name(run_id, int(cluster), values[side])
        if "checks" in change:
            self.groups.rename_checks(change["checks"][1 - side], change["checks"][side])
        new_names = {v[side] for v in change.get("labels", {}).values()}
        new_names |= {v[2 + side] for v in change.get("names", [])}
        self.groups.ensure(sorted(n for n in new_names if n is not None))
        moves: dict[str, dict[int, int]] = {}
        for run_id, image, *values in change.get("assignments", []):
            moves.setdefault(run_id, {})[int(image)] = int(values[side])
        for run_id, clusters in moves.items():
            self.results.set_clusters(run_id, clusters)
