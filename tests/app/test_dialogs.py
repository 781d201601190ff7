"""The "Group images" and "Export groups" dialogs, driven offscreen with fake devices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QDialog, QLabel
from pytestqt.qtbot import QtBot

from app.views.export_dialog import ExportDialog, ExportOptions
from app.views.group_dialog import GroupDialog
from crlc_engine.core.device import DeviceChoice
from crlc_engine.core.errors import DeviceUnavailableError
from crlc_engine.pipeline.estimate import estimate_training, images_per_second
from crlc_engine.pipeline.presets import PRESETS, Preset, resolve_train_config
from crlc_engine.results.export import UNCERTAIN_FOLDER, ExportItem

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NO_CUDA = "CUDA was requested but no CUDA GPU is available to PyTorch on this machine"


def fake_probe(kind: str) -> Callable[[str], DeviceChoice]:
    """A device probe for a machine with a CPU only (``cpu``) or a CUDA GPU (``cuda``)."""

    def probe(request: str) -> DeviceChoice:
        if request == "auto":
            if kind == "cuda":
                return DeviceChoice(torch.device("cuda"), "CUDA GPU found: Fake GPU 9000")
            return DeviceChoice(torch.device("cpu"), "no CUDA or Apple GPU found, using the CPU")
        if request == "cpu":
            return DeviceChoice(torch.device("cpu"), "CPU requested")
        if request == "cuda" and kind == "cuda":
            return DeviceChoice(torch.device("cuda"), "CUDA requested: Fake GPU 9000")
        if request == "cuda":
            raise DeviceUnavailableError(NO_CUDA)
        raise DeviceUnavailableError("Apple MPS was requested but is not available")

    return probe


def group_dialog(
    qtbot: QtBot,
    images: int = 300,
    kind: str = "cpu",
    quick_available: bool = False,
    **options: Any,
) -> GroupDialog:
    """A dialog on a fake device; without the ``pretrained`` extra unless told otherwise; no
    speed measurement (the rough estimate stays)."""
    dialog = GroupDialog(
        images,
        device_probe=fake_probe(kind),
        quick_available=quick_available,
        speeds=None,
        **options,
    )
    qtbot.addWidget(dialog)
    return dialog


def select(combo_owner: GroupDialog | ExportDialog, combo_name: str, value: str) -> None:
    combo = getattr(combo_owner, combo_name)
    row = combo.findData(value)
    assert row >= 0, value
    combo.setCurrentIndex(row)


# --------------------------------------------------------------------------- GroupDialog
def test_presets_come_from_the_registry(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot)
    combo = dialog.preset_combo
    names = [combo.itemData(row) for row in range(combo.count())]
    assert names == list(PRESETS)
    for row, name in enumerate(names):
        assert PRESETS[name].summary in combo.itemText(row)


@pytest.mark.parametrize(("kind", "preset", "size"), [("cpu", "cpu", 32), ("cuda", "balanced", 64)])
def test_defaults_follow_the_detected_device(
    qtbot: QtBot, kind: str, preset: str, size: int
) -> None:
    dialog = group_dialog(qtbot, kind=kind)
    assert dialog.preset_name() == preset
    assert dialog.size_spin.value() == size
    assert dialog.device_request() == "auto"
    assert dialog.device_kind() == kind
    reason = "CUDA GPU found: Fake GPU 9000" if kind == "cuda" else "no CUDA or Apple GPU"
    assert reason in dialog.device_label.text()
    assert dialog.overrides() == {}
    assert dialog.config() == resolve_train_config(10, preset)
    assert dialog.ok_button.isEnabled()


def test_the_users_defaults_from_the_settings(qtbot: QtBot) -> None:
    dialog = GroupDialog(
        300,
        device_probe=fake_probe("cpu"),
        default_clusters=4,
        default_preset="balanced",
        default_device="cuda",  # not available here: ignored, automatic stays
    )
    qtbot.addWidget(dialog)
    assert dialog.clusters_spin.value() == 4
    assert dialog.preset_name() == "balanced"
    assert dialog.device_request() == "auto"
    select(dialog, "device_combo", "cpu")
    assert dialog.preset_name() == "balanced"  # a chosen default does not follow the device
    few = GroupDialog(
        3,
        device_probe=fake_probe("cpu"),
        default_clusters=8,
        default_preset="?",
        quick_available=True,
    )
    qtbot.addWidget(few)
    assert few.clusters_spin.value() == 3  # capped at the number of photos
    assert few.preset_name() == "quick"  # unknown preset: the device's default


def test_quick_is_the_cpu_default_when_its_weights_are_installed(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot, kind="cpu", quick_available=True)
    assert dialog.preset_name() == "quick"
    assert dialog.overrides() == {}
    assert dialog.config() == resolve_train_config(10, "quick")
    assert dialog.ok_button.isEnabled()
    select(dialog, "device_combo", "cuda")  # a GPU after all: the GPU default follows
    assert dialog.preset_name() == "balanced"
    select(dialog, "device_combo", "cpu")
    assert dialog.preset_name() == "quick"


def test_pixel_only_settings_move_the_default_to_cpu_as_the_cli_does(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot, kind="cpu", quick_available=True)
    assert dialog.preset_name() == "quick"
    select(dialog, "stage_combo", "two_stage")  # quick has no stages: the cpu preset
    assert dialog.preset_name() == "cpu" and dialog.ok_button.isEnabled()
    assert dialog.size_spin.value() == 32  # the cpu preset's values for what was not edited
    assert dialog.config().stage == "two_stage"
    select(dialog, "device_combo", "cuda")
    assert dialog.preset_name() == "balanced"
    select(dialog, "device_combo", "cpu")  # back on the CPU: still cpu, not quick
    assert dialog.preset_name() == "cpu"


def test_quick_chosen_by_hand_refuses_pixel_only_settings_before_ok(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot, kind="cpu", quick_available=True)
    select(dialog, "preset_combo", "cpu")
    select(dialog, "preset_combo", "quick")  # the user's own choice: it stays
    select(dialog, "backbone_combo", "resnet18")
    assert dialog.preset_name() == "quick"
    assert not dialog.ok_button.isEnabled()
    assert "quick preset" in dialog.error_label.text()
    assert "cpu (CPU) or balanced (GPU) preset" in dialog.error_label.text()
    select(dialog, "preset_combo", "cpu")
    assert dialog.ok_button.isEnabled()
    assert dialog.config().backbone == "resnet18"


def test_quick_cannot_be_chosen_without_its_weights(qtbot: QtBot) -> None:
    dialog = GroupDialog(
        300, device_probe=fake_probe("cpu"), default_preset="quick", quick_available=False
    )
    qtbot.addWidget(dialog)
    assert dialog.preset_name() == "cpu"  # the user's default needs weights that are missing
    model = dialog.preset_combo.model()
    assert isinstance(model, QStandardItemModel)
    item = model.item(dialog.preset_combo.findData("quick"))
    assert not item.isEnabled()
    assert "pip install" in item.toolTip()
    other = model.item(dialog.preset_combo.findData("cpu"))
    assert other.isEnabled()


def test_unavailable_cuda_is_disabled_with_the_reason(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot, kind="cpu")
    row = dialog.device_combo.findData("cuda")
    assert not dialog.is_device_available("cuda")
    assert not dialog.is_device_available("mps")
    assert dialog.is_device_available("cpu")
    assert "not available" in dialog.device_combo.itemText(row)
    assert NO_CUDA in str(dialog.device_combo.itemData(row, 3))  # 3: Qt.ToolTipRole
    assert dialog.device_unavailable_reason("cuda") == NO_CUDA

    gpu = group_dialog(qtbot, kind="cuda")
    assert gpu.is_device_available("cuda")
    assert gpu.device_unavailable_reason("cuda") is None


def test_config_passes_only_the_changed_settings(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot, kind="cpu")
    dialog.clusters_spin.setValue(5)
    dialog.lambda_ent_spin.setValue(1.0)
    assert dialog.overrides() == {"lambda_ent": 1.0}
    assert dialog.config() == resolve_train_config(5, "cpu", {"lambda_ent": 1.0})

    dialog.lambda_ent_spin.setValue(2.0)  # back to the preset's value: no override
    select(dialog, "device_combo", "cpu")
    select(dialog, "backbone_combo", "resnet18")
    select(dialog, "critic_combo", "neg_js")
    dialog.size_spin.setValue(48)
    expected = {"device": "cpu", "backbone": "resnet18", "critic": "neg_js", "image_size": 48}
    assert dialog.overrides() == expected
    assert dialog.config() == resolve_train_config(5, "cpu", expected)


def test_epochs_or_a_time_budget(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot, kind="cpu")
    assert dialog.epochs_spin.isEnabled()
    assert not dialog.minutes_spin.isEnabled()
    dialog.epochs_spin.setValue(40)
    assert dialog.overrides() == {"epochs": 40}
    assert dialog.config().epochs == 40

    dialog.minutes_radio.setChecked(True)
    dialog.minutes_spin.setValue(15.0)
    assert dialog.minutes_spin.isEnabled()
    assert not dialog.epochs_spin.isEnabled()
    assert dialog.overrides() == {"minutes": 15.0}
    config = dialog.config()
    assert config == resolve_train_config(10, "cpu", {"minutes": 15.0})
    assert config.epochs is None and config.minutes == 15.0
    assert "Time budget 15 minutes" in dialog.estimate_label.text()


def test_switching_presets_keeps_what_the_user_changed(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot, kind="cpu")
    dialog.lambda_ent_spin.setValue(0.5)
    select(dialog, "preset_combo", "paper")
    assert dialog.lambda_ent_spin.value() == 0.5  # edited: kept
    assert dialog.backbone_combo.currentData() == "resnet34"  # not edited: the preset's
    assert dialog.epochs_spin.value() == 2000
    assert dialog.overrides() == {"lambda_ent": 0.5}
    assert dialog.config() == resolve_train_config(10, "paper", {"lambda_ent": 0.5})


def test_estimate_follows_images_epochs_and_backbone(qtbot: QtBot) -> None:
    small = group_dialog(qtbot, images=300)
    text = small.estimate_label.text()
    # 300 photos x 100 epochs at ~1,300 photos/s (small CNN, stride-2 stem) on 2 cores
    assert "23 seconds" in text and "1,300 photos/s" in text
    assert "922 kB pixel cache" in text  # 300 x 32 x 32 x 3 bytes

    large = group_dialog(qtbot, images=30000)
    assert large.estimate_label.text() != text
    assert "38 minutes" in large.estimate_label.text()

    small.epochs_spin.setValue(300)
    after_epochs = small.estimate_label.text()
    assert after_epochs != text and "69 seconds" in after_epochs

    select(small, "backbone_combo", "resnet18")
    assert small.estimate_label.text() not in (text, after_epochs)
    assert "315 photos/s" in small.estimate_label.text()  # cpu preset: ImageNet stem


def test_gpu_estimate_is_in_minutes(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot, images=10000, kind="cuda", cached_sizes=(32, 64))
    # balanced: ResNet-18 at 64 px (already cached), 300 epochs at 18,500 x (32/64)^2 photos/s
    assert "11 minutes" in dialog.estimate_label.text()
    assert "4,625 photos/s on the GPU" in dialog.estimate_label.text()
    config = resolve_train_config(10, "balanced")
    estimate = estimate_training(config, 10000, "cuda")
    assert estimate.cache_bytes == 10000 * 64 * 64 * 3
    assert estimate.checkpoint_bytes > 50_000_000
    assert images_per_second("resnet18", "cifar", 32, "cuda") == pytest.approx(18500)


def test_invalid_settings_disable_ok_with_a_message(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Preset("broken", "A broken preset", "for the test", {"tau": 0.0})
    monkeypatch.setitem(PRESETS, "broken", broken)
    dialog = group_dialog(qtbot)
    select(dialog, "preset_combo", "broken")
    assert not dialog.ok_button.isEnabled()
    assert not dialog.error_label.isHidden()
    assert "tau must be > 0" in dialog.error_label.text()
    dialog.accept()
    assert dialog.result() != QDialog.DialogCode.Accepted

    select(dialog, "preset_combo", "cpu")
    assert dialog.ok_button.isEnabled()
    assert dialog.error_label.isHidden()


def test_too_few_images(qtbot: QtBot) -> None:
    few = group_dialog(qtbot, images=4)
    assert few.clusters_spin.maximum() == 4 and few.clusters_spin.value() == 4
    one = group_dialog(qtbot, images=1)
    assert one.clusters_spin.minimum() == 2
    assert not one.ok_button.isEnabled()
    assert "at least 2 photos" in one.error_label.text()


def test_advanced_section_collapses_and_labels_have_buddies(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot)
    dialog.show()
    assert not dialog.advanced_box.isVisible()
    dialog.advanced_button.setChecked(True)
    assert dialog.advanced_box.isVisible()
    for label in dialog.findChildren(QLabel):
        if "&" in label.text():
            assert label.buddy() is not None, label.text()


# -------------------------------------------------------------------------- ExportDialog
def make_library(root: Path) -> list[ExportItem]:
    """12 real files in two sub-folders: 6 Beach, 4 Dogs, 2 Food, confidences 0.1..0.9."""
    clusters = ["Beach"] * 6 + ["Dogs"] * 4 + ["Food / Dinner"] * 2
    items = []
    for number, cluster in enumerate(clusters):
        folder = root / ("trip" if number % 2 else "home")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"IMG_{number:02d}.jpg"
        path.write_bytes(b"jpeg")
        confidence = 0.9 if number < 8 else 0.1
        items.append(ExportItem(path, cluster, confidence, f"{folder.name}/{path.name}"))
    return items


def export_dialog(
    qtbot: QtBot, tmp_path: Path, confirm: Callable[[int], bool] | None = None
) -> tuple[ExportDialog, list[ExportItem]]:
    root = tmp_path / "photos"
    items = make_library(root)
    dialog = ExportDialog(items, [root], confirm_move=confirm)
    qtbot.addWidget(dialog)
    return dialog, items


def test_export_preview_counts_per_folder(qtbot: QtBot, tmp_path: Path) -> None:
    dialog, items = export_dialog(qtbot, tmp_path)
    assert dialog.mode() == "copy"
    assert not dialog.ok_button.isEnabled()  # no folder yet
    dest = tmp_path / "sorted"
    dialog.dest_edit.setText(str(dest))
    qtbot.waitUntil(lambda: dialog.preview is not None, timeout=3000)  # debounced
    preview = dialog.preview
    assert preview is not None
    assert preview.folders == {"Beach": 6, "Dogs": 4, "Food _ Dinner": 2}
    assert preview.files == preview.to_write == 12
    assert preview.first_files["Beach"] == [
        "Beach/IMG_00.jpg",
        "Beach/IMG_01.jpg",
        "Beach/IMG_02.jpg",
    ]
    assert dialog.ok_button.isEnabled()
    tree = dialog.preview_tree
    tops = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    rows = {top.text(0): top.text(1) for top in tops if top is not None}
    assert rows == {"Beach/": "6", "Dogs/": "4", "Food _ Dinner/": "2"}
    assert "12 photos will be copied into 3 folders" in dialog.summary_label.text()

    dialog.confidence_spin.setValue(0.5)  # the two Food photos and two Dogs become uncertain
    dialog.keep_check.setChecked(True)
    (items[0].source).unlink()
    preview = dialog.refresh_preview()
    assert preview is not None
    assert preview.folders == {"Beach": 5, "Dogs": 2, UNCERTAIN_FOLDER: 4}
    assert preview.left_out == {"missing": 1}
    assert preview.first_files["Beach"][0] == "Beach/home/IMG_02.jpg"
    assert "Left out: 1 missing" in dialog.summary_label.text()
    assert not dest.exists()  # a preview writes nothing

    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.options() == ExportOptions(dest, "copy", 0.5, True)


def test_export_preview_in_the_background(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ExportDialog, "BACKGROUND_PREVIEW_ITEMS", 1)
    dialog, _ = export_dialog(qtbot, tmp_path)
    dialog.dest_edit.setText(str(tmp_path / "out"))
    select(dialog, "mode_combo", "csv")
    qtbot.waitUntil(lambda: dialog.preview is not None, timeout=5000)
    assert dialog.preview is not None and dialog.preview.options.mode == "csv"
    assert sum(dialog.preview.folders.values()) == 12
    assert "listed in the CSV file" in dialog.summary_label.text()
    dialog.reject()


def test_move_needs_confirmation(qtbot: QtBot, tmp_path: Path) -> None:
    asked: list[int] = []
    answer = [False]

    def confirm(count: int) -> bool:
        asked.append(count)
        return answer[0]

    dialog, items = export_dialog(qtbot, tmp_path, confirm)
    dialog.dest_edit.setText(str(tmp_path / "sorted"))
    select(dialog, "mode_combo", "move")
    dialog.show()
    qtbot.waitUntil(dialog.ok_button.isEnabled, timeout=3000)
    dialog.ok_button.click()
    assert asked == [12]
    assert dialog.isVisible()
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert all(item.source.exists() for item in items)  # the dialog never moves anything

    answer[0] = True
    dialog.ok_button.click()
    assert asked == [12, 12]
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.options().mode == "move"

    copy, _ = export_dialog(qtbot, tmp_path / "other", confirm)
    copy.dest_edit.setText(str(tmp_path / "other-out"))
    copy.accept()
    assert copy.result() == QDialog.DialogCode.Accepted
    assert asked == [12, 12]  # only a move asks


def test_destination_inside_a_root_is_refused(qtbot: QtBot, tmp_path: Path) -> None:
    dialog, _ = export_dialog(qtbot, tmp_path)
    dialog.dest_edit.setText(str(tmp_path / "photos" / "sorted"))
    assert dialog.refresh_preview() is None
    assert not dialog.ok_button.isEnabled()
    assert not dialog.error_label.isHidden()
    assert "inside the photo folder" in dialog.error_label.text()
    dialog.accept()
    assert dialog.result() != QDialog.DialogCode.Accepted

    dialog.dest_edit.setText("relative/folder")
    assert not dialog.ok_button.isEnabled()
    assert "full path" in dialog.summary_label.text()

    dialog.dest_edit.setText(str(tmp_path / "elsewhere"))
    assert dialog.refresh_preview() is not None
    assert dialog.ok_button.isEnabled()
    assert dialog.error_label.isHidden()


# ------------------------------------------------------------------------------- pictures
def test_dialogs_render_to_png(qtbot: QtBot, tmp_path: Path) -> None:
    group = group_dialog(qtbot, kind="cuda")
    group.advanced_button.setChecked(True)
    export, _ = export_dialog(qtbot, tmp_path)
    export.dest_edit.setText(str(tmp_path / "sorted"))
    export.refresh_preview()
    for name, dialog in (("group", group), ("export", export)):
        dialog.show()
        out = tmp_path / f"dialog_{name}.png"
        assert dialog.grab().save(str(out))
        assert out.read_bytes()[:8] == PNG_MAGIC


# ------------------------------------------------------------- ExportDialog: defaults, errors
def test_export_starts_from_the_default_mode_and_threshold(qtbot: QtBot, tmp_path: Path) -> None:
    items = make_library(tmp_path / "photos")
    dialog = ExportDialog(items, [tmp_path / "photos"], mode="hardlink", min_confidence=0.35)
    qtbot.addWidget(dialog)
    assert dialog.mode() == "hardlink" and dialog.confidence_spin.value() == 0.35
    assert "same drive" in dialog.mode_help.text()
    odd = ExportDialog(items, [tmp_path / "photos"], mode="teleport", min_confidence=7.0)
    qtbot.addWidget(odd)
    assert odd.mode() == "copy" and odd.confidence_spin.value() == 1.0


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            PermissionError(13, "Permission denied", "/srv/sorted"),
            "No permission to read or write (/srv/sorted). Choose a folder you may write to",
        ),
        (
            OSError(36, "File name too long", "/srv/" + "x" * 300),
            "The export folder cannot be used: file name too long (/srv/xxx",
        ),
    ],
)
@pytest.mark.parametrize("background", [False, True])
def test_a_folder_problem_is_explained_in_plain_words(
    qtbot: QtBot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: OSError,
    expected: str,
    background: bool,
) -> None:
    import app.views.export_preview as module

    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(module, "plan_export", refuse)
    if background:
        monkeypatch.setattr(ExportDialog, "BACKGROUND_PREVIEW_ITEMS", 1)
    dialog, _ = export_dialog(qtbot, tmp_path)
    dialog.dest_edit.setText(str(tmp_path / "sorted"))
    if background:
        qtbot.waitUntil(lambda: dialog.error is not None, timeout=5000)
    else:
        dialog.refresh_preview()
    text = dialog.error_label.text()
    assert text.startswith(expected), text
    assert "Errno" not in text and not dialog.ok_button.isEnabled()
    assert dialog.error == text
    dialog.reject()


def test_variant_options_reach_the_config(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot)
    dialog.advanced_button.setChecked(True)
    assert not dialog.freeze_check.isEnabled()  # end-to-end: nothing to freeze
    select(dialog, "framework_combo", "memorybank")
    select(dialog, "stage_combo", "two_stage")
    assert dialog.freeze_check.isEnabled()
    dialog.freeze_check.setChecked(True)
    config = dialog.config()
    assert (config.framework, config.stage, config.freeze_backbone) == (
        "memorybank",
        "two_stage",
        True,
    )
    assert dialog.overrides() == {
        "framework": "memorybank",
        "stage": "two_stage",
        "freeze_backbone": True,
    }
    select(dialog, "stage_combo", "end_to_end")
    assert not dialog.config().freeze_backbone  # only meaningful in two-stage


def test_stage_optimisers_choice_only_for_two_stage(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot)
    dialog.advanced_button.setChecked(True)
    assert not dialog.stage_optim_combo.isEnabled()
    select(dialog, "stage_combo", "two_stage")
    assert dialog.stage_optim_combo.isEnabled()
    assert dialog.config().stage_optim == "run"  # the cpu preset's own SGD by default
    select(dialog, "stage_optim_combo", "paper")
    assert dialog.overrides()["stage_optim"] == "paper"
    assert dialog.config().stage_optim == "paper"
    select(dialog, "preset_combo", "balanced")  # GPU presets: the paper's, unless edited
    assert dialog.config().stage_optim == "paper"
    select(dialog, "stage_combo", "end_to_end")
    assert not dialog.stage_optim_combo.isEnabled()
    assert "stage_optim" not in dialog.overrides()


def test_pretrained_box_follows_the_network(qtbot: QtBot) -> None:
    dialog = group_dialog(qtbot)
    assert not dialog.pretrained_check.isEnabled()  # the cpu preset's small CNN has none
    select(dialog, "backbone_combo", "efficientnet_lite0")
    assert dialog.pretrained_check.isChecked() and not dialog.pretrained_check.isEnabled()
    assert dialog.config().backbone == "efficientnet_lite0"
    select(dialog, "backbone_combo", "resnet18")
    assert dialog.pretrained_check.isEnabled()
    dialog.pretrained_check.setChecked(True)
    config = dialog.config()
    assert config.pretrained and config.backbone == "resnet18"
    estimate = dialog.estimate()
    assert estimate is not None and estimate.download_bytes == 46_830_571  # not cached here
    assert "47 MB download of ImageNet weights" in estimate.text()


def test_two_stage_and_memorybank_change_the_estimate(qtbot: QtBot) -> None:
    base = resolve_train_config(10, "cpu", {"epochs": 10})
    one = estimate_training(base, 1000, "cpu").seconds
    two = estimate_training(base.replace(stage="two_stage"), 1000, "cpu").seconds
    frozen = estimate_training(
        base.replace(stage="two_stage", freeze_backbone=True), 1000, "cpu"
    ).seconds
    bank = estimate_training(base.replace(framework="memorybank"), 1000, "cpu").seconds
    assert two == pytest.approx(2 * one)
    assert one < frozen < two
    assert bank == pytest.approx(0.55 * one)


def test_quick_estimate_counts_features_once_then_head_steps() -> None:
    config = resolve_train_config(10, "quick")
    small = estimate_training(config, 1000, "cpu")
    large = estimate_training(config, 13_394, "cpu")
    # 1,000 photos: 8 s of features + the 300-step minimum at 0.1 s
    assert small.seconds == pytest.approx(1000 / 126 + 30, rel=0.01)
    # 13,394 photos: 106 s of features + 6 epochs x 52 steps x 0.1 s (at most ~300 steps)
    assert large.seconds == pytest.approx(13_394 / 126 + 6 * 52 * 0.1, rel=0.01)
    assert large.cache_bytes == 13_394 * 1280 * 2  # features only, no pixel cache
    assert "feature cache" in large.text() and "pixel cache" not in large.text()
    assert (small.head_steps, large.head_steps) == (300, 6 * 52)
    assert "features of 13,394 photos, once, at ~126 photos/s" in large.text()
    assert "then 312 quick steps of the grouping heads" in large.text()
    assert "epochs" not in large.text()
