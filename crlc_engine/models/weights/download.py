"""Downloading one weight file into ``<file>.part``: streamed with urllib, hashed on the way,
resumed with an HTTP ``Range`` request, with byte progress and cancellation.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from crlc_engine.core.control import JobControl
from crlc_engine.core.events import Reporter
from crlc_engine.library.runs import APP_NAME
from crlc_engine.models.weights.registry import (
    FALLBACK_HINT,
    MIRROR_ENV,
    WeightsChecksumError,
    WeightsDownloadCancelledError,
    WeightsSpec,
    WeightsUnavailableError,
    cache_error,
)

if TYPE_CHECKING:
    from hashlib import _Hash

#: Seconds a connection attempt or one read may block before the download gives up.
DEFAULT_TIMEOUT_S = 30.0
#: Largest read from the connection, in bytes (a read returns what has arrived, up to this).
CHUNK_BYTES = 1 << 20
#: Least time between two progress reports, in seconds (first and last are always sent).
REPORT_EVERY_S = 0.25


def download_part(
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
        remove_file(part)
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
            return hash_file(part)
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
                remove_file(part)
                raise unavailable(
                    f"the server resumed at byte {start} instead of {offset}; "
                    "the partial file was deleted, run again to start over"
                )
            hasher, mode = hash_file(part), "ab"
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
        raise cache_error(part.parent, error, part) from None
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
                raise cache_error(part.parent, error, part) from None
            hasher.update(chunk)
            done += len(chunk)
            if spec.size is not None and done > spec.size:
                handle.close()
                remove_file(part)
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


def hash_file(path: Path) -> _Hash:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            hasher.update(block)
    return hasher


def remove_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
