"""The SQLite catalog of a library: roots, one row per image file, and the pixel-cache index.

Stored in ``<workspace>/catalog.sqlite`` (stdlib sqlite3, WAL). Paths are kept as (root id,
POSIX path relative to the root), so a moved root is re-linked by changing one row. The
schema carries a version; :data:`MIGRATIONS` brings an older file up to date, each step in
one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
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


#: ``MIGRATIONS[v]`` upgrades a catalog from version ``v`` to ``v + 1``.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1, _migrate_to_2]


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


class Catalog:
    """A connection to one library's catalog (create / migrate on open)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

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
            raise RuntimeError(
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
        side: int,
        thumbnail: bool,
    ) -> None:
        """The file decoded: its pixels at ``side`` are in the cache (written before this)."""
        self.db.execute(
            "UPDATE images SET size=?, mtime_ns=?, width=?, height=?, status='ok', error=NULL, "
            "has_thumbnail = CASE WHEN ? THEN 1 ELSE has_thumbnail END WHERE id=?",
            (size, mtime_ns, width, height, int(thumbnail), image_id),
        )
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
