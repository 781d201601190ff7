"""End to end through the job the CLI runs: CRLC must group generated images by shape.

The images (tests generate them): three groups that differ only in the shape that tiles
them (horizontal bars, vertical bars, discs), 100 images each at 32 px. Every tile sits in
its own cell with its own random grey-ish colours (foreground and background swapped at
random), so colour does not identify a group, and random pitch and offset make raw pixels
useless: k-means on the raw pixels of the same images stays near chance, checked below.
(With one colour pair per image, contrastive learning takes the colour/brightness shortcut
at the official colour-jitter strength and does not find the shapes within this budget.)

The configuration is the small CPU backbone with a budget of about half a minute here:
150 epochs of 300 images, batch 64, 5 sub-heads, lambda_FC 1 (the official 10 needs far
more steps before the clustering follows the shapes); every other setting is the paper's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.vq import kmeans2

from crlc_engine.core.config import TrainConfig
from crlc_engine.library import ImageLibrary
from crlc_engine.library.synthetic import write_shapes_folder
from crlc_engine.pipeline.jobs import evaluate_folder, train_folder
from crlc_engine.results.groundtruth import class_indices, class_of
from crlc_engine.results.metrics import cluster_accuracy

SHAPES = ("hbar", "vbar", "disc")


@pytest.fixture(scope="module")
def shapes3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes_folder(
        tmp_path_factory.mktemp("shapes3"),
        per_class=100,
        size=32,
        seed=1,
        shapes=SHAPES,
        colour_cells=True,
    )


def test_raw_pixel_kmeans_cannot_solve_the_data(shapes3: Path, tmp_path: Path) -> None:
    with ImageLibrary.open([shapes3], tmp_path) as library:
        library.scan(32, workers=0, thumbnails=False)
        records = library.cached_images(32)
        images = library.pixels(32, records)
    truth, _ = class_indices([class_of(r.rel_path) for r in records])
    pixels = images.reshape(len(truth), -1).astype(np.float64) / 255.0
    accs = []
    for seed in range(5):
        _, labels = kmeans2(pixels, 3, minit="++", seed=seed)
        accs.append(cluster_accuracy(truth, labels))
    assert max(accs) <= 0.6


def test_crlc_groups_by_shape(shapes3: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        clusters=3,
        backbone="small",
        stem="imagenet",
        image_size=32,
        batch_size=64,
        epochs=150,
        lr=0.1,
        lambda_fc=1.0,
        subheads=5,
        seed=1,
        device="cpu",
        checkpoint_every=1000,
    )
    outcome = train_folder(shapes3, config, workspace=tmp_path)
    assert outcome.state == "completed" and outcome.images == 300
    scores = evaluate_folder(shapes3, outcome.run.run_id, workspace=tmp_path)
    assert scores.chosen_head == outcome.fit.chosen_head
    assert scores.chosen.acc >= 0.9, scores.summary()
