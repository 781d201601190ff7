"""What a run folder holds and how a run's results reach the catalog.

A run folder starts with ``config.json`` (the settings that really ran, the library's roots,
device, parent, kind) and ``image_ids.npy`` (its images, in training order); a finished run
adds ``predictions.npz`` (every sub-head, for evaluation), its assignments in the catalog and
its clusters' names, attached from the groups of the run it follows
(:mod:`crlc_engine.results.groups`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import numpy as np
import torch

from crlc_engine import __version__
from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import CheckpointError, InvalidSettingError, RunNotFoundError
from crlc_engine.core.events import Reporter
from crlc_engine.core.fileio import atomic_write, atomic_write_json
from crlc_engine.library import ImageLibrary, ImageRecord
from crlc_engine.library.runs import UNFINISHED_STATES, RunDir, RunStore
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.results.groups import GroupStore
from crlc_engine.training.inference import Predictions

#: Labelled rows of a refine run (rows into its images, clusters each may take).
LABELLED_FILE = "labelled.npz"


def usable_images(library: ImageLibrary, side: int) -> list[ImageRecord]:
    """The library's images cached at ``side`` px, ignored ones left out (a new run's)."""
    return without_ignored(library, library.cached_images(side))


def without_ignored(library: ImageLibrary, records: list[ImageRecord]) -> list[ImageRecord]:
    """``records`` without the images the user set aside (a new run's images)."""
    ignored = Annotations(library.catalog).ignored()
    return [r for r in records if r.id not in ignored]


def create_run(
    library: ImageLibrary,
    config: TrainConfig,
    device: tuple[str, str],
    records: list[ImageRecord],
    parent: str | None,
    kind: str,
    extra: dict[str, Any] | None = None,
) -> RunDir:
    """A new run folder with ``config.json`` and ``image_ids.npy``.

    Args:
        device: (the device used, why it was chosen).
        kind: ``train``, ``refine``, ``stage1`` or ``stage2``.
        extra: More ``config.json`` entries (``names_from``, ``then_stage2``, ...).
    """
    run = library.runs.create_run()
    atomic_write_json(
        run.config_path,
        {
            "train": config.to_dict(),
            "roots": [str(r) for r in library.roots],
            "device": device[0],
            "device_reason": device[1],
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "engine_version": __version__,
            "torch_version": torch.__version__,
            "parent": parent,
            "kind": kind,
            "images": len(records),
            "catalog_id": library.catalog.catalog_id,
            **(extra or {}),
        },
    )
    np.save(run.path / "image_ids.npy", np.array([r.id for r in records], dtype=np.int64))
    return run


def write_predictions(
    run: RunDir, records: list[ImageRecord], preds: Predictions, chosen_head: int
) -> None:
    """``predictions.npz``: every sub-head's labels and the chosen head's probabilities."""

    def write(handle: Any) -> None:
        np.savez_compressed(
            handle,
            image_ids=np.array([r.id for r in records], dtype=np.int64),
            paths=np.array([r.rel_path for r in records], dtype=np.str_),
            head_labels=preds.all_labels().astype(np.int32),
            chosen_probabilities=preds.probabilities[chosen_head].astype(np.float32),
            chosen_head=np.int64(chosen_head),
        )

    atomic_write(run.predictions_path, write)


def store_results(
    library: ImageLibrary,
    run: RunDir,
    records: list[ImageRecord],
    preds: Predictions,
    head: int,
    reference: dict[int, str | None] | None = None,
) -> None:
    """predictions.npz + catalog assignments + names.

    The run's clusters are named from the groups of a reference view (see
    :mod:`crlc_engine.results.groups`): ``reference`` when given (re-assigning a run compares
    with its own view before), else the view of the run it was made to follow
    (``names_from``).
    """
    write_predictions(run, records, preds, head)
    ResultStore(library.catalog).write(
        run.run_id,
        np.array([r.id for r in records], dtype=np.int64),
        preds.probabilities[head],
        preds.features,
    )
    groups = GroupStore(library.catalog)
    if reference is not None:
        groups.attach(run.run_id, reference, run.run_id)
        return
    names_from = names_source(library.runs, run)
    groups.attach(run.run_id, groups.reference(names_from), names_from)


def newest_named(library: ImageLibrary) -> str | None:
    """The newest completed run with clusters (what a new run follows by default)."""
    done = [r for r in library.runs.all() if r.state == "completed" and r.has_clusters]
    return done[-1].run_id if done else None


def names_source(runs: RunStore, run: RunDir) -> str | None:
    """The run whose group view names ``run``'s clusters: the one recorded when the run was
    made (the run the user was looking at), else its parent, else the newest completed run
    before it; runs without clusters (stage 1) or no longer completed are skipped."""
    config = run.read_config()
    for candidate in (config.get("names_from"), config.get("parent")):
        if not candidate or candidate == run.run_id:
            continue
        with contextlib.suppress(RunNotFoundError):
            found = runs.get(str(candidate), state="completed")
            return found.run_id
    earlier = [
        r for r in runs.all() if r.run_id < run.run_id and r.state == "completed" and r.has_clusters
    ]
    return earlier[-1].run_id if earlier else None


def load_labelled(run: RunDir) -> tuple[np.ndarray, np.ndarray] | None:
    """A refine run's labelled rows and the clusters each may take, if it has any."""
    path = run.path / LABELLED_FILE
    if not path.exists():
        return None
    with np.load(path) as stored:  # "allowed": group masks; older refine runs: one cluster
        return stored["rows"], stored["allowed"] if "allowed" in stored else stored["targets"]


def run_images(
    library: ImageLibrary, run: RunDir, side: int, available: list[ImageRecord] | None = None
) -> list[ImageRecord]:
    """The images of an existing run, in its order (resume, assign again): of ``available``
    (default: the images cached at ``side``).

    Raises:
        CheckpointError: the list is unreadable, or some of its images are gone.
    """
    try:
        ids = np.load(run.path / "image_ids.npy").tolist()
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"run {run.run_id} cannot continue: its list of images (image_ids.npy) is missing "
            f"or unreadable ({exc}); start a new run"
        ) from None
    if available is None:
        available = library.cached_images(side)
    known = {r.id: r for r in available}
    lost = [i for i in ids if i not in known]
    if lost:
        raise CheckpointError(
            f"run {run.run_id} cannot resume: {len(lost)} of its {len(ids)} images are no "
            "longer available (moved, deleted or changed); start a new run"
        )
    return [known[i] for i in ids]


def unfinished_run(runs: RunStore, run_id: str | None) -> RunDir:
    """The run ``--resume`` continues: ``run_id``, else the newest unfinished one.

    A run without a checkpoint (interrupted before its first one) is returned too: the
    caller starts it again from the beginning with its settings.
    """
    if run_id is not None:
        run = runs.get(run_id, state=None, clusters_only=False)
        if run.state == "completed":
            raise InvalidSettingError(f"run {run_id} is already completed; nothing to resume")
        return run
    candidates = [r for r in runs.all() if r.state in UNFINISHED_STATES]
    if not candidates:
        raise RunNotFoundError("no unfinished run to resume in this library")
    return candidates[-1]


def restart_if_never_saved(run: RunDir, reporter: Reporter) -> bool:
    """Whether a resumed run has a checkpoint; without one it starts again from scratch.

    The run keeps its id and settings; the history of epochs that were never saved goes.
    """
    if run.checkpoint_path.exists():
        return True
    reporter.status(
        f"Run {run.run_id} stopped before its first checkpoint, so there is nothing to "
        "continue: starting it again from the beginning with its settings"
    )
    run.history_path.unlink(missing_ok=True)
    return False
