"""Finding the image files below a set of roots.

Recursive, sorted, hidden files and folders skipped unless asked, include / exclude glob
patterns matched against the root-relative POSIX path (and the file name). Folders that
cannot be listed are reported, not fatal.

Symbolic links are followed (unless ``follow_symlinks`` is off) with loop protection (a
folder already visited through another path is not entered again), except links to ``/``,
into the system folders :data:`SYSTEM_FOLDERS` (``/proc``, ``/sys``, ``/dev``, ``/run``;
``/run/media`` and ``/run/user`` excepted, where removable and network drives are mounted),
or to a folder that contains one of the library's roots (e.g. the home folder above the
photos): those are reported as skipped with the reason. Links whose target lies outside
every root are followed and listed (``links_outside``), so a scan never reaches outside
its folders unseen.

A walk stops once it has found more image files than its ``limit``
(``ScanOptions.max_files``, default :data:`DEFAULT_MAX_FILES`) and says so (``too_many``).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crlc_engine.library.decode import IMAGE_EXTENSIONS

#: Image files a scan takes at most unless told otherwise (``--max-files``).
DEFAULT_MAX_FILES = 200_000
#: Folders that symbolic links are never followed into (nor below them).
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev", "/run")
#: Below the system folders, still followed: where removable and network drives are mounted.
SYSTEM_EXCEPTIONS = ("/run/media", "/run/user")


@dataclass(frozen=True)
class ScanOptions:
    """What a scan looks at.

    Attributes:
        include_hidden: Also scan names starting with a dot.
        include: Glob patterns; when given, only matching files are taken.
        exclude: Glob patterns of files and folders to leave out.
        follow_symlinks: Follow symbolic links to folders and files (see the module
            docstring for the links that are never followed).
        max_files: Stop a scan that finds more image files than this, before it adds any.
    """

    include_hidden: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = True
    max_files: int = DEFAULT_MAX_FILES


@dataclass(frozen=True)
class FoundFile:
    """A candidate image file with the ``stat`` taken during the walk."""

    rel_path: str
    size: int
    mtime_ns: int


@dataclass
class WalkResult:
    """Files found below one root, and what could not be looked at.

    Attributes:
        files: The image files found.
        problems: (absolute path, reason) of what was skipped.
        links_outside: (link path, resolved target) of followed links leading outside
            every root.
        too_many: The walk stopped after finding more files than its limit.
    """

    files: list[FoundFile] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    links_outside: list[tuple[str, str]] = field(default_factory=list)
    too_many: bool = False


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def refused_link(target: str, roots: Sequence[Path]) -> str | None:
    """Why a symbolic link to ``target`` (resolved) is not followed; ``None``: it is."""
    place = Path(target)
    if any(place.is_relative_to(root) for root in roots):
        return None
    if place.parent == place:
        return f"symbolic link to the top of the file system ({target}): not followed"
    for system in SYSTEM_FOLDERS:
        if _below(target, system) and not any(_below(target, e) for e in SYSTEM_EXCEPTIONS):
            return f"symbolic link into the system folder {system} ({target}): not followed"
    for root in roots:
        if root.is_relative_to(place):
            return (
                f"symbolic link to {target}, a folder that contains the photo folder "
                f"{root}: not followed"
            )
    return None


def _below(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def _outside(target: str, roots: Sequence[Path]) -> bool:
    return not any(Path(target).is_relative_to(root) for root in roots)


def walk_root(
    root: Path, options: ScanOptions, roots: Sequence[Path] = (), limit: int | None = None
) -> WalkResult:
    """Every image-extension file below ``root`` (see the module docstring).

    Args:
        root: The folder to walk.
        options: What to take.
        roots: All the library's roots, for the rules on symbolic links (default: ``root``).
        limit: Stop, with ``too_many`` set, once more files than this are found.
    """
    result = WalkResult()
    visited: set[tuple[int, int]] = set()
    all_roots = tuple(roots) or (root,)

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
        dirnames[:] = _folders_to_enter(
            dirpath, prefix, sorted(dirnames), options, all_roots, result
        )
        for name in sorted(filenames):
            found = _image_file(dirpath, prefix + name, options, all_roots, result)
            if found is None:
                continue
            result.files.append(found)
            if limit is not None and len(result.files) > limit:
                result.too_many = True
                return result
    return result


def _folders_to_enter(
    dirpath: str,
    prefix: str,
    names: list[str],
    options: ScanOptions,
    roots: Sequence[Path],
    result: WalkResult,
) -> list[str]:
    """The sub-folders of ``dirpath`` to walk (hidden, excluded and refused links left out)."""
    keep = []
    for name in names:
        if (name.startswith(".") and not options.include_hidden) or _matches(
            prefix + name, options.exclude
        ):
            continue
        full = os.path.join(dirpath, name)
        if options.follow_symlinks and os.path.islink(full):
            target = os.path.realpath(full)
            why = refused_link(target, roots)
            if why is not None:
                result.problems.append((full, why))
                continue
            if _outside(target, roots):
                result.links_outside.append((full, target))
        keep.append(name)
    return keep


def _image_file(
    dirpath: str, rel: str, options: ScanOptions, roots: Sequence[Path], result: WalkResult
) -> FoundFile | None:
    """The file ``rel`` if it is a wanted image file (problems go to ``result``)."""
    name = rel.rsplit("/", 1)[-1]
    if name.startswith(".") and not options.include_hidden:
        return None
    if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    if options.include and not _matches(rel, options.include):
        return None
    if _matches(rel, options.exclude):
        return None
    full = os.path.join(dirpath, name)
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        shown = full.encode("utf-8", "replace").decode("utf-8")
        result.problems.append((shown, "file name is not valid UTF-8: skipped"))
        return None
    try:
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            if not options.follow_symlinks:
                return None
            target = os.path.realpath(full)
            why = refused_link(target, roots)
            if why is not None:
                result.problems.append((full, why))
                return None
            st = os.stat(full)
            if _outside(target, roots):
                result.links_outside.append((full, target))
    except FileNotFoundError:
        result.problems.append((full, "broken symbolic link or deleted during the scan"))
        return None
    except OSError as exc:
        result.problems.append((full, f"cannot read file: {exc.strerror or exc}"))
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return FoundFile(rel, st.st_size, st.st_mtime_ns)


def _walk(root: Path, follow: bool, on_error: object) -> Iterator[tuple[str, list[str], list[str]]]:
    yield from os.walk(root, followlinks=follow, onerror=on_error)  # type: ignore[arg-type]
