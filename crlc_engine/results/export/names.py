"""Portable folder and file names of an export: cluster names made safe on Linux, macOS
and Windows, distinct, and numbered when taken.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from pathlib import PurePosixPath

#: Folder of the photos whose confidence is below ``min_confidence``.
UNCERTAIN_FOLDER = "_uncertain"
#: Folder names are capped to this many characters and UTF-8 bytes.
MAX_NAME_CHARS = 120
MAX_NAME_BYTES = 200
_FORBIDDEN_CHARS = frozenset('/\\<>:"|?*')
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{prefix}{digit}" for prefix in ("COM", "LPT") for digit in "123456789¹²³"}
)


def sanitize_folder_name(name: str) -> str:
    """Turn a cluster name into a folder name that is safe on Linux, macOS and Windows.

    Path separators and characters Windows forbids become ``_``, control characters and
    other whitespace become spaces (runs collapsed), leading/trailing dots and spaces are
    dropped, reserved Windows device names (``CON``, ``com1.txt``...) get a ``_`` prefix,
    the result is capped to :data:`MAX_NAME_CHARS` characters and :data:`MAX_NAME_BYTES`
    UTF-8 bytes, an empty result becomes ``unnamed`` and ``_uncertain`` becomes
    ``_uncertain (cluster)`` so that it never merges with :data:`UNCERTAIN_FOLDER`.

    Args:
        name: The cluster name as the user typed it.

    Returns:
        A non-empty single path component.
    """
    text = _sanitize_component(name)
    if fold_name(text) == fold_name(UNCERTAIN_FOLDER):
        return f"{UNCERTAIN_FOLDER} (cluster)"
    return text


def cluster_folder_names(clusters: Iterable[str]) -> dict[str, str]:
    """Give every distinct cluster name its own folder name, deterministically.

    Names are taken in sorted order; a folder name already taken (compared case-insensitively,
    as on Windows and macOS, and including :data:`UNCERTAIN_FOLDER`) gets ``" (2)"``,
    ``" (3)"``...

    Args:
        clusters: Cluster names (repeats allowed).

    Returns:
        Cluster name -> folder name.
    """
    taken = {fold_name(UNCERTAIN_FOLDER)}
    folders: dict[str, str] = {}
    for name in sorted(set(clusters)):
        base = sanitize_folder_name(name)
        folder, number = base, 1
        while fold_name(folder) in taken:
            number += 1
            folder = _numbered_folder(base, number)
        taken.add(fold_name(folder))
        folders[name] = folder
    return folders


def _sanitize_component(name: str) -> str:
    text = "".join(_clean_char(char) for char in unicodedata.normalize("NFC", name))
    text = " ".join(text.split()).strip(" .")
    if text.split(".")[0].rstrip(" ").upper() in _RESERVED_NAMES:
        text = f"_{text}"
    text = _truncate(text, MAX_NAME_CHARS, MAX_NAME_BYTES).rstrip(" .")
    return text or "unnamed"


def _clean_char(char: str) -> str:
    if char in _FORBIDDEN_CHARS:
        return "_"
    if char.isspace() or unicodedata.category(char) == "Cc":
        return " "
    if unicodedata.category(char) == "Cs":
        return "_"
    return char


def _byte_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _truncate(text: str, max_chars: int, max_bytes: int) -> str:
    text = text[:max_chars]
    while _byte_len(text) > max_bytes:
        text = text[:-1]
    return text


def _numbered_folder(base: str, number: int) -> str:
    suffix = f" ({number})"
    stem = _truncate(base, MAX_NAME_CHARS - len(suffix), MAX_NAME_BYTES - len(suffix))
    return f"{stem.rstrip(' .')}{suffix}"


def numbered_file_name(name: str, number: int) -> str:
    if number == 1:
        return name
    stem, extension = os.path.splitext(name)
    suffix = f" ({number}){extension}"
    return _truncate(stem, len(stem), 255 - _byte_len(suffix)) + suffix


def subfolder_names(relative: str) -> list[str]:
    parts = PurePosixPath(relative).parts[:-1]
    return [_sanitize_component(p) for p in parts if p not in ("", ".", "..", "/")]


def fold_name(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()
