"""Settings: the JSON store (defaults, validation, atomic save) and the settings dialog."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox, QPushButton
from pytestqt.qtbot import QtBot

from app.core.settings_store import (
    THUMBNAIL_SIZES,
    Settings,
    SettingsStore,
    default_scan_workers,
    settings_path,
    validate,
)
from app.views.settings_dialog import SettingsDialog, workspace_problem

CHANGED = Settings(
    theme="dark",
    default_preset="balanced",
    default_device="cpu",
    default_clusters=7,
    scan_workers=3,
    thumbnail_size=192,
    low_confidence_first=True,
    neighbors=25,
    export_mode="hardlink",
    export_min_confidence=0.65,
    confirm_close_with_job=False,
    reopen_last_library=False,
    workspace="/srv/crlc",
)


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


# ---------------------------------------------------------------------- store
def test_the_file_lives_in_the_platformdirs_config_folder(config_home: Path) -> None:
    assert settings_path() == config_home / "crlc-organizer" / "settings.json"
    assert SettingsStore().path == settings_path()


def test_missing_file_gives_the_defaults(config_home: Path) -> None:
    assert SettingsStore().load() == Settings()
    assert not settings_path().exists()  # loading writes nothing


def test_save_and_load_round_trip(config_home: Path) -> None:
    store = SettingsStore()
    store.save(CHANGED)
    assert SettingsStore().load() == CHANGED
    stored = json.loads(settings_path().read_text(encoding="utf-8"))
    assert stored["version"] == 1 and stored["theme"] == "dark"
    assert [p.name for p in settings_path().parent.iterdir()] == ["settings.json"]  # no temp


def test_unknown_keys_are_ignored_and_kept(
    config_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"theme": "light", "future_option": [1, 2]}), encoding="utf-8")
    store = SettingsStore()
    with caplog.at_level(logging.INFO, logger="crlc_organizer.settings"):
        loaded = store.load()
    assert loaded == Settings(theme="light")
    assert "future_option" in caplog.text
    store.save(loaded.replace(neighbors=5))
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["future_option"] == [1, 2] and stored["neighbors"] == 5


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("theme", "purple"),
        ("theme", 3),
        ("default_preset", "turbo"),
        ("default_device", "tpu"),
        ("default_clusters", 1),
        ("default_clusters", 2.5),
        ("default_clusters", True),
        ("scan_workers", -1),
        ("thumbnail_size", 100),
        ("low_confidence_first", "yes"),
        ("neighbors", 0),
        ("export_mode", "teleport"),
        ("export_min_confidence", 1.5),
        ("export_min_confidence", float("nan")),
        ("export_min_confidence", "0.5"),
        ("confirm_close_with_job", 1),
        ("reopen_last_library", None),
        ("workspace", "relative/folder"),
        ("workspace", 42),
    ],
)
def test_a_bad_value_takes_its_default_with_a_warning(
    config_home: Path, caplog: pytest.LogCaptureFixture, key: str, value: object
) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True)
    good = {"neighbors": 12, "theme": "dark"}
    good.pop(key, None)
    # json.dumps writes NaN as a bare token, which Python's json reads back.
    path.write_text(json.dumps({**good, key: value}), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="crlc_organizer.settings"):
        loaded = SettingsStore().load()
    assert getattr(loaded, key) == getattr(Settings(), key)
    for other, expected in good.items():  # the valid values around it are kept
        assert getattr(loaded, other) == expected
    assert key in caplog.text and "using" in caplog.text


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe\x00garbage", b""])
def test_a_broken_file_gives_the_defaults(
    config_home: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="crlc_organizer.settings"):
        assert SettingsStore().load() == Settings()
    assert str(path) in caplog.text


def test_an_unreadable_path_gives_the_defaults(config_home: Path) -> None:
    settings_path().mkdir(parents=True)  # a folder where the file should be
    assert SettingsStore().load() == Settings()
    with pytest.raises(OSError):
        SettingsStore().save(Settings())


def test_integers_are_accepted_for_the_confidence(config_home: Path) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"export_min_confidence": 1}), encoding="utf-8")
    loaded = SettingsStore().load()
    assert loaded.export_min_confidence == 1.0
    assert isinstance(loaded.export_min_confidence, float)


def test_replace_validates() -> None:
    assert Settings().replace(theme="dark").theme == "dark"
    with pytest.raises(ValueError, match="theme"):
        Settings().replace(theme="neon")
    with pytest.raises(ValueError, match="thumbnail_size"):
        Settings().replace(thumbnail_size=33)


def test_scan_workers_default_to_all_cores_but_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert default_scan_workers() == 7
    assert Settings().effective_scan_workers() == 7
    assert Settings(scan_workers=2).effective_scan_workers() == 2
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert Settings().effective_scan_workers() == 1


def test_workspace_base_is_none_for_the_default() -> None:
    assert Settings().workspace_base() is None
    assert Settings(workspace="/data/ws").workspace_base() == "/data/ws"


def test_every_thumbnail_size_is_valid() -> None:
    assert all(validate("thumbnail_size", size) is None for size in THUMBNAIL_SIZES)


# ---------------------------------------------------------------------- dialog
def dialog(qtbot: QtBot, settings: Settings, store: SettingsStore | None = None) -> SettingsDialog:
    widget = SettingsDialog(settings, store=store, logs=Path("/logs/here"), cache=Path("/c"))
    qtbot.addWidget(widget)
    return widget


def ok_button(widget: SettingsDialog) -> QPushButton:
    return widget.buttons.button(QDialogButtonBox.StandardButton.Ok)


def test_the_dialog_shows_and_returns_every_setting(qtbot: QtBot, config_home: Path) -> None:
    widget = dialog(qtbot, CHANGED)
    assert widget.settings() == CHANGED
    widget.theme_combo.setCurrentIndex(widget.theme_combo.findData("light"))
    widget.thumbnail_combo.setCurrentIndex(widget.thumbnail_combo.findData(64))
    widget.workers_spin.setValue(0)
    widget.confidence_spin.setValue(0.3)
    widget.workspace_edit.setText("")
    edited = widget.settings()
    assert edited == CHANGED.replace(
        theme="light", thumbnail_size=64, scan_workers=0, export_min_confidence=0.3, workspace=""
    )


def test_restore_defaults_shows_the_defaults_without_saving(
    qtbot: QtBot, config_home: Path
) -> None:
    store = SettingsStore()
    widget = dialog(qtbot, CHANGED, store)
    button = widget.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
    button.click()
    assert widget.settings() == Settings()
    assert not settings_path().exists()
    widget.reject()
    assert not settings_path().exists()


def test_ok_saves_into_the_store(qtbot: QtBot, config_home: Path) -> None:
    store = SettingsStore()
    widget = dialog(qtbot, Settings(), store)
    widget.neighbors_spin.setValue(33)
    widget.low_first_check.setChecked(True)
    ok_button(widget).click()
    assert widget.result() == SettingsDialog.DialogCode.Accepted
    assert SettingsStore().load() == Settings(neighbors=33, low_confidence_first=True)


def test_a_bad_workspace_disables_ok(qtbot: QtBot, tmp_path: Path, config_home: Path) -> None:
    widget = dialog(qtbot, Settings())
    widget.workspace_edit.setText("not/absolute")
    assert not ok_button(widget).isEnabled()
    assert "absolute" in (widget.error() or "")
    assert widget.error_label.isVisibleTo(widget)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    widget.workspace_edit.setText(str(a_file))
    assert not ok_button(widget).isEnabled() and "is a file" in (widget.error() or "")
    widget.accept()  # refused while invalid
    assert widget.result() != SettingsDialog.DialogCode.Accepted
    new = tmp_path / "new" / "ws"
    widget.workspace_edit.setText(str(new))
    assert ok_button(widget).isEnabled()
    assert "will be created" in widget.workspace_note.text()
    assert str(new) in widget.locations["workspaces"].text()


def test_workspace_problem() -> None:
    assert workspace_problem("") == (None, "")
    problem, _ = workspace_problem("relative")
    assert problem is not None and "absolute" in problem


def test_a_failed_save_keeps_the_dialog_open(
    qtbot: QtBot, config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SettingsStore()
    widget = dialog(qtbot, Settings(), store)
    shown: list[str] = []

    def warn(*args: object) -> None:
        shown.append(str(args[2]))

    monkeypatch.setattr("app.views.settings_dialog.QMessageBox.warning", warn)
    settings_path().mkdir(parents=True)  # a folder where the file goes: the save fails
    widget.show()
    ok_button(widget).click()
    assert shown and "could not be saved" in shown[0]
    assert widget.isVisible() and widget.result() != SettingsDialog.DialogCode.Accepted


def test_the_locations_are_shown(qtbot: QtBot, config_home: Path) -> None:
    widget = dialog(qtbot, Settings(), SettingsStore())
    assert str(settings_path()) in widget.locations["settings"].text()
    assert "/logs/here" in widget.locations["logs"].text()
    assert widget.locations["cache"].text().endswith(">/c</a>")
