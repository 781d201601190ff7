"""Generated images with a known grouping, for tests, demos and benchmarks.

Groups differ only in shape (disc, square, triangle, cross, ring, bar...): every image gets
random foreground and background colours, a random position and a random size, so neither
colour nor raw pixels identify the group.

With ``colour_cells=True`` every tile of a tiled image sits in its own grid cell with its own
random foreground and background colours (and a random polarity). Colour is then a property of
a place in the image, not of the image, so it differs between two random crops of one image
while the shape does not: a clustering that is consistent across augmented views has to use
shape. With one colour pair per image (the default) the colours are the same in every crop and
self-supervised clustering tends to group by brightness instead of shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("disc", "square", "triangle", "cross", "ring", "hbar", "vbar")


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    fill: tuple[int, int, int],
) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "disc":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "cross":
        w = r / 3
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, round(r / 3)))
    elif shape == "hbar":
        draw.rectangle((cx - r, cy - r / 3, cx + r, cy + r / 3), fill=fill)
    elif shape == "vbar":
        draw.rectangle((cx - r / 3, cy - r, cx + r / 3, cy + r), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _distinct_colours(
    rng: np.random.Generator, tint: int
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Foreground and background colours: random grey levels at least 60 apart, each with a
    random per-channel tint of up to +-``tint`` (255 gives fully random colours)."""
    while True:
        levels = rng.integers(0, 256, size=2)
        if abs(int(levels[0]) - int(levels[1])) < 60:
            continue
        colours = np.clip(levels[:, None] + rng.integers(-tint, tint + 1, size=(2, 3)), 0, 255)
        fg, bg = (tuple(int(v) for v in c) for c in colours)
        return (fg[0], fg[1], fg[2]), (bg[0], bg[1], bg[2])


def make_shape_image(
    shape: str,
    size: int,
    rng: np.random.Generator,
    tiled: bool = True,
    tint: int = 40,
    colour_cells: bool = False,
) -> np.ndarray:
    """One image uint8 [size, size, 3] of ``shape`` in random colours.

    Args:
        shape: One of :data:`SHAPES`.
        size: Output side in pixels.
        rng: Source of randomness.
        tiled: Repeat the shape on a grid with a random offset and pitch (every crop of the
            image still shows the shape); otherwise draw one large shape at a random place.
        tint: Colour spread around the random grey levels (see ``_distinct_colours``).
        colour_cells: With ``tiled``, give every tile its own grid cell with its own random
            colours (foreground/background swapped at random); see the module docstring.
    """
    scale = 4  # draw large, then downsample: smooth edges
    big = size * scale
    fg, bg = _distinct_colours(rng, tint)
    img = Image.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(img)
    if tiled:
        pitch = big * rng.uniform(0.24, 0.34)
        r = pitch * 0.36
        ox, oy = rng.uniform(0, pitch, size=2)
        grid = [
            (gx, gy)
            for gy in range(-1, int(big / pitch) + 2)
            for gx in range(-1, int(big / pitch) + 2)
        ]
        fills = dict.fromkeys(grid, fg)
        if colour_cells:
            half = pitch / 2
            for gx, gy in grid:
                cell_fg, cell_bg = _distinct_colours(rng, tint)
                if rng.random() < 0.5:
                    cell_fg, cell_bg = cell_bg, cell_fg
                fills[gx, gy] = cell_fg
                cx, cy = ox + gx * pitch, oy + gy * pitch
                draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=cell_bg)
        for gx, gy in grid:
            _draw_shape(draw, shape, ox + gx * pitch, oy + gy * pitch, r, fills[gx, gy])
    else:
        r = big * rng.uniform(0.22, 0.34)
        cx, cy = rng.uniform(r, big - r, size=2)
        _draw_shape(draw, shape, cx, cy, r, fg)
    small = img.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def make_shapes_dataset(
    per_class: int,
    size: int = 32,
    classes: int = 4,
    seed: int = 0,
    tiled: bool = True,
    shapes: Sequence[str] | None = None,
    colour_cells: bool = False,
    tint: int = 40,
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [classes * per_class, size, size, 3] and labels int64 [N] (shuffled).

    ``shapes`` picks the groups (label i is ``shapes[i]``; ``classes`` is then ignored);
    by default the first ``classes`` of :data:`SHAPES`. ``colour_cells`` and ``tint``: see
    :func:`make_shape_image`.
    """
    names = tuple(shapes) if shapes is not None else SHAPES[:classes]
    if not 2 <= len(names) <= len(SHAPES):
        raise ValueError(f"classes must be 2..{len(SHAPES)}")
    unknown = [name for name in names if name not in SHAPES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"shapes must be distinct names from {SHAPES} (got {list(names)})")
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(names)), per_class)
    rng.shuffle(labels)
    images = np.stack(
        [make_shape_image(names[c], size, rng, tiled, tint, colour_cells) for c in labels]
    )
    return images, labels.astype(np.int64)


def write_shapes_folder(
    dest: str | Path,
    per_class: int,
    size: int = 32,
    classes: int = 4,
    seed: int = 0,
    fmt: str = "png",
    shapes: Sequence[str] | None = None,
    colour_cells: bool = False,
) -> Path:
    """Write a generated data set as ``dest/<shape>/<shape>_NNNN.<fmt>`` and return ``dest``.

    Arguments as for :func:`make_shapes_dataset`.
    """
    folder = Path(dest)
    names = tuple(shapes) if shapes is not None else SHAPES[:classes]
    images, labels = make_shapes_dataset(
        per_class, size, classes, seed, shapes=names, colour_cells=colour_cells
    )
    counters = dict.fromkeys(names, 0)
    for image, label in zip(images, labels, strict=True):
        shape = names[int(label)]
        (folder / shape).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / shape / f"{shape}_{counters[shape]:04d}.{fmt}")
        counters[shape] += 1
    return folder
