"""Writing an export journal: a new one under a stamp taken exclusively, or an unfinished
one appended to; its lines are fsynced before the file they announce is touched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from crlc_engine.core.fileio import fsync_dir
from crlc_engine.results.export.file_checks import lexists
from crlc_engine.results.export.journal import (
    JOURNAL_FORMAT,
    JOURNAL_VERSION,
    FileIdentity,
    journal_file,
    manifest_file,
)
from crlc_engine.results.export.model import ExportPlanEntry
from crlc_engine.results.export.plan import ExportPlan


def _split_stamp(stamp: str) -> tuple[str, int]:
    """``("<base>", n)`` of ``<base>-<n>`` (``n`` 1 for a stamp without a number)."""
    base, _, number = stamp.rpartition("-")
    if base and number.isdigit():
        return base, int(number)
    return stamp, 1


def claim_stamp(
    plan: ExportPlan, own: Callable[[Path, str], Path], other: Callable[[Path, str], Path]
) -> int:
    """Create ``own(DEST, stamp)`` exclusively (``O_EXCL``) and return its descriptor.

    On a clash (another export took the stamp meanwhile), or when ``other(DEST, stamp)``
    exists, the next stamp (``-2``, ``-3``...) is tried; ``plan.stamp`` is set to the one
    taken.
    """
    base, number = _split_stamp(plan.stamp)
    while True:
        stamp = base if number == 1 else f"{base}-{number}"
        number += 1
        if lexists(other(plan.dest, stamp)):
            continue
        try:
            fd = os.open(own(plan.dest, stamp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        plan.stamp = stamp
        return fd


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _open_for_append(path: Path) -> IO[bytes]:
    handle = open(path, "ab")  # noqa: SIM115 - kept open for the whole export
    if handle.tell() > 0:
        with open(path, "rb") as reader:
            reader.seek(-1, os.SEEK_END)
            if reader.read(1) != b"\n":  # the last line was cut short by a kill
                handle.write(b"\n")
    return handle


class JournalWriter:
    """Appends JSON lines to an export journal; ``durable`` lines are fsynced."""

    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        self._handle = handle

    @classmethod
    def start(cls, plan: ExportPlan) -> JournalWriter:
        if plan.resume is not None:
            writer = cls(plan.resume.path, _open_for_append(plan.resume.path))
            writer.write({"kind": "resumed", "at": _now()}, durable=True)
            return writer
        fd = claim_stamp(plan, journal_file, manifest_file)
        writer = cls(journal_file(plan.dest, plan.stamp), os.fdopen(fd, "wb"))
        header = {
            "kind": "header",
            "format": JOURNAL_FORMAT,
            "version": JOURNAL_VERSION,
            "stamp": plan.stamp,
            "mode": plan.mode,
            "dest": os.fspath(plan.dest),
            "fingerprint": plan.fingerprint,
            "created": _now(),
        }
        writer.write(header, durable=True)
        fsync_dir(plan.dest)
        return writer

    def write(self, line: dict[str, Any], durable: bool) -> None:
        self._handle.write(json.dumps(line, ensure_ascii=True).encode("ascii") + b"\n")
        self._handle.flush()
        if durable:
            os.fsync(self._handle.fileno())

    def file(
        self,
        entry: ExportPlanEntry,
        state: str,
        durable: bool,
        identity: FileIdentity | None = None,
    ) -> None:
        """A ``file`` line; ``identity``: the source's stat on a start line, what was
        created at the destination on a done line."""
        line = {
            "kind": "file",
            "state": state,
            "source": os.fspath(entry.source),
            "destination": os.fspath(entry.destination or ""),
            "cluster": entry.cluster,
            "folder": entry.folder,
            "confidence": entry.confidence,
        }
        self.write(line | (identity.as_json() if identity is not None else {}), durable)

    def mkdir(self, folder: Path) -> None:
        self.write({"kind": "mkdir", "path": os.fspath(folder)}, durable=True)

    def mark(self, kind: str) -> None:
        self.write({"kind": kind, "at": _now()}, durable=True)

    def close(self) -> None:
        self._handle.close()


def mark_undone(journal: Path) -> None:
    try:
        handle = _open_for_append(journal)
    except OSError:
        return
    with handle:
        handle.write(json.dumps({"kind": "undone", "at": _now()}).encode("ascii") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
