"""An official-code-style pipeline: JPEG files read with PIL and augmented with torchvision
transforms in DataLoader workers, two views per image, feeding a float32 eager network with
the same losses and SGD step as the ceiling.

The augmentations are those of the official CRLC code, with their values from
:class:`~crlc_engine.augment.config.AugmentConfig`'s defaults: ``RandomResizedCrop(S,
scale=(0.2, 1))``, ``RandomHorizontalFlip``, ``ColorJitter(0.4, 0.4, 0.4, 0.1)`` with p 0.8,
``RandomGrayscale(0.2)``, ``ToTensor``, ``Normalize``. One worker per core the process may run
on. The JPEG files are written once, before timing, into a temporary folder removed after.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler

from crlc_engine.augment.config import AugmentConfig
from crlc_engine.bench.model_step import ModelStep
from crlc_engine.bench.settings import BenchPlan
from crlc_engine.bench.timing import StepLoop, Timing

#: JPEG quality of the written files.
JPEG_QUALITY = 95

#: A transform from a PIL image to a normalised float tensor [3, S, S].
ViewTransform = Callable[[Image.Image], Tensor]


@dataclass(frozen=True)
class ReferenceResult:
    """The reference pipeline's timing and set-up.

    Attributes:
        timing: The timed steps.
        workers: DataLoader worker processes.
        files: Distinct JPEG files read.
    """

    timing: Timing
    workers: int
    files: int


def loader_workers() -> int:
    """One DataLoader worker per core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def official_transform(size: int, augment: AugmentConfig | None = None) -> ViewTransform:
    """The official CRLC code's view augmentation, as torchvision transforms on PIL images."""
    from torchvision import transforms

    a = augment or AugmentConfig()
    transform: ViewTransform = transforms.Compose(
        [
            transforms.RandomResizedCrop(size, scale=a.crop_scale, ratio=a.crop_ratio),
            transforms.RandomHorizontalFlip(p=a.flip_p),
            transforms.RandomApply(
                [transforms.ColorJitter(a.brightness, a.contrast, a.saturation, a.hue)],
                p=a.jitter_p,
            ),
            transforms.RandomGrayscale(p=a.grayscale_p),
            transforms.ToTensor(),
            transforms.Normalize(a.mean, a.std),
        ]
    )
    return transform


class TwoViewJpegs(Dataset[tuple[Tensor, Tensor]]):
    """JPEG files, each read with PIL and augmented twice (two independent views)."""

    def __init__(self, paths: list[Path], transform: ViewTransform) -> None:
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        with Image.open(self.paths[index]) as file:
            image = file.convert("RGB")
        return self.transform(image), self.transform(image)


def write_jpegs(images: np.ndarray, folder: Path) -> list[Path]:
    """Write uint8 [N, S, S, 3] as ``folder/00000.jpg`` ... and return the paths."""
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(image).save(path, quality=JPEG_QUALITY)
        paths.append(path)
    return paths


def _view_batches(loader: DataLoader[Any], device: torch.device) -> Generator[Tensor, None, None]:
    """The loader's batches as views [2B, 3, S, S] on ``device`` (view a, then view b);
    each view is copied from the loader's (pinned, on CUDA) memory before they are joined."""
    for view_a, view_b in loader:
        yield torch.cat(
            [view_a.to(device, non_blocking=True), view_b.to(device, non_blocking=True)]
        )


def measure_reference(plan: BenchPlan, images: np.ndarray, loop: StepLoop) -> ReferenceResult:
    """Time the official-code-style pipeline on ``images`` (uint8 [N, S, S, 3]) written as
    JPEG files; the loader draws ``batch x (warmup + steps)`` images (several passes over the
    files when there are fewer).

    Raises:
        InterruptedError: cancelled.
    """
    network = ModelStep(plan.train_config(), loop.device, channels_last=False, autocast=False)
    workers = loader_workers()
    with tempfile.TemporaryDirectory(prefix="crlc-bench-") as folder:
        loop.reporter.status(f"reference: writing {len(images)} JPEG files of {plan.size} px")
        dataset = TwoViewJpegs(write_jpegs(images, Path(folder)), official_transform(plan.size))
        sampler = RandomSampler(dataset, num_samples=plan.batch * (loop.warmup + loop.steps))
        loader = DataLoader(
            dataset,
            batch_size=plan.batch,
            sampler=sampler,
            drop_last=True,
            num_workers=workers,
            pin_memory=loop.device.type == "cuda",
        )
        batches = _view_batches(loader, loop.device)
        try:
            timing = loop.time(
                f"reference pipeline ({workers} loader workers)",
                lambda: network.step(next(batches)),
            )
        finally:
            batches.close()  # stops the loader's workers before their files go
    return ReferenceResult(timing, workers, len(images))
