"""The export manifest, ``crlc-export-<stamp>.csv``: one row per input photo, written
atomically, and read back by undo when the journal is gone.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from crlc_engine.core.fileio import atomic_write
from crlc_engine.results.export.journal import FileRecord, manifest_file
from crlc_engine.results.export.model import UndoError
from crlc_engine.results.export.plan import ExportPlan

_MANIFEST_COLUMNS = (
    "source",
    "destination",
    "cluster",
    "folder",
    "confidence",
    "mode",
    "status",
    "note",
)


def write_manifest(plan: ExportPlan, outcomes: list[tuple[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_MANIFEST_COLUMNS)
    for entry, (status, note) in zip(plan.entries, outcomes, strict=True):
        destination = "" if entry.destination is None else os.fspath(entry.destination)
        writer.writerow(
            [
                os.fspath(entry.source),
                destination,
                entry.cluster,
                entry.folder,
                f"{entry.confidence:.4f}",
                plan.mode,
                status,
                note,
            ]
        )
    data = buffer.getvalue().encode("utf-8", "surrogateescape")
    atomic_write(manifest_file(plan.dest, plan.stamp), lambda handle: handle.write(data))


def read_manifest(path: Path) -> tuple[str, list[FileRecord]]:
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        rows = list(csv.DictReader(io.StringIO(text)))
    except (OSError, csv.Error) as exc:
        raise UndoError(f"cannot read the export manifest {path}: {exc}") from exc
    if rows and not set(_MANIFEST_COLUMNS[:7]) <= set(rows[0]):
        raise UndoError(f"{path} is not an export manifest (unexpected columns)")
    mode = rows[0]["mode"] if rows else "csv"
    records = [
        FileRecord(row["source"], row["destination"], "manifest", row["mode"])
        for row in rows
        if row["status"] == "exported" and row["destination"]
    ]
    return mode, records
