"""Render the application icon (resources/icons/app.svg) into a hicolor icon theme tree.

Writes ``packaging/linux/icons/hicolor/<N>x<N>/apps/<app-id>.png`` for every size in
:data:`SIZES`, plus a copy of the SVG under ``scalable/apps/``. The outputs are committed;
rerun this after changing the SVG::

    .venv/bin/python packaging/make_icons.py          # (re)write the icons
    .venv/bin/python packaging/make_icons.py --check  # exit 1 when they are out of date

Rendering uses PySide6's QSvgRenderer on a QImage, so no display (and no QApplication) is
needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

APP_ID = "io.github.crlc_organizer.CRLCOrganizer"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "app.svg"
HICOLOR = ROOT / "packaging" / "linux" / "icons" / "hicolor"


def png_path(size: int, hicolor: Path = HICOLOR) -> Path:
    """Where the ``size`` px PNG of the icon lives in the hicolor tree."""
    return hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png"


def svg_path(hicolor: Path = HICOLOR) -> Path:
    """Where the scalable copy of the icon lives in the hicolor tree."""
    return hicolor / "scalable" / "apps" / f"{APP_ID}.svg"


def render(size: int, svg: Path = SVG) -> QImage:
    """Render ``svg`` to a ``size`` x ``size`` image (ARGB32, transparent background)."""
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"not a valid SVG: {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    return image.convertToFormat(QImage.Format.Format_ARGB32)


def png_bytes(image: QImage) -> bytes:
    """``image`` encoded as PNG (maximum compression; no text chunks, so reproducible)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    # PySide6's stubs type `format` as bytes, but at run time only str is accepted.
    if not image.save(buffer, "PNG", 0):  # type: ignore[call-overload]
        raise OSError("PNG encoding failed")
    buffer.close()
    return bytes(data.data())


def expected_files(svg: Path = SVG, hicolor: Path = HICOLOR) -> dict[Path, bytes]:
    """Every output file and its contents."""
    files = {png_path(size, hicolor): png_bytes(render(size, svg)) for size in SIZES}
    files[svg_path(hicolor)] = svg.read_bytes()
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--svg", type=Path, default=SVG, help="source SVG (default: %(default)s)")
    parser.add_argument(
        "--out", type=Path, default=HICOLOR, help="hicolor folder to write (default: %(default)s)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any output is stale"
    )
    args = parser.parse_args(argv)

    stale = 0
    for path, content in expected_files(args.svg, args.out).items():
        current = path.read_bytes() if path.is_file() else None
        if current == content:
            continue
        stale += 1
        if args.check:
            print(f"out of date: {path}", file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            print(f"wrote {path}")
    if args.check and stale:
        print("run: python packaging/make_icons.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
