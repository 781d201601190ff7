"""How close the Group dialog's estimate comes to the time a group job really takes.

For each case (preset x number of photos, the dialog's default budget: the preset's epochs)
it works as the app does, in a fresh workspace:

1. scans the photos at 32 px, untimed (the window scans at 32 px when a folder is opened);
2. takes the dialog's estimates: ``rough`` (typical speeds, shown first) and ``measured``
   (after :func:`crlc_engine.pipeline.estimate.measure_speed`, timed: what the dialog waits for);
3. runs the group job (:func:`crlc_engine.pipeline.jobs.train_folder`: reading the photos at the
   training size when it is not 32 px, the quick preset's features, training, checkpoints,
   assignments) and times it;
4. reads the run's own speed back (:func:`crlc_engine.pipeline.estimate.run_calibration`) and gives
   the estimate a later job of the same settings would get (``from_run``);
5. compares the checkpoint the run kept, and a training checkpoint, with
   :func:`crlc_engine.pipeline.estimate.checkpoint_size`, and sums the workspace.

Photos: the first ``N / 10`` of each class of Imagenette's ``val`` split (224 px JPEGs),
copied into ``--workdir``. Prints one JSON object (also to ``--json``); exits 0 with
``{"skipped": ...}`` when the archive is absent. The goal is an error within +-30 %.

    python benchmarks/estimate_accuracy.py ../shared/datasets/imagenette-224.tar.gz \
        --json /tmp/estimate.json
    python benchmarks/estimate_accuracy.py /tmp/imagenette --cases quick:400,cpu:400

``--cpu-epochs E`` shortens the cpu preset's runs (default: its own 100 epochs); the result
then says so (``epochs``) and the estimate is for those epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _imagenette import IMAGE_SUFFIXES, machine, unpack

from crlc_engine.core.events import CheckpointSaved, Event
from crlc_engine.library import scan_folders
from crlc_engine.pipeline.estimate import (
    checkpoint_size,
    estimate_training,
    measure_speed,
    run_calibration,
)
from crlc_engine.pipeline.jobs import train_folder
from crlc_engine.pipeline.presets import resolve_train_config

#: The size the window scans at (app.views.main_window.SCAN_SIZE).
WINDOW_SCAN_SIZE = 32


class TimedReporter:
    """Keeps when each status line came and the largest checkpoint written."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self.largest_checkpoint = 0

    def status(self, text: str) -> None:
        self.lines.append((time.monotonic() - self.started, text))

    def progress(self, done: float, total: float | None) -> None:
        pass

    def event(self, event: Event) -> None:
        if isinstance(event, CheckpointSaved):
            try:
                size = Path(event.path).stat().st_size
            except OSError:
                return
            self.largest_checkpoint = max(self.largest_checkpoint, size)

    def first(self, prefix: str) -> float | None:
        return next((t for t, text in self.lines if text.startswith(prefix)), None)


def _photos(source: Path, workdir: Path) -> Path:
    """The ``val`` folder of an unpacked Imagenette (unpacking the archive into ``workdir``)."""
    if source.is_dir():
        root = source
    else:
        root = workdir / "imagenette"
        if not (root / "val").is_dir():
            unpack(source, root)
    return root / "val" if (root / "val").is_dir() else root


def _subset(val: Path, count: int, target: Path) -> Path:
    """Copy the first ``count / classes`` photos (sorted) of every class into ``target``."""
    if target.is_dir():
        shutil.rmtree(target)
    classes = sorted(p for p in val.iterdir() if p.is_dir())
    per_class = max(1, count // max(1, len(classes)))
    for folder in classes:
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        (target / folder.name).mkdir(parents=True)
        for photo in photos[:per_class]:
            shutil.copy2(photo, target / folder.name / photo.name)
    return target


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _error(estimate: float, measured: float) -> float:
    return round(100.0 * (estimate / measured - 1.0), 1)


def _parts(reporter: TimedReporter, total: float, quick: bool) -> dict[str, float | None]:
    """Seconds of the job's parts, from when its status lines came."""
    decode = reporter.first("Decoding")
    training = reporter.first("Computing efficientnet") if quick else None
    features_done = reporter.first("Features of")
    assign = reporter.first("Computing assignments")
    start_of_training = features_done if quick else reporter.first("Device")
    parts: dict[str, float | None] = {
        "decode_s": None if decode is None else (training or start_of_training or 0.0) - decode,
        "features_s": (
            None if training is None or features_done is None else features_done - training
        ),
        "training_s": (
            None if assign is None or start_of_training is None else assign - start_of_training
        ),
        "assign_s": None if assign is None else total - assign,
    }
    return {k: None if v is None else round(v, 2) for k, v in parts.items()}


def run_case(
    preset: str, images: int, photos: Path, workdir: Path, cpu_epochs: int | None
) -> dict[str, Any]:
    overrides: dict[str, Any] = {"device": "cpu"}
    if preset == "cpu" and cpu_epochs is not None:
        overrides["epochs"] = cpu_epochs
    config = resolve_train_config(10, preset, overrides)
    quick = preset == "quick"
    workspace = workdir / f"ws-{preset}-{images}"
    shutil.rmtree(workspace, ignore_errors=True)
    scan_folders([photos], WINDOW_SCAN_SIZE, workspace)
    decode = images if config.image_size != WINDOW_SCAN_SIZE else 0
    load_before = os.getloadavg()[0]

    rough = estimate_training(config, images, "cpu", decode_images=decode)
    started = time.monotonic()
    calibration = measure_speed(config, "cpu")
    calibration_s = time.monotonic() - started
    measured_estimate = estimate_training(config, images, "cpu", calibration, decode_images=decode)

    reporter = TimedReporter()
    started = time.monotonic()
    outcome = train_folder([photos], config, workspace, reporter)
    took = time.monotonic() - started
    from_run = run_calibration(outcome.run)
    later = (
        estimate_training(config, images, "cpu", from_run, decode_images=decode)
        if from_run is not None
        else None
    )
    size = checkpoint_size(config, images, outcome.fit.epochs)
    kept = outcome.run.checkpoint_path.stat().st_size
    return {
        "preset": preset,
        "images": images,
        "epochs": config.epochs,
        "head_steps": measured_estimate.head_steps,
        "state": outcome.state,
        "measured_s": round(took, 1),
        "estimate_s": round(measured_estimate.seconds, 1),
        "error_pct": _error(measured_estimate.seconds, took),
        "rough_s": round(rough.seconds, 1),
        "rough_error_pct": _error(rough.seconds, took),
        "from_run_s": None if later is None else round(later.seconds, 1),
        "from_run_error_pct": None if later is None else _error(later.seconds, took),
        "calibration_s": round(calibration_s, 2),
        "calibration": {
            "step_s": round(calibration.step_s, 4),
            "batch": calibration.batch,
            "feature_images_per_s": (
                None
                if calibration.feature_images_per_s is None
                else round(calibration.feature_images_per_s, 1)
            ),
        },
        "estimate_parts_s": {k: round(v, 2) for k, v in measured_estimate.parts.items()},
        "measured_parts_s": _parts(reporter, took, quick),
        "fit_samples_per_s": round(outcome.fit.samples_per_s, 1),
        "checkpoint_kept_bytes": kept,
        "checkpoint_kept_estimate_bytes": size.final_bytes,
        "checkpoint_training_bytes": reporter.largest_checkpoint,
        "checkpoint_training_estimate_bytes": size.training_bytes,
        "workspace_bytes": _bytes_under(workspace),
        "photo_bytes": _bytes_under(photos),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="imagenette-224.tar.gz or an unpacked copy")
    parser.add_argument(
        "--cases",
        default="quick:400,quick:2000,cpu:400,cpu:2000",
        help="comma-separated PRESET:IMAGES (default: %(default)s)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--cpu-epochs", type=int, default=None, help="shorten cpu-preset runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    if not args.source.exists():
        print(json.dumps({"skipped": f"{args.source} not found"}))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crlc-estimate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    val = _photos(args.source, workdir)
    results = []
    for case in args.cases.split(","):
        preset, count = case.split(":")
        photos = _subset(val, int(count), workdir / f"photos-{count}")
        results.append(run_case(preset, int(count), photos, workdir, args.cpu_epochs))
        print(json.dumps(results[-1]), flush=True)
    errors = [abs(r["error_pct"]) for r in results]
    report = {
        "benchmark": "estimate_accuracy",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "cases": results,
        "worst_error_pct": max(errors) if errors else None,
        "within_30_pct": all(e <= 30.0 for e in errors),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
