"""The ``crlc`` command line: output contract, run folders, evaluate, and every named error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from crlc_engine.cli.main import main
from crlc_engine.core.config import TrainConfig
from crlc_engine.library import ImageLibrary
from crlc_engine.results.assignments import ResultStore
from tests.conftest import TINY_TRAIN_FLAGS as TINY
from tests.conftest import CapturedError


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main(args)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    payload = json.loads(lines[-1]) if lines else {}
    return code, payload, captured.err


@pytest.fixture(scope="module")
def trained(shapes_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workspace = tmp_path_factory.mktemp("ws")
    args = [
        "train",
        str(shapes_folder),
        "--clusters",
        "4",
        "--workspace",
        str(workspace),
        "--json",
        *TINY,
    ]
    out = subprocess.run(
        [sys.executable, "-m", "crlc_engine.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    return {"payload": payload, "workspace": workspace, "stderr": out.stderr, "stdout": out.stdout}


def test_train_json_contract(trained: dict[str, Any]) -> None:
    payload = trained["payload"]
    assert {"run_id", "workspace", "epochs", "samples_per_s", "clusters", "head"} <= set(payload)
    assert payload["epochs"] == 2 and payload["clusters"] == 4 and payload["state"] == "completed"
    assert 0 <= payload["head"] < 2 and payload["samples_per_s"] > 0
    assert len(trained["stdout"].strip().splitlines()) == 1  # only the JSON object on stdout
    assert "epoch" in trained["stderr"]  # progress goes to stderr


def test_run_folder_layout(trained: dict[str, Any], shapes_folder: Path) -> None:
    run = Path(trained["payload"]["run_dir"])
    assert run.parent.name == "runs" and run.name == trained["payload"]["run_id"]
    assert run.is_relative_to(Path(trained["workspace"]))
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["clusters"] == 4 and config["train"]["backbone"] == "small"
    assert config["roots"] == [str(shapes_folder.resolve())]
    assert (run / "image_ids.npy").is_file()
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    assert (run / "checkpoint.pt").stat().st_size > 0
    with ImageLibrary.open([shapes_folder], trained["workspace"]) as library:
        stored = ResultStore(library.catalog).load(run.name)
        paths = {r.id: r.path for r in library.images()}
    assert len(stored.image_ids) == 48 and stored.probabilities.shape == (48, 4)
    assert stored.features.shape == (48, 128)
    assert ((stored.clusters >= 0) & (stored.clusters < 4)).all()
    assert np.allclose(stored.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(stored.confidences, stored.probabilities.max(axis=1))
    assert all(paths[i].is_file() for i in stored.image_ids.tolist())


def test_evaluate_newest_and_given_run(
    trained: dict[str, Any], shapes_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(trained["workspace"])
    code, payload, err = run_cli(
        ["evaluate", str(shapes_folder), "--workspace", ws, "--json"], capsys
    )
    assert code == 0
    for key in ("chosen", "best"):
        assert set(payload[key]) >= {"acc", "nmi", "ari"}
        assert 0.25 <= payload[key]["acc"] <= 1.0  # at least chance for 4 balanced classes
    assert payload["best"]["acc"] >= payload["chosen"]["acc"]
    assert payload["images"] == 48 and payload["classes"] == 4
    assert "ACC" in err
    run_id = trained["payload"]["run_id"]
    code, again, _ = run_cli(
        ["evaluate", str(shapes_folder), "--workspace", ws, "--run", run_id, "--json"], capsys
    )
    assert code == 0 and again["run_id"] == run_id


def test_help_explains_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--clusters",
        "--preset",
        "--minutes",
        "--lambda-ent",
        "--critic",
        "--device",
        "--workspace",
        "--json",
        "--resume",
        "--framework",
        "--bank-negatives",
        "--bank-momentum",
        "--two-stage",
        "--stage2-from",
        "--stage1-epochs",
        "--neighbors",
        "--freeze-backbone",
    ):
        assert flag in text


def expect_error(
    args: list[str], capsys: pytest.CaptureFixture[str], kind: str, fragment: str
) -> None:
    code, payload, err = run_cli([*args, "--json"], capsys)
    assert code == 1
    assert payload["error"]["type"] == kind
    assert fragment in payload["error"]["message"]
    error_lines = [line for line in err.splitlines() if "crlc: error" in line]
    assert len(error_lines) == 1 and err.strip().splitlines()[-1].startswith("crlc: error:")
    assert "Traceback" not in err


def test_error_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    expect_error(
        ["train", str(tmp_path / "empty"), "-k", "3", "--workspace", str(tmp_path / "ws"), *TINY],
        capsys,
        "no_images",
        "no image files",
    )


def test_error_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        ["train", str(tmp_path / "nope"), "-k", "3", "--workspace", str(tmp_path / "ws"), *TINY],
        capsys,
        "folder_not_found",
        "not found",
    )


@pytest.mark.parametrize(
    ("k", "kind", "fragment"),
    [
        ("1", "usage", "at least 2"),
        ("49", "invalid_setting", "only 48 usable images"),
    ],
)
def test_error_cluster_count(
    k: str,
    kind: str,
    fragment: str,
    shapes_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expect_error(
        ["train", str(shapes_folder), "-k", k, "--workspace", str(tmp_path), *TINY],
        capsys,
        kind,
        fragment,
    )


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [
        ("--backbone", "vgg16", "unknown backbone"),
        ("--preset", "turbo", "unknown preset"),
        ("--critic", "cosine", "unknown critic"),
        ("--framework", "moco", "unknown framework"),
    ],
)
def test_error_unknown_names(
    flag: str,
    value: str,
    fragment: str,
    shapes_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expect_error(
        [
            "train",
            str(shapes_folder),
            "-k",
            "4",
            "--workspace",
            str(tmp_path),
            "--device",
            "cpu",
            flag,
            value,
        ],
        capsys,
        "invalid_setting",
        fragment,
    )


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--two-stage", "--stage2-from", "x"], "cannot be combined"),
        (["--resume", "--two-stage"], "saved settings"),
        (["--stage1-epochs", "3"], "only with --two-stage"),
        (["--stage2-from", "x", "--preset", "cpu"], "--preset does not apply"),
    ],
)
def test_error_two_stage_flag_combinations(
    flags: list[str], fragment: str, shapes_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect_error(["train", str(shapes_folder), "-k", "4", *flags], capsys, "usage", fragment)


def test_error_stage2_from_unknown_run(
    shapes_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect_error(
        ["train", str(shapes_folder), "--stage2-from", "nope", "--workspace", str(tmp_path)],
        capsys,
        "run_not_found",
        "no run 'nope'",
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present, so no error to show")
def test_error_cuda_requested_but_absent(
    shapes_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect_error(
        ["train", str(shapes_folder), "-k", "4", "--workspace", str(tmp_path), "--device", "cuda"],
        capsys,
        "device_unavailable",
        "no CUDA GPU",
    )


def test_error_evaluate_without_run(
    shapes_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect_error(
        ["evaluate", str(shapes_folder), "--workspace", str(tmp_path)],
        capsys,
        "library_not_found",
        "crlc train",
    )


def test_workspace_from_environment(
    shapes_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CRLC_WORKSPACE", str(tmp_path / "env-ws"))
    code, payload, _ = run_cli(
        [
            "train",
            str(shapes_folder),
            "-k",
            "2",
            "--json",
            *TINY[:-6],
            "--epochs",
            "1",
            "--subheads",
            "1",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 0
    assert Path(payload["workspace"]).is_relative_to(tmp_path / "env-ws")


def _train_settings(
    argv: list[str], captured: list[CapturedError], capsys: pytest.CaptureFixture[str]
) -> TrainConfig:
    assert main([*argv, "--json"]) == 1  # the stand-in job stops after recording
    capsys.readouterr()
    config = captured[-1].config
    assert config is not None
    return config


def test_cpu_default_preset_is_quick_unless_pixel_training_is_asked_for(
    tmp_path: Path,
    captured_settings: list[CapturedError],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import crlc_engine.pipeline.presets as presets

    base = ["train", str(tmp_path), "-k", "3", "--device", "cpu"]
    monkeypatch.setattr(presets, "PRETRAINED_EXTRA_MODULE", "no_such_module_crlc_test")
    assert _train_settings(base, captured_settings, capsys).preset == "cpu"  # no extra
    monkeypatch.setattr(presets, "PRETRAINED_EXTRA_MODULE", "json")  # "installed"
    assert _train_settings(base, captured_settings, capsys).preset == "quick"
    for compatible in (["--backbone", "efficientnet_lite0"], ["--framework", "simclr"]):
        config = _train_settings([*base, *compatible], captured_settings, capsys)
        assert config.preset == "quick", compatible
    assert _train_settings([*base, "--epochs", "5"], captured_settings, capsys).preset == "quick"
    for extra in (
        ["--backbone", "resnet18"],
        ["--stem", "cifar"],
        ["--framework", "memorybank"],
        ["--two-stage"],
        ["--blur"],
        ["--lr", "0.05"],
    ):
        config = _train_settings([*base, *extra], captured_settings, capsys)
        assert config.preset == "cpu", extra
    bank = _train_settings([*base, "--framework", "memorybank"], captured_settings, capsys)
    assert bank.lambda_fc == pytest.approx(0.1)  # lowered for the bank form (lr 0.1)


def test_quick_refuses_pixel_settings_and_ablate_refuses_quick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect_error(
        ["train", str(tmp_path), "-k", "3", "--preset", "quick", "--backbone", "resnet18"],
        capsys,
        "invalid_setting",
        "cpu (CPU) or balanced (GPU) preset",
    )
    expect_error(
        ["ablate", str(tmp_path), "-k", "3", "--preset", "quick", "--device", "cpu"],
        capsys,
        "usage",
        "quick preset trains heads on fixed pretrained features",
    )
