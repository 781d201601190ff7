"""Decoding one image file into a training square and a thumbnail (runs in worker processes).

Steps, documented because the pixel cache is defined by them:

1. Open with Pillow (HEIC/HEIF through ``pillow-heif`` when installed). Pillow's
   decompression-bomb limit stays in force: an image over twice ``Image.MAX_IMAGE_PIXELS``
   (about 179 megapixels) is refused before decoding.
2. JPEG: ``draft`` mode picks the largest DCT down-scaling (1/2, 1/4, 1/8) that keeps both
   sides at least as large as needed for the square and for the thumbnail.
3. Apply the EXIF orientation.
4. Convert any mode to RGB: 16/32-bit greyscale is scaled to 8 bits (not clipped), images
   with transparency (RGBA, LA, P with a transparent colour) are composited on white, CMYK
   and the rest through Pillow's ``convert("RGB")``.
5. Square: resize the shorter side to S and centre-crop to S x S, in one Pillow
   ``resize(box=...)`` call with the antialiased bilinear filter.
6. Thumbnail: longest side 256 (never enlarged), JPEG quality 85.

This module imports only Pillow and numpy so that worker processes start quickly.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

THUMBNAIL_SIDE = 256
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
IMAGE_EXTENSIONS = (
    frozenset(
        {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
    )
    | HEIF_EXTENSIONS
)

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not grey pixels

_heif_state: dict[str, bool] = {}


def heif_available() -> bool:
    """Whether HEIC/HEIF decoding is available (``pillow-heif`` installed and registered)."""
    if "ok" not in _heif_state:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
            _heif_state["ok"] = True
        except Exception:  # not installed or broken: HEIC files are reported unsupported
            _heif_state["ok"] = False
    return _heif_state["ok"]


@dataclass(frozen=True)
class DecodeResult:
    """What decoding one file gave.

    Attributes:
        status: ``ok``, ``error``, ``unsupported`` or ``missing``.
        reason: Why it is not ``ok`` (``None`` when it is).
        size: File size in bytes when decoded.
        mtime_ns: File modification time when decoded.
        width: Width of the full-size image after EXIF rotation.
        height: Height of the full-size image after EXIF rotation.
        pixels: uint8 [S, S, 3] bytes (``None`` unless ``ok``).
        thumbnail: Whether the thumbnail file was written.
    """

    status: str
    reason: str | None
    size: int = 0
    mtime_ns: int = 0
    width: int = 0
    height: int = 0
    pixels: bytes | None = None
    thumbnail: bool = False


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB (see the module docstring, step 4)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) <= 65535 else arr.max() / 255.0
        grey = np.clip(np.round(arr / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(arr / top * 255, 0, 255).astype(np.uint8), "L").convert(
            "RGB"
        )
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def square_from(img: Image.Image, side: int) -> Image.Image:
    """Resize the shorter side to ``side`` and centre-crop (one antialiased resize)."""
    width, height = img.size
    short = min(width, height)
    left = (width - short) / 2
    top = (height - short) / 2
    return img.resize(
        (side, side), Image.Resampling.BILINEAR, box=(left, top, left + short, top + short)
    )


def _draft_request(width: int, height: int, side: int) -> int:
    """Smallest shorter-side (in pixels) that still serves the square and the thumbnail."""
    thumb_short = THUMBNAIL_SIDE * min(width, height) / max(width, height, 1)
    return max(1, math.ceil(max(side, min(thumb_short, min(width, height)))))


def decode_file(path: str, side: int, thumbnail_path: str | None) -> DecodeResult:
    """Decode ``path`` into an S x S square (and a thumbnail); never raises for bad files."""
    try:
        before = os.stat(path)
    except FileNotFoundError:
        return DecodeResult("missing", "deleted during the scan")
    except OSError as exc:
        return DecodeResult("error", f"cannot read file: {exc.strerror or exc}")
    size, mtime = before.st_size, before.st_mtime_ns
    if size == 0:
        return DecodeResult("error", "empty file (0 bytes)", size, mtime)
    suffix = Path(path).suffix.lower()
    if suffix in HEIF_EXTENSIONS and not heif_available():
        return DecodeResult(
            "unsupported",
            "HEIC/HEIF needs the optional pillow-heif package (pip install 'crlc-organizer[heif]')",
            size,
            mtime,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size  # before draft() shrinks it
                if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                    width, height = height, width
                if img.format == "JPEG":
                    request = _draft_request(img.width, img.height, side)
                    img.draft("RGB", (request, request))
                img.load()
                rotated = ImageOps.exif_transpose(img) or img
                rgb = to_rgb(rotated)
    except Image.DecompressionBombError as exc:
        return DecodeResult("error", f"decompression bomb refused: {exc}", size, mtime)
    except FileNotFoundError:
        return DecodeResult("missing", "deleted during the scan", size, mtime)
    except PermissionError as exc:
        return DecodeResult("error", f"permission denied: {exc.strerror or exc}", size, mtime)
    except UnidentifiedImageError:
        return DecodeResult(
            "error", "not an image (Pillow cannot identify the format)", size, mtime
        )
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        return DecodeResult("error", f"corrupt or truncated image: {exc}", size, mtime)
    square = np.asarray(square_from(rgb, side), dtype=np.uint8)
    wrote_thumb = False
    if thumbnail_path is not None:
        thumb = rgb.copy()
        thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
        tmp = thumbnail_path + f".{os.getpid()}.tmp"
        thumb.save(tmp, "JPEG", quality=85)
        os.replace(tmp, thumbnail_path)
        wrote_thumb = True
    try:
        after = os.stat(path)
    except FileNotFoundError:
        return DecodeResult("missing", "deleted during the scan", size, mtime)
    if (after.st_size, after.st_mtime_ns) != (size, mtime):
        return DecodeResult("error", "changed while it was being read; scan again", size, mtime)
    return DecodeResult("ok", None, size, mtime, width, height, square.tobytes(), wrote_thumb)
