"""The "Group images" dialog: how many groups, which preset and device, and what it costs.

:class:`GroupDialog` collects the settings of a training run and turns them into a
:class:`~crlc_engine.core.config.TrainConfig`. It is a view over the engine's
:class:`~crlc_engine.pipeline.run_form.RunForm`, which passes as overrides only the values
the user changed from the chosen preset (so that the run records the preset plus exactly
what was different) and merges them with
:func:`~crlc_engine.pipeline.presets.resolve_train_config`. Before starting it shows an
estimate of the time and the disk space (:func:`crlc_engine.pipeline.estimate.estimate_training`).

The time is first a rough guess from typical speeds. When the dialog opens (and after each
change of the settings), a few real training steps of the chosen settings are timed on a
worker thread (:meth:`crlc_engine.pipeline.estimate.SpeedCache.measure`, through
:class:`~app.views.speed_measurer.SpeedMeasurer`: 1-4 s, cancelled when the dialog closes or
the settings change again) and the estimate is redrawn with this computer's speed. Speeds are
kept per computer and settings in the user cache folder (the speed of a finished run of the
same settings first), so a second opening shows them at once. The disk line counts what a
checkpoint of the settings really holds: the one a finished run keeps, and the larger one
(with the optimiser state) while it trains.

Blocking work: the device probe (:func:`crlc_engine.core.device.resolve_device`) when it is
built, and loading torchvision (1-2 s) when a ResNet is first chosen. The sections' widgets
are built in :mod:`app.views.group_sections`.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from typing import Any, Literal

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

import app.itemmodels  # noqa: F401  (pins None/True/False on affected PySide6 builds)
from app.core.torchvision_check import torchvision_problem
from app.views import group_sections
from app.views.form_widgets import DeviceProbe, add_row, combo_item_enabled, select_data
from app.views.speed_measurer import SpeedMeasurer
from crlc_engine.api import (
    EDITED_FIELDS,
    PRESETS,
    Calibration,
    DeviceOptions,
    InvalidSettingError,
    PresetChoices,
    RunForm,
    SpeedCache,
    TrainConfig,
    TrainingEstimate,
    estimate_form,
    preset_values,
    pretrained_box,
    quick_preset_available,
    resolve_device,
    speed_key,
)

__all__ = ["WINDOW_SCAN_SIZE", "DeviceProbe", "GroupDialog"]

#: The size the main window scans (caches) a library's pixels at: other training sizes read
#: every photo again first (app.views.main_window.SCAN_SIZE).
WINDOW_SCAN_SIZE = 32
#: Wait this long after the last change of the settings before measuring their speed.
_MEASURE_DELAY_MS = 400


class GroupDialog(QDialog):
    """Settings of a grouping (training) run: clusters, preset, size, device, advanced.

    Args:
        images: Number of photos to group (bounds the number of groups, drives the estimate).
        parent: Parent widget.
        device_probe: ``probe(request) -> DeviceChoice`` (default
            :func:`~crlc_engine.core.device.resolve_device`); raises for an unavailable device.
        default_clusters: The user's default number of groups (settings), else 10.
        default_preset: The user's default preset (settings), else the device's default.
        default_device: The user's default device request (settings), if available.
        quick_available: Whether the ``pretrained`` extra is installed (default: looked up).
            Without it the quick preset is greyed out, its tooltip saying what to install.
        speeds: Where this computer's speeds come from and are measured: a
            :class:`~crlc_engine.pipeline.estimate.SpeedCache` (default: the user cache folder's);
            ``None``: no measurement, the rough estimate stays.
        cached_sizes: Training sizes the library's pixel cache already holds (the window
            scans at :data:`WINDOW_SCAN_SIZE`); other sizes read every photo again first.

    Without a working torchvision (missing: known at once; broken: when a ResNet is first
    chosen) the ResNet presets and networks are greyed out, their tooltip saying what to install.

    After ``exec()`` returns ``Accepted``, :meth:`config` is the run's settings. While the
    dialog is shown, the speed of the settings is measured off the GUI thread (see the
    module's description); closing it cancels the measurement.
    """

    #: Fields of :class:`TrainConfig` the dialog edits, besides ``clusters`` and ``preset``.
    EDITED_FIELDS = EDITED_FIELDS

    def __init__(
        self,
        images: int,
        parent: QWidget | None = None,
        device_probe: DeviceProbe = resolve_device,
        *,
        default_clusters: int | None = None,
        default_preset: str | None = None,
        default_device: str | None = None,
        quick_available: bool | None = None,
        speeds: SpeedCache | Literal["default"] | None = "default",
        cached_sizes: Collection[int] = (WINDOW_SCAN_SIZE,),
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Group images")
        self._speeds = SpeedCache() if speeds == "default" else speeds
        self._cached_sizes = frozenset(int(size) for size in cached_sizes)
        #: Speeds known in this dialog, per speed key (measured here or read from the cache).
        self._calibrations: dict[str, Calibration] = {}
        self._measure_errors: dict[str, str] = {}
        self._measurer = SpeedMeasurer(self._speeds, self) if self._speeds is not None else None
        self._measure_timer = QTimer(self)
        self._measure_timer.setSingleShot(True)
        self._measure_timer.setInterval(_MEASURE_DELAY_MS)
        #: Which presets can be chosen (the quick preset's extra, torchvision for a ResNet).
        self._presets = PresetChoices(
            quick_preset_available() if quick_available is None else quick_available,
            torchvision_problem(),
        )
        self._default_clusters = default_clusters
        self._default_preset = default_preset or None
        self._default_device = default_device or None
        self._images = max(0, int(images))
        self._loading = False
        self._edited: set[str] = set()
        self._preset_chosen = False
        self._error: str | None = None
        self._devices = DeviceOptions.probe(device_probe)

        self._build()
        self._load_preset(self.preset_name(), initial=True)
        self._connect()
        self._revalidate()

    # -- construction ------------------------------------------------------------------------
    @property
    def detected_kind(self) -> str:
        """The device kind ``auto`` resolves to (``cpu`` when the probe failed)."""
        return self._devices.detected_kind

    def preset_problem(self, name: str) -> str | None:
        """Why preset ``name`` cannot be chosen here (its greyed item's tooltip), or None."""
        return self._presets.problem(name)

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        layout.addLayout(form)
        self.clusters_spin = group_sections.clusters_spin(self._images, self._default_clusters)
        add_row(form, "Number of &groups:", self.clusters_spin)
        self.preset_combo = group_sections.preset_combo(self._presets)
        default, self._preset_chosen = self._presets.initial(
            self.detected_kind, self._default_preset
        )
        self.preset_combo.setCurrentIndex(max(0, self.preset_combo.findData(default)))
        add_row(form, "&Preset:", self.preset_combo)
        self.size_spin = group_sections.size_spin()
        add_row(form, "Training &size:", self.size_spin)
        self.device_combo = group_sections.device_combo(self._devices)
        if self._default_device is not None and self.is_device_available(self._default_device):
            self.device_combo.setCurrentIndex(self.device_combo.findData(self._default_device))
        self.device_label = QLabel(self._devices.detected_text())
        device_box = group_sections.device_box(self.device_combo, self.device_label)
        add_row(form, "&Device:", device_box).setBuddy(self.device_combo)

        self.advanced_button = group_sections.advanced_toggle()
        layout.addWidget(self.advanced_button)
        self.advanced_box = group_sections.AdvancedSettings(self._presets.torchvision_problem)
        self.advanced_box.setVisible(False)
        layout.addWidget(self.advanced_box)
        self._take_advanced_fields(self.advanced_box)
        self._build_footer(layout)
        self.setMinimumWidth(660)
        chain: list[QWidget] = [
            self.clusters_spin,
            self.preset_combo,
            self.size_spin,
            self.device_combo,
            self.advanced_button,
            *self.advanced_box.focus_chain(),
            self.ok_button,
        ]
        for first, second in itertools.pairwise(chain):
            self.setTabOrder(first, second)
        self.clusters_spin.setFocus()

    def _take_advanced_fields(self, box: group_sections.AdvancedSettings) -> None:
        """The advanced fields, as the dialog's own."""
        self.backbone_combo = box.backbone_combo
        self.pretrained_check = box.pretrained_check
        self.epochs_radio = box.epochs_radio
        self.epochs_spin = box.epochs_spin
        self.minutes_radio = box.minutes_radio
        self.minutes_spin = box.minutes_spin
        self.length_group = box.length_group
        self.lambda_ent_spin = box.lambda_ent_spin
        self.critic_combo = box.critic_combo
        self.framework_combo = box.framework_combo
        self.stage_combo = box.stage_combo
        self.freeze_check = box.freeze_check
        self.stage_optim_combo = box.stage_optim_combo

    def _build_footer(self, layout: QVBoxLayout) -> None:
        """The estimate, the error and the buttons, below a line."""
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        layout.addWidget(line)
        self.estimate_label = group_sections.estimate_label()
        layout.addWidget(self.estimate_label)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00020;")
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        self.button_box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button.setText("&Start grouping")
        layout.addWidget(self.button_box)

    def _connect(self) -> None:
        self.clusters_spin.valueChanged.connect(self._revalidate)
        self.preset_combo.currentIndexChanged.connect(self._on_preset_changed)
        self.device_combo.currentIndexChanged.connect(self._on_device_changed)
        self.advanced_button.toggled.connect(self._on_advanced_toggled)
        self.size_spin.valueChanged.connect(lambda _v: self._on_edited("image_size"))
        self.backbone_combo.currentIndexChanged.connect(lambda _i: self._on_edited("backbone"))
        self.epochs_spin.valueChanged.connect(lambda _v: self._on_edited("epochs"))
        self.minutes_spin.valueChanged.connect(lambda _v: self._on_edited("minutes"))
        self.epochs_radio.toggled.connect(self._on_length_mode)
        self.lambda_ent_spin.valueChanged.connect(lambda _v: self._on_edited("lambda_ent"))
        self.critic_combo.currentIndexChanged.connect(lambda _i: self._on_edited("critic"))
        self.pretrained_check.toggled.connect(lambda _c: self._on_edited("pretrained"))
        self.framework_combo.currentIndexChanged.connect(lambda _i: self._on_edited("framework"))
        self.stage_combo.currentIndexChanged.connect(lambda _i: self._on_edited("stage"))
        self.freeze_check.toggled.connect(lambda _c: self._on_edited("freeze_backbone"))
        self.stage_optim_combo.currentIndexChanged.connect(
            lambda _i: self._on_edited("stage_optim")
        )
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)
        self._measure_timer.timeout.connect(self._measure_speed)
        if self._measurer is not None:
            self._measurer.measured.connect(self._on_speed_measured)
            self._measurer.failed.connect(self._on_speed_failed)
        self.finished.connect(self._stop_measuring)

    # -- state ---------------------------------------------------------------------------------
    @property
    def ok_button(self) -> QPushButton:
        """The button that starts the run."""
        return self.button_box.button(QDialogButtonBox.StandardButton.Ok)

    @property
    def images(self) -> int:
        """Number of photos to group."""
        return self._images

    @property
    def error(self) -> str | None:
        """Why the settings cannot be used, or ``None``."""
        return self._error

    def preset_name(self) -> str:
        """The chosen preset."""
        return str(self.preset_combo.currentData())

    def device_request(self) -> str:
        """The chosen device: ``auto``, ``cpu``, ``cuda`` or ``mps``."""
        return str(self.device_combo.currentData())

    def device_kind(self) -> str:
        """The device the run would use (``auto`` resolved)."""
        return self._devices.kind(self.device_request())

    def is_device_available(self, request: str) -> bool:
        """Whether ``request`` can be chosen in the device list."""
        row = self.device_combo.findData(request)
        return row >= 0 and combo_item_enabled(self.device_combo, row)

    def device_unavailable_reason(self, request: str) -> str | None:
        """Why ``request`` is unavailable (the probe's message), ``None`` if it is usable."""
        return self._devices.note(request)

    def uses_time_budget(self) -> bool:
        """Whether the run length is a time budget rather than epochs."""
        return self.minutes_radio.isChecked()

    def form(self) -> RunForm:
        """What the fields show, as the engine's form of a new run."""
        return RunForm(
            clusters=self.clusters_spin.value(),
            preset=self.preset_name(),
            device=self.device_request(),
            image_size=self.size_spin.value(),
            backbone=str(self.backbone_combo.currentData()),
            pretrained=self.pretrained_check.isChecked(),
            time_budget=self.uses_time_budget(),
            epochs=self.epochs_spin.value(),
            minutes=self.minutes_spin.value(),
            lambda_ent=round(self.lambda_ent_spin.value(), self.lambda_ent_spin.decimals()),
            critic=str(self.critic_combo.currentData()),
            framework=str(self.framework_combo.currentData()),
            stage=str(self.stage_combo.currentData()),
            freeze_backbone=self.freeze_check.isChecked(),
            stage_optim=str(self.stage_optim_combo.currentData()),
        )

    def overrides(self) -> dict[str, Any]:
        """The settings that differ from the chosen preset (what :meth:`config` passes on)."""
        return self.form().overrides()

    def config(self) -> TrainConfig:
        """The run's settings: the preset plus :meth:`overrides`.

        Raises:
            InvalidSettingError: the settings are invalid (the dialog shows why and keeps
                its OK button disabled meanwhile).
        """
        return self.form().config()

    # -- reactions -----------------------------------------------------------------------------
    def _load_preset(self, preset: str, initial: bool = False) -> None:
        """Show ``preset``'s values in every field the user has not edited."""
        values = preset_values(preset)
        self._loading = True
        try:
            self._show_values(values, EDITED_FIELDS if initial else self._unedited())
            self._update_length_widgets()
            self._update_variant_widgets()
        finally:
            self._loading = False
        why = PRESETS[preset].why if preset in PRESETS else ""
        self.preset_combo.setToolTip(why)

    def _unedited(self) -> set[str]:
        """The fields a preset still sets (the run's length counts as one field)."""
        fields = set(EDITED_FIELDS) - self._edited
        if self._edited & {"epochs", "minutes"}:
            fields -= {"epochs", "minutes"}
        return fields

    def _show_values(self, values: dict[str, Any], fields: Collection[str]) -> None:
        """Show ``values`` in ``fields``."""
        if "image_size" in fields:
            self.size_spin.setValue(int(values["image_size"]))
        if "backbone" in fields:
            select_data(self.backbone_combo, values["backbone"])
        if "epochs" in fields:
            if values["epochs"] is not None:
                self.epochs_spin.setValue(int(values["epochs"]))
                self.epochs_radio.setChecked(True)
            else:
                self.minutes_radio.setChecked(True)
            if values["minutes"] is not None:
                self.minutes_spin.setValue(float(values["minutes"]))
        if "lambda_ent" in fields:
            self.lambda_ent_spin.setValue(float(values["lambda_ent"]))
        if "critic" in fields:
            select_data(self.critic_combo, values["critic"])
        if "pretrained" in fields:
            self.pretrained_check.setChecked(bool(values["pretrained"]))
        if "framework" in fields:
            select_data(self.framework_combo, values["framework"])
        if "stage" in fields:
            select_data(self.stage_combo, values["stage"])
        if "freeze_backbone" in fields:
            self.freeze_check.setChecked(bool(values["freeze_backbone"]))
        if "stage_optim" in fields:
            select_data(self.stage_optim_combo, values["stage_optim"])

    def _on_preset_changed(self, _index: int) -> None:
        if not self._loading:
            self._preset_chosen = True
        self._load_preset(self.preset_name())
        self._revalidate()

    def _on_device_changed(self, _index: int) -> None:
        self._follow_default_preset()
        self._revalidate()

    def _on_edited(self, name: str) -> None:
        if not self._loading:
            self._edited.add(name)
            self._follow_default_preset()
            self._update_variant_widgets()
        self._revalidate()

    def _follow_default_preset(self) -> None:
        """Until the user picks a preset, select the default for the device and the fields
        edited so far, as ``crlc train`` does without ``--preset`` (e.g. the cpu preset once
        another network or two-stage is chosen on a CPU)."""
        if self._preset_chosen:
            return
        default = self._presets.default(self.device_kind(), self.form().requested(self._edited))
        row = self.preset_combo.findData(default)
        if row >= 0 and row != self.preset_combo.currentIndex():
            self._loading = True
            try:
                self.preset_combo.setCurrentIndex(row)
            finally:
                self._loading = False

    def _on_length_mode(self, _checked: bool) -> None:
        self._update_length_widgets()
        if not self._loading:
            self._edited.add("minutes" if self.uses_time_budget() else "epochs")
        self._revalidate()

    def _update_variant_widgets(self) -> None:
        """Weights box: usable for ResNet-18/50, always on for EfficientNet; freeze: two-stage."""
        box = pretrained_box(str(self.backbone_combo.currentData()))
        blocked = self.pretrained_check.blockSignals(True)
        if box == "always":
            self.pretrained_check.setChecked(True)
            self.pretrained_check.setEnabled(False)
        elif box == "never":
            self.pretrained_check.setChecked(False)
            self.pretrained_check.setEnabled(False)
        else:
            self.pretrained_check.setEnabled(True)
            wanted = bool(preset_values(self.preset_name())["pretrained"])
            if not wanted and "pretrained" not in self._edited:
                self.pretrained_check.setChecked(False)
        self.pretrained_check.blockSignals(blocked)
        two_stage = self.stage_combo.currentData() == "two_stage"
        self.freeze_check.setEnabled(two_stage)
        self.stage_optim_combo.setEnabled(two_stage)

    def _update_length_widgets(self) -> None:
        budget = self.minutes_radio.isChecked()
        self.epochs_spin.setEnabled(not budget)
        self.minutes_spin.setEnabled(budget)

    def _on_advanced_toggled(self, shown: bool) -> None:
        self.advanced_box.setVisible(shown)
        self.advanced_button.setArrowType(
            Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow
        )
        self.adjustSize()

    def _check_torchvision(self) -> None:
        """A ResNet chosen first: a broken torchvision greys the ResNets out, default follows."""
        checked = group_sections.check_torchvision(
            self._presets, self.preset_combo, self.backbone_combo
        )
        if checked is not self._presets:
            self._presets = checked
            self._follow_default_preset()

    def _revalidate(self) -> None:
        if self._loading:
            return
        self._check_torchvision()
        config, error = self.form().check(self._images)
        self._error = error
        self.error_label.setText(error or "")
        self.error_label.setVisible(error is not None)
        self.ok_button.setEnabled(error is None)
        self._show_estimate(config)
        if config is not None and self.isVisible():
            self._schedule_measurement()

    # -- estimate ------------------------------------------------------------------------------
    def _speed_key(self, config: TrainConfig) -> str:
        return speed_key(config, self.device_kind())

    def calibration(self, config: TrainConfig | None = None) -> Calibration | None:
        """This computer's speed for ``config`` (default: the current settings), if known:
        measured in this dialog, else from the speed cache; ``None`` before that."""
        if config is None:
            try:
                config = self.config()
            except InvalidSettingError:
                return None
        key = self._speed_key(config)
        known = self._calibrations.get(key)
        if known is None and self._speeds is not None:
            known = self._speeds.get(config, self.device_kind())
            if known is not None:
                self._calibrations[key] = known
        return known

    def _estimate_for(self, config: TrainConfig) -> TrainingEstimate:
        return estimate_form(
            config,
            self._images,
            self.device_kind(),
            self.calibration(config),
            self._cached_sizes,
        )

    def _show_estimate(self, config: TrainConfig | None) -> None:
        if config is None:
            self.estimate_label.setText("No estimate: fix the settings first.")
            return
        estimate = self._estimate_for(config)
        text = estimate.text()
        if estimate.rough and self._speeds is not None:
            key = self._speed_key(config)
            if key in self._measure_errors:
                text += (
                    f"\n(This computer's speed could not be measured: {self._measure_errors[key]})"
                )
            else:
                text += "\nMeasuring this computer's speed…"
        self.estimate_label.setText(text)

    def estimate(self) -> TrainingEstimate | None:
        """The estimate shown, or ``None`` while the settings are invalid."""
        try:
            config = self.config()
        except InvalidSettingError:
            return None
        return self._estimate_for(config)

    @property
    def measuring(self) -> bool:
        """Whether this computer's speed is being measured (or about to be)."""
        running = self._measurer is not None and self._measurer.running
        return running or self._measure_timer.isActive()

    def _wanted_measurement(self) -> tuple[TrainConfig, str] | None:
        """The settings to measure and their speed key (None: the settings are not valid)."""
        try:
            config = self.config()
        except InvalidSettingError:
            return None
        return config, self._speed_key(config)

    def _schedule_measurement(self) -> None:
        """Measure the current settings' speed once they stop changing (when not known)."""
        if self._measurer is None or (wanted := self._wanted_measurement()) is None:
            return
        config, key = wanted
        if self.calibration(config) is not None or key in self._measure_errors:
            self._measure_timer.stop()
            if self._measurer.key not in (None, key):
                self._measurer.cancel()
            return
        if self._measurer.key != key:
            self._measure_timer.start()

    def _measure_speed(self) -> None:
        if self._measurer is None or not self.isVisible():
            return
        if (wanted := self._wanted_measurement()) is None:
            return
        config, key = wanted
        if self.calibration(config) is None and self._measurer.key != key:
            self._measurer.start(key, config, self.device_kind())

    def _on_speed_measured(self, key: str, calibration: object) -> None:
        if self._measurer is not None and self._measurer.key == key:
            self._measurer.cancel()  # done: nothing left to stop
        if isinstance(calibration, Calibration):
            self._calibrations[key] = calibration
        self._revalidate()

    def _on_speed_failed(self, key: str, message: str) -> None:
        if self._measurer is not None and self._measurer.key == key:
            self._measurer.cancel()
        self._measure_errors[key] = message
        self._revalidate()

    def _stop_measuring(self, *_args: object) -> None:
        self._measure_timer.stop()
        if self._measurer is not None:
            self._measurer.cancel()

    def showEvent(self, event: QShowEvent) -> None:
        """Start measuring this computer's speed for the settings shown."""
        super().showEvent(event)
        self._schedule_measurement()

    def accept(self) -> None:
        """Close with ``Accepted`` only while the settings are valid."""
        self._revalidate()
        if self._error is None:
            super().accept()
