"""The quick mode: CRLC heads on cached features (synthetic features) and the quick job."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from crlc_engine.core.config import TrainConfig, quick_epochs
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.core.events import EpochEnded, Event, RecordingReporter
from crlc_engine.library import ImageLibrary
from crlc_engine.library.runs import RunDir
from crlc_engine.library.synthetic import write_shapes_folder
from crlc_engine.pipeline.driver import TrainOutcome, fit_run
from crlc_engine.pipeline.feature_method import FeatureHeadsMethod, is_quick
from crlc_engine.pipeline.jobs import assign_in_library, evaluate_folder, list_runs, train_folder
from crlc_engine.pipeline.method_base import MethodJob
from crlc_engine.pipeline.run_records import create_run
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.results.metrics import cluster_accuracy
from crlc_engine.training.checkpoint import load_checkpoint
from crlc_engine.training.feature_cache import FeatureCache
from crlc_engine.training.feature_trainer import (
    FeatureTrainer,
    QuickSettings,
    mine_neighbors,
    standardization,
)
from crlc_engine.training.frozen_features import (
    FeatureExtractor,
    FeatureSpec,
    lite0_extractor,
)
from tests.engine.training.test_features import tiny_extractor


def train_quick_folder(
    *args: object,
    extractor: FeatureExtractor | None = None,
    head_settings: dict[str, object] | None = None,
    **kwargs: object,
) -> TrainOutcome:
    """The quick job with a given backbone and head settings (the feature method's)."""
    method = FeatureHeadsMethod(extractor, head_settings)
    return train_folder(*args, method=method, **kwargs)  # type: ignore[arg-type]


def assign_quick(
    library: ImageLibrary, run: RunDir, extractor: FeatureExtractor | None = None
) -> None:
    method = FeatureHeadsMethod(extractor)
    assign_in_library(library, run, RecordingReporter(), JobControl(), method)


def gaussian_features(
    per_class: int, centres: np.ndarray, seed: int = 0, spread: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features [C * per_class, d] around ``centres`` [C, d], with labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(centres.shape[0]), per_class)
    x = centres[labels] + spread * rng.normal(size=(labels.shape[0], centres.shape[1]))
    return np.maximum(x, 0.0).astype(np.float32), labels  # like pooled ReLU features


def small_settings(**changes: object) -> QuickSettings:
    values: dict[str, object] = {
        "clusters": 4,
        "epochs": 30,
        "batch_size": 32,
        "hidden": 32,
        "subheads": 3,
        "neighbors": 5,
        "precision": "float32",
        "min_steps": 0,
    }
    values.update(changes)
    return QuickSettings(**values)  # type: ignore[arg-type]


def test_standardization_is_per_dimension_mean_and_population_std() -> None:
    x = torch.tensor([[1.0, 10.0, 3.0], [3.0, 10.0, 5.0], [5.0, 10.0, 10.0]])
    mean, std = standardization(x)
    assert torch.allclose(mean, torch.tensor([3.0, 10.0, 6.0]))
    assert torch.allclose(std, torch.tensor([math.sqrt(8 / 3), 1e-6, math.sqrt(26 / 3)]))
    trainer = FeatureTrainer(small_settings(clusters=2), x)
    assert torch.allclose(trainer.inputs.mean(0), torch.zeros(3), atol=1e-6)


def test_settings_from_a_train_config() -> None:
    config = quick_config(epochs=7, lambda_fc=2.0, neighbors=9, seed=3)
    settings = QuickSettings.from_train_config(config)
    assert (settings.epochs, settings.lambda_fc, settings.neighbors, settings.seed) == (
        7,
        2.0,
        9,
        3,
    )
    assert (settings.lr, settings.weight_decay) == (1e-3, 0.0)  # the config's are SGD values
    semi = QuickSettings.from_train_config(
        config.replace(lr_schedule="cosine", lr=0.1, lr_min=0.001, lambda_xent=1.0)
    )
    assert semi.lr_schedule == "cosine" and semi.lr_min == pytest.approx(1e-5)
    assert semi.lambda_xent == 1.0
    assert QuickSettings.from_train_config(config, hidden=64).hidden == 64


def test_small_data_sets_train_at_least_min_steps() -> None:
    x, _ = gaussian_features(10, np.random.default_rng(8).normal(size=(4, 8)))
    trainer = FeatureTrainer(small_settings(epochs=3, batch_size=16, min_steps=10), x)
    assert trainer.steps_per_epoch == 2 and trainer.target_epochs == 5
    said = RecordingReporter()
    fit = trainer.fit(said)
    assert (fit.epochs, fit.steps) == (5, 10)
    assert any("3 epochs asked for" in t and "training 5 epochs" in t for t in said.statuses)
    many = FeatureTrainer(small_settings(epochs=8, batch_size=16, min_steps=10), x)
    assert many.target_epochs == 8
    said = RecordingReporter()
    many.fit(said)
    assert not any("asked for" in t for t in said.statuses)  # nothing overridden, nothing said


def test_big_data_sets_train_at_most_max_steps() -> None:
    x, _ = gaussian_features(20, np.random.default_rng(8).normal(size=(4, 8)))  # 80 images
    settings = small_settings(epochs=6, batch_size=16, min_steps=3, max_steps=12)
    trainer = FeatureTrainer(settings, x)
    assert trainer.steps_per_epoch == 5 and trainer.target_epochs == 2  # 10 steps <= 12
    said = RecordingReporter()
    fit = trainer.fit(said)
    assert (fit.epochs, fit.steps) == (2, 10)
    assert any("at most 12 steps" in t and "training 2 epochs" in t for t in said.statuses)
    assert quick_epochs(6, 5, 3, 0) == 6  # no cap
    assert quick_epochs(6, 50, 3, 12) == 1  # at least one epoch
    assert quick_epochs(6, 5, 40, 12) == 8  # the minimum wins over the cap


def test_neighbours_are_cosine_and_a_zero_row_still_gets_some() -> None:
    x = np.array([[1, 0, 0], [2, 0.1, 0], [0, 1, 0], [0, 3, 0.2], [0, 0, 0]], np.float32)
    table = mine_neighbors(x, k=1)
    assert table.shape == (5, 1) and table[:4, 0].tolist() == [1, 0, 3, 2]
    assert 0 <= table[4, 0] < 4


@pytest.mark.parametrize("lambda_fc", [0.0, 1.0])
def test_heads_find_well_separated_clusters(lambda_fc: float) -> None:
    centres = np.random.default_rng(1).normal(size=(4, 24)) * 4 + 2
    x, truth = gaussian_features(40, centres)
    trainer = FeatureTrainer(small_settings(lambda_fc=lambda_fc), x)
    fit = trainer.fit()
    assert fit.state == "completed" and fit.epochs == 30 and len(fit.head_losses) == 3
    preds = trainer.predict()
    assert preds.probabilities.shape == (3, 160, 4) and preds.features.shape == (160, 128)
    np.testing.assert_allclose(np.linalg.norm(preds.features, axis=1), 1.0, atol=1e-5)
    assert cluster_accuracy(truth, preds.labels(fit.chosen_head)) >= 0.95


def test_l_fc_trains_only_the_rl_head_on_a_frozen_backbone() -> None:
    """No parameter is shared between the heads, so lambda_FC cannot move the clusters."""
    x, _ = gaussian_features(10, np.random.default_rng(7).normal(size=(4, 8)) * 3 + 1)
    runs = {}
    for lambda_fc in (0.0, 1.0):
        trainer = FeatureTrainer(small_settings(epochs=4, lambda_fc=lambda_fc), x)
        trainer.fit()
        runs[lambda_fc] = (trainer.predict(), trainer.heads.state_dict())
    (p0, s0), (p1, s1) = runs[0.0], runs[1.0]
    np.testing.assert_array_equal(p0.probabilities, p1.probabilities)
    for name in ("weight1", "bias1", "weight2", "bias2"):
        assert torch.equal(s0[name], s1[name])
    assert not torch.equal(s0["rl_head.0.weight"], s1["rl_head.0.weight"])


def _plain_nt_xent(rows: list[torch.Tensor], critic: object) -> float:
    """Mean over 2B rows of -log(e^f(i, pos) / sum_{j != i} e^f(i, j)), in plain loops."""
    n, b = len(rows), len(rows) // 2
    total = 0.0
    for i in range(n):
        scores = {j: float(critic(rows[i], rows[j])) for j in range(n) if j != i}  # type: ignore[operator]
        positive = scores[(i + b) % n]
        total += -(positive - math.log(sum(math.exp(s) for s in scores.values())))
    return total / n


def test_first_step_losses_use_a_sampled_neighbour_as_the_other_view() -> None:
    """L_FC, L_PC and the entropy of step 1 against plain loops on (image, neighbour) pairs."""
    x, _ = gaussian_features(4, np.random.default_rng(2).normal(size=(4, 6)) * 3 + 1, seed=3)
    settings = small_settings(
        epochs=1, batch_size=16, neighbors=3, lambda_fc=1.0, subheads=2, feature_dropout=0.0
    )
    trainer = FeatureTrainer(settings, x)
    heads = copy.deepcopy(trainer.heads)
    order = torch.Generator().manual_seed(0)
    order.set_state(trainer.order_generator.get_state())
    draws = torch.Generator().manual_seed(0)
    draws.set_state(trainer.sample_generator.get_state())
    trainer.fit()
    assert trainer.neighbors is not None
    knn = trainer.neighbors

    anchors = torch.randperm(16, generator=order)
    column = torch.randint(0, knn.shape[1], (16,), generator=draws)
    positives = knn[anchors, column]
    inputs = trainer.inputs
    with torch.no_grad():
        out = heads(torch.cat([inputs[anchors], inputs[positives]]))
    assert out.z is not None
    z = list(out.z)
    recorded = trainer.history[0]["losses"]
    l_fc = _plain_nt_xent(z, lambda a, b: float(a @ b) / settings.tau)
    assert recorded["feature"] == pytest.approx(l_fc, rel=1e-5)

    gamma, c = settings.gamma, settings.clusters
    l_pc, entropy = [], []
    for h in range(settings.subheads):
        p = torch.softmax(out.logits[h].double(), dim=-1)
        smooth = [(1 - gamma) * row + gamma / c for row in p]
        l_pc.append(_plain_nt_xent(smooth, lambda a, b: math.log(float(a @ b))))
        views = [p[:16].mean(0), p[16:].mean(0)]
        entropy.append(sum(-float((m * m.log()).sum()) for m in views) / 2)
    assert recorded["probability_contrastive"] == pytest.approx(np.mean(l_pc), rel=1e-5)
    assert recorded["entropy"] == pytest.approx(np.mean(entropy), rel=1e-5)
    assert recorded["total"] == pytest.approx(
        l_fc + np.mean(l_pc) - settings.lambda_ent * np.mean(entropy) + 0.0, rel=1e-5
    )  # logits start well inside the guard's bound: guard term 0


class CancelOnStep(RecordingReporter):
    def __init__(self, control: JobControl, step: int) -> None:
        super().__init__()
        self.control, self.step = control, step

    def progress(self, done: float, total: float | None) -> None:
        super().progress(done, total)
        if done == self.step:
            self.control.cancel()


def test_resume_after_a_cancel_is_bit_identical(tmp_path: Path) -> None:
    x, _ = gaussian_features(16, np.random.default_rng(4).normal(size=(4, 8)) * 3 + 1)
    settings = small_settings(epochs=3, batch_size=16, feature_dropout=0.1, feature_noise=0.2)
    straight = FeatureTrainer(settings, x, checkpoint_path=tmp_path / "a.pt")
    straight.fit()

    control = JobControl()
    first = FeatureTrainer(settings, x, checkpoint_path=tmp_path / "b.pt")
    assert first.fit(CancelOnStep(control, 6), control).state == "cancelled"
    assert first.total_steps == 6 and first.step_in_epoch == 2  # mid-epoch
    resumed = FeatureTrainer(settings, x, checkpoint_path=tmp_path / "b.pt")
    resumed.load()
    fit = resumed.fit()
    assert fit.state == "completed" and fit.steps == straight.total_steps == 12
    for name, value in straight.heads.state_dict().items():
        assert torch.equal(value, resumed.heads.state_dict()[name]), name
    assert [r["losses"] for r in resumed.history] == [r["losses"] for r in straight.history]


def test_labels_and_a_parent_checkpoint_fix_a_merged_cluster(tmp_path: Path) -> None:
    """CRLC-semi on features: 3 groups, a 2-cluster parent, 3 labels per group."""
    centres = np.random.default_rng(5).normal(size=(3, 16)) * 4 + 2
    x, truth = gaussian_features(40, centres, seed=6)
    parent = FeatureTrainer(
        small_settings(clusters=2, epochs=20), x, checkpoint_path=tmp_path / "p.pt"
    )
    parent.fit()
    before = cluster_accuracy(truth, parent.predict().labels(parent.chosen_head))
    assert before <= 2 / 3 + 1e-9

    rows = np.concatenate([np.flatnonzero(truth == k)[:3] for k in range(3)])
    child = FeatureTrainer(
        small_settings(clusters=3, epochs=20, lambda_xent=1.0, labelled_batch=9),
        x,
        labelled=(rows, truth[rows]),
    )
    child.init_from_parent(tmp_path / "p.pt")
    grown = child.heads.state_dict()["weight2"]
    assert torch.equal(grown[..., :2], parent.heads.state_dict()["weight2"])
    assert torch.equal(child.mean, parent.mean)
    child.fit()
    unlabelled = np.setdiff1d(np.arange(len(truth)), rows)
    labels = child.predict().labels(child.chosen_head)
    assert cluster_accuracy(truth[unlabelled], labels[unlabelled]) >= 0.95


# ---------------------------------------------------------------------------- the quick job
def quick_config(**changes: object) -> TrainConfig:
    values: dict[str, object] = {
        "clusters": 4,
        "preset": "quick",
        "backbone": "efficientnet_lite0",
        "pretrained": True,
        "image_size": 32,
        "batch_size": 16,
        "epochs": 3,
        "subheads": 2,
        "neighbors": 5,
        "device": "cpu",
        "checkpoint_every": 50,
    }
    values.update(changes)
    return TrainConfig(**values)  # type: ignore[arg-type]


#: Head settings of the job tests: narrow heads, no step minimum (epochs as configured).
FAST = {"hidden": 32, "min_steps": 0}


@pytest.fixture()
def shapes(tmp_path: Path) -> Path:
    return write_shapes_folder(tmp_path / "photos", per_class=8, size=32)


def test_a_quick_run_is_stored_like_any_other_run(shapes: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    extractor, counter = tiny_extractor()
    config = quick_config()
    assert is_quick(config) and not is_quick(config.replace(preset="cpu"))
    outcome = train_quick_folder(
        shapes, config, ws, workers=0, extractor=extractor, head_settings=FAST
    )
    assert outcome.state == "completed" and outcome.images == 32 and counter.images == 32
    assert outcome.fit.epochs == 3 and outcome.run.state == "completed"

    [info] = list_runs(shapes, ws)
    assert (info.run_id, info.preset, info.state) == (outcome.run.run_id, "quick", "completed")
    with ImageLibrary.open([shapes], ws) as library:
        stored = ResultStore(library.catalog).load(outcome.run.run_id)
    assert stored.features.shape == (32, 128) and stored.probabilities.shape == (32, 4)
    scores = evaluate_folder(shapes, outcome.run.run_id, ws)
    assert scores.images == 32 and len(scores.per_head) == 2

    state = load_checkpoint(outcome.run.checkpoint_path)
    assert state["phase"] == "heads" and state["config"]["preset"] == "quick"
    assert FeatureSpec.from_dict(state["features"]) == extractor.spec
    assert state["neighbors"].shape == (32, 5)
    assert {"mean", "std"} <= set(state["standardization"])


def test_assignments_are_recomputed_from_cached_features(shapes: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    extractor, counter = tiny_extractor()
    outcome = train_quick_folder(
        shapes, quick_config(), ws, workers=0, extractor=extractor, head_settings=FAST
    )
    with ImageLibrary.open([shapes], ws) as library:
        before = ResultStore(library.catalog).load(outcome.run.run_id)
        assign_quick(library, outcome.run, extractor=extractor)
        after = ResultStore(library.catalog).load(outcome.run.run_id)
        assert counter.images == 32  # from the cache, no backbone pass
        np.testing.assert_array_equal(after.clusters, before.clusters)
        np.testing.assert_allclose(after.probabilities, before.probabilities, atol=1e-6)
        cache = FeatureCache(library.workspace, extractor.spec)
        for path in cache.folder.iterdir():  # the cache is lost: the backbone runs again
            path.unlink()
        assign_quick(library, outcome.run, extractor=extractor)
        again = ResultStore(library.catalog).load(outcome.run.run_id)
    assert counter.images == 64
    np.testing.assert_array_equal(again.clusters, before.clusters)


def test_a_scan_cancelled_during_features_keeps_them_for_the_next_run(
    shapes: Path, tmp_path: Path
) -> None:
    """The quick scan computes features as it decodes: a cancel there keeps every batch done
    (no run is made, like any cancelled scan) and the next run computes only the rest."""
    ws = tmp_path / "ws"
    extractor, counter = tiny_extractor()
    control = JobControl()
    with pytest.raises(InterruptedError, match="cancelled while scanning"):
        train_quick_folder(
            shapes,
            quick_config(),
            ws,
            reporter=CancelDuringFeatures(control, 12),
            control=control,
            workers=0,
            extractor=extractor,
            head_settings=FAST,
        )
    assert 12 <= counter.images < 32
    kept = counter.images
    with ImageLibrary.open([shapes], ws) as library:
        assert len(FeatureCache(library.workspace, extractor.spec).held()) == kept
        assert not (library.workspace / "pixels-32.u8").exists()  # no pixel cache at all
        assert library.runs.all() == []
    outcome = train_quick_folder(
        shapes, quick_config(), ws, workers=0, extractor=extractor, head_settings=FAST
    )
    assert outcome.state == "completed"
    assert counter.images == 32  # nothing computed twice


def test_a_refine_run_starts_from_its_quick_parent(shapes: Path, tmp_path: Path) -> None:
    """What jobs.refine_folder does for a quick parent: a child run with labels, more clusters."""

    ws = tmp_path / "ws"
    extractor, _ = tiny_extractor()
    parent = train_quick_folder(
        shapes, quick_config(), ws, workers=0, extractor=extractor, head_settings=FAST
    )
    config = parent.config.replace(  # the CRLC-semi settings refine_folder applies
        clusters=5,
        lambda_ent=1.0,
        lambda_fc=5.0,
        lambda_xent=1.0,
        lr_schedule="cosine",
        lr_min=0.001,
        labelled_batch=8,
    )
    rows = np.arange(0, 32, 4)
    targets = np.minimum(rows // 8, 4).astype(np.int64)
    with ImageLibrary.open([shapes], ws) as library:
        records = library.images()
        run = create_run(library, config, ("cpu", "test"), records, parent.run.run_id, "refine")
        with library.locked("refining"):
            job = MethodJob(
                library,
                run,
                config,
                torch.device("cpu"),
                records,
                RecordingReporter(),
                JobControl(),
                resume=False,
                labelled=(rows, targets),
                parent_checkpoint=parent.run.checkpoint_path,
            )
            fit = fit_run(job, FeatureHeadsMethod(extractor, FAST))
        # nothing named in the parent, no labels in the catalog: nothing to name
        assert ResultStore(library.catalog).names(run.run_id) == {}
    assert fit.state == "completed" and run.state == "completed"
    settings = load_checkpoint(run.checkpoint_path)["settings"]
    assert settings["clusters"] == 5 and settings["lambda_xent"] == 1.0
    assert settings["lr_schedule"] == "cosine" and settings["lr_min"] == pytest.approx(1e-5)
    runs = list_runs(shapes, ws)
    assert [(r.parent, r.kind) for r in runs] == [(None, "train"), (parent.run.run_id, "refine")]


def test_stages_and_the_memorybank_do_not_apply_to_quick_runs(shapes: Path, tmp_path: Path) -> None:
    extractor, _ = tiny_extractor()
    for change in ({"stage": "stage1"}, {"framework": "memorybank"}):
        with pytest.raises(InvalidSettingError, match="quick preset"):
            train_quick_folder(
                shapes, quick_config(**change), tmp_path / "ws", workers=0, extractor=extractor
            )
    assert list_runs(shapes, tmp_path / "ws") == []  # refused before a run is created


class CancelDuringFeatures(RecordingReporter):
    """Cancels once the scan that computes features reported ``limit`` images done."""

    def __init__(self, control: JobControl, limit: int) -> None:
        super().__init__()
        self.control, self.limit = control, limit

    def progress(self, done: float, total: float | None) -> None:
        super().progress(done, total)
        computing = any("computing their tiny features" in s for s in self.statuses)
        if computing and done >= self.limit:
            self.control.cancel()


class CancelAfterEpoch(RecordingReporter):
    def __init__(self, control: JobControl) -> None:
        super().__init__()
        self.control = control

    def event(self, event: Event) -> None:
        super().event(event)
        if isinstance(event, EpochEnded) and event.epoch == 1:
            self.control.cancel()


def test_a_run_cancelled_during_training_resumes(shapes: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    extractor, _ = tiny_extractor()
    control = JobControl()
    outcome = train_quick_folder(
        shapes,
        quick_config(),
        ws,
        reporter=CancelAfterEpoch(control),
        control=control,
        workers=0,
        extractor=extractor,
        head_settings=FAST,
    )
    assert outcome.state == "cancelled" and outcome.fit.epochs == 1
    resumed = train_quick_folder(
        shapes, quick_config(), ws, resume=outcome.run.run_id, workers=0, extractor=extractor
    )
    assert resumed.state == "completed" and resumed.fit.epochs == 3


def test_the_pretrained_backbone_stays_bit_identical(shapes: Path, tmp_path: Path) -> None:
    extractor = lite0_extractor(32, precision="float32")
    before = {k: v.clone() for k, v in extractor.module.state_dict().items()}
    outcome = train_quick_folder(
        shapes, quick_config(), tmp_path / "ws", workers=0, extractor=extractor, head_settings=FAST
    )
    assert outcome.state == "completed"
    after = extractor.module.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    assert not extractor.module.training
    assert not any(p.requires_grad for p in extractor.module.parameters())


def test_jobs_dispatch_quick_runs_for_train_assign_and_refine(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The public jobs (what `crlc train/assign/refine` and the app call) route a quick config
    to the feature path: no pixel training, heads on cached features, results stored."""
    import crlc_engine.pipeline.feature_method as quick
    from crlc_engine.pipeline.jobs import assign_run, refine_folder, train_folder

    extractor, counter = tiny_extractor()
    monkeypatch.setattr(quick, "lite0_extractor", lambda *a, **k: extractor)
    ws = tmp_path / "ws"
    outcome = train_folder(shapes, quick_config(), ws, workers=0)
    assert outcome.state == "completed" and outcome.run.read_config()["train"]["preset"] == "quick"
    assert counter.images == 32
    with ImageLibrary.open([shapes], ws) as library:
        before = ResultStore(library.catalog).load(outcome.run.run_id)
        ids = before.image_ids[:4].tolist()
        Annotations(library.catalog).label(ids, "first")
    assign_run(shapes, outcome.run.run_id, ws)
    assert counter.images == 32  # assignments from the feature cache
    with ImageLibrary.open([shapes], ws) as library:
        after = ResultStore(library.catalog).load(outcome.run.run_id)
    assert np.array_equal(before.clusters, after.clusters)
    refined = refine_folder(shapes, workspace=ws, epochs=2)
    assert refined.state == "completed" and refined.run.read_config()["parent"] == (
        outcome.run.run_id
    )
    assert counter.images == 32  # the refine run reuses the cached features too
