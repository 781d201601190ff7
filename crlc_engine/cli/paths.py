"""What the positional paths of the result commands name: a library, its images, a cluster.

Positional paths are sorted by what they are: existing folders are the library's roots,
files are images (commands that take a cluster, a name or a destination read those from
the end of the list). Without a folder, the library is the one whose roots hold the images.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crlc_engine.api import (
    ImageLibrary,
    ImageNotInLibraryError,
    InvalidSettingError,
    LibraryNotFoundError,
    ResultStore,
    RunDir,
    list_libraries,
)


def split_paths(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """(folders, files) among ``paths``; anything else is an error."""
    folders, files = [], []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            folders.append(path)
        elif path.is_file():
            files.append(path.resolve())
        else:
            raise ImageNotInLibraryError(f"no such file or folder: {path}")
    return folders, files


def _library_of_images(files: list[Path], base: str | None) -> list[Path]:
    """The roots of the one library that holds every file."""
    matches = [
        info
        for info in list_libraries(base)
        if all(any(f.is_relative_to(r) for r in info.roots) for f in files)
    ]
    if not matches:
        raise LibraryNotFoundError(
            "none of your libraries holds these images; give the library's folder(s) too"
        )
    if len(matches) > 1:
        raise InvalidSettingError(
            "several libraries hold these images; give the library's folder(s) too"
        )
    return [Path(r) for r in matches[0].roots]


@contextmanager
def open_library(
    folders: list[Path], files: list[Path], base: str | None, read_only: bool = False
) -> Iterator[ImageLibrary]:
    """The library of ``folders``, or without folders the one that holds ``files``."""
    roots = folders or _library_of_images(files, base)
    library = ImageLibrary.open(roots, base, read_only)
    try:
        yield library
    finally:
        library.close()


def image_ids(library: ImageLibrary, files: list[Path]) -> list[int]:
    """The ids of ``files`` in ``library`` (each must be a usable image of it)."""
    ids = []
    for path in files:
        record = library.catalog.image_by_path(path)
        if record is None or record.status != "ok":
            state = "not in this library" if record is None else f"{record.status}"
            raise ImageNotInLibraryError(f"{path} is {state}; scan the library first (`crlc scan`)")
        ids.append(record.id)
    if not ids:
        raise InvalidSettingError("give at least one image")
    return ids


def check_cluster(library: ImageLibrary, run: RunDir, cluster: int) -> None:
    """``cluster`` is one of the run's head's C or one made by a split (it holds images)."""
    clusters = int(run.read_config()["train"]["clusters"])
    if 0 <= cluster < clusters:
        return
    extra = [c for c in ResultStore(library.catalog).cluster_ids(run.run_id) if c >= clusters]
    if cluster in extra:
        return
    split = f" and {', '.join(map(str, extra))}" if extra else ""
    raise InvalidSettingError(
        f"run {run.run_id} has clusters 0..{clusters - 1}{split}, not {cluster}"
    )


def cluster_number(text: str) -> int:
    """The cluster number a positional argument gives."""
    try:
        return int(text)
    except ValueError:
        raise InvalidSettingError(f"CLUSTER must be a cluster number, not {text!r}") from None
