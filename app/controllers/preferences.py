"""The user's preferences in the window: Edit > Settings (applied at once), the settings the
window changes itself (sort order, confidence bars), and the window layout.

Where they are kept: the settings in ``settings.json`` (:class:`~app.core.settings_store.
SettingsStore`); the window layout (geometry, toolbar, splitter) in Qt's ``settings.ini``
(:func:`settings`); both in the platformdirs config folder. A window made with
``persist=False`` saves neither.
"""

from __future__ import annotations

import logging
from pathlib import Path

import platformdirs
from PySide6.QtCore import QSettings, QSize
from PySide6.QtWidgets import QApplication

from app.controllers.browsing import BrowsingController
from app.controllers.host import Controller, WindowHost, run_modal
from app.core.settings_store import Settings
from app.theme import apply_theme
from app.views.about_dialog import device_rows
from app.views.settings_dialog import SettingsDialog, log_folder

__all__ = ["PreferencesController", "settings"]

_log = logging.getLogger("crlc_organizer")


def settings() -> QSettings:
    """The app's persisted settings (an INI file in the platformdirs config folder)."""
    path = Path(platformdirs.user_config_dir("crlc-organizer")) / "settings.ini"
    return QSettings(str(path), QSettings.Format.IniFormat)


class PreferencesController(Controller):
    """Edits, applies and saves the settings; restores and saves the window layout."""

    def __init__(self, window: WindowHost, browsing: BrowsingController) -> None:
        super().__init__(window)
        self.browsing = browsing
        self.saved = window.settings  # what the store holds (saved again when changed)

    # ------------------------------------------------------------------ settings
    def settings_dialog(self) -> SettingsDialog:
        """The settings dialog for the current settings (saving into the window's store)."""
        window = self.window
        dialog = SettingsDialog(
            window.settings, window.widget, store=window.store, logs=log_folder()
        )
        if window.workspace_override is not None:
            dialog.workspace_edit.setToolTip(
                f"This window uses {window.workspace_override} (given with --workspace) instead."
            )
        return dialog

    def open_settings(self) -> None:
        """Edit > Settings: edit, save and apply the settings at once."""
        dialog = self.settings_dialog()
        if run_modal(dialog):
            self.saved = dialog.settings()
            self.apply_settings(dialog.settings())

    def apply_settings(self, new: Settings) -> None:
        """Use ``new`` settings from now on: theme, grid, detail panel, defaults, jobs.

        The theme, the thumbnail size, the number of similar images and the sort order
        change the window at once; the defaults of "Group images" and "Export" apply to the
        next dialog, the scan processes to the next scan. A new workspace folder is used
        for libraries opened afterwards (the open one stays where it is) unless the
        command line named one.
        """
        window = self.window
        old, window.settings = window.settings, new
        app = QApplication.instance()
        if new.theme != old.theme and isinstance(app, QApplication):
            apply_theme(app, new)
        window.scan_workers = new.effective_scan_workers()
        if window.workspace_override is None:
            window.workspace = new.workspace_base()
        if new.thumbnail_size != old.thumbnail_size:
            self.set_thumbnail_size(new.thumbnail_size)
        if new.low_confidence_first != window.low_first.isChecked():
            window.low_first.setChecked(new.low_confidence_first)
        if new.show_confidence != window.show_confidence_action.isChecked():
            window.show_confidence_action.setChecked(new.show_confidence)
            window.grid_delegate.set_show_confidence(new.show_confidence)
        if new.neighbors != old.neighbors and window.shown_image is not None:
            self.browsing.show_image(window.shown_image)
        if new.default_device != old.default_device:
            self.show_device()

    def show_device(self) -> None:
        """The device "Group images" starts with (the settings' default device)."""
        rows = dict(device_rows(self.window.settings.default_device))
        self.window.device_label.setText(f"Device: {rows['Device in use']}")
        self.window.device_label.setToolTip(rows.get("Device setting", ""))

    def set_thumbnail_size(self, side: int) -> None:
        """Show the grid's thumbnails fitting a ``side`` pixel square."""
        window = self.window
        window.grid.setIconSize(QSize(side, side))
        window.grid.setGridSize(QSize(side + 10, side + 30))
        if window.grid_model is not None:
            window.grid_model.set_thumbnail_side(side)

    def show_confidence(self, checked: bool) -> None:
        """Show or hide the thumbnails' confidence bars (a setting, saved at once)."""
        window = self.window
        window.grid_delegate.set_show_confidence(checked)
        if checked != window.settings.show_confidence:
            window.settings = window.settings.replace(show_confidence=checked)
            if window.persist:
                self.save_settings()

    def remember_low_first(self, checked: bool) -> None:
        """The grid's sort order is a setting too, saved at once (a crash keeps it)."""
        window = self.window
        if checked != window.settings.low_confidence_first:
            window.settings = window.settings.replace(low_confidence_first=checked)
            if window.persist:
                self.save_settings()

    def save_settings(self) -> None:
        """Save the settings if the window changed them since they were loaded or saved."""
        store, current = self.window.store, self.window.settings
        if store is None or current == self.saved:
            return
        try:
            store.save(current)
        except OSError as error:  # closing must not fail over a preference
            _log.warning("cannot save the settings: %s", error)
            return
        self.saved = current

    # ------------------------------------------------------------------ layout
    def restore_layout(self) -> None:
        """Put back the window's geometry, toolbar and splitter as they were saved."""
        window, stored = self.window, settings()
        geometry = stored.value("window/geometry")
        if geometry is not None:
            window.widget.restoreGeometry(geometry)
        state = stored.value("window/state")
        if state is not None:
            window.widget.restoreState(state)
        splitter = stored.value("window/splitter")
        if splitter is not None:
            window.splitter.restoreState(splitter)

    def save_layout(self) -> None:
        """Remember window geometry, toolbar/splitter layout (``settings.ini``), a changed
        sort order (``settings.json``) and the run and group shown (per library)."""
        window, stored = self.window, settings()
        stored.setValue("window/geometry", window.widget.saveGeometry())
        stored.setValue("window/state", window.widget.saveState())
        stored.setValue("window/splitter", window.splitter.saveState())
        stored.remove("view/low_first")  # now the setting low_confidence_first
        stored.sync()
        self.save_settings()
        session = window.session
        if session is not None and session.run_id is not None:
            session.remember_view(self.browsing.current_group())
