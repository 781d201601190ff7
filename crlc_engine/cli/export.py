"""``crlc export``: copy (or link, or move) a run's images into one folder per group, and
``crlc export --undo MANIFEST``, which puts them back."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from crlc_engine.api import (
    ExportResult,
    GroupStore,
    ImageLibrary,
    InvalidSettingError,
    JobControl,
    UndoResult,
    export_images,
    export_items,
    export_undo_checks,
    undo_export,
)
from crlc_engine.cli.arguments import Subparsers, add_common_options, add_run_option
from crlc_engine.cli.output import ConsoleReporter, say
from crlc_engine.cli.paths import split_paths

#: Failed, missing or kept files named on the terminal (the rest: in the manifest, --json).
_FIRST_LISTED = 10


def add_parsers(sub: Subparsers) -> None:
    """Add ``crlc export``."""
    export = sub.add_parser(
        "export",
        help="copy (or link, or move) the images into one folder per cluster",
        description="Export into DEST/<cluster name>/<file>; images below --min-confidence go "
        "to DEST/_uncertain; ignored images stay out; a manifest CSV records every "
        "file. Nothing is overwritten; only --mode move changes your photo folders. Images "
        "that failed or are missing are listed, and the command then exits 3.",
    )
    export.add_argument("paths", nargs="*", metavar="FOLDER... DEST")
    export.add_argument(
        "--mode",
        choices=("copy", "hardlink", "symlink", "move"),
        default="copy",
        help="copy (default), hardlink, symlink or move",
    )
    export.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        metavar="X",
        help="images less confident than X (0..1) go to _uncertain",
    )
    export.add_argument(
        "--keep-subfolders",
        action="store_true",
        help="keep each image's sub-folders below its cluster folder",
    )
    export.add_argument("--dry-run", action="store_true", help="show what would happen only")
    export.add_argument(
        "--csv-only", action="store_true", help="write the manifest without touching any file"
    )
    export.add_argument(
        "--undo",
        metavar="MANIFEST",
        help="reverse an export (e.g. a move); files changed since the export are kept",
    )
    add_run_option(export)
    add_common_options(export)
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    if args.undo:
        return _undo(args)
    if len(args.paths) < 2:
        raise InvalidSettingError("usage: crlc export FOLDER... DEST")
    *folder_args, dest_text = args.paths
    folders, _ = split_paths(folder_args)
    mode = "csv" if args.csv_only else args.mode
    dest = Path(dest_text).expanduser()
    # the export only reads the library (its lock is a separate file): it works on a full or
    # read-only workspace disk
    with ImageLibrary.open(folders, args.workspace, read_only=True) as library:
        run = library.runs.get(args.run, state="completed")
        items = export_items(library, run.run_id)
        flags = _say_group_flags(library, run.run_id)
        lock = library.locked(f"exporting to {dest}", name="export.lock")
        with nullcontext() if args.dry_run else lock:
            result = export_images(
                items,
                dest,
                mode,
                library.roots,
                args.min_confidence,
                args.keep_subfolders,
                args.dry_run,
                ConsoleReporter(),
                control,
            )
    _say_exported(result)
    return {**result.as_dict(), "group_flags": flags}


def _undo(args: argparse.Namespace) -> dict[str, Any]:
    """``crlc export --undo MANIFEST``."""
    if args.paths:
        raise InvalidSettingError("`crlc export --undo MANIFEST` takes no FOLDER or DEST")
    with export_undo_checks(args.workspace) as (roots, catalog):
        undone = undo_export(Path(args.undo), roots, ConsoleReporter(), catalog)
    _say_undone(undone)
    return undone.as_dict()


def _say_exported(result: ExportResult) -> None:
    """The export's counts, its folders and the first failed and missing photos (stderr)."""
    verb = "Would export" if result.dry_run else "Exported"
    say(
        f"{verb} {result.done} photos into {len(result.folders)} folders ({result.mode}); "
        f"{result.counts_text()}"
    )
    for folder, count in sorted(result.folders.items()):
        say(f"  {folder}: {count}")
    for word, rows in (("failed", result.failed), ("missing", result.missing)):
        for path, reason in rows[:_FIRST_LISTED]:
            say(f"  {word}: {path} ({reason})")
        if len(rows) > _FIRST_LISTED:
            say(f"  ... and {len(rows) - _FIRST_LISTED} more {word} (all in the manifest)")
    if result.failed:
        say(
            "Some photos could not be exported: fix the cause and run the same export again "
            "(photos already exported are not exported twice)."
        )
    if result.missing:
        say(
            "Some photos are missing (deleted or moved since training): put them back, or "
            "scan the library again (`crlc scan`) to forget them."
        )


def _say_undone(undone: UndoResult) -> None:
    """What undo kept, and why (stderr)."""
    if undone.unverified:
        say(
            f"Kept {undone.unverified} file(s) exported by an older version that recorded no "
            "checksums, so undo cannot tell they are unchanged; the reasons below say what "
            "to do."
        )
    for path, reason in undone.kept[:_FIRST_LISTED]:
        say(f"  kept: {path} ({reason})")
    if len(undone.kept) > _FIRST_LISTED:
        say(f"  ... and {len(undone.kept) - _FIRST_LISTED} more kept (see --json)")
    if any("none of your libraries" in reason for _, reason in undone.kept):
        say(
            "Photos whose library lives in another workspace are put back only when undo "
            "knows that library: run the undo again with --workspace DIR (that workspace)."
        )


def _say_group_flags(library: ImageLibrary, run_id: str) -> dict[str, list[str]]:
    """Warn (stderr) about groups that changed a lot with the run; name -> flags."""
    flagged = {g.title: list(g.flags) for g in GroupStore(library.catalog).view(run_id).groups}
    flagged = {name: flags for name, flags in flagged.items() if flags}
    for name, flags in flagged.items():
        for flag in flags:
            say(f"Check the group {name!r} before relying on this export: {flag}")
    return flagged
