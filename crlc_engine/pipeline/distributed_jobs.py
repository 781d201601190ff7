"""A training job over several processes (``torchrun``): rank 0 runs it, the other ranks
follow.

Rank 0 does everything a single process does: it scans the folders, takes the workspace
lock, creates (or resumes) the run and alone writes checkpoints, the catalog, events and the
``--json`` line. Each pixel training it starts is announced to the other ranks as a
:class:`PixelTrainingSpec` (:func:`shared_training`): they read the same images from the
workspace's pixel cache (on a shared file system when the ranks run on several machines),
build the same trainer, resume or start it the same way and train their shard of every
batch with it, silently. When rank 0's command ends it sends
``done`` (:func:`release_followers`) and every rank leaves. The followers' loop is
:func:`crlc_engine.pipeline.pixel_method.follow_jobs`. A job that does not train on
pixels (the quick preset: heads on cached features) runs on rank 0 alone.

If rank 0 fails while a training is shared, the other ranks are inside the training's
collectives and cannot be told: rank 0's non-zero exit makes ``torchrun`` stop them.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crlc_engine.training.distributed import DistributedContext, broadcast_object
from crlc_engine.training.trainer import CRLCTrainer

__all__ = [
    "FOLLOWER_TIMEOUT",
    "PixelTrainingSpec",
    "next_training",
    "release_followers",
    "shared_training",
    "start_trainer",
]

#: How long a rank waits for rank 0 (which may be scanning a large library meanwhile).
FOLLOWER_TIMEOUT = datetime.timedelta(hours=12)

_DONE = "done"
_TRAIN = "train"

#: Whether the other ranks are inside a training rank 0 announced (not waiting for a message).
_followers_busy = False


@dataclass(frozen=True)
class PixelTrainingSpec:
    """What the other ranks need to build and start the trainer rank 0 built.

    Attributes:
        config: The run's settings (:meth:`TrainConfig.to_dict`).
        workspace: The library's workspace folder (its pixel cache is read).
        cache_rows: The pixel-cache row of each of the run's images, in training order.
        run_id: The run's id.
        labelled: CRLC-semi's labelled rows and allowed clusters, or ``None``.
        resume_from: The checkpoint the run resumes from, or ``None``.
        parent_checkpoint: The checkpoint whose weights it starts from, or ``None``.
        parent_parts: The parts of the network taken from the parent.
    """

    config: dict[str, Any]
    workspace: str
    cache_rows: list[int]
    run_id: str
    labelled: tuple[np.ndarray, np.ndarray] | None = None
    resume_from: str | None = None
    parent_checkpoint: str | None = None
    parent_parts: tuple[str, ...] = ("backbone", "rl_head", "c_head")


def start_trainer(trainer: CRLCTrainer, spec: PixelTrainingSpec) -> None:
    """Resume ``trainer`` or start it from the parent's weights, as ``spec`` says."""
    if spec.resume_from is not None:
        trainer.load(Path(spec.resume_from))
    elif spec.parent_checkpoint is not None:
        trainer.init_from_parent(Path(spec.parent_checkpoint), parts=spec.parent_parts)


@contextmanager
def shared_training(spec: PixelTrainingSpec, context: DistributedContext) -> Iterator[None]:
    """Rank 0: announce the training ``spec`` to the other ranks for the ``with`` block (the
    training itself); nothing for a single process."""
    global _followers_busy
    if not context.distributed:
        yield
        return
    broadcast_object((_TRAIN, spec), context)
    _followers_busy = True
    yield
    _followers_busy = False  # not reached on an error: the followers are still training


def release_followers(context: DistributedContext) -> None:
    """Rank 0, at the end of its command: tell the other ranks to leave (unless they are
    stuck in a training that failed on rank 0; ``torchrun`` stops them then)."""
    if context.distributed and context.is_main and not _followers_busy:
        broadcast_object((_DONE, None), context)


def next_training(context: DistributedContext) -> PixelTrainingSpec | None:
    """Another rank: wait for rank 0's next message; the training it announces, or ``None``
    when it says ``done``."""
    kind, spec = broadcast_object((_DONE, None), context)
    return spec if kind == _TRAIN else None
