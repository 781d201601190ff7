"""Shared fixtures: generated image data and one tiny trained run reused by several tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import InvalidSettingError

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Everything the tests write goes under one folder, removed when the session ends: pytest's
# tmp_path folders, temporary files (this process and the processes it starts) and the
# settings, logs, recent libraries and default workspaces kept out of the user's folders.
_SESSION_DIR = tempfile.mkdtemp(prefix="crlc-tests-")
os.chmod(_SESSION_DIR, 0o755)  # tests that drop privileges reach their folders
_USER_DIRS = os.path.join(_SESSION_DIR, "home")
for _name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
    os.environ[_name] = os.path.join(_USER_DIRS, _name.lower())
os.environ["TMPDIR"] = os.path.join(_SESSION_DIR, "tmp")
os.makedirs(os.environ["TMPDIR"])
tempfile.tempdir = os.environ["TMPDIR"]
torch.set_num_threads(min(2, os.cpu_count() or 1))


def small_train_config(**changes: object) -> TrainConfig:
    """Settings of a CRLC run of a second or so on 16 px images (small CNN, 3 clusters, 2
    sub-heads, a checkpoint every epoch), with ``changes``: what the trainer tests vary."""
    base = TrainConfig(
        clusters=3,
        backbone="small",
        stem="imagenet",
        image_size=16,
        batch_size=8,
        epochs=3,
        subheads=2,
        feature_dim=16,
        checkpoint_every=1,
    )
    return base.replace(**changes)


#: `crlc train` flags for a run of a few seconds on the shapes folder.
TINY_TRAIN_FLAGS = [
    "--backbone",
    "small",
    "--stem",
    "imagenet",
    "--size",
    "16",
    "--batch-size",
    "16",
    "--epochs",
    "2",
    "--subheads",
    "2",
    "--device",
    "cpu",
]


def pytest_configure(config: pytest.Config) -> None:
    """tmp_path folders inside the session folder (unless --basetemp says otherwise)."""
    if config.option.basetemp is None:
        config.option.basetemp = os.path.join(_SESSION_DIR, "pytest")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave nothing behind in the temp folder."""
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``cuda`` when no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is available here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 4 x 12 generated 32 px PNGs in class sub-folders."""
    from crlc_engine.library.synthetic import write_shapes_folder

    return write_shapes_folder(tmp_path_factory.mktemp("shapes"), per_class=12, size=32)


class CapturedError(InvalidSettingError):
    """Raised by a stand-in job to hand the CLI's settings back to the test."""

    def __init__(self, config: TrainConfig | None, overrides: dict[str, object] | None) -> None:
        super().__init__("captured")
        self.config, self.overrides = config, overrides


@pytest.fixture
def captured_settings(monkeypatch: pytest.MonkeyPatch) -> list[CapturedError]:
    """Replace the training jobs with stand-ins that record what the CLI asked for."""
    import crlc_engine.pipeline.jobs as jobs

    seen: list[CapturedError] = []

    def fake_train(folders: object, config: TrainConfig, *args: object, **kw: object) -> None:
        seen.append(CapturedError(config, None))
        raise seen[-1]

    def fake_stage2(
        folders: object, run: str, overrides: dict[str, object], *args: object, **kw: object
    ) -> None:
        seen.append(CapturedError(None, overrides))
        raise seen[-1]

    monkeypatch.setattr(jobs, "train_folder", fake_train)
    monkeypatch.setattr(jobs, "train_stage2_folder", fake_stage2)
    return seen
