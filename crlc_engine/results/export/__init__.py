"""Export clustered photos to one folder per cluster: copy, hard link, symlink, move or CSV.

Layout: ``DEST/<cluster folder>/<file name>``, or ``DEST/<cluster folder>/<relative dirs>/<file
name>`` with ``keep_subfolders``. Photos below the confidence threshold go to
``DEST/_uncertain/``; ignored photos stay out. Cluster names are turned into portable folder
names by :func:`sanitize_folder_name` and made distinct by :func:`cluster_folder_names`.
Nothing is ever overwritten: a taken file name gets a ``" (2)"`` suffix.

Files this module writes in DEST, sharing one UTC stamp per export (never another export's:
a stamp whose journal or manifest exists is skipped, and the journal, or the manifest in
``csv`` mode, is created with ``O_EXCL``; on a clash the next stamp, ``-2``, ``-3``..., is
taken):

* ``crlc-export-<stamp>.csv``, the manifest (written atomically at the end, and also when the
  export is cancelled or fails): one row per input photo with the columns ``source,
  destination, cluster, folder, confidence, mode, status, note``. ``status`` is ``exported``
  (written by this export), ``already_present`` (found at its destination from an earlier
  export, left alone), ``pending`` (not reached: the export was cancelled), ``planned``
  (``csv`` mode), ``failed``, ``missing`` (no file at the source: deleted after training,
  or marked missing by a scan) or ``skipped`` (ignored or listed twice; ``note`` says why).
* ``.crlc-export-<stamp>.journal`` (not in ``csv`` mode), JSON lines: a ``header`` (format,
  ``version`` 2, stamp, mode, DEST, settings fingerprint), then ``mkdir`` lines for each
  folder the export creates and ``file`` lines with a ``state``: ``moving``/``copying``/
  ``linking`` appended and fsynced *before* a file is touched (with the source's ``size``
  and ``mtime_ns``), ``moved``/``copied``/``linked`` after it, with the identity of what
  the export created at the destination: ``size``, ``mtime_ns`` and, for a copy (or a move
  across drives, a copy too), the ``sha256`` of its bytes (hashed while copying); for a hard
  link or a move on one drive (the library's own file, never read) its ``device`` and
  ``inode``; for a symlink its ``target``. ``present`` lines name files found already
  exported; finally ``finished``, ``cancelled``, ``resumed`` or ``undone`` markers. Version 1
  journals (older versions) have no identities; version 2 journals written before hard links
  and moves recorded their inode have a ``sha256`` for them, which undo still checks.

Every export reports what it could not do: :class:`ExportResult` counts the photos ``done``
(now in the export), ``failed``, ``skipped`` and ``missing`` and lists them with reasons; its
``state`` is ``finished_with_failures`` when any photo failed or is missing.

Resuming: running :func:`export_images` again with the same mode and settings continues the
latest unfinished journal in DEST (same stamp, same manifest name): files it records as done
are not written twice. Files from another export are recognised at their planned destination
(same size and mtime for copies, same inode for hard links, same target for symlinks) and
counted as ``already_done`` too.

Writes are crash-safe: copies go to a hidden ``.crlc-partial-*`` file (hashed while copied)
that is renamed into place once complete, and moves are a hard link plus unlink on one file
system (copy to a partial file, rename, then delete the source across file systems), so a
killed export leaves every file complete at its source, its destination or both (never only
a partial copy). A move whose source cannot be
deleted (a read-only folder) is taken back and reported as failed.

Undo (:func:`undo_export`, given the manifest, the journal or DEST) never trusts the paths
it reads. It refuses, as a whole and touching nothing, a journal that does not lie in the
export folder its header names, or any record (or ``mkdir`` line) whose destination is not
inside that folder (after resolving its parent folders: no ``..``, no symlinked folder
leading out) or lies inside a library root (``roots``: an export never writes there, even
when DEST is a parent of a root), or whose source and destination are one path; a manifest
without its journal is checked the same way against its own folder. Then, file by file:

* a move is put back (parent folders recreated, never overwriting a file that appeared at
  the original path meanwhile) only when the exported file is a file or a symlink (never a
  folder), its original path lies in a library root or is a photo a library's catalog
  knows (the ``catalog`` look-up), and its identity (size, mtime and sha256, or drive and
  inode; a symlink's target) matches its record; a file changed since is kept. A move cut
  short between its two journal lines is checked against the source's size and mtime
  instead. Nothing inside a library root is ever deleted, save the ``.crlc-partial-*``
  file a killed undo may leave next to an original (removed only inside a library root);
* copies, hard links and symlinks made by the export are deleted only while their identity
  matches the record *and* they still match their original (same bytes, same inode, same
  target, the original's symlinks followed; copies and hard links only while the original
  exists and does not lead, through symlinks, into the export folder), so undo never
  deletes the last copy of a photo;
* records without identities (version 1 journals, a manifest whose journal is gone): a move
  is put back only when the exported file has the size and mtime that the library's catalog
  recorded for its source; copies and links are kept, listed in ``kept`` with
  :data:`UNVERIFIED_REASON`;
* a file the system will not let undo handle (a file where its folder should be, no
  permission...) is kept with the reason, and undo goes on with the others.

Files kept are listed with the reason in :attr:`UndoResult.kept`. ``csv`` exports have
nothing to undo. Folders the export created are removed once empty (never one inside a
library root). Manifest and journal are kept; the journal is marked undone.

Free space: before copying (or moving across drives) the export needs the bytes to write
plus a margin of :data:`FREE_SPACE_BASE`, :data:`FREE_SPACE_PER_FILE` per file written (its
journal lines, manifest row and block rounding) and 1 % of the bytes
(:func:`free_space_margin`).

Modules: :mod:`.model` (items, plan entries, results, errors), :mod:`.names` (folder
names), :mod:`.plan` (where every photo goes), :mod:`.preflight` (free space, drives),
:mod:`.file_checks` and :mod:`.file_ops` (what is at a path; the crash-safe writes),
:mod:`.journal`, :mod:`.journal_writer` and :mod:`.manifest` (the files written in DEST),
:mod:`.runner` (:func:`export_images`), :mod:`.undo_source` and :mod:`.undo`
(:func:`undo_export`).
"""

from __future__ import annotations

from crlc_engine.results.export.file_checks import CHANGED_REASON, MTIME_TOLERANCE_S
from crlc_engine.results.export.journal import JOURNAL_FORMAT, JOURNAL_VERSION, MANIFEST_PREFIX
from crlc_engine.results.export.model import (
    EXPORT_MODES,
    FIRST_FILES,
    CrossDeviceLinkError,
    ExportDestinationError,
    ExportError,
    ExportItem,
    ExportPlanEntry,
    ExportResult,
    NotEnoughSpaceError,
    UndoError,
    UndoResult,
)
from crlc_engine.results.export.names import (
    MAX_NAME_BYTES,
    MAX_NAME_CHARS,
    UNCERTAIN_FOLDER,
    cluster_folder_names,
    sanitize_folder_name,
)
from crlc_engine.results.export.plan import plan_export
from crlc_engine.results.export.preflight import (
    FREE_SPACE_BASE,
    FREE_SPACE_PER_FILE,
    free_space_margin,
)
from crlc_engine.results.export.runner import export_images
from crlc_engine.results.export.undo import UNVERIFIED_REASON, undo_export
from crlc_engine.results.export.undo_source import CatalogLookup

__all__ = [
    "CHANGED_REASON",
    "EXPORT_MODES",
    "FIRST_FILES",
    "FREE_SPACE_BASE",
    "FREE_SPACE_PER_FILE",
    "JOURNAL_FORMAT",
    "JOURNAL_VERSION",
    "MANIFEST_PREFIX",
    "MAX_NAME_BYTES",
    "MAX_NAME_CHARS",
    "MTIME_TOLERANCE_S",
    "UNCERTAIN_FOLDER",
    "UNVERIFIED_REASON",
    "CatalogLookup",
    "CrossDeviceLinkError",
    "ExportDestinationError",
    "ExportError",
    "ExportItem",
    "ExportPlanEntry",
    "ExportResult",
    "NotEnoughSpaceError",
    "UndoError",
    "UndoResult",
    "cluster_folder_names",
    "export_images",
    "free_space_margin",
    "plan_export",
    "sanitize_folder_name",
    "undo_export",
]
