"""The groups of one library's catalog: colours, names attached per run, labels, ignored
pictures and checks, read and written in the catalog's tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from crlc_engine.library.catalog import Catalog
from crlc_engine.results.assignments import ResultStore, RunAssignments
from crlc_engine.results.groups.naming import GroupCheck, attach_names, check_groups, named_key
from crlc_engine.results.groups.view import GroupView, build_group_view


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
