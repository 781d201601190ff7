"""The SQLite catalog of a library: roots, one row per image file, and the pixel-cache index.

Stored in ``<workspace>/catalog.sqlite`` (stdlib sqlite3, WAL). Paths are kept as (root id,
POSIX path relative to the root), so a moved root is re-linked by changing one row. The
schema carries a version; :data:`MIGRATIONS` brings an older file up to date, each step in
one transaction.

Every catalog carries a random ``catalog_id`` (in ``meta``) that runs record when they are
made: a run whose id differs was made with another catalog (see :mod:`crlc_engine.library.runs`).
Opening checks the file (``PRAGMA quick_check``) and names a damaged catalog with the way
out instead of failing later. A read-only open (for commands that only read) writes
nothing, so it works on a full disk and in a read-only workspace.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from crlc_engine.core.errors import (
    CRLCError,
    DiskFullError,
    LibraryNotFoundError,
    NewerVersionError,
    NoPermissionError,
    WorkspaceDamagedError,
    WorkspaceLockedError,
)

SCHEMA_VERSION = 3
#: Catalogs up to this size get SQLite's full ``quick_check`` on every open (it reads the
#: whole file: about 0.6 s per GB from the page cache, many seconds from a cold disk).
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
#: A writable open failing with this little free space is a full disk.
FULL_DISK_BYTES = 1024 * 1024
IMAGE_STATUSES = ("ok", "error", "unsupported", "missing")


def _run_statements(db: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated DDL inside the caller's transaction (``executescript`` would commit)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_to_1(db: sqlite3.Connection) -> None:
    _run_statements(
        db,
        """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE roots (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE
        );
        CREATE TABLE images (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            root_id INTEGER NOT NULL REFERENCES roots(id),
            rel_path TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            width INTEGER,
            height INTEGER,
            status TEXT NOT NULL,
            error TEXT,
            has_thumbnail INTEGER NOT NULL DEFAULT 0,
            UNIQUE (root_id, rel_path)
        );
        CREATE TABLE pixel_cache (
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            side INTEGER NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            PRIMARY KEY (image_id, side)
        );
        """,
    )


def _migrate_to_2(db: sqlite3.Connection) -> None:
    """Results and annotations: per-run assignments, cluster names, labels, ignores, history."""
    _run_statements(
        db,
        """
        CREATE TABLE assignments (
            run_id TEXT NOT NULL,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            cluster INTEGER NOT NULL,
            confidence REAL NOT NULL,
            probabilities BLOB NOT NULL,
            feature BLOB NOT NULL,
            PRIMARY KEY (run_id, image_id)
        );
        CREATE INDEX assignments_by_cluster ON assignments(run_id, cluster, confidence);
        CREATE TABLE cluster_names (
            run_id TEXT NOT NULL,
            cluster INTEGER NOT NULL,
            name TEXT NOT NULL,
            PRIMARY KEY (run_id, cluster)
        );
        CREATE TABLE labels (
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
            class_name TEXT NOT NULL
        );
        CREATE TABLE ignored (
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE
        );
        CREATE TABLE history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            description TEXT NOT NULL,
            change TEXT NOT NULL,
            undone INTEGER NOT NULL DEFAULT 0
        )
        """,
    )


def _migrate_to_3(db: sqlite3.Connection) -> None:
    """Groups: the user's named groups with a colour each, and per run how each group fared
    when the run's clusters were named (see :mod:`crlc_engine.results.groups`)."""
    _run_statements(
        db,
        """
        CREATE TABLE groups (
            name TEXT PRIMARY KEY,
            colour INTEGER NOT NULL
        );
        CREATE TABLE group_checks (
            run_id TEXT NOT NULL,
            name TEXT NOT NULL,
            reference_run TEXT NOT NULL,
            members INTEGER NOT NULL,
            kept INTEGER NOT NULL,
            PRIMARY KEY (run_id, name)
        )
        """,
    )
    names = db.execute(
        "SELECT name FROM (SELECT name, MIN(rowid) AS first FROM cluster_names GROUP BY name "
        "UNION ALL SELECT class_name, 1e18 FROM labels) GROUP BY name ORDER BY MIN(first), name"
    ).fetchall()
    db.executemany(
        "INSERT INTO groups(name, colour) VALUES (?, ?)",
        [(str(name), colour) for colour, (name,) in enumerate(names)],
    )


#: ``MIGRATIONS[v]`` upgrades a catalog from version ``v`` to ``v + 1``.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_to_1,
    _migrate_to_2,
    _migrate_to_3,
]


@dataclass(frozen=True)
class ImageRecord:
    """One catalog row.

    Attributes:
        id: Stable image id; its pixel-cache row is ``id - 1``.
        root: The root folder (absolute).
        rel_path: POSIX path relative to ``root``.
        size: File size in bytes at the last scan.
        mtime_ns: Modification time at the last scan.
        width: Width after EXIF rotation (``None`` if never decoded).
        height: Height after EXIF rotation.
        status: ``ok``, ``error``, ``unsupported`` or ``missing``.
        error: Why the file was skipped, else ``None``.
        has_thumbnail: Whether ``thumbs/<id>.jpg`` exists for this version.
    """

    id: int
    root: Path
    rel_path: str
    size: int
    mtime_ns: int
    width: int | None
    height: int | None
    status: str
    error: str | None
    has_thumbnail: bool

    @property
    def path(self) -> Path:
        """Absolute path of the file."""
        return self.root / self.rel_path

    @property
    def cache_row(self) -> int:
        """Row of this image in every pixel cache."""
        return self.id - 1

    @property
    def version(self) -> tuple[int, int]:
        """(size, mtime_ns) of the file version the catalog knows."""
        return (self.size, self.mtime_ns)


#: What to do about a damaged catalog (appended to the messages that name it).
REBUILD_ADVICE = (
    "run `crlc forget FOLDER...` and scan the folders again (your photos are not touched, "
    "but this library's runs, names and labels are lost)"
)


def damaged_catalog(path: Path, detail: str) -> WorkspaceDamagedError:
    """The error for a catalog that cannot be used, naming the file and the way out."""
    return WorkspaceDamagedError(
        f"the library's catalog {path} is damaged ({detail}); {REBUILD_ADVICE}"
    )


class Catalog:
    """A connection to one library's catalog (create / migrate on open).

    Args:
        path: ``catalog.sqlite``.
        read_only: Open for reading only (never creates, migrates or writes anything; the
            file must exist and be up to date). Falls back to an immutable snapshot when the
            disk is too full even for SQLite's shared-memory file.

    Raises:
        WorkspaceDamagedError: the file is not a usable catalog (quick_check fails).
        LibraryNotFoundError: ``read_only`` and there is no catalog yet.
    """

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._catalog_id: str | None = None
        try:
            self.db = self._connect()
            self._check_integrity()
            if not read_only:
                self._migrate()
                self._ensure_catalog_id()
            elif self._version() != SCHEMA_VERSION:
                self._update_then_reopen()
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            if isinstance(exc, sqlite3.OperationalError) and not _is_damage(exc):
                raise _cannot_open(path, exc) from None
            raise damaged_catalog(path, str(exc)) from None
        except (DiskFullError, NoPermissionError) as exc:
            self._close_quietly()
            if not read_only:
                raise
            raise type(exc)(
                f"the library's catalog {path} was made by an older version and must be "
                f"updated once, which needs to write to its workspace: {exc}"
            ) from None
        except BaseException:
            self._close_quietly()
            raise

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            return db
        if not self.path.is_file():
            raise LibraryNotFoundError(
                f"these folders have not been scanned or grouped yet (no catalog at "
                f"{self.path}); run `crlc train FOLDER... --clusters K` (or `crlc scan "
                "FOLDER...`) first"
            )
        uri = f"file:{quote(os.fspath(self.path))}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            # A read-only WAL database needs its -shm file: on a full disk or in a read-only
            # folder it cannot be made. Without a pending WAL, the file alone is complete.
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise
            db = sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None)
            return db

    def _update_then_reopen(self) -> None:
        """A read-only open of a catalog of another schema: update it once (that writes),
        then open it read-only again. A newer one is refused."""
        version = self._version()
        self.db.close()
        if version > SCHEMA_VERSION:
            raise NewerVersionError(
                f"{self.path} has catalog schema {version}, newer than this program's "
                f"{SCHEMA_VERSION}; update CRLC Organizer"
            )
        Catalog(self.path).close()
        self.db = self._connect()

    def _check_integrity(self) -> None:
        """A cheap check on open: the schema is readable, the file is as long as its header
        says (not cut short), and, up to :data:`QUICK_CHECK_MAX_BYTES`, SQLite's
        ``quick_check`` passes. Damage inside a bigger file is named when a query meets it
        (``errors.as_user_error``)."""
        self.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
        size = self.path.stat().st_size
        wal = self.path.with_name(self.path.name + "-wal")
        pending = wal.exists() and wal.stat().st_size > 0  # pages may wait in the WAL
        if size < pages * page_size and not pending:
            raise damaged_catalog(
                self.path, f"cut short: {size} bytes of the {pages * page_size} it should have"
            )
        if size > QUICK_CHECK_MAX_BYTES:
            return
        row = self.db.execute("PRAGMA quick_check(1)").fetchone()
        if row is None or str(row[0]).lower() != "ok":
            raise damaged_catalog(self.path, f"integrity check: {row[0] if row else 'no answer'}")

    def _ensure_catalog_id(self) -> None:
        if self.catalog_id is None:  # written once: no write lock taken on later opens
            self._catalog_id = uuid.uuid4().hex
            self.db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('catalog_id', ?)",
                (self._catalog_id,),
            )
            self._catalog_id = None  # read back: another process may have won the race

    def _close_quietly(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()

    @property
    def catalog_id(self) -> str | None:
        """The random id of this catalog (``None`` for a read-only open of an old one)."""
        if self._catalog_id is None:
            row = self.db.execute("SELECT value FROM meta WHERE key='catalog_id'").fetchone()
            self._catalog_id = None if row is None else str(row[0])
        return self._catalog_id

    def rel_paths(self, image_ids: Iterable[int]) -> dict[int, str]:
        """image id -> POSIX path relative to its root, for the ids the catalog knows."""
        wanted = {int(i) for i in image_ids}
        rows = self.db.execute("SELECT id, rel_path FROM images")
        return {int(i): str(rel) for i, rel in rows if int(i) in wanted}

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def _version(self) -> int:
        exists = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not exists:
            return 0
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        version = self._version()
        if version > SCHEMA_VERSION:
            raise NewerVersionError(
                f"{self.path} has catalog schema {version}, newer than this program's "
                f"{SCHEMA_VERSION}; update CRLC Organizer"
            )
        while version < SCHEMA_VERSION:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[version](self.db)
                version += 1
                self.db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(version),),
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The catalog's schema version."""
        return self._version()

    # ------------------------------------------------------------------ roots
    def root_ids(self) -> dict[Path, int]:
        """Root folder -> id."""
        return {Path(p): i for i, p in self.db.execute("SELECT id, path FROM roots")}

    def ensure_roots(self, roots: Iterable[Path]) -> dict[Path, int]:
        """Insert missing roots; return root -> id for all of them."""
        for root in roots:
            self.db.execute("INSERT OR IGNORE INTO roots(path) VALUES (?)", (str(root),))
        return self.root_ids()

    def relink_root(self, old: Path, new: Path) -> None:
        """Point the root ``old`` at ``new`` (every image keeps its id and rows)."""
        self.db.execute("UPDATE roots SET path=? WHERE path=?", (str(new), str(old)))

    # ------------------------------------------------------------------ images
    _COLUMNS = (
        "images.id, roots.path, rel_path, size, mtime_ns, width, height, status, error, "
        "has_thumbnail"
    )

    def _record(self, row: Sequence[Any]) -> ImageRecord:
        i, root, rel, size, mtime, w, h, status, error, thumb = row
        return ImageRecord(
            int(i),
            Path(str(root)),
            str(rel),
            int(size),
            int(mtime),
            None if w is None else int(w),
            None if h is None else int(h),
            str(status),
            None if error is None else str(error),
            bool(thumb),
        )

    def images(self, status: str | None = None) -> list[ImageRecord]:
        """All image rows (optionally of one status), ordered by id."""
        query = f"SELECT {self._COLUMNS} FROM images JOIN roots ON roots.id = images.root_id"
        args: tuple[object, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        return [self._record(r) for r in self.db.execute(query + " ORDER BY images.id", args)]

    def image_by_path(self, path: Path) -> ImageRecord | None:
        """The row of an absolute path inside one of the roots, if any."""
        for root, root_id in self.root_ids().items():
            if path.is_relative_to(root):
                rel = path.relative_to(root).as_posix()
                row = self.db.execute(
                    f"SELECT {self._COLUMNS} FROM images JOIN roots ON roots.id = images.root_id "
                    "WHERE root_id=? AND rel_path=?",
                    (root_id, rel),
                ).fetchone()
                if row:
                    return self._record(row)
        return None

    def known_files(self, root_id: int) -> dict[str, tuple[int, int, int, str, str | None]]:
        """rel_path -> (id, size, mtime_ns, status, error) for one root."""
        rows = self.db.execute(
            "SELECT rel_path, id, size, mtime_ns, status, error FROM images WHERE root_id=?",
            (root_id,),
        )
        return {
            str(rel): (int(i), int(s), int(m), str(st), None if e is None else str(e))
            for rel, i, s, m, st, e in rows
        }

    def cached(self, side: int) -> dict[int, tuple[int, int]]:
        """image id -> (size, mtime_ns) of the file version cached at ``side``."""
        rows = self.db.execute(
            "SELECT image_id, size, mtime_ns FROM pixel_cache WHERE side=?", (side,)
        )
        return {int(i): (int(s), int(m)) for i, s, m in rows}

    def insert_image(self, root_id: int, rel_path: str, size: int, mtime_ns: int) -> int:
        """A new row in status ``error`` ('not decoded yet') until a result is recorded."""
        cursor = self.db.execute(
            "INSERT INTO images(root_id, rel_path, size, mtime_ns, status, error) "
            "VALUES (?, ?, ?, ?, 'error', 'not decoded yet')",
            (root_id, rel_path, size, mtime_ns),
        )
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def begin(self) -> None:
        """Start a write transaction."""
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit the open transaction."""
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        """Roll the open transaction back (no-op if none)."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def record_ok(
        self,
        image_id: int,
        size: int,
        mtime_ns: int,
        width: int,
        height: int,
        side: int | None,
        thumbnail: bool,
    ) -> None:
        """The file decoded: its pixels at ``side`` are in the cache (written before this;
        ``None``: they went elsewhere, no pixel cache counts them)."""
        self.db.execute(
            "UPDATE images SET size=?, mtime_ns=?, width=?, height=?, status='ok', error=NULL, "
            "has_thumbnail = CASE WHEN ? THEN 1 ELSE has_thumbnail END WHERE id=?",
            (size, mtime_ns, width, height, int(thumbnail), image_id),
        )
        if side is None:
            return
        self.db.execute(
            "INSERT OR REPLACE INTO pixel_cache(image_id, side, size, mtime_ns) VALUES (?,?,?,?)",
            (image_id, side, size, mtime_ns),
        )

    def record_skipped(
        self, image_id: int, size: int, mtime_ns: int, status: str, reason: str
    ) -> None:
        """The file could not be used (``error``, ``unsupported`` or ``missing``)."""
        self.db.execute(
            "UPDATE images SET size=?, mtime_ns=?, status=?, error=?, has_thumbnail=0 WHERE id=?",
            (size, mtime_ns, status, reason, image_id),
        )
        self.db.execute("DELETE FROM pixel_cache WHERE image_id=?", (image_id,))

    def forget_rows_beyond(self, side: int, rows: int) -> int:
        """Forget the cached pixels at ``side`` whose row (id - 1) is not below ``rows`` (a
        cache file cut short); returns how many. They are decoded again by the next scan."""
        cursor = self.db.execute(
            "DELETE FROM pixel_cache WHERE side=? AND image_id > ?", (side, rows)
        )
        return int(cursor.rowcount)

    def forget_pixels(self, image_id: int) -> None:
        """The cached pixels of an image no longer match its file (at any size)."""
        self.db.execute("DELETE FROM pixel_cache WHERE image_id=?", (image_id,))

    def mark_missing(self, image_ids: Iterable[int]) -> None:
        """Files that are gone from disk keep their rows (and ids) as ``missing``."""
        self.db.executemany(
            "UPDATE images SET status='missing', error='file no longer exists' WHERE id=?",
            [(i,) for i in image_ids],
        )

    def max_id(self) -> int:
        """The largest image id (0 for an empty catalog)."""
        row = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM images").fetchone()
        return int(row[0])

    def counts(self) -> dict[str, int]:
        """Number of images per status."""
        return {
            str(s): int(n)
            for s, n in self.db.execute("SELECT status, COUNT(*) FROM images GROUP BY status")
        }


def _is_damage(error: sqlite3.OperationalError) -> bool:
    """Whether an operational error means a damaged file (others: locked, full, read-only)."""
    text = str(error).lower()
    return "malformed" in text or "not a database" in text or "disk image" in text


def _cannot_open(path: Path, error: sqlite3.OperationalError) -> CRLCError:
    """Why a sound catalog could not be opened, in plain words: a full disk, no permission,
    or another program holding it (its own message)."""
    text = str(error).lower()
    if "locked" in text or "busy" in text:
        return WorkspaceLockedError(
            f"the library's catalog {path} is busy in another program ({error}); try again "
            "when it has finished"
        )
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = -1
    if 0 <= free < FULL_DISK_BYTES or "full" in text:
        return DiskFullError(
            f"the disk holding the library's workspace {path.parent} is full; free some space "
            "and try again (commands that only read, such as `crlc clusters`, still work)"
        )
    if not os.access(path.parent, os.W_OK) or "readonly" in text:
        return NoPermissionError(
            f"the library's workspace {path.parent} may not be written ({error}); make it "
            "writable, or choose another workspace with --workspace"
        )
    return DiskFullError(f"the library's catalog {path} cannot be opened for writing ({error})")
