"""The verified weights cache: :func:`ensure_weights` under a cross-process file lock, the
``.verified.json`` sidecar that spares hashing a file again, and loading a state dict.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from crlc_engine.core.control import JobControl
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.core.file_lock import try_lock, unlock
from crlc_engine.core.fileio import atomic_write_json, fsync_dir
from crlc_engine.models.weights.download import (
    DEFAULT_TIMEOUT_S,
    download_part,
    hash_file,
    remove_file,
)
from crlc_engine.models.weights.registry import (
    FALLBACK_HINT,
    InvalidWeightsFileError,
    WeightsChecksumError,
    WeightsDownloadCancelledError,
    WeightsSpec,
    cache_error,
    weights_path,
    weights_spec,
    weights_url,
)

if TYPE_CHECKING:
    from torch import Tensor

#: How often a process waiting for another one's download re-tries the lock, in seconds.
LOCK_POLL_S = 0.2


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
        raise cache_error(target.parent, error, target) from None
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
        digest = hash_file(target).hexdigest()
        if spec.matches(digest):
            _write_sidecar(target, digest)
            return target
        note = (
            f" (a file already at {target} had SHA-256 {digest}, not {spec.sha256}, "
            "and was removed)"
        )
        reporter.status(f"{target.name} in the cache is damaged or wrong; downloading it again")
        remove_file(target)
        remove_file(_sidecar_path(target))
    source = weights_url(spec, url)
    part = target.with_name(target.name + ".part")
    hasher = download_part(spec, source, part, target, reporter, control, timeout_s, note)
    digest = hasher.hexdigest()
    if not spec.matches(digest):
        remove_file(part)
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
        raise cache_error(target.parent, error, target) from None
    fsync_dir(target.parent)
    _write_sidecar(target, digest)
    reporter.status(f"Verified and saved {target.name}")
    return target


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
            raise cache_error(self.path.parent, error, self.target) from None
        told = False
        while True:
            try:
                try_lock(fd)
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
            unlock(fd)
        finally:
            os.close(fd)
