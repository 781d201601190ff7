"""What an export will do, without Qt: the user's choices, a dry-run preview, its problems.

:func:`preview_export` plans the export with :func:`crlc_engine.results.export.plan_export`
(which writes nothing) and :func:`summarize_plan` sums the plan up per folder
(:class:`ExportPreview`); :func:`summary_text` says it in a paragraph. A preview that fails
is explained in plain words with what to do (:func:`preview_problem`, :func:`problem_text`,
using :mod:`app.core.error_help`), never as a raw "[Errno 13] ...". The modes are named and
explained in :data:`MODE_NAMES` and :data:`MODE_HELP`. The dialog that shows all of it is
:class:`app.views.export_dialog.ExportDialog`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.core.error_help import (
    DISK_FULL,
    INTERNAL,
    OUT_OF_MEMORY,
    PERMISSION_DENIED,
    classify_exception,
    explain,
)
from crlc_engine.api import MANIFEST_PREFIX, CRLCError, ExportItem, ExportPlanEntry, plan_export

__all__ = [
    "FOLDER_PROBLEM",
    "MODE_HELP",
    "MODE_NAMES",
    "PREVIEW_FILES_PER_FOLDER",
    "ExportOptions",
    "ExportPreview",
    "plural",
    "preview_export",
    "preview_problem",
    "problem_text",
    "summarize_plan",
    "summary_text",
]

#: How each export mode is listed.
MODE_NAMES: dict[str, str] = {
    "copy": "Copy",
    "hardlink": "Hard link",
    "symlink": "Symbolic link (shortcut)",
    "move": "Move",
    "csv": "CSV list only",
}
#: What each mode does, in a user's words.
MODE_HELP: dict[str, str] = {
    "copy": "Copies the photos; your photo folders stay as they are (uses extra disk space).",
    "hardlink": (
        "Adds a second name for each photo without using extra space. The export folder must "
        "be on the same drive as the photos."
    ),
    "symlink": (
        "Creates small shortcuts that point at the original photos; they stop working if "
        "the originals are moved or deleted."
    ),
    "move": (
        "Moves the photos out of your photo folders into the export folder. You will be "
        "asked to confirm; the export can be undone later."
    ),
    "csv": (
        f"Writes only a list ({MANIFEST_PREFIX}….csv) of which photo belongs to which group; "
        "no photo is copied or moved."
    ),
}
#: Files listed under each folder in the preview.
PREVIEW_FILES_PER_FOLDER = 3
_REASONS = {"ignored": "ignored", "duplicate": "listed twice", "missing": "missing"}
#: Kind of a preview failure that is an unrecognised ``OSError`` of the export folder.
FOLDER_PROBLEM = "export_folder"
#: Error kinds whose message the app writes itself (the engine's messages need no advice
#: here: the dialog is where the user fixes them).
_APP_KINDS = frozenset({OUT_OF_MEMORY, DISK_FULL, INTERNAL, PERMISSION_DENIED})


@dataclass(frozen=True)
class ExportOptions:
    """What the user chose.

    Attributes:
        dest: Export folder (absolute).
        mode: One of :data:`crlc_engine.results.export.EXPORT_MODES`.
        min_confidence: Photos below it go to ``_uncertain``.
        keep_subfolders: Recreate each photo's folders below its library root.
    """

    dest: Path
    mode: str
    min_confidence: float
    keep_subfolders: bool


@dataclass(frozen=True)
class ExportPreview:
    """A dry run's summary.

    Attributes:
        options: The settings it was computed for.
        files: Photos in the export (to write plus already there).
        to_write: Photos the export would write (or move).
        already: Photos found already exported earlier.
        folders: Top folder -> photos, in layout order.
        first_files: Top folder -> its first destinations, relative to the export folder.
        left_out: Reason (``ignored``, ``missing``, ``listed twice``) -> photos left out.
    """

    options: ExportOptions
    files: int
    to_write: int
    already: int
    folders: dict[str, int]
    first_files: dict[str, list[str]] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)


def _relative(destination: Path, dest: Path) -> str:
    try:
        return destination.relative_to(dest).as_posix()
    except ValueError:
        return destination.name


def summarize_plan(
    entries: Sequence[ExportPlanEntry],
    options: ExportOptions,
    per_folder: int = PREVIEW_FILES_PER_FOLDER,
) -> ExportPreview:
    """Count a plan's photos per folder and keep the first ``per_folder`` files of each."""
    dest = Path(os.path.abspath(options.dest)).resolve()
    folders: dict[str, int] = {}
    first: dict[str, list[str]] = {}
    left_out: dict[str, int] = {}
    to_write = already = 0
    for entry in entries:
        if entry.destination is None:
            reason = _REASONS.get(entry.status, entry.status)
            left_out[reason] = left_out.get(reason, 0) + 1
            continue
        folders[entry.folder] = folders.get(entry.folder, 0) + 1
        names = first.setdefault(entry.folder, [])
        if len(names) < per_folder:
            names.append(_relative(entry.destination, dest))
        if entry.status == "planned":
            to_write += 1
        else:
            already += 1
    return ExportPreview(options, to_write + already, to_write, already, folders, first, left_out)


def preview_export(
    items: Sequence[ExportItem], roots: Sequence[Path], options: ExportOptions
) -> ExportPreview:
    """Plan the export with :func:`~crlc_engine.results.export.plan_export` and summarise it.

    Raises:
        ExportDestinationError: the folder is a file or inside a photo folder.
        InvalidSettingError: bad mode or threshold.
    """
    entries = plan_export(
        items,
        options.dest,
        roots,
        options.min_confidence,
        options.keep_subfolders,
        mode=options.mode,
    )
    return summarize_plan(entries, options)


def preview_problem(error: BaseException) -> tuple[str, str]:
    """(kind, plain text) for a preview that failed: the engine's own message, or for an
    ordinary exception (e.g. ``PermissionError``) a plain message with what to do.

    An ``OSError`` that :func:`app.core.error_help.classify_exception` does not know (a name
    too long, a file where a folder is expected, ...) says which path and what went wrong,
    without the ``[Errno n]`` prefix.
    """
    if isinstance(error, CRLCError):
        return error.kind, str(error)
    known = classify_exception(error)
    if known is None and isinstance(error, OSError):
        reason = (error.strerror or str(error)).strip().rstrip(".")
        where = f" ({os.fsdecode(error.filename)})" if error.filename else ""
        known = FOLDER_PROBLEM, f"the export folder cannot be used: {reason.lower()}{where}"
    if known is None:
        text = str(error).strip()
        known = (
            INTERNAL,
            f"the preview failed: {type(error).__name__}" + (f": {text}" if text else ""),
        )
    return known


def problem_text(kind: str, message: str) -> str:
    """The text the dialog shows for a failed preview of ``kind``: the message, and for the
    app's own kinds also what to do."""
    if kind == FOLDER_PROBLEM:
        help_ = explain(kind, message)
        return f"{help_.message} Choose another export folder, or check that it can be written."
    if kind in _APP_KINDS:
        help_ = explain(kind, message)
        return f"{help_.message} {help_.what_to_do}".strip()
    return message


def plural(count: int, word: str) -> str:
    """``count`` ``word``, with an ``s`` unless there is one (``1 photo``, ``2,000 photos``)."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def summary_text(preview: ExportPreview) -> str:
    """One paragraph: what the export writes where, what is there already and left out."""
    options = preview.options
    verb = {
        "copy": "copied",
        "hardlink": "hard-linked",
        "symlink": "linked",
        "move": "moved",
        "csv": "listed in the CSV file",
    }.get(options.mode, options.mode)
    text = (
        f"{plural(preview.to_write, 'photo')} will be {verb} into "
        f"{plural(len(preview.folders), 'folder')} in {options.dest}."
    )
    if preview.already:
        text += f" {plural(preview.already, 'photo')} already there."
    if preview.left_out:
        parts = ", ".join(f"{n:,} {reason}" for reason, n in preview.left_out.items())
        text += f" Left out: {parts}."
    return text
