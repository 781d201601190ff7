"""Training runs over two processes (gloo, on the CPU): a cancel on rank 0 stops both ranks
at the same step, a two-process checkpoint resumes in one process and a one-process
checkpoint in two, and ``torchrun ... crlc train`` runs the whole job with one result line.
(One step against one process on the combined batch: ``test_distributed.py``.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.models import CRLCModel
from crlc_engine.training.checkpoint import load_checkpoint
from crlc_engine.training.data_parallel import DataParallel
from crlc_engine.training.distributed import DistributedContext
from crlc_engine.training.trainer import CRLCTrainer
from tests.conftest import TINY_TRAIN_FLAGS, small_train_config
from tests.engine.pipeline.test_estimate import CancelAtStep
from tests.engine.training.data_parallel_worker import CANCEL_AT_STEP, images
from tests.engine.training.rank_launcher import REPO, free_port, run_ranks

CPU = torch.device("cpu")
#: 32 images, batch 8: 4 steps an epoch, 3 epochs.
TOTAL_STEPS = 12


def two_ranks(mode: str, checkpoint: Path, folder: Path) -> list[dict[str, Any]]:
    worker = ["-m", "tests.engine.training.data_parallel_worker", mode, str(checkpoint)]
    run_ranks(lambda rank: [*worker, str(folder / f"{rank}.pt")])
    return [torch.load(folder / f"{rank}.pt", weights_only=False) for rank in range(2)]


def test_a_cancelled_two_process_run_resumes_in_one(tmp_path: Path) -> None:
    checkpoint = tmp_path / "two.pt"
    ranks = two_ranks("cancel", checkpoint, tmp_path)
    for found in ranks:  # rank 0 cancelled; rank 1 stopped at the same step
        assert (found["state"], found["steps"]) == ("cancelled", CANCEL_AT_STEP)
    for key, value in ranks[0]["weights"].items():  # the ranks stayed in step
        assert torch.equal(value, ranks[1]["weights"][key]), key

    resumed = CRLCTrainer(small_train_config(batch_size=8, epochs=3), images(), CPU)
    resumed.load(checkpoint)
    assert resumed.total_steps == CANCEL_AT_STEP
    result = resumed.fit()
    assert (result.state, result.steps, result.epochs) == ("completed", TOTAL_STEPS, 3)
    state = load_checkpoint(checkpoint)  # plain keys: a one-process model takes them
    model = CRLCModel.for_settings(small_train_config())
    model.load_state_dict(state["model"])


def test_a_one_process_checkpoint_resumes_in_two(tmp_path: Path) -> None:
    checkpoint = tmp_path / "one.pt"
    config = small_train_config(batch_size=8, epochs=3)
    alone = CRLCTrainer(config, images(), CPU, checkpoint_path=checkpoint)
    control = JobControl()
    assert alone.fit(CancelAtStep(control, 5), control).state == "cancelled"

    ranks = two_ranks("resume", checkpoint, tmp_path)
    for found in ranks:
        assert (found["state"], found["steps"], found["epochs"]) == ("completed", TOTAL_STEPS, 3)
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key]), key
    assert load_checkpoint(checkpoint)["total_steps"] == TOTAL_STEPS  # rank 0 wrote it


def test_a_time_budget_ends_both_ranks_at_the_same_step(tmp_path: Path) -> None:
    """Under a time budget with a cosine schedule, rank 0's clock is everyone's: the ranks
    stop at the same step with identical weights (the same learning rates all along)."""
    ranks = two_ranks("budget", tmp_path / "budget.pt", tmp_path)
    assert ranks[0]["steps"] == ranks[1]["steps"] > 0
    assert ranks[0]["state"] == ranks[1]["state"] == "completed"
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key]), key


def test_settings_two_processes_cannot_take() -> None:
    two = DistributedContext(0, 2, 0, CPU)
    with pytest.raises(InvalidSettingError, match="must split evenly over the 2 processes"):
        CRLCTrainer(small_train_config(batch_size=7), images(), CPU, distributed=two)
    with pytest.raises(InvalidSettingError, match="batch size 5 must split evenly"):
        DataParallel(two).check_batch(5)  # e.g. a checkpoint's halved batch
    with pytest.raises(InvalidSettingError, match="use --framework simclr"):
        CRLCTrainer(small_train_config(framework="memorybank"), images(), CPU, distributed=two)


def test_torchrun_crlc_train(shapes_folder: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        "-m",
        "crlc_engine.cli",
        "train",
        str(shapes_folder),
        "-k",
        "4",
        "--workspace",
        str(workspace),
        "--json",
        *TINY_TRAIN_FLAGS,
    ]
    (tmp_path / "tmp").mkdir()  # torchrun's own log folder goes there, not into /tmp
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path / "tmp")}
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, out.stdout  # rank 0 alone writes the result
    payload = json.loads(lines[0])
    assert payload["state"] == "completed" and payload["images"] == 48
    assert payload["batch_size"] == 16 and payload["epochs"] == 2
    assert "Training in 2 processes (torchrun)" in out.stderr
    assert out.stderr.count("Scanning") <= out.stderr.count("Training in 2 processes") * 2
    status = json.loads((Path(payload["run_dir"]) / "status.json").read_text())
    assert status["state"] == "completed"
    state = load_checkpoint(Path(payload["run_dir"]) / "checkpoint.pt")
    assert not any("module." in key for key in state["model"])
