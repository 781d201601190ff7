"""Groups you can trust: group, name (merges), label, move, refine, export, retrain.

Two runs of the same user flow on generated photos with 5 known groups (see
:mod:`tests.engine.results.groups_scenario`): one through the public jobs, one through the CLI.
Names
must follow the pictures through the refine and the new training.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crlc_engine.cli.main import main
from crlc_engine.library import ImageLibrary
from crlc_engine.pipeline.jobs import refine_folder, train_folder
from crlc_engine.pipeline.presets import resolve_train_config
from crlc_engine.results.export import export_images
from crlc_engine.results.export_sources import export_items
from tests.engine.library_helpers import run_cli
from tests.engine.results import groups_scenario as scenario

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("groups") / "photos"
    return folder, scenario.write_photos(folder)


@pytest.fixture
def photos(generated: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder, truth = generated
    copy = tmp_path / "photos"
    shutil.copytree(folder, copy)
    return copy, truth


def check_retrained(library: ImageLibrary, run_id: str, truth: dict[str, str]) -> None:
    """At least 4 of the 5 clusters carry their majority group's name, none another one."""
    names = scenario.cluster_names(library, run_id)
    majority = scenario.majorities(library, run_id, truth)
    assert len(majority) == 5
    assert sum(names.get(c) == g for c, g in majority.items()) >= 4, (names, majority)
    assert not scenario.wrongly_named(library, run_id, truth)


def test_names_follow_the_pictures_through_the_jobs(
    photos: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, truth = photos
    scenario.use_colour_layout_backbone(monkeypatch)
    ws = tmp_path / "ws"
    config = resolve_train_config(
        10, "quick", {"image_size": scenario.SIDE, "device": "cpu", "checkpoint_every": 1000}
    )
    first = train_folder(folder, config, ws, workers=0)
    with ImageLibrary.open([folder], ws) as library:
        scenario.corrections(library, first.run.run_id, truth)
        items = export_items(library, first.run.run_id)
        export_images(items, tmp_path / "before", roots=library.roots)
    before = scenario.exported_accuracy(tmp_path / "before", truth)

    refined = refine_folder(folder, first.run.run_id, workspace=ws)
    assert refined.state == "completed"
    with ImageLibrary.open([folder], ws) as library:
        items = export_items(library, refined.run.run_id)
        export_images(items, tmp_path / "after", roots=library.roots)
        after = scenario.exported_accuracy(tmp_path / "after", truth)
        assert after >= before and after >= 0.95, (before, after)
        assert not scenario.wrongly_named(library, refined.run.run_id, truth)
        assert not scenario.wrongly_named(library, first.run.run_id, truth)
    report = refined.summary()
    assert report["labelled_in_group"] == 1.0 and report["unlabelled_in_group"] >= 0.95

    second = train_folder(folder, config.replace(clusters=5), ws, workers=0)
    with ImageLibrary.open([folder], ws) as library:
        check_retrained(library, second.run.run_id, truth)


def test_names_follow_the_pictures_through_the_cli(
    photos: tuple[Path, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, truth = photos
    scenario.use_colour_layout_backbone(monkeypatch)
    ws = str(tmp_path / "ws")
    common = ["--workspace", ws]
    train = [str(folder), "--preset", "quick", "--size", str(scenario.SIDE), "--device", "cpu"]
    train += ["--checkpoint-every", "1000"]
    code, first, err = run_cli(["train", *train, "-k", "10", *common], capsys)
    assert code == 0, err
    with ImageLibrary.open([folder], ws) as library:  # the user's clicks, as CLI commands
        plan = scenario.plan_corrections(library, first["run_id"], truth)
        path = {r.id: str(r.path) for r in library.images(None)}
    for cluster, group in sorted(plan.names.items()):
        code, _, err = run_cli(["name", str(folder), str(cluster), group, *common], capsys)
        assert code == 0, err
    for group, images in plan.labels.items():
        pictures = [path[i] for i in images]
        code, _, err = run_cli(["label", str(folder), *pictures, "--as", group, *common], capsys)
        assert code == 0, err
    for image, cluster in plan.moves:
        code, _, err = run_cli(
            ["move", str(folder), path[image], "--to", str(cluster), *common], capsys
        )
        assert code == 0, err
    code, _, err = run_cli(["export", str(folder), str(tmp_path / "before"), *common], capsys)
    assert code == 0, err
    code, refined, err = run_cli(["refine", str(folder), *common], capsys)
    assert code == 0, err
    code, _, err = run_cli(["export", str(folder), str(tmp_path / "after"), *common], capsys)
    assert code == 0, err
    accuracy = (
        scenario.exported_accuracy(tmp_path / "before", truth),
        scenario.exported_accuracy(tmp_path / "after", truth),
    )
    assert accuracy[1] >= accuracy[0] and accuracy[1] >= 0.95, accuracy
    assert refined["labelled_in_group"] == 1.0
    code, shown, err = run_cli(["clusters", str(folder), *common], capsys)
    assert code == 0 and {g["name"] for g in shown["groups"]} == set(scenario.GROUPS)
    code, second, err = run_cli(["train", *train, "-k", "5", *common], capsys)
    assert code == 0, err
    with ImageLibrary.open([folder], ws) as library:
        check_retrained(library, second["run_id"], truth)
    assert main(["runs", str(folder), *common]) == 0
