"""Shared fixtures: generated image data and one tiny trained run reused by several tests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.errors import InvalidSettingError

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Keep settings, logs, recent libraries and default workspaces out of the user's folders.
_USER_DIRS = tempfile.mkdtemp(prefix="crlc-test-home-")
for _name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
    os.environ[_name] = os.path.join(_USER_DIRS, _name.lower())
torch.set_num_threads(min(2, os.cpu_count() or 1))


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
