"""Minimal image-folder loader: every image under a folder -> uint8 [N, S, S, 3].

Each image is decoded once (JPEG in Pillow's draft mode at the smallest scale that still
covers S), EXIF orientation applied, converted to RGB, its shorter side resized to S and
centre-cropped to S x S. Unreadable files are skipped and listed.

Ground truth, for evaluation only: an image's class is the name of its immediate parent
folder; images directly in the root folder have none.

The image library (catalog + pixel cache) will replace this loader.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps

from crlc_engine.control import JobControl
from crlc_engine.errors import FolderNotFoundError, NoImagesFoundError
from crlc_engine.events import NullReporter, Reporter

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass
class FolderImages:
    """Images of one folder at one size.

    Attributes:
        root: The resolved folder.
        paths: POSIX paths relative to ``root``, sorted, length N.
        images: uint8 [N, S, S, 3].
        skipped: ``(relative path, reason)`` for files that could not be decoded.
    """

    root: Path
    paths: list[str]
    images: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def classes(self) -> list[str | None]:
        """Ground-truth class of each image (parent folder name) or ``None``."""
        return [class_of(p) for p in self.paths]


def class_of(relative_path: str) -> str | None:
    """The immediate parent folder's name of a root-relative POSIX path, else ``None``."""
    parent = PurePosixPath(relative_path).parent
    return None if str(parent) in ("", ".") else parent.name


def find_images(root: Path) -> list[str]:
    """Root-relative POSIX paths of image files below ``root`` (recursive, sorted, no hidden)."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(found)


def decode_square(path: Path, size: int) -> np.ndarray:
    """Decode one image to uint8 [size, size, 3]: EXIF-rotate, RGB, shorter side, centre crop."""
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("RGB", (size, size))
        rotated = ImageOps.exif_transpose(img)
        rgb = rotated.convert("RGB")
        square = ImageOps.fit(rgb, (size, size), method=Image.Resampling.BILINEAR)
        return np.asarray(square, dtype=np.uint8)


def _decode_or_reason(path: Path, size: int) -> np.ndarray | str:
    try:
        return decode_square(path, size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"


def load_image_folder(
    root: str | Path,
    size: int,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    workers: int | None = None,
) -> FolderImages:
    """Load every image under ``root`` at ``size`` x ``size``.

    Args:
        root: Folder to read recursively.
        size: Side S of the output squares.
        reporter: Receives progress (files done / total).
        control: Cancelling stops early with the images decoded so far.
        workers: Decoding threads (default: all cores but one, at least one).

    Raises:
        FolderNotFoundError: ``root`` is not a folder.
        NoImagesFoundError: no readable image under ``root``.
    """
    reporter = reporter or NullReporter()
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FolderNotFoundError(f"folder not found: {folder}")
    folder = folder.resolve()
    rel_paths = find_images(folder)
    if not rel_paths:
        raise NoImagesFoundError(f"no image files (jpg, png, webp, bmp, tiff, gif) in {folder}")
    reporter.status(f"Decoding {len(rel_paths)} images from {folder} at {size} px")
    n_workers = workers or max(1, (os.cpu_count() or 2) - 1)
    images: list[np.ndarray] = []
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        results = pool.map(
            lambda rel: _decode_or_reason(folder / rel, size), rel_paths, chunksize=1
        )
        for done, (rel, result) in enumerate(zip(rel_paths, results, strict=True), start=1):
            if isinstance(result, str):
                skipped.append((rel, result))
            else:
                images.append(result)
                kept.append(rel)
            if done % 256 == 0 or done == len(rel_paths):
                reporter.progress(done, len(rel_paths))
            if control is not None and control.cancelled:
                break
    if not images:
        raise NoImagesFoundError(
            f"none of the {len(rel_paths)} image files in {folder} could be decoded "
            f"(first error: {skipped[0][1]})"
        )
    stacked = np.stack(images).astype(np.uint8, copy=False)
    return FolderImages(folder, kept, stacked, skipped)


def class_indices(classes: Sequence[str | None]) -> tuple[np.ndarray, list[str]]:
    """Map class names to 0..K-1 (sorted names); ``-1`` for images without a class."""
    names = sorted({c for c in classes if c is not None})
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[c] if c is not None else -1 for c in classes], dtype=np.int64), names
