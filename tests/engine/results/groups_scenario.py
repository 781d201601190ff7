"""The user's flow of "Groups you can trust" on generated photos with 5 known groups.

Group, name every cluster after its majority group (pairs share a name: a merge), label 2
pictures in each of 3 groups, move 2 misplaced pictures, refine, export, then train again
with 5 clusters. Shared by the scenario tests (through the public jobs and through the CLI).

The photos: 5 groups, each a colour in two shades, so that 10 clusters split every group in
two; 4 pictures per group mix their colour with another group's (55 : 45), and some of
those land in the wrong cluster. The "backbone" is a
colour-layout extractor (the mean colour of each image quarter) put in place of
EfficientNet-Lite0, so the quick preset's heads run as for real photos, in seconds.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from crlc_engine.library import ImageLibrary
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.training.frozen_features import FeatureExtractor, FeatureSpec

GROUPS = ("Red", "Green", "Blue", "Yellow", "Violet")
COLOURS = ((220, 40, 40), (40, 180, 60), (40, 70, 220), (230, 210, 40), (170, 60, 200))
PER_GROUP = 40
#: The two shades of each group's colour: 10 clusters split every group in two.
SHADES = (1.0, 0.7)
#: Pictures per group that mix its colour with another group's (some land elsewhere).
AMBIGUOUS = 4
SIDE = 32
LABELLED_GROUPS = GROUPS[:3]


def write_photos(folder: Path, seed: int = 0) -> dict[str, str]:
    """5 x 40 PNGs named ``img_NNN.png`` in random order; returns file name -> group."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    pictures = []
    for g, colour in enumerate(COLOURS):
        for k in range(PER_GROUP):
            base = np.array(colour, dtype=float)
            if k >= PER_GROUP - AMBIGUOUS:  # part its colour, part another group's
                base = 0.55 * base + 0.45 * np.array(COLOURS[(g + 1) % len(COLOURS)])
            shade = SHADES[k % 2] * base + rng.normal(0, 8, 3)
            pixels = np.full((SIDE, SIDE, 3), 245.0) + rng.normal(0, 6, (SIDE, SIDE, 3))
            edge = int(rng.integers(2, 5))
            pixels[edge : SIDE - edge, edge : SIDE - edge] = shade  # a photo with a white margin
            pictures.append((np.clip(pixels, 0, 255).astype(np.uint8), GROUPS[g]))
    order = rng.permutation(len(pictures))
    truth = {}
    for n, k in enumerate(order.tolist()):
        image, group = pictures[k]
        name = f"img_{n:03d}.png"
        Image.fromarray(image).save(folder / name)
        truth[name] = group
    return truth


def colour_layout_extractor(side: int, *args: object, **kwargs: object) -> FeatureExtractor:
    """The mean colour of each quarter of the image: 12 features."""
    module = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())
    spec = FeatureSpec("colour-layout", "v1", side, (0.5,) * 3, (0.25,) * 3, 12, "float32")
    return FeatureExtractor(module, spec, torch.device("cpu"), 64)


def use_colour_layout_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the quick preset use :func:`colour_layout_extractor`."""
    import crlc_engine.pipeline.feature_method as quick

    monkeypatch.setattr(quick, "lite0_extractor", colour_layout_extractor)


def cluster_names(library: ImageLibrary, run_id: str) -> dict[int, str]:
    return Annotations(library.catalog).names(run_id)


def majorities(library: ImageLibrary, run_id: str, truth: dict[str, str]) -> dict[int, str]:
    """cluster -> the group most of its pictures belong to."""
    data = ResultStore(library.catalog).load(run_id)
    names = {r.id: r.path.name for r in library.images(None)}
    votes: dict[int, Counter[str]] = {}
    for image, cluster in zip(data.image_ids.tolist(), data.clusters.tolist(), strict=True):
        votes.setdefault(cluster, Counter())[truth[names[image]]] += 1
    return {c: v.most_common(1)[0][0] for c, v in votes.items()}


def wrongly_named(library: ImageLibrary, run_id: str, truth: dict[str, str]) -> dict[int, str]:
    """Named clusters holding mostly another group: cluster -> its name."""
    majority = majorities(library, run_id, truth)
    return {c: n for c, n in cluster_names(library, run_id).items() if majority.get(c, n) != n}


@dataclass(frozen=True)
class Corrections:
    """What the user does after the first grouping.

    Attributes:
        names: cluster -> group name (every cluster after its majority group).
        labels: group -> 2 picture ids (one in each of the group's clusters), 3 groups.
        moves: (picture id, cluster) for 2 misplaced pictures, to a cluster of their group.
    """

    names: dict[int, str]
    labels: dict[str, list[int]]
    moves: list[tuple[int, int]]


def plan_corrections(library: ImageLibrary, run_id: str, truth: dict[str, str]) -> Corrections:
    """The user's corrections of a run (see :class:`Corrections`)."""
    majority = majorities(library, run_id, truth)
    ids = {r.path.name: r.id for r in library.images(None)}
    cluster_of = ResultStore(library.catalog).load(run_id).cluster_of()
    labels = {
        group: [
            min(i for name, i in ids.items() if truth[name] == group and cluster_of[i] == c)
            for c in sorted(c for c, g in majority.items() if g == group)[:2]
        ]
        for group in LABELLED_GROUPS
    }
    misplaced = sorted(
        (name, i) for name, i in ids.items() if majority[cluster_of[i]] != truth[name]
    )
    moves = [
        (image, min(c for c, g in majority.items() if g == truth[name]))
        for name, image in random.Random(1).sample(misplaced, min(2, len(misplaced)))
    ]
    return Corrections(majority, labels, moves)


def corrections(library: ImageLibrary, run_id: str, truth: dict[str, str]) -> None:
    """Apply :func:`plan_corrections` through the library's annotations."""
    plan = plan_corrections(library, run_id, truth)
    notes = Annotations(library.catalog)
    for cluster, group in sorted(plan.names.items()):
        notes.name_cluster(run_id, cluster, group)
    for group, images in plan.labels.items():
        notes.label(images, group)
    for image, cluster in plan.moves:
        notes.move_to_cluster(run_id, [image], cluster)


def exported_accuracy(dest: Path, truth: dict[str, str]) -> float:
    """The share of exported pictures in the folder named after their group."""
    files = [p for p in dest.rglob("*.png")]
    assert files, f"nothing exported into {dest}"
    return sum(p.parent.name == truth[p.name] for p in files) / len(files)
