"""Finding the image files below a set of roots.

Recursive, sorted, hidden files and folders skipped unless asked, symbolic links followed
with loop protection (a folder already visited through another path is not entered
again), include / exclude glob patterns matched against the root-relative POSIX path (and
the file name). Folders that cannot be listed are reported, not fatal.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from crlc_engine.library.decode import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class ScanOptions:
    """What a scan looks at.

    Attributes:
        include_hidden: Also scan names starting with a dot.
        include: Glob patterns; when given, only matching files are taken.
        exclude: Glob patterns of files and folders to leave out.
        follow_symlinks: Follow symbolic links to folders and files.
    """

    include_hidden: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = True


@dataclass(frozen=True)
class FoundFile:
    """A candidate image file with the ``stat`` taken during the walk."""

    rel_path: str
    size: int
    mtime_ns: int


@dataclass
class WalkResult:
    """Files found below one root, and what could not be looked at."""

    files: list[FoundFile] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (absolute path, reason)


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def walk_root(root: Path, options: ScanOptions) -> WalkResult:
    """Every image-extension file below ``root`` (see the module docstring)."""
    result = WalkResult()
    visited: set[tuple[int, int]] = set()

    def on_error(exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        result.problems.append((str(exc.filename or root), f"cannot list folder: {reason}"))

    for dirpath, dirnames, filenames in _walk(root, options.follow_symlinks, on_error):
        try:
            st = os.stat(dirpath)
            key = (st.st_dev, st.st_ino)
        except OSError as exc:
            on_error(exc)
            dirnames[:] = []
            continue
        if key in visited:
            result.problems.append((dirpath, "symbolic link loop or folder seen twice: skipped"))
            dirnames[:] = []
            continue
        visited.add(key)
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        keep_dirs = []
        for d in sorted(dirnames):
            if (d.startswith(".") and not options.include_hidden) or _matches(
                prefix + d, options.exclude
            ):
                continue
            keep_dirs.append(d)
        dirnames[:] = keep_dirs
        for name in sorted(filenames):
            rel = prefix + name
            if name.startswith(".") and not options.include_hidden:
                continue
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if options.include and not _matches(rel, options.include):
                continue
            if _matches(rel, options.exclude):
                continue
            full = os.path.join(dirpath, name)
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                result.problems.append(
                    (
                        full.encode("utf-8", "replace").decode("utf-8"),
                        "file name is not valid UTF-8: skipped",
                    )
                )
                continue
            try:
                st = os.stat(full) if options.follow_symlinks else os.lstat(full)
            except FileNotFoundError:
                result.problems.append((full, "broken symbolic link or deleted during the scan"))
                continue
            except OSError as exc:
                result.problems.append((full, f"cannot read file: {exc.strerror or exc}"))
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            result.files.append(FoundFile(rel, st.st_size, st.st_mtime_ns))
    return result


def _walk(root: Path, follow: bool, on_error: object) -> Iterator[tuple[str, list[str], list[str]]]:
    yield from os.walk(root, followlinks=follow, onerror=on_error)  # type: ignore[arg-type]
