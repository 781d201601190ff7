"""Decoding one image file into a training square and a thumbnail (runs in worker processes).

Steps, documented because the pixel cache is defined by them:

1. Open with Pillow (HEIC/HEIF through ``pillow-heif`` when installed). Pillow's
   decompression-bomb limit stays in force: an image over twice ``Image.MAX_IMAGE_PIXELS``
   (about 179 megapixels) is refused before decoding.
2. JPEG (and MPO): ``draft`` mode picks the largest DCT down-scaling (1/2, 1/4, 1/8) that
   keeps both sides at least as large as needed for the square and for the thumbnail (the
   shorter side at least max(S, the thumbnail's shorter side)).
3. Other formats: right after loading, ``Image.reduce`` (a box average) by the largest whole
   factor that keeps the shorter side at least twice that size (as Pillow's
   ``reducing_gap=2``: the antialiased resizes of steps 6 and 7 still shrink by 2 or more,
   which keeps the result within a level or so of resizing the full-size image; dithered
   1-bit pictures come closest to 3 levels), and the full-size image is freed at once.
   Reduced directly: L, LA, RGB, RGBA (alpha premultiplied), I, F; 16-bit greyscale becomes
   I first, 1-bit becomes L, palettes with transparency RGBA; other modes (P, CMYK, ...) go
   through step 5 before reducing. Scaling decisions of step 5 (the peak of I and F images)
   are taken on the full-size image.
4. Apply the EXIF orientation (read after loading: PNG may store it after the pixels).
5. Convert any mode to RGB: 16/32-bit greyscale is scaled to 8 bits (not clipped), images
   with transparency (RGBA, LA, P with a transparent colour) are composited on white, CMYK
   and the rest through Pillow's ``convert("RGB")``.
6. Square: resize the shorter side to S and centre-crop to S x S, in one Pillow
   ``resize(box=...)`` call with the antialiased bilinear filter; the crop box is the centre
   square of the full-size picture, in the coordinates of the reduced image (step 3).
7. Thumbnail: from the same (drafted or reduced) image, longest side 256 (never enlarged;
   the size follows the full-size aspect ratio as Pillow's ``thumbnail`` rounds it),
   bilinear with ``reducing_gap`` 2, JPEG quality 85.

Memory: a decode holds the full-size image once (4 bytes a pixel for RGB, RGBA, CMYK, I),
plus one full-size copy where step 3 converts first (RGBA and LA are premultiplied), and
then only the reduced image: nothing full-size is copied for the square or the thumbnail.
Images over :data:`BIG_IMAGE_PIXELS` decoded pixels (after the JPEG draft) are decoded one
at a time across all the decoding processes of a scan, through a lock that
:mod:`crlc_engine.library.decode_pool` hands to its workers (:func:`share_big_image_lock`).

This module imports only Pillow and numpy so that worker processes start quickly.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

THUMBNAIL_SIDE = 256
#: Decoded pixels (width x height, after the JPEG draft) above which an image is decoded one
#: at a time across the worker processes: 40 MP is about 160 MB per full-size decode.
BIG_IMAGE_PIXELS = 40_000_000
#: How long a worker waits for its turn with a big image before decoding anyway (the turn's
#: holder may have died, which must not block the others for ever).
BIG_IMAGE_WAIT_S = 120.0
#: How much larger than needed a reduced image stays (step 3), as Pillow's ``reducing_gap``.
REDUCING_GAP = 2
#: Formats that shrink while decoding (step 2); the others are reduced after loading.
DRAFT_FORMATS = frozenset({"JPEG", "MPO"})
#: Modes that ``Image.reduce`` averages meaningfully as they are (step 3).
REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "I", "F"})
#: EXIF orientation -> the transposition that makes the picture upright (as ImageOps does).
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
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


class SharedLock(Protocol):
    """What the big-image lock must offer (``multiprocessing.Lock`` does)."""

    def acquire(self, block: bool = ..., timeout: float | None = ...) -> bool: ...

    def release(self) -> None: ...


class _BigImages:
    lock: SharedLock | None = None
    pixels: int = BIG_IMAGE_PIXELS


def share_big_image_lock(lock: SharedLock | None, pixels: int = BIG_IMAGE_PIXELS) -> None:
    """Decode images over ``pixels`` decoded pixels only while holding ``lock``.

    The pool initializer of every decoding process calls this with one lock shared by all
    of them, so that at most one big image is in memory at a time. ``None``: no lock (one
    process decodes anyway).
    """
    _BigImages.lock = lock
    _BigImages.pixels = pixels


@contextmanager
def _big_image_turn(pixels: int) -> Iterator[None]:
    """Hold the shared big-image lock while decoding an image of ``pixels`` (if big)."""
    lock = _BigImages.lock
    if lock is None or pixels <= _BigImages.pixels:
        yield
        return
    taken = lock.acquire(True, BIG_IMAGE_WAIT_S)
    try:
        yield
    finally:
        if taken:
            lock.release()


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


def to_rgb(img: Image.Image, peak: float | None = None) -> Image.Image:
    """Any Pillow mode -> RGB (see the module docstring, step 5).

    ``peak``: the largest value of the full-size I or F image when ``img`` is reduced from
    it (the 8-bit scaling is chosen on the full-size image); ``None``: ``img``'s own.
    """
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        high = arr.max(initial=0) if peak is None else peak
        scale = 257.0 if high <= 65535 else high / 255.0
        grey = np.clip(np.round(arr / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        high = arr.max(initial=0) if peak is None else peak
        top = 1.0 if high <= 1.0 else 255.0
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


def square_from(
    img: Image.Image, side: int, source: tuple[float, float] | None = None
) -> Image.Image:
    """Resize the shorter side to ``side`` and centre-crop (one antialiased resize).

    ``source``: the size of the whole picture in ``img``'s pixels when that is not exactly
    ``img.size`` (a reduced image whose sides were rounded up); default ``img.size``.
    """
    width, height = source or img.size
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


def reduce_factor(width: int, height: int, side: int) -> int:
    """The whole factor of step 3: the shorter side stays at least twice the draft request."""
    return max(1, min(width, height) // (REDUCING_GAP * _draft_request(width, height, side)))


def thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """The thumbnail size of a ``width`` x ``height`` picture (as Pillow's ``thumbnail``)."""
    if width <= THUMBNAIL_SIDE and height <= THUMBNAIL_SIDE:
        return width, height
    aspect = width / height
    x = y = THUMBNAIL_SIDE
    if x / y >= aspect:
        exact = y * aspect
        x = max(min(math.floor(exact), math.ceil(exact), key=lambda n: abs(aspect - n / y)), 1)
    else:
        exact = x / aspect
        y = max(
            min(
                math.floor(exact),
                math.ceil(exact),
                key=lambda n: 0 if n == 0 else abs(aspect - x / n),
            ),
            1,
        )
    return x, y


def _reduced(img: Image.Image, factor: int) -> tuple[Image.Image, float | None]:
    """Step 3: ``img`` reduced by ``factor``, and the full-size peak of I and F images."""
    if factor < 2:
        return img, None
    if img.mode.startswith("I;16"):
        img = img.convert("I")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode == "PA" or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    elif img.mode not in REDUCIBLE_MODES:
        img = to_rgb(img)
    peak = None
    if img.mode in ("I", "F"):
        high = img.getextrema()[1]
        peak = float(high) if isinstance(high, (int, float)) else None
    return img.reduce(factor), peak


def _thumbnail(
    rgb: Image.Image, full: tuple[int, int], source: tuple[float, float] | None
) -> Image.Image:
    """Step 7: the thumbnail of the upright RGB image (drafted or reduced from ``full``)."""
    size = thumbnail_size(*full)
    if source is None and size == rgb.size:
        return rgb
    box = (0.0, 0.0, *(source or rgb.size))
    return rgb.resize(size, Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)


def _decode_opened(
    img: Image.Image, side: int, thumbnail: bool
) -> tuple[int, int, np.ndarray, Image.Image | None]:
    """Steps 2-7 on an opened image: (upright width, height, square, thumbnail or None)."""
    full_width, full_height = img.size
    drafted = img.format in DRAFT_FORMATS
    if drafted:
        request = _draft_request(full_width, full_height, side)
        img.draft("RGB", (request, request))
    with _big_image_turn(img.width * img.height):
        img.load()
        orientation = img.getexif().get(0x0112, 1)
        width, height = full_width, full_height
        if orientation in (5, 6, 7, 8):  # rotated by 90 degrees
            width, height = height, width
        factor = 1 if drafted else reduce_factor(full_width, full_height, side)
        small, peak = _reduced(img, factor)
        if small is not img:
            img.close()  # frees the full-size pixels now, not when the file is closed
        method = ORIENTATIONS.get(orientation)
        rgb = to_rgb(small if method is None else small.transpose(method), peak)
        source = None if factor == 1 else (width / factor, height / factor)
        square = np.asarray(square_from(rgb, side, source), dtype=np.uint8)
        thumb = _thumbnail(rgb, (width, height), source) if thumbnail else None
    return width, height, square, thumb


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
                width, height, square, thumb = _decode_opened(img, side, thumbnail_path is not None)
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
    wrote_thumb = False
    if thumbnail_path is not None and thumb is not None:
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
