"""Running an export: the planned writes, journaled, with the outcome of every photo, a
manifest at the end (also when cancelled or failed) and the result.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from crlc_engine.core.control import JobControl
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.results.export.file_checks import (
    identity_after,
    identity_mismatch,
    lexists,
    source_stat,
)
from crlc_engine.results.export.file_ops import ACTIONS, partial_path, remove_quietly
from crlc_engine.results.export.journal import MODE_STATES, journal_file, manifest_file
from crlc_engine.results.export.journal_writer import JournalWriter, claim_stamp
from crlc_engine.results.export.manifest import write_manifest
from crlc_engine.results.export.model import (
    CrossDeviceLinkError,
    ExportItem,
    ExportResult,
    NotEnoughSpaceError,
)
from crlc_engine.results.export.plan import ExportPlan, build_plan
from crlc_engine.results.export.preflight import (
    check_free_space,
    check_link_devices,
    cross_device_message,
)

_ACTIVE = ("planned", "done", "present")
_SKIP_REASONS = {"ignored": "ignored", "duplicate": "listed twice", "missing": "source missing"}
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def export_images(
    items: Sequence[ExportItem],
    dest: Path,
    mode: str = "copy",
    roots: Sequence[Path] = (),
    min_confidence: float = 0.0,
    keep_subfolders: bool = False,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
) -> ExportResult:
    """Export photos into one folder per cluster (see the package docstring for the files).

    Args:
        items: The photos.
        dest: Export folder, created when missing.
        mode: ``copy`` (``shutil.copy2``, timestamps kept), ``hardlink``, ``symlink`` (to
            the absolute source), ``move`` (journaled, undoable) or ``csv`` (manifest only).
        roots: Library root folders; DEST must not be one of them nor inside one.
        min_confidence: Photos below it go to ``_uncertain``.
        keep_subfolders: Recreate each photo's folders below its library root.
        dry_run: Plan only: write nothing at all and return the plan.
        reporter: Gets ``status`` lines and ``progress(done, total)`` once per photo.
        control: Checked before each photo; when cancelled the export stops with a
            consistent journal and manifest, ready to be resumed or undone.

    Returns:
        What was exported (or would be, for a dry run).

    Raises:
        InvalidSettingError: unknown mode or ``min_confidence`` outside 0..1.
        ExportDestinationError: DEST is a file, a library root or inside one.
        NotEnoughSpaceError: not enough free space for the copies (checked before, and
            raised when the drive fills up during the export).
        CrossDeviceLinkError: hard links asked for across file systems.
    """
    plan = build_plan(items, dest, roots, min_confidence, keep_subfolders, mode)
    out = reporter if reporter is not None else NullReporter()
    if dry_run:
        return _result(plan, _initial_outcomes(plan, "planned"), dry_run=True)
    check_free_space(plan)
    check_link_devices(plan)
    plan.dest.mkdir(parents=True, exist_ok=True)
    if mode == "csv":
        return _export_csv(plan, out)
    return _Runner(plan, out, control).run()


def _initial_outcomes(plan: ExportPlan, pending: str) -> list[tuple[str, str]]:
    outcomes = []
    for entry in plan.entries:
        if entry.status == "planned":
            outcomes.append((pending, ""))
        elif entry.status == "done":
            outcomes.append(("exported", "done by an earlier attempt"))
        elif entry.status == "present":
            outcomes.append(("already_present", "already exported before"))
        elif entry.status == "missing":
            outcomes.append(("missing", _SKIP_REASONS["missing"]))
        else:
            outcomes.append(("skipped", _SKIP_REASONS[entry.status]))
    return outcomes


def _result(
    plan: ExportPlan,
    outcomes: list[tuple[str, str]],
    dry_run: bool = False,
    cancelled: bool = False,
    journal: Path | None = None,
) -> ExportResult:
    folders: dict[str, int] = {}
    in_export: list[Path] = []
    left_out: dict[str, list[tuple[str, str]]] = {"skipped": [], "failed": [], "missing": []}
    for entry, (status, note) in zip(plan.entries, outcomes, strict=True):
        if status in ("exported", "already_present", "planned"):
            folders[entry.folder] = folders.get(entry.folder, 0) + 1
            in_export.extend([entry.destination] if entry.destination is not None else [])
        elif status in left_out:
            left_out[status].append((os.fspath(entry.source), note.removeprefix("failed: ")))
    return ExportResult(
        manifest=manifest_file(plan.dest, plan.stamp),
        mode=plan.mode,
        files=sum(folders.values()),
        folders=folders,
        skipped=left_out["skipped"],
        dry_run=dry_run,
        already_done=sum(e.status in ("done", "present") for e in plan.entries),
        cancelled=cancelled,
        journal=journal,
        entries=list(plan.entries),
        failed=left_out["failed"],
        missing=left_out["missing"],
        in_export=in_export,
    )


def _export_csv(plan: ExportPlan, reporter: Reporter) -> ExportResult:
    outcomes = _initial_outcomes(plan, "planned")
    os.close(claim_stamp(plan, manifest_file, journal_file))  # replaced atomically below
    write_manifest(plan, outcomes)
    result = _result(plan, outcomes)
    reporter.progress(result.files, result.files)
    reporter.status(f"Wrote the export manifest {result.manifest} ({result.files} photos)")
    return result


class _Runner:
    """Runs the planned writes of one export, keeping journal and outcomes in step."""

    def __init__(self, plan: ExportPlan, reporter: Reporter, control: JobControl | None) -> None:
        self.plan = plan
        self.reporter = reporter
        self.control = control
        self.outcomes = _initial_outcomes(plan, "pending")
        self.known_dirs: set[Path] = {plan.dest}
        self.cancelled = False

    def run(self) -> ExportResult:
        journal = JournalWriter.start(self.plan)
        try:
            self._run_all(journal)
        finally:
            journal.close()
            write_manifest(self.plan, self.outcomes)
        result = _result(self.plan, self.outcomes, cancelled=self.cancelled, journal=journal.path)
        self._report_end(result)
        return result

    def _run_all(self, journal: JournalWriter) -> None:
        entries = self.plan.entries
        todo = [i for i, e in enumerate(entries) if e.status == "planned"]
        total = sum(e.status in _ACTIVE for e in entries)
        done = total - len(todo)
        self._record_earlier_work(journal)
        self.reporter.status(f"Exporting {len(todo)} photos to {self.plan.dest} ({self.plan.mode})")
        self.reporter.progress(done, total)
        for index in todo:
            if self.control is not None and self.control.checkpoint_wait():
                self.cancelled = True
                journal.mark("cancelled")
                return
            self._export_one(index, journal)
            done += 1
            self.reporter.progress(done, total)
        journal.mark("finished")

    def _record_earlier_work(self, journal: JournalWriter) -> None:
        """Journal the files found already exported: ``present`` ones (another export's),
        and ``done`` ones whose done line a kill cut off (with their identity, when the file
        has the size and mtime its start line recorded for the source)."""
        claims = self.plan.resume.claims() if self.plan.resume is not None else {}
        start, end = MODE_STATES[self.plan.mode]
        for entry in self.plan.entries:
            if entry.status == "present":
                journal.file(entry, "present", durable=False)
            record = claims.get(os.fspath(entry.source))
            if entry.status != "done" or record is None or record.state != start:
                continue
            assert entry.destination is not None
            if record.identity is None or identity_mismatch(
                entry.destination, record.identity, exact=False
            ):
                continue
            identity = identity_after(entry.destination, read=self.plan.mode != "hardlink")
            journal.file(entry, end, False, identity)

    def _export_one(self, index: int, journal: JournalWriter) -> None:
        entry = self.plan.entries[index]
        assert entry.destination is not None
        start, end = MODE_STATES[self.plan.mode]
        try:
            self._ensure_directory(entry.destination.parent, journal)
            remove_quietly(partial_path(entry.destination))  # left by a killed attempt
            follow = self.plan.mode != "move"
            journal.file(entry, start, True, source_stat(entry.source, follow))
            identity = ACTIONS[self.plan.mode](entry.source, entry.destination)
        except FileExistsError as exc:
            self.outcomes[index] = ("failed", f"failed: {exc.filename or exc} is in the way")
            return
        except OSError as exc:
            self._fail(index, exc)
            return
        journal.file(entry, end, durable=False, identity=identity)
        self.outcomes[index] = ("exported", "")

    def _fail(self, index: int, exc: OSError) -> None:
        if exc.errno in _NO_SPACE:
            raise NotEnoughSpaceError(
                f"the drive of {self.plan.dest} is full; free some space and run the export "
                "again to finish it"
            ) from exc
        if self.plan.mode == "hardlink" and exc.errno == errno.EXDEV:
            source = self.plan.entries[index].source
            raise CrossDeviceLinkError(cross_device_message(source, self.plan.dest)) from exc
        if isinstance(exc, FileNotFoundError) and not lexists(self.plan.entries[index].source):
            self.outcomes[index] = ("missing", _SKIP_REASONS["missing"])  # deleted meanwhile
            return
        self.outcomes[index] = ("failed", f"failed: {exc.strerror or exc}")

    def _ensure_directory(self, directory: Path, journal: JournalWriter) -> None:
        if directory in self.known_dirs:
            return
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        for folder in reversed(missing):
            journal.mkdir(folder)
            folder.mkdir(exist_ok=True)  # made meanwhile by another export: fine
        self.known_dirs.add(directory)

    def _report_end(self, result: ExportResult) -> None:
        if self.cancelled:
            self.reporter.status(
                f"Export cancelled after {result.files} photos; run it again to finish it, "
                f"or undo it with {result.manifest}"
            )
            return
        self.reporter.status(
            f"Exported {result.files} photos into {len(result.folders)} folders; "
            f"{result.counts_text()}; manifest: {result.manifest}"
        )
