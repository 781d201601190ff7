"""Ground truth for evaluation only: an image's class is the name of its parent folder.

Images directly inside a root folder have no class and are left out of the scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np


def class_of(relative_path: str) -> str | None:
    """The immediate parent folder's name of a root-relative POSIX path, else ``None``."""
    parent = PurePosixPath(relative_path).parent
    return None if str(parent) in ("", ".") else parent.name


def class_indices(classes: Sequence[str | None]) -> tuple[np.ndarray, list[str]]:
    """Map class names to 0..K-1 (sorted names); ``-1`` for images without a class."""
    names = sorted({c for c in classes if c is not None})
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[c] if c is not None else -1 for c in classes], dtype=np.int64), names
