"""A new training variant is one class and one registry line.

:class:`MeanColourMethod` groups images by their mean colour (nearest of C colours taken from
the images). Registered in front of the others, it trains every run of its preset through
the public jobs: the run driver scans, creates the run, records its state, stores the
assignments and names the groups; `assign_run` applies it again from its checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.events import Reporter
from crlc_engine.library import ImageLibrary, ImageRecord
from crlc_engine.library.runs import RunDir
from crlc_engine.pipeline import methods
from crlc_engine.pipeline.feature_method import FeatureHeadsMethod
from crlc_engine.pipeline.jobs import assign_run, list_runs, train_folder
from crlc_engine.pipeline.method_base import MethodJob, MethodResult, TrainingMethod
from crlc_engine.pipeline.methods import method_for
from crlc_engine.pipeline.pixel_method import PixelMethod
from crlc_engine.pipeline.run_records import run_images
from crlc_engine.results.assignments import ResultStore
from crlc_engine.training.checkpoint import load_checkpoint, save_checkpoint
from crlc_engine.training.inference import Predictions
from crlc_engine.training.loop import FitResult


def _mean_colours(pixels: np.ndarray) -> np.ndarray:
    """float32 [N, 3]: each image's mean colour in [0, 1]."""
    return pixels.reshape(len(pixels), -1, 3).mean(axis=1).astype(np.float32) / 255.0


def _predict(colours: np.ndarray, centres: np.ndarray) -> Predictions:
    distances = ((colours[:, None, :] - centres[None]) ** 2).sum(axis=2)
    logits = -50.0 * distances
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return Predictions(probabilities[None].astype(np.float32), colours)


class MeanColourMethod(TrainingMethod):
    """Groups by mean colour: the C centres are the colours of C evenly spread images."""

    name: ClassVar[str] = "mean_colour"

    @classmethod
    def applies_to(cls, config: TrainConfig) -> bool:
        return config.preset == "mean-colour"

    def fit(self, job: MethodJob) -> MethodResult:
        colours = _mean_colours(job.library.pixels(job.config.image_size, job.records))
        picks = np.linspace(0, len(colours) - 1, job.config.clusters).round().astype(int)
        centres = colours[picks]
        save_checkpoint(
            job.run.checkpoint_path, {"config": job.config.to_dict(), "centres": centres}
        )
        fit = FitResult("completed", 1, 1, 0, [0.0], 0.01, float(len(colours)))
        return MethodResult(fit, _predict(colours, centres))

    def assign(
        self,
        library: ImageLibrary,
        run: RunDir,
        state: dict[str, Any],
        reporter: Reporter,
        control: JobControl,
    ) -> tuple[list[ImageRecord], Predictions, int]:
        config = TrainConfig.from_dict(state["config"])
        records = run_images(library, run, config.image_size)
        colours = _mean_colours(library.pixels(config.image_size, records))
        return records, _predict(colours, np.asarray(state["centres"])), 0


@pytest.fixture
def with_mean_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one registry line."""
    monkeypatch.setattr(methods, "METHODS", [MeanColourMethod, *methods.METHODS])


def test_the_registry_picks_the_first_method_that_applies(with_mean_colour: None) -> None:
    mean = TrainConfig(clusters=4, preset="mean-colour")
    quick = TrainConfig(clusters=4, preset="quick", backbone="efficientnet_lite0")
    pixels = TrainConfig(clusters=4, preset="cpu")
    assert isinstance(method_for(mean), MeanColourMethod)
    assert isinstance(method_for(quick), FeatureHeadsMethod)
    assert isinstance(method_for(pixels), PixelMethod)


def test_a_new_method_trains_and_assigns_through_the_public_jobs(
    with_mean_colour: None, shapes_folder: Path, tmp_path: Path
) -> None:
    config = TrainConfig(clusters=4, preset="mean-colour", image_size=16, device="cpu")
    outcome = train_folder(shapes_folder, config, tmp_path / "ws", workers=0)
    assert outcome.state == "completed" and outcome.images == 48
    assert outcome.run.read_status()["state"] == "completed"
    assert outcome.run.read_config()["train"]["preset"] == "mean-colour"
    with ImageLibrary.open([shapes_folder], tmp_path / "ws") as library:
        stored = ResultStore(library.catalog).load(outcome.run.run_id)
    assert len(stored.image_ids) == 48 and set(stored.clusters.tolist()) <= {0, 1, 2, 3}
    runs = list_runs(shapes_folder, tmp_path / "ws")
    assert [(r.run_id, r.state, r.preset) for r in runs] == [
        (outcome.run.run_id, "completed", "mean-colour")
    ]
    assign_run(shapes_folder, outcome.run.run_id, tmp_path / "ws")
    with ImageLibrary.open([shapes_folder], tmp_path / "ws") as library:
        again = ResultStore(library.catalog).load(outcome.run.run_id)
    assert np.array_equal(again.clusters, stored.clusters)
    assert "centres" in load_checkpoint(outcome.run.checkpoint_path)
