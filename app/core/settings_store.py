"""The user's preferences: a typed, Qt-free settings object stored as JSON.

The file is ``settings.json`` in ``platformdirs.user_config_dir("crlc-organizer")`` (on
Linux ``$XDG_CONFIG_HOME/crlc-organizer``). Loading never fails: a missing or unreadable file
gives the defaults, unknown keys are ignored (and written back unchanged, so a newer version's
settings survive an older one), and a value of the wrong type or out of range is replaced by
its default with a logged warning. Saving is atomic.

The window layout (geometry, splitter) stays in Qt's ``settings.ini`` next to it; this file
holds what the settings dialog edits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from crlc_engine.api import DEVICE_CHOICES, EXPORT_MODES, PRESETS, atomic_write_json

APP_NAME = "crlc-organizer"
SETTINGS_FILE = "settings.json"
#: Version of the file's layout (written as ``"version"``).
FORMAT_VERSION = 1

THEMES = ("system", "light", "dark")
#: Thumbnail edge lengths the grid offers, in pixels (thumbnails are stored at 256).
THUMBNAIL_SIZES = (64, 96, 128, 160, 192, 256)
#: ``default_preset`` value meaning: chosen by device (``presets.default_preset_name``).
AUTO_PRESET = ""

log = logging.getLogger("crlc_organizer.settings")


def cpu_cores() -> int:
    """Logical CPU cores of this machine (at least 1)."""
    return max(1, os.cpu_count() or 1)


def default_scan_workers() -> int:
    """Decoding processes when ``scan_workers`` is 0: all cores but one, for the GUI."""
    return max(1, cpu_cores() - 1)


@dataclass(frozen=True)
class Settings:
    """Everything the settings dialog edits (immutable; change with :meth:`replace`).

    Attributes:
        theme: ``system`` (follow the desktop's light/dark scheme), ``light`` or ``dark``.
        default_preset: Preset preselected in "Group images" ("" = by device).
        default_device: Device preselected in "Group images": auto, cpu, cuda or mps.
        default_clusters: Number of groups preselected in "Group images".
        scan_workers: Processes decoding images while scanning (0 = all cores but one).
        thumbnail_size: Edge of the thumbnails in the grid, one of :data:`THUMBNAIL_SIZES`.
        low_confidence_first: Sort a cluster's images least confident first.
        show_confidence: Draw a confidence bar under each thumbnail.
        neighbors: How many similar images the detail panel shows.
        export_mode: Mode preselected in "Export": copy, hardlink, symlink, move or csv.
        export_min_confidence: Threshold preselected in "Export" (below: ``_uncertain``).
        confirm_close_with_job: Ask before closing while a job runs.
        reopen_last_library: Open the last library at start-up.
        workspace: Where the libraries' workspaces live ("" = ``$CRLC_WORKSPACE``, else the
            user data folder; see :func:`crlc_engine.library.runs.workspace_base`).
    """

    theme: str = "system"
    default_preset: str = AUTO_PRESET
    default_device: str = "auto"
    default_clusters: int = 10
    scan_workers: int = 0
    thumbnail_size: int = 128
    low_confidence_first: bool = False
    show_confidence: bool = True
    neighbors: int = 10
    export_mode: str = "copy"
    export_min_confidence: float = 0.0
    confirm_close_with_job: bool = True
    reopen_last_library: bool = True
    workspace: str = ""

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated: raises ValueError on a bad value)."""
        candidate = dataclasses.replace(self, **changes)
        for name in changes:
            problem = _VALIDATORS[name](getattr(candidate, name))
            if problem:
                raise ValueError(f"{name}: {problem}")
        return candidate

    def effective_scan_workers(self) -> int:
        """Decoding processes to use: ``scan_workers``, or all cores but one when 0."""
        return self.scan_workers or default_scan_workers()

    def workspace_base(self) -> str | None:
        """The ``workspace`` argument for the engine (None = its default)."""
        return self.workspace or None

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> tuple[Settings, list[str]]:
        """Settings from stored values, and a warning for every value that was replaced.

        Unknown keys are ignored; a missing key takes its default silently.
        """
        defaults = cls()
        values: dict[str, Any] = {}
        warnings: list[str] = []
        for field in dataclasses.fields(cls):
            if field.name not in data:
                continue
            value = data[field.name]
            problem = _VALIDATORS[field.name](value)
            if problem:
                default = getattr(defaults, field.name)
                warnings.append(
                    f"setting {field.name!r}: {problem} (got {value!r}); using {default!r}"
                )
                continue
            values[field.name] = float(value) if isinstance(field.default, float) else value
        return cls(**values), warnings


# ---------------------------------------------------------------------- validation
Validator = Callable[[Any], str | None]


def _choice(options: tuple[str, ...]) -> Validator:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and value in options:
            return None
        return f"must be one of {', '.join(repr(o) for o in options)}"

    return check


def _integer(low: int, high: Callable[[], int] | int) -> Validator:
    def check(value: Any) -> str | None:
        top = high() if callable(high) else high
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= top:
            return None
        return f"must be a whole number from {low} to {top}"

    return check


def _fraction(value: Any) -> str | None:
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    ):
        return None
    return "must be a number from 0 to 1"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _thumbnail(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value in THUMBNAIL_SIZES:
        return None
    return f"must be one of {', '.join(map(str, THUMBNAIL_SIZES))}"


def _folder(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a folder path (text)"
    if value and not Path(value).expanduser().is_absolute():
        return "must be an absolute folder path, or empty for the default"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None


_VALIDATORS: dict[str, Validator] = {
    "theme": _choice(THEMES),
    "default_preset": _choice((AUTO_PRESET, *PRESETS)),
    "default_device": _choice(DEVICE_CHOICES),
    "default_clusters": _integer(2, 1000),
    "scan_workers": _integer(0, lambda: max(64, cpu_cores())),
    "thumbnail_size": _thumbnail,
    "low_confidence_first": _boolean,
    "show_confidence": _boolean,
    "neighbors": _integer(1, 100),
    "export_mode": _choice(EXPORT_MODES),
    "export_min_confidence": _fraction,
    "confirm_close_with_job": _boolean,
    "reopen_last_library": _boolean,
    "workspace": _folder,
}
assert set(_VALIDATORS) == {f.name for f in dataclasses.fields(Settings)}


def validate(name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for the setting ``name`` (None when it is)."""
    return _VALIDATORS[name](value)


# ---------------------------------------------------------------------- file
def config_dir() -> Path:
    """The app's platformdirs config folder (``settings.json``, ``settings.ini``, ...)."""
    return Path(platformdirs.user_config_dir(APP_NAME))


def settings_path() -> Path:
    """Where the settings are stored."""
    return config_dir() / SETTINGS_FILE


class SettingsStore:
    """Loads and saves :class:`Settings` as JSON (one file; atomic writes).

    Args:
        path: The file (default: :func:`settings_path`, resolved when the store is made).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else settings_path()
        self._unknown: dict[str, Any] = {}

    def load(self) -> Settings:
        """The stored settings; defaults for anything missing, unreadable or invalid.

        Never raises: problems are logged as warnings.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Settings()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read %s (%s); using the default settings", self.path, exc)
            return Settings()
        try:
            data = json.loads(text)
        except ValueError as exc:
            log.warning("%s is not valid JSON (%s); using the default settings", self.path, exc)
            return Settings()
        if not isinstance(data, dict):
            log.warning("%s holds no JSON object; using the default settings", self.path)
            return Settings()
        known = {f.name for f in dataclasses.fields(Settings)} | {"version"}
        self._unknown = {k: v for k, v in data.items() if k not in known}
        if self._unknown:
            log.info("ignoring unknown settings in %s: %s", self.path, sorted(self._unknown))
        settings, warnings = Settings.from_dict(data)
        for warning in warnings:
            log.warning("%s: %s", self.path, warning)
        return settings

    def save(self, settings: Settings) -> None:
        """Write the settings atomically (unknown keys read by :meth:`load` are kept).

        Raises:
            OSError: the folder cannot be created or the file written.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {**self._unknown, **settings.to_dict(), "version": FORMAT_VERSION}
        atomic_write_json(self.path, payload)
