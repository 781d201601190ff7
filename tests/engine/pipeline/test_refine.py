"""CRLC-semi: a few labels per group fix a clustering that merged two groups.

Three generated shape groups (see test_end_to_end) but only K = 2 clusters: unsupervised
training must merge two groups (ACC <= 2/3). Three labels per group (three classes, so the
C-head grows to three clusters) and a short refine must raise ACC measured on the
*unlabelled* images only, from the model's own predictions, by at least 0.15.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlc_engine.library import ImageLibrary
from crlc_engine.library.synthetic import write_shapes_folder
from crlc_engine.pipeline.jobs import evaluate_folder, list_runs, refine_folder, train_folder
from crlc_engine.pipeline.presets import resolve_train_config
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.results.groundtruth import class_of


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("semi")
    folder = write_shapes_folder(
        base / "photos",
        per_class=60,
        size=32,
        seed=2,
        shapes=("hbar", "vbar", "disc"),
        colour_cells=True,
    )
    config = resolve_train_config(2, "cpu", {"epochs": 100, "device": "cpu", "seed": 0})
    train_folder(folder, config, workspace=base / "ws", workers=0)
    return folder, base / "ws"


def test_labels_raise_accuracy_on_unlabelled_images(merged: tuple[Path, Path]) -> None:
    folder, ws = merged
    with ImageLibrary.open([folder], ws) as library:
        by_class: dict[str, list[int]] = {}
        for record in library.images():
            by_class.setdefault(str(class_of(record.rel_path)), []).append(record.id)
        notes = Annotations(library.catalog)
        for name, ids in sorted(by_class.items()):
            notes.label(ids[:3], name)
    before = evaluate_folder(folder, workspace=ws, unlabelled_only=True)
    assert before.chosen.acc <= 2 / 3 + 1e-9  # two clusters for three groups
    assert before.images == 180 - 9

    outcome = refine_folder(folder, epochs=40, workspace=ws)
    assert outcome.state == "completed" and outcome.config.clusters == 3  # the head grew
    after = evaluate_folder(folder, workspace=ws, unlabelled_only=True)
    assert after.run_id == outcome.run.run_id and after.images == 171
    assert after.chosen.acc >= before.chosen.acc + 0.15, (before.chosen, after.chosen)

    runs = {info.run_id: info for info in list_runs(folder, ws)}
    assert runs[outcome.run.run_id].parent == before.run_id
    assert runs[outcome.run.run_id].kind == "refine"
    config = json.loads(outcome.run.config_path.read_text())
    mapping = config["class_to_clusters"]
    assert sorted(mapping) == ["disc", "hbar", "vbar"]
    assert sorted(c for group in mapping.values() for c in group) == [0, 1, 2]
    assert config["train"]["lambda_xent"] == 1.0 and config["train"]["lr_schedule"] == "cosine"
    with ImageLibrary.open([folder], ws) as library:
        names = ResultStore(library.catalog).names(outcome.run.run_id)
        assert Annotations(library.catalog).labels()  # labels stay
    # the parent was unnamed: each cluster is named after the labels that went into it
    assert names == {group[0]: name for name, group in mapping.items()}
    assert outcome.summary()["labelled_in_group"] == 1.0


def test_refine_without_labels_is_refused(tmp_path: Path) -> None:
    from crlc_engine.core.errors import InvalidSettingError

    folder = write_shapes_folder(tmp_path / "p", per_class=6, size=32)
    config = resolve_train_config(2, "cpu", {"epochs": 1, "device": "cpu"})
    train_folder(folder, config, workspace=tmp_path / "ws", workers=0)
    with pytest.raises(InvalidSettingError, match="no labels"):
        refine_folder(folder, epochs=1, workspace=tmp_path / "ws")


def test_semi_settings_follow_the_parent() -> None:
    from crlc_engine.pipeline.refine import semi_lambda_fc, semi_optimizer

    plain = resolve_train_config(3, "cpu", {"lr": 0.05})
    assert semi_optimizer(plain) == {
        "optimizer": "sgd",
        "lr": 0.05,
        "lr_schedule": "cosine",
        "lr_min": 0.001,
        "momentum": plain.momentum,
        "weight_decay": plain.weight_decay,
    }
    slow = semi_optimizer(resolve_train_config(3, "cpu", {"lr": 0.0005}))
    assert slow["lr_min"] == 0.0005  # never above the start rate
    frozen = resolve_train_config(3, "cpu").replace(
        stage="stage2", freeze_backbone=True, lr=5.0, weight_decay=0.0
    )
    adam = resolve_train_config(3, "cpu").replace(stage="stage2", optimizer="adam", lr=1e-4)
    for parent in (frozen, adam):
        semi = semi_optimizer(parent)
        assert (semi["optimizer"], semi["lr"], semi["weight_decay"]) == ("sgd", 0.1, 5e-4)
    assert semi_lambda_fc(plain) == 5.0
    bank = resolve_train_config(3, "cpu", {"framework": "memorybank"})
    assert semi_lambda_fc(bank) == pytest.approx(0.1)  # 0.01 / lr 0.1
