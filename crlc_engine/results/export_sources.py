"""What an export of a run works on: the items to copy, and what undo checks against."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from crlc_engine.core.errors import CRLCError
from crlc_engine.library import ImageLibrary, library_roots
from crlc_engine.results.export import ExportItem
from crlc_engine.results.groups import GroupStore, default_cluster_name


def export_items(library: ImageLibrary, run_id: str) -> list[ExportItem]:
    """What to export from a run: one folder per group of its group view (labels win, a
    merge is one folder, an unnamed cluster is ``Cluster n``); a labelled picture has
    confidence 1, the others their probability of their group.

    Every image of the run is listed, those marked missing by a scan too (the export counts
    them as missing instead of leaving them out without a word), ignored ones as ignored.
    """
    records = {r.id: r for r in library.images(None)}
    groups = GroupStore(library.catalog)
    data = groups.results.load(run_id)
    view = groups.view(run_id, data=data)
    row = {int(i): k for k, i in enumerate(view.image_ids.tolist())}
    items = []
    for image_id, cluster in zip(data.image_ids.tolist(), data.clusters.tolist(), strict=True):
        record = records.get(image_id)
        if record is None:
            continue
        k = row.get(image_id)
        if k is None:  # ignored: left out by the export
            folder, conf = default_cluster_name(cluster), 0.0
        else:
            folder = view.groups[int(view.group_index[k])].title
            conf = 1.0 if view.labelled[k] else float(view.confidences[k])
        items.append(ExportItem(record.path, folder, conf, record.rel_path, ignored=k is None))
    return items


@contextmanager
def export_undo_checks(
    base: str | Path | None,
) -> Iterator[tuple[list[Path], Callable[[Path], tuple[int, int] | None]]]:
    """What ``undo_export`` checks against: the roots of every library under ``base`` (read
    from each ``library.json``, cheaply), and a look-up of the size and mtime their catalogs
    recorded for a photo (a catalog is opened read-only on the first look-up into its
    library, closed on exit; a library that cannot be opened is skipped)."""
    found = [(workspace, [Path(r) for r in roots]) for workspace, roots in library_roots(base)]
    opened: dict[Path, ImageLibrary | None] = {}

    def library_of(workspace: Path, roots: list[Path]) -> ImageLibrary | None:
        if workspace not in opened:
            try:
                opened[workspace] = ImageLibrary(tuple(roots), workspace, read_only=True)
            except (CRLCError, sqlite3.Error):
                opened[workspace] = None
        return opened[workspace]

    def recorded(path: Path) -> tuple[int, int] | None:
        for workspace, roots in found:
            if not any(path.is_relative_to(root) for root in roots):
                continue
            library = library_of(workspace, roots)
            record = None if library is None else library.catalog.image_by_path(path)
            if record is not None:
                return record.size, record.mtime_ns
        return None

    try:
        yield [root for _, roots in found for root in roots], recorded
    finally:
        for library in opened.values():
            if library is not None:
                library.close()
