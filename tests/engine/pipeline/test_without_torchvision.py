"""torchvision only where a ResNet is built: the quick path runs without it.

The subprocess tests put a fake ``torchvision`` package first on ``PYTHONPATH`` whose import
raises what a torchvision built for another torch raises (``RuntimeError: operator
torchvision::nms does not exist``); spawned worker processes inherit it. The test process
itself keeps the real torchvision. The dialog test replaces the problem function instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QComboBox
from pytestqt.qtbot import QtBot

import app.views.group_dialog as group_dialog_module
import crlc_engine.pipeline.presets as presets
from app.views.group_dialog import GroupDialog
from crlc_engine.core.device import DeviceChoice
from crlc_engine.core.errors import DeviceUnavailableError, InvalidSettingError
from crlc_engine.pipeline.presets import (
    default_preset_name,
    resolve_train_config,
    torchvision_install_command,
    torchvision_message,
    torchvision_presets,
)

REPO = Path(__file__).resolve().parents[3]
BROKEN = "operator torchvision::nms does not exist"
#: What the presets that need torchvision are (the cpu preset trains the small CNN).
RESNET_PRESETS = ("balanced", "paper")


@pytest.fixture
def no_torchvision_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``import torchvision`` raises the broken-build RuntimeError."""
    fake = tmp_path / "fake_site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"raise RuntimeError({BROKEN!r})\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(fake.parent), str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def run_python(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def test_the_presets_that_need_torchvision_are_the_resnet_ones() -> None:
    assert torchvision_presets() == RESNET_PRESETS
    assert presets.needs_torchvision("resnet18") and presets.needs_torchvision("resnet50")
    assert not presets.needs_torchvision("small")
    assert not presets.needs_torchvision("efficientnet_lite0")


def test_the_install_command_matches_the_torch_build() -> None:
    cpu = "pip install torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu"
    assert torchvision_install_command("2.13.0+cpu") == cpu
    assert torchvision_install_command("2.14.1+cu130").endswith(
        "0.29.1 --index-url https://download.pytorch.org/whl/cu130"
    )
    assert torchvision_install_command("2.5.1") == "pip install torchvision==0.20.1"
    assert torchvision_install_command(None) == "pip install torchvision"
    message = torchvision_message(f"RuntimeError: {BROKEN}")
    assert message.startswith(
        "The balanced and paper presets and the ResNet networks need "
        "torchvision, which is not usable here (RuntimeError: "
    )
    assert "The quick and cpu presets work without it." in message


def test_engine_app_and_help_import_without_torchvision(no_torchvision_env: dict[str, str]) -> None:
    code = textwrap.dedent(
        """
        import sys
        import crlc_engine, crlc_engine.cli.main
        import crlc_engine.pipeline.jobs, crlc_engine.pipeline.feature_method
        import crlc_engine.models, crlc_engine.training.frozen_features, crlc_engine.results.export
        import crlc_engine.training.inference, crlc_engine.pipeline.estimate
        import crlc_engine.training.trainer
        import app.main, app.views.main_window, app.views.group_dialog, app.views.about_dialog
        assert "torchvision" not in sys.modules, "imported"
        from crlc_engine.pipeline.presets import torchvision_problem
        print(torchvision_problem())
        """
    )
    out = run_python(["-c", code], no_torchvision_env)
    assert out.returncode == 0, out.stderr
    message = out.stdout.strip()
    assert f"(RuntimeError: {BROKEN})" in message and "pip install torchvision==" in message

    help_text = run_python(["-m", "crlc_engine.cli.main", "--help"], no_torchvision_env)
    assert help_text.returncode == 0 and "train" in help_text.stdout, help_text.stderr


def test_a_quick_job_groups_and_exports_without_torchvision(
    no_torchvision_env: dict[str, str], tmp_path: Path
) -> None:
    """Scan, features (real EfficientNet-Lite0 weights when the extra is installed, else a
    tiny stand-in), heads, groups, export; a ResNet is refused with the plain message; the
    Group dialog greys the ResNet presets and falls back to quick on a GPU."""
    script = tmp_path / "quick_job.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from pathlib import Path

            import torch
            from torch import nn

            from crlc_engine.cli.main import main as crlc
            from crlc_engine.core.errors import InvalidSettingError
            from crlc_engine.training.frozen_features import FeatureExtractor, FeatureSpec
            from crlc_engine.models import build_backbone
            from crlc_engine.pipeline.presets import (
                default_preset_name, quick_preset_available, resolve_train_config,
            )
            from crlc_engine.pipeline.feature_method import FeatureHeadsMethod
            from crlc_engine.pipeline.jobs import train_folder
            from crlc_engine.library.synthetic import write_shapes_folder

            def tiny_extractor():
                module = nn.Sequential(
                    nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                )
                spec = FeatureSpec(
                    "tiny", "seed0", 64, (0.5,) * 3, (0.25,) * 3, 8, "float32"
                )
                return FeatureExtractor(module, spec, torch.device("cpu"), 8)

            def refused(action):
                try:
                    action()
                except InvalidSettingError as error:
                    return str(error)
                raise AssertionError("not refused")

            if __name__ == "__main__":
                tmp = Path({str(tmp_path)!r})
                photos = write_shapes_folder(tmp / "photos", per_class=10, size=32)
                ws = tmp / "ws"
                config = resolve_train_config(
                    4, "quick", {{"image_size": 64, "epochs": 3, "subheads": 2,
                                 "neighbors": 5, "device": "cpu"}}
                )
                real = quick_preset_available()
                method = FeatureHeadsMethod(
                    None if real else tiny_extractor(), {{"hidden": 32, "min_steps": 0}}
                )
                outcome = train_folder(photos, config, ws, workers=0, method=method)
                assert outcome.state == "completed" and outcome.images == 40, outcome
                status = crlc(["export", str(photos), str(tmp / "out"), "--workspace", str(ws)])
                assert status == 0, status
                exported = [p for p in (tmp / "out").rglob("*.png")]
                assert len(exported) == 40, len(exported)

                print(refused(lambda: build_backbone("resnet18", "cifar")))
                print(refused(lambda: resolve_train_config(4, "cpu", {{"backbone": "resnet50"}})))
                small = resolve_train_config(4, "cpu")  # the small CNN needs no torchvision
                assert build_backbone(small.backbone, "imagenet").feature_dim == 256
                assert default_preset_name("cuda", quick_available=True) == "quick"
                assert default_preset_name("cuda", quick_available=False) == "cpu"

                from PySide6.QtWidgets import QApplication
                from app.views.group_dialog import GroupDialog
                from crlc_engine.core.device import DeviceChoice

                qapp = QApplication([])
                gpu = lambda request: DeviceChoice(torch.device("cuda"), "Fake GPU")
                dialog = GroupDialog(40, device_probe=gpu, quick_available=True, speeds=None)
                assert dialog.preset_name() == "quick", dialog.preset_name()
                for name in ("balanced", "paper"):
                    assert dialog.preset_problem(name) is not None, name
                print("real weights" if real else "tiny extractor")
            """
        )
    )
    out = run_python([str(script)], no_torchvision_env, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] in ("real weights", "tiny extractor")
    network, preset = lines[:2]
    assert network.startswith("The ResNet networks need torchvision")
    assert preset.startswith("The balanced and paper presets and the ResNet networks")
    for refusal in (network, preset):
        assert f"(RuntimeError: {BROKEN})" in refusal


def test_a_resnet_preset_is_a_plain_cli_error_without_torchvision(
    no_torchvision_env: dict[str, str], tmp_path: Path
) -> None:
    """``crlc train --preset balanced``: one line naming what to install, exit status 1 (as
    any other setting error), no traceback, nothing scanned."""
    photos = tmp_path / "photos"
    photos.mkdir()
    out = run_python(
        [
            "-m",
            "crlc_engine.cli.main",
            "train",
            str(photos),
            "--clusters",
            "3",
            "--preset",
            "balanced",
            "--device",
            "cpu",
            "--workspace",
            str(tmp_path / "ws"),
        ],
        no_torchvision_env,
    )
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    [line] = [line for line in out.stderr.splitlines() if line.startswith("crlc: error:")]
    assert line.startswith(
        "crlc: error: The balanced and paper presets and the ResNet networks need torchvision"
    )
    assert "pip install torchvision==" in line and "quick and cpu presets work" in line


# ------------------------------------------------------------------------- the dialog
PROBLEM = torchvision_message(f"RuntimeError: {BROKEN}")


@pytest.fixture
def broken_torchvision(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the dialog and the presets believe torchvision is broken."""
    monkeypatch.setattr(group_dialog_module, "torchvision_problem", lambda: PROBLEM)
    monkeypatch.setattr(presets, "torchvision_problem", lambda: PROBLEM)
    return PROBLEM


def probe_for(kind: str) -> Callable[[str], DeviceChoice]:
    def probe(request: str) -> DeviceChoice:
        if request in ("auto", kind):
            return DeviceChoice(torch.device(kind), f"fake {kind}")
        if request == "cpu":
            return DeviceChoice(torch.device("cpu"), "CPU requested")
        raise DeviceUnavailableError(f"no {request} here")

    return probe


def item_enabled(combo: QComboBox, value: str) -> bool:
    from PySide6.QtCore import Qt

    model = combo.model()
    return bool(model.flags(model.index(combo.findData(value), 0)) & Qt.ItemFlag.ItemIsEnabled)


def tooltip(combo: QComboBox, value: str) -> str:
    from PySide6.QtCore import Qt

    return str(combo.itemData(combo.findData(value), Qt.ItemDataRole.ToolTipRole))


@pytest.mark.usefixtures("broken_torchvision")
@pytest.mark.parametrize(
    ("kind", "quick", "expected"),
    [
        ("cuda", True, "quick"),
        ("cuda", False, "cpu"),
        ("cpu", True, "quick"),
    ],
)
def test_the_dialog_greys_the_resnet_presets_and_networks(
    qtbot: QtBot, kind: str, quick: bool, expected: str
) -> None:
    dialog = GroupDialog(40, device_probe=probe_for(kind), quick_available=quick, speeds=None)
    qtbot.addWidget(dialog)
    for name in RESNET_PRESETS:
        assert not item_enabled(dialog.preset_combo, name)
        assert tooltip(dialog.preset_combo, name) == PROBLEM
    for name in presets.TORCHVISION_BACKBONES:
        assert not item_enabled(dialog.backbone_combo, name)
        assert tooltip(dialog.backbone_combo, name) == PROBLEM
    assert item_enabled(dialog.preset_combo, "cpu") and item_enabled(dialog.backbone_combo, "small")
    assert item_enabled(dialog.preset_combo, "quick") == quick
    assert dialog.preset_name() == expected  # on a GPU: not balanced
    assert dialog.ok_button.isEnabled()


@pytest.mark.usefixtures("broken_torchvision")
def test_a_saved_resnet_default_preset_is_not_used(qtbot: QtBot) -> None:
    dialog = GroupDialog(
        40,
        device_probe=probe_for("cuda"),
        quick_available=True,
        default_preset="balanced",
        speeds=None,
    )
    qtbot.addWidget(dialog)
    assert dialog.preset_name() == "quick"


def test_with_torchvision_nothing_is_greyed(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group_dialog_module, "torchvision_problem", lambda: None)
    dialog = GroupDialog(40, device_probe=probe_for("cuda"), quick_available=True, speeds=None)
    qtbot.addWidget(dialog)
    assert all(item_enabled(dialog.preset_combo, name) for name in presets.PRESETS)
    assert dialog.preset_name() == "balanced"


@pytest.mark.usefixtures("broken_torchvision")
def test_resolving_a_resnet_setting_gives_the_message() -> None:
    with pytest.raises(InvalidSettingError) as error:
        resolve_train_config(3, "balanced")
    assert str(error.value) == PROBLEM
    assert resolve_train_config(3, "cpu").backbone == "small"
    assert default_preset_name("cuda", quick_available=True) == "quick"


def test_a_bundle_says_to_use_another_preset_not_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # as in the PyInstaller bundle
    text = presets.torchvision_message("No module named 'torchvision'")
    assert "this CPU bundle leaves out" in text and "pip install torchvision" not in text
    monkeypatch.delattr(sys, "frozen")
    assert "pip install torchvision" in presets.torchvision_message("missing")
