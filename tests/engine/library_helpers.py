"""Shared helpers of the library tests: generated images, reference decodes, child processes."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from crlc_engine.cli.main import main

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534

#: EXIF orientation -> what a viewer does to the stored pixels (Pillow's exif_transpose).
ORIENTATION_OPS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_270,
    8: Image.Transpose.ROTATE_90,
}
#: The inverse: how to store an upright picture so that the tag turns it upright again.
ORIENTATION_STORE = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


# ---------------------------------------------------------------------------- image content
def picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3]: smooth colour gradients plus some sharp detail, asymmetric.

    A bright block near the top-left corner and a dark bar at the bottom make any wrong
    rotation or mirror obvious.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    fx, fy = x / max(width - 1, 1), y / max(height - 1, 1)
    phase = rng.uniform(0, 2 * np.pi, 3)
    r = 128 + 100 * np.sin(2 * np.pi * (fx * 1.3 + fy * 0.4) + phase[0])
    g = 128 + 90 * np.cos(2 * np.pi * (fy * 1.1 - fx * 0.3) + phase[1])
    b = 60 + 150 * fx * fy + 20 * np.sin(6 * fx + phase[2])
    arr = np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    draw.rectangle(
        (width // 20, height // 20, width // 4, height // 4), fill=(250, 250, 240), width=0
    )
    draw.rectangle((0, height * 7 // 8, width - 1, height - 1), fill=(15, 20, 40))
    for i in range(6):
        x0 = int(rng.integers(0, width))
        y0 = int(rng.integers(0, height))
        draw.line((x0, y0, width - x0, height - y0), fill=(0, 0, 0), width=max(1, width // 300))
        draw.ellipse(
            (x0 // 2, y0 // 2, x0 // 2 + width // 10, y0 // 2 + height // 10),
            outline=(255, 255 - 30 * i, 30 * i),
            width=2,
        )
    return np.asarray(img)


def noise(width: int, height: int, seed: int) -> np.ndarray:
    """uint8 [H, W, 3] random pixels."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save_jpeg(
    path: Path, arr: np.ndarray, orientation: int | None = None, quality: int = 92
) -> Path:
    """Save an RGB array as a JPEG, optionally tagged with an EXIF orientation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr, "RGB")
    if orientation is None:
        img.save(path, "JPEG", quality=quality)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, "JPEG", quality=quality, exif=exif.tobytes())
    return path


def save_oriented_jpeg(path: Path, upright: np.ndarray, orientation: int) -> Path:
    """Store ``upright`` transposed so that its EXIF orientation turns it upright again."""
    stored = Image.fromarray(upright, "RGB").transpose(ORIENTATION_STORE[orientation])
    return save_jpeg(path, np.asarray(stored), orientation)


def save_png(path: Path, arr: np.ndarray) -> Path:
    """Save an RGB array as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").save(path, "PNG")
    return path


def bomb_png(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A tiny PNG whose IHDR declares ``width`` x ``height`` (a decompression bomb)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), 128).save(path, "PNG")
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


# ---------------------------------------------------------------------------- references
def reference_rgb(path: Path) -> Image.Image:
    """Full-resolution decode (no draft), EXIF transpose, RGB (transparency on white).

    Written independently of ``crlc_engine.library.decode.to_rgb``.
    """
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        mode = img.mode
        if mode.startswith("I;16") or mode == "I":
            grey = np.asarray(img, dtype=np.float64)
            return Image.fromarray(np.round(grey / 257.0).astype(np.uint8), "L").convert("RGB")
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
            alpha = rgba[..., 3:4] / 255.0
            rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
            return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
        return img.convert("RGB")


def reference_square(path: Path, side: int) -> np.ndarray:
    """uint8 [S, S, 3]: shorter side resized to S, centre crop, BILINEAR, from full resolution."""
    return square_of(reference_rgb(path), side)


def square_of(img: Image.Image, side: int) -> np.ndarray:
    """Shorter side -> ``side`` and centre crop with one box resize (BILINEAR)."""
    w, h = img.size
    short = min(w, h)
    left, top = (w - short) / 2, (h - short) / 2
    out = img.resize(
        (side, side), Image.Resampling.BILINEAR, box=(left, top, left + short, top + short)
    )
    return np.asarray(out, dtype=np.uint8)


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    """``img`` after a JPEG save and load (what a JPEG thumbnail can look like at best)."""
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as out:
        return out.convert("RGB")


def expected_thumbnail_size(width: int, height: int, longest: int = 256) -> tuple[int, int]:
    """Thumbnail size: longest side ``longest``, never enlarged, aspect kept."""
    if max(width, height) <= longest:
        return width, height
    if width >= height:
        return longest, max(1, round(height * longest / width))
    return max(1, round(width * longest / height)), longest


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in 8-bit levels."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


# ---------------------------------------------------------------------------- folders
def snapshot(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry below ``folder``: relative path -> (kind, size, mtime_ns), links not followed."""
    out: dict[str, tuple[str, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            kind = "link" if os.path.islink(full) else ("dir" if os.path.isdir(full) else "file")
            out[os.path.relpath(full, folder)] = (kind, st.st_size, st.st_mtime_ns)
    st = os.lstat(folder)
    out["."] = ("dir", st.st_size, st.st_mtime_ns)
    return out


# ---------------------------------------------------------------------------- CLI
def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    """Run ``crlc`` in-process with ``--json``; (exit status, last stdout line as JSON, stderr)."""
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines, f"no JSON line on stdout; stderr: {captured.err}"
    return code, json.loads(lines[-1]), captured.err


# ---------------------------------------------------------------------------- unprivileged child
#: Runs before the test's code in the child: import everything (the interpreter's own files
#: may be unreadable once privileges are dropped), warm the decoder, then become ``nobody``.
_PRELUDE = """
import io, json, os, sys, traceback
from pathlib import Path
import numpy as np
from PIL import Image, ImageOps
Image.init()
from crlc_engine.core.errors import CRLCError, NoImagesFoundError, WorkspaceLockedError
from crlc_engine.library import ImageLibrary, ScanOptions
from crlc_engine.library import decode as _decode
_decode.heif_available()
_buffer = io.BytesIO()
Image.new("RGB", (64, 48), (1, 2, 3)).save(_buffer, "JPEG")
_buffer.seek(0)
with Image.open(_buffer) as _img:
    _img.draft("RGB", (32, 32))
    _img.load()
    _rgb = _decode.to_rgb(ImageOps.exif_transpose(_img) or _img)
_decode.square_from(_rgb, 16)
_rgb.copy().thumbnail((8, 8))
_rgb.save(io.BytesIO(), "JPEG", quality=85)
if os.geteuid() == 0:
    try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    except OSError as exc:
        print(json.dumps({"cannot_drop": str(exc)}))
        sys.exit(0)
""".replace("NOBODY", str(NOBODY))


def prepare_unprivileged_tree(folder: Path) -> None:
    """Hand ``folder`` (recursively) to the user the child runs as."""
    if os.geteuid() != 0:
        return
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), NOBODY, NOBODY)
    os.chown(folder, NOBODY, NOBODY)


def run_unprivileged(body: str, args: list[str], timeout: float = 120.0) -> dict[str, Any]:
    """Run ``body`` in a child Python that drops root privileges (uid/gid 65534) first.

    When the tests do not run as root, the child runs as the current user (then ``chmod``
    already denies access). ``args`` are in ``sys.argv[1:]``. The body must print one JSON
    object as its last stdout line.
    Skips the test when privileges cannot be dropped or permissions are not enforced.
    """
    script = _PRELUDE + "\n" + textwrap.dedent(body)
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert out.returncode == 0, f"child failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr
    result: dict[str, Any] = json.loads(lines[-1])
    if "cannot_drop" in result:
        pytest.skip(f"cannot drop root privileges to uid {NOBODY}: {result['cannot_drop']}")
    if result.get("permissions_not_enforced"):
        pytest.skip("chmod 000 does not deny access here (file system ignores permissions)")
    return result


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms until true (fails the test after ``timeout`` s)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")
