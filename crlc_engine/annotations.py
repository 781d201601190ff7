"""What the user says about images: labels, cluster names, ignores, with undo and redo.

A label is (image, class name). Naming a cluster makes its name a class; moving an image to
a cluster labels it with that cluster's name (an unnamed cluster is named ``Cluster <n>``
first, n its 0-based index as everywhere in the CLI); giving two clusters one name merges
them. Every change is one row of the ``history`` table holding the before and after state
of what it touched, so undo and redo are exact; a new change after an undo drops the redo stack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from crlc_engine.errors import InvalidSettingError
from crlc_engine.library.catalog import Catalog
from crlc_engine.results import ResultStore


def default_cluster_name(cluster: int) -> str:
    """The name an unnamed cluster gets when an image is moved into it."""
    return f"Cluster {cluster}"


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
        if name is None:
            name = default_cluster_name(cluster)
            change["names"] = [[run_id, cluster, None, name]]
        current = self.labels()
        change["labels"] = {str(i): [current.get(i), name] for i in ids}
        self._commit(f"move {len(ids)} image(s) to {name!r}", change)
        return name

    def set_ignored(self, image_ids: Iterable[int], ignored: bool = True) -> None:
        """Exclude images from training and export (or include them again)."""
        current = self.ignored()
        ids = sorted(set(image_ids))
        change = {"ignored": {str(i): [i in current, ignored] for i in ids}}
        verb = "ignore" if ignored else "stop ignoring"
        self._commit(f"{verb} {len(ids)} image(s)", change)

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
