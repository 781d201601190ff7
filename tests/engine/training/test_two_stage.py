"""Two-stage CRLC: what each stage trains and with which optimiser, neighbour positives,
frozen backbone, the jobs (stage 2 alone, cancel and resume per stage, newest-run look-ups)
and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from crlc_engine.cli.main import main
from crlc_engine.core.config import PAPER_STAGE_OPTIMIZERS, TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import InvalidSettingError, RunNotFoundError
from crlc_engine.core.events import RecordingReporter, TrainingFinished, TrainingStarted
from crlc_engine.library import ImageLibrary
from crlc_engine.pipeline.jobs import assign_run, train_folder, train_stage2_folder
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.training.inference import predict
from crlc_engine.training.trainer import CRLCTrainer
from crlc_engine.training.two_stage import (
    NEIGHBORS_FILE,
    load_neighbor_table,
    mine_neighbors,
    paper_stage_optimizer,
    stage_configs,
    trainable_parts,
    with_stage_optimizer,
)
from tests.conftest import TINY_TRAIN_FLAGS as TINY
from tests.conftest import CapturedError, small_train_config

CPU = torch.device("cpu")


def tiny(**changes: object) -> TrainConfig:
    return small_train_config(**{"epochs": 2, "seed": 3, "device": "cpu", **changes})


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(4)
    return rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def stage1_checkpoint(images: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stage1") / "checkpoint.pt"
    CRLCTrainer(tiny(stage="stage1"), images, CPU, path).fit()
    return path


def state_of(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def same_state(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- settings
def test_stage_settings() -> None:
    request = tiny(stage="two_stage", stage1_epochs=5, epochs=3, freeze_backbone=True)
    first, second = stage_configs(request)
    assert (first.stage, first.epochs, first.freeze_backbone) == ("stage1", 5, False)
    assert (second.stage, second.epochs, second.freeze_backbone) == ("stage2", 3, True)
    timed = tiny(stage="two_stage", epochs=None, minutes=2.0)
    assert stage_configs(timed)[0].minutes == 2.0 == stage_configs(timed)[1].minutes
    assert trainable_parts(first) == ("backbone", "rl_head")
    assert trainable_parts(second) == ("c_head",)
    assert trainable_parts(second.replace(freeze_backbone=False)) == ("backbone", "c_head")
    bank = stage_configs(request.replace(framework="memorybank"))
    assert [c.framework for c in bank] == ["simclr", "memorybank"]  # stage 1 is SimCLR
    with pytest.raises(InvalidSettingError, match="stage 2"):
        tiny(freeze_backbone=True)
    with pytest.raises(InvalidSettingError, match="two runs"):
        CRLCTrainer(request, np.zeros((8, 16, 16, 3), np.uint8), CPU)


OPTIMIZER_FIELDS = ("optimizer", "lr", "lr_schedule", "lr_min", "momentum", "weight_decay")


def optimizer_of(config: TrainConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in OPTIMIZER_FIELDS}


def test_paper_stage_optimizers_are_the_papers_values() -> None:
    """Appdx. A.7 of the paper, written out here independently of the module's table."""
    request = tiny(stage="two_stage", lr=0.05, weight_decay=3e-4, momentum=0.8, lr_min=0.01)
    assert request.stage_optim == "paper"  # the default
    first, tuned = stage_configs(request)
    _, frozen = stage_configs(request.replace(freeze_backbone=True))
    assert optimizer_of(first) == {
        "optimizer": "sgd",
        "lr": 0.4,
        "lr_schedule": "cosine",
        "lr_min": 4e-4,  # SCAN's cosine end (lr x 0.1^3); the paper gives none
        "momentum": 0.9,
        "weight_decay": 1e-4,
    }
    assert {k: v for k, v in optimizer_of(tuned).items() if k != "momentum"} == {
        "optimizer": "adam",
        "lr": 1e-4,
        "lr_schedule": "constant",
        "lr_min": 1e-4,
        "weight_decay": 1e-4,
    }
    assert optimizer_of(frozen) == {
        "optimizer": "sgd",
        "lr": 5.0,
        "lr_schedule": "constant",
        "lr_min": 5.0,
        "momentum": 0.9,
        "weight_decay": 0.0,
    }
    assert (tuned.freeze_backbone, frozen.freeze_backbone) == (False, True)
    assert paper_stage_optimizer("stage2", True) == PAPER_STAGE_OPTIMIZERS["stage2_frozen"]
    # Everything else is the request's, in both stages.
    for stage in (first, tuned, frozen):
        assert stage.replace(**optimizer_of(request), stage="two_stage", freeze_backbone=False) == (
            request.replace(epochs=stage.epochs)
        )
    with pytest.raises(InvalidSettingError, match="stage1/stage2"):
        paper_stage_optimizer("end_to_end", False)


def test_run_stage_optim_keeps_the_requests_optimizer_in_both_stages() -> None:
    request = tiny(stage="two_stage", stage_optim="run", optimizer="adam", lr=3e-3, lr_min=0.0)
    for freeze in (False, True):
        first, second = stage_configs(request.replace(freeze_backbone=freeze))
        assert optimizer_of(first) == optimizer_of(second) == optimizer_of(request)
    plain = tiny(lr=0.05)  # end-to-end configs never get stage optimisers
    assert with_stage_optimizer(plain) == plain
    assert with_stage_optimizer(tiny(stage="stage2", stage_optim="run")).lr == 0.1
    assert with_stage_optimizer(tiny(stage="stage2", freeze_backbone=True)).lr == 5.0
    with pytest.raises(InvalidSettingError, match="stage optimiser"):
        tiny(stage_optim="scan")


# ----------------------------------------------------------------------------- stage 1
@pytest.mark.parametrize("framework", ["simclr", "memorybank"])
def test_stage1_trains_features_only_and_never_touches_the_c_head(
    images: np.ndarray, framework: str
) -> None:
    trainer = CRLCTrainer(tiny(stage="stage1", framework=framework), images, CPU)
    c_head, backbone = state_of(trainer.model.c_head), state_of(trainer.model.backbone)
    trainer.fit()
    assert same_state(c_head, state_of(trainer.model.c_head))
    assert not same_state(backbone, state_of(trainer.model.backbone))
    losses = trainer.history[-1]["losses"]
    assert losses["feature"] > 0 and losses["total"] == losses["feature"]
    assert losses["cluster"] == losses["entropy"] == 0.0


# ----------------------------------------------------------------------------- stage 2
class PairSpy:
    """Records which image rows each step batched (anchors first, then positives)."""

    def __init__(self, trainer: CRLCTrainer) -> None:
        self.calls: list[Tensor] = []
        original = trainer._batch

        def spy(indices: Tensor) -> Tensor:
            self.calls.append(indices.clone())
            return original(indices)

        trainer._batch = spy  # type: ignore[method-assign]


def test_simclr_stage2_positives_are_views_of_neighbours(images: np.ndarray) -> None:
    """Every image's only neighbour is a fixed partner: the second batch is the partners."""
    trainer = CRLCTrainer(tiny(stage="stage2", epochs=1), images, CPU)
    n = len(images)
    partner = (torch.arange(n) * 7 + 3) % n  # a permutation, never the image itself
    trainer.set_neighbors(partner.unsqueeze(1))
    spy = PairSpy(trainer)
    trainer.fit()
    assert len(spy.calls) == 2 * trainer.steps_per_epoch
    for anchors, positives in zip(spy.calls[::2], spy.calls[1::2], strict=True):
        assert torch.equal(positives, partner[anchors])


def test_memorybank_stage2_positive_rows_are_neighbours(images: np.ndarray) -> None:
    trainer = CRLCTrainer(tiny(stage="stage2", epochs=1, framework="memorybank"), images, CPU)
    n = len(images)
    table = torch.stack([(torch.arange(n) + 1) % n, (torch.arange(n) + 2) % n], dim=1)
    trainer.set_neighbors(table)
    assert trainer.bank is not None
    seen: list[tuple[Tensor, Tensor]] = []
    original = trainer.bank.sample

    def spy(anchors: Tensor, positives: Tensor, count: int, generator: object) -> object:
        seen.append((anchors.clone(), positives.clone()))
        return original(anchors, positives, count, generator)  # type: ignore[arg-type]

    trainer.bank.sample = spy  # type: ignore[assignment,method-assign]
    trainer.fit()
    assert len(seen) == trainer.steps_per_epoch
    offsets = torch.cat([(p - a) % n for a, p in seen])
    assert set(offsets.tolist()) == {1, 2}  # always one of the two neighbours, both drawn


def test_stage2_needs_a_valid_table(images: np.ndarray) -> None:
    trainer = CRLCTrainer(tiny(stage="stage2", epochs=1), images, CPU)
    with pytest.raises(InvalidSettingError, match="neighbour table"):
        trainer.fit()
    with pytest.raises(InvalidSettingError):
        trainer.set_neighbors(np.full((len(images), 2), len(images)))


def test_frozen_backbone_is_bit_identical_after_stage2(
    images: np.ndarray, stage1_checkpoint: Path
) -> None:
    # The paper's frozen stage 2: SGD lr 5.0, momentum 0.9, no weight decay, C-head only.
    # One epoch: on this small CNN's stage-1 features (|f| ~ 200) lr 5.0 drives the logits
    # to ~1e15 within 3 steps and to NaN in the second epoch (TrainingDivergedError).
    config = with_stage_optimizer(tiny(stage="stage2", freeze_backbone=True, epochs=1))
    assert (config.optimizer, config.lr) == ("sgd", 5.0)
    trainer = CRLCTrainer(config, images, CPU)
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in trainer.model.c_head.parameters()}
    trainer.init_from_parent(stage1_checkpoint, parts=("backbone", "rl_head"))
    trainer.set_neighbors(np.roll(np.arange(len(images)), 1)[:, None])
    backbone, rl_head = state_of(trainer.model.backbone), state_of(trainer.model.rl_head)
    c_head = state_of(trainer.model.c_head)
    trainer.fit()
    assert same_state(backbone, state_of(trainer.model.backbone))  # BN statistics included
    assert same_state(rl_head, state_of(trainer.model.rl_head))
    assert not same_state(c_head, state_of(trainer.model.c_head))
    assert trainer.history[-1]["losses"]["feature"] == 0.0
    # Fine-tuning (the default) does move the backbone, BatchNorm statistics included; the
    # paper's fine-tuned stage 2 (Adam lr 1e-4) too.
    tuned = CRLCTrainer(with_stage_optimizer(tiny(stage="stage2", epochs=1)), images, CPU)
    assert isinstance(tuned.optimizer, torch.optim.Adam)
    tuned.init_from_parent(stage1_checkpoint, parts=("backbone", "rl_head"))
    assert same_state(backbone, state_of(tuned.model.backbone))  # stage 1's weights
    tuned.set_neighbors(np.roll(np.arange(len(images)), 1)[:, None])
    tuned.fit()
    assert not same_state(backbone, state_of(tuned.model.backbone))


def test_neighbours_are_the_cosine_knn_of_the_rl_head_output(
    images: np.ndarray, stage1_checkpoint: Path
) -> None:
    trainer = CRLCTrainer(tiny(stage="stage2"), images, CPU)
    trainer.init_from_parent(stage1_checkpoint, parts=("backbone", "rl_head"))
    table = mine_neighbors(trainer.model, images, trainer.augment_config, CPU, k=100)
    assert table.shape == (24, 23) and table.dtype == np.int64  # K capped at N - 1
    z = predict(trainer.model, images, trainer.augment_config, CPU).features.astype(np.float64)
    similarity = z @ z.T
    for i in range(len(images)):
        assert i not in table[i]
        got = similarity[i, table[i]]
        assert np.all(np.diff(got) <= 1e-6)  # nearest first
        others = np.delete(similarity[i], i)
        np.testing.assert_allclose(np.sort(got), np.sort(others), atol=1e-5)


# ----------------------------------------------------------------------------- jobs
class CancelInTraining(RecordingReporter):
    """Cancels at step ``step`` of the ``which``-th training (1-based) of a job."""

    def __init__(self, control: JobControl, which: int, step: int) -> None:
        super().__init__()
        self.control, self.which, self.step = control, which, step
        self.started = 0
        self.training = False

    def event(self, event: object) -> None:
        super().event(event)  # type: ignore[arg-type]
        if isinstance(event, TrainingStarted):
            self.started += 1
            self.training = True
        elif isinstance(event, TrainingFinished):
            self.training = False

    def progress(self, done: float, total: float | None) -> None:
        super().progress(done, total)
        if self.training and self.started == self.which and int(done) == self.step:
            self.control.cancel()


def two_stage_request(**changes: object) -> TrainConfig:
    return tiny(
        clusters=4, stage="two_stage", stage1_epochs=2, epochs=2, batch_size=16, neighbors=5
    ).replace(**changes)


@pytest.fixture(scope="module")
def two_stage_workspace(
    shapes_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, str]:
    """A workspace with a completed two-stage job: (workspace, stage-1 id, stage-2 id)."""
    workspace = tmp_path_factory.mktemp("ws2")
    outcome = train_folder(shapes_folder, two_stage_request(), workspace)
    assert outcome.state == "completed" and outcome.kind == "stage2" and outcome.parent
    return workspace, outcome.parent, outcome.run.run_id


def test_two_stage_job_makes_a_stage1_run_and_its_stage2_run(
    shapes_folder: Path, two_stage_workspace: tuple[Path, str, str]
) -> None:
    workspace, first, second = two_stage_workspace
    with ImageLibrary.open([shapes_folder], workspace) as library:
        stage1, stage2 = library.runs.get(first, None, False), library.runs.get(second, None)
        assert (stage1.kind, stage2.kind) == ("stage1", "stage2")
        assert stage2.read_config()["parent"] == first
        assert stage1.checkpoint_path.exists() and not stage1.predictions_path.exists()
        assert ResultStore(library.catalog).load(first).image_ids.size == 0
        assert ResultStore(library.catalog).load(second).image_ids.size == 48
        table = load_neighbor_table(stage2.path / NEIGHBORS_FILE, 48)
        assert table.shape == (48, 5)
        assert stage1.read_config()["train"]["stage"] == "stage1"
        newest = library.runs.get()  # the stage-1 run is never the newest run with clusters
        assert newest.kind == "stage2" and newest.read_config()["parent"] == first


def test_stage2_alone_from_an_existing_stage1_run(
    shapes_folder: Path, two_stage_workspace: tuple[Path, str, str]
) -> None:
    workspace, first, second = two_stage_workspace
    reporter = RecordingReporter()
    outcome = train_stage2_folder(
        shapes_folder,
        first,
        {"epochs": 1, "freeze_backbone": True, "neighbors": 3, "clusters": 3},
        workspace,
        reporter,
    )
    assert outcome.state == "completed" and outcome.kind == "stage2" and outcome.parent == first
    assert outcome.config.freeze_backbone and outcome.config.clusters == 3
    assert outcome.config.stage1_epochs == 2  # the stage-1 job's other settings are kept
    assert any("Re-using" in s for s in reporter.statuses)
    with ImageLibrary.open([shapes_folder], workspace) as library:
        earlier = np.load(library.runs.get(second).path / NEIGHBORS_FILE)
        table = np.load(outcome.run.path / NEIGHBORS_FILE)
    np.testing.assert_array_equal(table, earlier[:, :3])
    with pytest.raises(InvalidSettingError, match="not stage 1"):
        train_stage2_folder(shapes_folder, second, None, workspace)
    with pytest.raises(InvalidSettingError, match="backbone"):
        train_stage2_folder(shapes_folder, first, {"backbone": "resnet18"}, workspace)
    with pytest.raises(RunNotFoundError):
        train_stage2_folder(shapes_folder, "20990101-000000-0000", None, workspace)


def test_cancel_and_resume_each_stage_and_newest_run_skips_stage1(
    shapes_folder: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    plain = train_folder(shapes_folder, tiny(clusters=4, epochs=1, batch_size=16), workspace)
    control = JobControl()
    first = train_folder(
        shapes_folder, two_stage_request(), workspace, CancelInTraining(control, 1, 4), control
    )
    assert (first.kind, first.state, first.fit.steps) == ("stage1", "cancelled", 4)
    assert first.summary()["head"] is None
    with pytest.raises(InvalidSettingError, match="cancelled"):
        train_stage2_folder(shapes_folder, first.run.run_id, None, workspace)
    stage1_images = np.load(first.run.path / "image_ids.npy")
    with ImageLibrary.open([shapes_folder], workspace) as library:  # after stage 1 started
        Annotations(library.catalog).set_ignored(stage1_images[:3].tolist())
    control = JobControl()
    second = train_folder(
        shapes_folder,
        tiny(clusters=2),  # ignored: the run's saved settings are used
        workspace,
        CancelInTraining(control, 2, 2),
        control,
        resume="latest",
    )
    assert second.kind == "stage2" and second.state == "cancelled"
    assert second.parent == first.run.run_id and second.config.clusters == 4
    # stage 2 of the job trains on stage 1's images, ignored since or not
    assert np.array_equal(np.load(second.run.path / "image_ids.npy"), stage1_images)
    with ImageLibrary.open([shapes_folder], workspace) as library:
        # Stage 1 completed but has no clusters; stage 2 was cancelled: the newest run with
        # clusters is the plain one, for assign, clusters, export and the app alike.
        assert library.runs.get(first.run.run_id, state=None, clusters_only=False).state == (
            "completed"
        )
        assert library.runs.get().run_id == plain.run.run_id
        with pytest.raises(RunNotFoundError, match="no clusters"):
            library.runs.get(first.run.run_id)
    assert assign_run(shapes_folder, None, workspace).run_id == plain.run.run_id
    third = train_folder(shapes_folder, tiny(clusters=2), workspace, resume="latest")
    assert third.run.run_id == second.run.run_id and third.state == "completed"
    assert third.fit.steps == 2 * 3 and third.kind == "stage2"
    with ImageLibrary.open([shapes_folder], workspace) as library:
        assert library.runs.get().run_id == second.run.run_id


def test_cli_two_stage_end_to_end(
    shapes_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(tmp_path / "ws")
    flags = [*TINY, "--workspace", ws, "--json"]
    code = main(
        ["train", str(shapes_folder), "-k", "4", "--two-stage", "--stage1-epochs", "1",
         "--preset", "cpu", "--stage-optim", "paper", *flags]
    )  # fmt: skip
    captured = capsys.readouterr()
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert code == 0 and out["kind"] == "stage2" and out["state"] == "completed"
    assert "(features only)" in captured.err and "Stage 2 (run" in captured.err
    assert out["epochs"] == 2 and out["parent"] and 0 <= out["head"] < 2
    # Each run's config.json records the optimiser its stage used (the paper's, as asked).
    run_dir = Path(out["run_dir"])
    stage1 = json.loads((run_dir.parent / out["parent"] / "config.json").read_text())
    stage2 = json.loads((run_dir / "config.json").read_text())["train"]
    assert (stage1["train"]["optimizer"], stage1["train"]["lr"]) == ("sgd", 0.4)
    assert stage1["train"]["lr_schedule"] == "cosine"
    assert (stage2["optimizer"], stage2["lr"], stage2["weight_decay"]) == ("adam", 1e-4, 1e-4)
    assert stage1["then_stage2"] == stage2
    code = main(["evaluate", str(shapes_folder), "--workspace", ws, "--json"])
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and scores["run_id"] == out["run_id"]
    code = main(
        ["train", str(shapes_folder), "--stage2-from", out["parent"], "--epochs", "1",
         "--freeze-backbone", "--framework", "memorybank", "--bank-negatives", "8",
         "--device", "cpu", "--workspace", ws, "--json"]
    )  # fmt: skip
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and again["parent"] == out["parent"] and again["framework"] == "memorybank"
    code = main(["train", str(shapes_folder), "--stage2-from", out["run_id"], *flags[-3:]])
    error = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    assert code == 1 and error["type"] == "invalid_setting" and "stage-1" in error["message"]
    code = main(["train", str(shapes_folder), "-k", "3", "--freeze-backbone", *flags])
    error = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    assert code == 1 and error["type"] == "usage" and "--two-stage" in error["message"]


def cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, str]]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]


def test_cli_optimizer_flags_with_two_stage(
    tmp_path: Path, captured_settings: list[CapturedError], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", str(tmp_path), "-k", "3", "--preset", "cpu", "--device", "cpu"]
    assert cli_error(capsys, [*base, "--two-stage"])[0] == 1
    assert captured_settings[-1].config is not None
    assert captured_settings[-1].config.stage_optim == "run"  # the cpu preset's choice
    balanced = ["train", str(tmp_path), "-k", "3", "--preset", "balanced", "--device", "cpu"]
    cli_error(capsys, [*balanced, "--two-stage"])
    assert captured_settings[-1].config is not None
    assert captured_settings[-1].config.stage_optim == "paper"  # the default elsewhere
    # An explicit --lr or --optimizer means the user's own optimiser for both stages.
    cli_error(capsys, [*base, "--two-stage", "--lr", "0.05"])
    config = captured_settings[-1].config
    assert config is not None and (config.stage_optim, config.lr) == ("run", 0.05)
    assert [c.optimizer for c in stage_configs(config)] == ["sgd", "sgd"]
    assert [c.lr for c in stage_configs(config)] == [0.05, 0.05]
    cli_error(capsys, [*base, "--two-stage", "--optimizer", "adam", "--lr", "1e-3"])
    config = captured_settings[-1].config
    assert config is not None and (config.stage_optim, config.optimizer) == ("run", "adam")
    cli_error(capsys, [*base, "--two-stage", "--stage-optim", "run"])
    config = captured_settings[-1].config
    assert config is not None and (config.stage_optim, config.lr) == ("run", 0.1)  # preset's
    cli_error(capsys, [*base, "--optimizer", "adam", "--lr", "1e-3"])  # end-to-end Adam
    config = captured_settings[-1].config
    assert config is not None and (config.optimizer, config.lr) == ("adam", 1e-3)
    cli_error(capsys, ["train", str(tmp_path), "--stage2-from", "X", "--lr", "0.2"])
    assert captured_settings[-1].overrides is not None
    assert captured_settings[-1].overrides["stage_optim"] == "run"
    cli_error(capsys, ["train", str(tmp_path), "--stage2-from", "X", "--freeze-backbone"])
    assert captured_settings[-1].overrides is not None
    assert captured_settings[-1].overrides["stage_optim"] is None  # the stage-1 run's plan
    count = len(captured_settings)
    # Refused before any job starts.
    for argv, needle in (
        ([*base, "--two-stage", "--stage-optim", "paper", "--lr", "0.05"], "--stage-optim paper"),
        ([*base, "--two-stage", "--optimizer", "adam"], "needs --lr"),
        ([*base, "--stage-optim", "run"], "only with --two-stage"),
        ([*base, "--optimizer", "rmsprop"], "invalid choice"),
        (["ablate", str(tmp_path), "-k", "3", "--optimizer", "adam"], "needs --lr"),
    ):
        code, error = cli_error(capsys, argv)
        assert (code, error["type"]) == (2 if "rmsprop" in argv else 1, "usage"), argv
        assert needle in error["message"]
    assert len(captured_settings) == count


def test_stage2_again_with_an_own_lr_is_plain_sgd_at_that_lr(
    shapes_folder: Path, two_stage_workspace: tuple[Path, str, str]
) -> None:
    workspace, first, _ = two_stage_workspace
    planned = train_stage2_folder(shapes_folder, first, {"epochs": 1}, workspace).config
    assert (planned.optimizer, planned.lr) == ("adam", 1e-4)  # the paper's plan, fine-tuned
    own = train_stage2_folder(shapes_folder, first, {"epochs": 1, "lr": 0.2}, workspace).config
    assert (own.optimizer, own.lr, own.lr_schedule, own.stage_optim) == (
        "sgd",
        0.2,
        "constant",
        "run",
    )
    adam = train_stage2_folder(
        shapes_folder, first, {"epochs": 1, "lr": 3e-4, "optimizer": "adam"}, workspace
    ).config
    assert (adam.optimizer, adam.lr) == ("adam", 3e-4)  # below lr-min 0.001: fine, constant


def test_old_stage1_runs_keep_their_own_optimiser() -> None:
    stored = tiny(stage="stage1").to_dict()
    del stored["stage_optim"]  # written before the setting existed
    assert TrainConfig.from_dict(stored).stage_optim == "run"
    assert TrainConfig.from_dict(tiny(stage="stage1").to_dict()).stage_optim == "paper"


def test_refine_continues_a_paper_stage2_run_with_crlc_semi_sgd(
    shapes_folder: Path, two_stage_workspace: tuple[Path, str, str]
) -> None:
    from crlc_engine.pipeline.jobs import refine_folder
    from crlc_engine.results.annotations import Annotations

    workspace, _, _ = two_stage_workspace
    with ImageLibrary.open([shapes_folder], workspace) as library:
        records = library.images()
        Annotations(library.catalog).label([records[0].id, records[1].id], "first")
    outcome = refine_folder(shapes_folder, epochs=1, workspace=workspace)
    config = outcome.config
    assert outcome.state == "completed"
    assert (config.optimizer, config.lr, config.lr_schedule, config.lr_min) == (
        "sgd",
        0.1,
        "cosine",
        0.001,
    )
    assert (config.stage, config.freeze_backbone) == ("end_to_end", False)
