"""The "Group images" dialog: how many groups, which preset and device, and what it costs.

:class:`GroupDialog` collects the settings of a training run and turns them into a
:class:`~crlc_engine.core.config.TrainConfig` with
:func:`~crlc_engine.pipeline.presets.resolve_train_config`,
passing as overrides only the values the user changed from the chosen preset (so that the
run records the preset plus exactly what was different). Before starting it shows an
estimate of the time and the disk space (:func:`crlc_engine.pipeline.estimate.estimate_training`).

The time is first a rough guess from typical speeds. When the dialog opens (and after each
change of the settings), a few real training steps of the chosen settings are timed on a
worker thread (:meth:`crlc_engine.pipeline.estimate.SpeedCache.measure`, 1-4 s, cancelled when the
dialog closes or the settings change again) and the estimate is redrawn with this
computer's speed. Speeds are kept per computer and settings in the user cache folder (the
speed of a finished run of the same settings first), so a second opening shows them at once.
The disk line counts what a checkpoint of the settings really holds: the one a finished run
keeps, and the larger one (with the optimiser state) while it trains.

The dialog does no blocking work: it asks the device probe (by default
:func:`crlc_engine.core.device.resolve_device`) which devices exist, once, when it is built.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal

import shiboken6
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent, QStandardItemModel
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

import app.itemmodels  # noqa: F401  (pins None/True/False on affected PySide6 builds)
from crlc_engine.api import (
    BACKBONE_NAMES,
    CPU_IMAGES_PER_S,
    CRITIC_NAMES,
    FRAMEWORKS,
    MODEL_PARAMETERS,
    PRESETS,
    PRETRAINED_BACKBONES,
    PRETRAINED_HINT,
    STAGE_OPTIMS,
    TORCHVISION_BACKBONES,
    Calibration,
    CRLCError,
    DeviceChoice,
    InvalidSettingError,
    JobControl,
    SpeedCache,
    TrainConfig,
    TrainingEstimate,
    default_preset_name,
    estimate_training,
    format_bytes,
    format_duration,
    images_per_second,
    quick_preset_available,
    resolve_device,
    resolve_train_config,
    speed_key,
    torchvision_presets,
    torchvision_problem,
)

__all__ = [
    "CPU_IMAGES_PER_S",
    "DEVICE_OPTIONS",
    "MODEL_PARAMETERS",
    "WINDOW_SCAN_SIZE",
    "Calibration",
    "DeviceProbe",
    "GroupDialog",
    "SpeedCache",
    "TrainingEstimate",
    "estimate_training",
    "format_bytes",
    "format_duration",
    "images_per_second",
]

#: ``probe(request) -> DeviceChoice``, raising a ``CRLCError`` for an unavailable device.
DeviceProbe = Callable[[str], DeviceChoice]

#: Device requests offered, in order, with their names in the list.
DEVICE_OPTIONS: dict[str, str] = {
    "auto": "Automatic",
    "cpu": "CPU",
    "cuda": "NVIDIA GPU (CUDA)",
    "mps": "Apple GPU (MPS)",
}
_DEVICE_WORDS = {"cpu": "the CPU", "cuda": "the GPU", "mps": "the Apple GPU"}

#: Why the quick preset cannot be chosen without the ``pretrained`` extra, and the fix.
QUICK_MISSING = "Not installed. " + PRETRAINED_HINT
#: The size the main window scans (caches) a library's pixels at: other training sizes read
#: every photo again first (app.views.main_window.SCAN_SIZE).
WINDOW_SCAN_SIZE = 32
#: Wait this long after the last change of the settings before measuring their speed.
_MEASURE_DELAY_MS = 400

_BACKBONE_TEXT = {
    "small": "Small CNN (fast on a CPU)",
    "resnet18": "ResNet-18",
    "resnet34": "ResNet-34 (paper)",
    "resnet50": "ResNet-50 (slow)",
    "efficientnet_lite0": "EfficientNet-Lite0 (ImageNet weights)",
}
_FRAMEWORK_TEXT = {
    "simclr": "SimCLR: two views per photo (paper's best)",
    "memorybank": "MemoryBank: one view, banked negatives (less memory, faster, less exact)",
}
_STAGE_TEXT = {
    "end_to_end": "End-to-end (one run)",
    "two_stage": "Two-stage: learn features, then group by neighbours",
}
_STAGE_OPTIM_TEXT = {
    "paper": "The paper's per stage (SGD 0.4 cosine; then Adam 1e-4, or SGD 5.0 when fixed)",
    "run": "The preset's SGD for both stages",
}
_CRITIC_TEXT = {
    "log_dot": "log of dot product (paper)",
    "dot": "dot product",
    "neg_l2": "negative squared distance",
    "neg_js": "negative Jensen-Shannon",
}


# ------------------------------------------------------------------------------ estimate
class _SpeedMeasurer(QObject):
    """Measures the speed of one setting at a time on a worker thread.

    :meth:`start` cancels the measurement in progress (its result is dropped) and starts a
    new one; the results come back on the GUI thread through :attr:`measured` and
    :attr:`failed` (with the measured setting's key).
    """

    measured = Signal(str, object)
    failed = Signal(str, str)

    def __init__(self, speeds: SpeedCache, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.speeds = speeds
        self._control: JobControl | None = None
        self.key: str | None = None

    @property
    def running(self) -> bool:
        """Whether a measurement is in progress."""
        return self._control is not None

    def start(self, key: str, config: TrainConfig, device_kind: str) -> None:
        """Measure ``config`` on ``device_kind`` (``key``: its speed key)."""
        self.cancel()
        control = JobControl()
        self._control, self.key = control, key
        thread = threading.Thread(
            target=self._run,
            args=(key, config, device_kind, control),
            name="crlc-speed-measure",
            daemon=True,
        )
        thread.start()

    def cancel(self) -> None:
        """Stop the measurement in progress; its result is dropped."""
        if self._control is not None:
            self._control.cancel()
        self._control, self.key = None, None

    def _run(self, key: str, config: TrainConfig, kind: str, control: JobControl) -> None:
        try:
            calibration = self.speeds.measure(config, kind, control)
        except InterruptedError:
            return
        except Exception as error:  # any failure only leaves the rough estimate
            self._emit(control, self.failed, key, str(error) or type(error).__name__)
            return
        self._emit(control, self.measured, key, calibration)

    def _emit(self, control: JobControl, signal: Any, key: str, value: object) -> None:
        if control.cancelled or not shiboken6.isValid(self):
            return
        with contextlib.suppress(RuntimeError):  # the dialog went away meanwhile
            signal.emit(key, value)


# -------------------------------------------------------------------------------- dialog
def _choice_combo(names: Sequence[str], texts: dict[str, str], tooltip: str) -> QComboBox:
    """A list of ``names`` (item data) shown with ``texts`` (the name where there is none)."""
    combo = QComboBox()
    for name in names:
        combo.addItem(texts.get(name, name), name)
    combo.setToolTip(tooltip)
    return combo


def _select_data(combo: QComboBox, value: Any) -> None:
    """Select the item whose data is ``value`` (the first item when none is)."""
    combo.setCurrentIndex(max(0, combo.findData(value)))


def _set_item_enabled(combo: QComboBox, row: int, enabled: bool) -> None:
    model = combo.model()
    if isinstance(model, QStandardItemModel):
        item = model.item(row)
        if item is not None:
            item.setEnabled(enabled)


def _combo_item_enabled(combo: QComboBox, row: int) -> bool:
    model = combo.model()
    flags = model.flags(model.index(row, 0))
    return bool(flags & Qt.ItemFlag.ItemIsEnabled)


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

    Without a working torchvision (:func:`~crlc_engine.pipeline.presets.torchvision_problem`, looked
    up when the dialog is built) the presets and networks that train a ResNet are greyed out,
    with the message saying what to install as their tooltip.

    After ``exec()`` returns ``Accepted``, :meth:`config` is the run's settings. While the
    dialog is shown, the speed of the settings is measured off the GUI thread (see the
    module's description); closing it cancels the measurement.
    """

    #: Fields of :class:`TrainConfig` the dialog edits, besides ``clusters`` and ``preset``.
    EDITED_FIELDS = (
        "image_size",
        "backbone",
        "pretrained",
        "epochs",
        "minutes",
        "lambda_ent",
        "critic",
        "framework",
        "stage",
        "freeze_backbone",
        "stage_optim",
    )
    #: Edited fields compared one to one with the preset in :meth:`overrides`.
    _PLAIN_FIELDS = (
        "image_size",
        "backbone",
        "pretrained",
        "lambda_ent",
        "critic",
        "framework",
        "stage",
        "freeze_backbone",
        "stage_optim",
    )

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
        self._measurer = _SpeedMeasurer(self._speeds, self) if self._speeds is not None else None
        self._measure_timer = QTimer(self)
        self._measure_timer.setSingleShot(True)
        self._measure_timer.setInterval(_MEASURE_DELAY_MS)
        self._quick_available = (
            quick_preset_available() if quick_available is None else quick_available
        )
        #: Why the ResNet presets and networks cannot be chosen (None: torchvision works).
        self._torchvision_problem = torchvision_problem()
        self._default_clusters = default_clusters
        self._default_preset = default_preset or None
        self._default_device = default_device or None
        self._images = max(0, int(images))
        self._loading = False
        self._edited: set[str] = set()
        self._preset_chosen = False
        self._error: str | None = None
        self._auto, self._device_notes = self._probe_devices(device_probe)

        self._build()
        self._load_preset(self.preset_name(), initial=True)
        self._connect()
        self._revalidate()

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def _probe_devices(probe: DeviceProbe) -> tuple[DeviceChoice | None, dict[str, str | None]]:
        """The auto choice and, per request, ``None`` if usable, else why not."""
        try:
            auto: DeviceChoice | None = probe("auto")
        except CRLCError:
            auto = None
        notes: dict[str, str | None] = {"auto": None, "cpu": None}
        for request in ("cuda", "mps"):
            try:
                probe(request)
            except CRLCError as error:
                notes[request] = str(error)
            else:
                notes[request] = None
        return auto, notes

    @property
    def detected_kind(self) -> str:
        """The device kind ``auto`` resolves to (``cpu`` when the probe failed)."""
        return self._auto.kind if self._auto is not None else "cpu"

    def preset_problem(self, name: str) -> str | None:
        """Why preset ``name`` cannot be chosen here (its greyed item's tooltip), or None."""
        if name == "quick" and not self._quick_available:
            return QUICK_MISSING
        if self._torchvision_problem is not None and name in torchvision_presets():
            return self._torchvision_problem
        return None

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        layout.addLayout(form)

        # groups
        self.clusters_spin = QSpinBox()
        self.clusters_spin.setRange(2, max(2, self._images))
        wanted = self._default_clusters if self._default_clusters else 10
        self.clusters_spin.setValue(min(max(2, wanted), max(2, self._images)))
        self.clusters_spin.setToolTip(
            "How many groups to sort the photos into. You can merge, rename and move photos "
            "between groups afterwards."
        )
        self._add_row(form, "Number of &groups:", self.clusters_spin)

        # preset
        self.preset_combo = QComboBox()
        for name, preset in PRESETS.items():
            self.preset_combo.addItem(f"{name}: {preset.summary}", name)
            self.preset_combo.setItemData(
                self.preset_combo.count() - 1, preset.why, Qt.ItemDataRole.ToolTipRole
            )
        self.preset_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.preset_combo.setMinimumContentsLength(40)
        for name in PRESETS:
            why_not = self.preset_problem(name)
            if why_not is not None:
                row = self.preset_combo.findData(name)
                _set_item_enabled(self.preset_combo, row, False)
                self.preset_combo.setItemData(row, why_not, Qt.ItemDataRole.ToolTipRole)
        default = default_preset_name(
            self.detected_kind,
            self._quick_available,
            torchvision_usable=self._torchvision_problem is None,
        )
        if (
            self._default_preset in PRESETS
            and self.preset_problem(str(self._default_preset)) is None
        ):
            default = str(self._default_preset)
            self._preset_chosen = True  # the user's own default does not follow the device
        self.preset_combo.setCurrentIndex(max(0, self.preset_combo.findData(default)))
        self._add_row(form, "&Preset:", self.preset_combo)

        # training size
        self.size_spin = QSpinBox()
        self.size_spin.setRange(8, 1024)
        self.size_spin.setSingleStep(8)
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip(
            "The side of the small square copy of each photo the training looks at. Larger "
            "keeps more detail but is slower and takes more disk space."
        )
        self._add_row(form, "Training &size:", self.size_spin)

        # device
        self.device_combo = QComboBox()
        for request, text in DEVICE_OPTIONS.items():
            note = self._device_notes.get(request)
            if request == "auto":
                text = f"{text} ({_DEVICE_WORDS.get(self.detected_kind, self.detected_kind)})"
            elif note is not None:
                text = f"{text}: not available"
            self.device_combo.addItem(text, request)
            row = self.device_combo.count() - 1
            tip = note if note is not None else self._device_tip(request)
            self.device_combo.setItemData(row, tip, Qt.ItemDataRole.ToolTipRole)
            _set_item_enabled(self.device_combo, row, note is None)
        self.device_combo.setToolTip("Where the training runs. A GPU is many times faster.")
        if self._default_device is not None and self.is_device_available(self._default_device):
            self.device_combo.setCurrentIndex(self.device_combo.findData(self._default_device))
        self.device_label = QLabel(self._detected_text())
        self.device_label.setWordWrap(True)
        self.device_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.device_label.setStyleSheet("color: palette(placeholder-text);")
        device_box = QWidget()
        device_layout = QVBoxLayout(device_box)
        device_layout.setContentsMargins(0, 0, 0, 0)
        device_layout.setSpacing(2)
        device_layout.addWidget(self.device_combo)
        device_layout.addWidget(self.device_label)
        label = self._add_row(form, "&Device:", device_box)
        label.setBuddy(self.device_combo)

        # advanced (collapsed)
        self.advanced_button = QToolButton()
        self.advanced_button.setText("&Advanced settings")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setAutoRaise(True)
        self.advanced_button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.advanced_button.setToolTip("Show the network, length and loss settings.")
        layout.addWidget(self.advanced_button)
        self.advanced_box = self._build_advanced()
        self.advanced_box.setVisible(False)
        layout.addWidget(self.advanced_box)

        # estimate, error, buttons
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        layout.addWidget(line)
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setToolTip(
            "First a rough guess from typical speeds, then this computer's speed, measured "
            "with a few real training steps of these settings. Disk: the pixel cache at the "
            "training size and the checkpoint each run keeps (larger while it trains: it "
            "also holds the optimiser state)."
        )
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
        self.setMinimumWidth(660)

        self.setTabOrder(self.clusters_spin, self.preset_combo)
        self.setTabOrder(self.preset_combo, self.size_spin)
        self.setTabOrder(self.size_spin, self.device_combo)
        self.setTabOrder(self.device_combo, self.advanced_button)
        self.setTabOrder(self.advanced_button, self.backbone_combo)
        self.setTabOrder(self.backbone_combo, self.pretrained_check)
        self.setTabOrder(self.pretrained_check, self.epochs_radio)
        self.setTabOrder(self.epochs_radio, self.epochs_spin)
        self.setTabOrder(self.epochs_spin, self.minutes_radio)
        self.setTabOrder(self.minutes_radio, self.minutes_spin)
        self.setTabOrder(self.minutes_spin, self.lambda_ent_spin)
        self.setTabOrder(self.lambda_ent_spin, self.critic_combo)
        self.setTabOrder(self.critic_combo, self.framework_combo)
        self.setTabOrder(self.framework_combo, self.stage_combo)
        self.setTabOrder(self.stage_combo, self.freeze_check)
        self.setTabOrder(self.freeze_check, self.stage_optim_combo)
        self.setTabOrder(self.stage_optim_combo, self.ok_button)
        self.clusters_spin.setFocus()

    def _build_advanced(self) -> QFrame:
        box = QFrame()
        box.setFrameShape(QFrame.Shape.StyledPanel)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)

        self.backbone_combo = _choice_combo(
            BACKBONE_NAMES,
            _BACKBONE_TEXT,
            "The network that looks at the photos. Bigger networks see finer differences but "
            "need a GPU.",
        )
        if self._torchvision_problem is not None:
            for name in TORCHVISION_BACKBONES:
                row = self.backbone_combo.findData(name)
                _set_item_enabled(self.backbone_combo, row, False)
                self.backbone_combo.setItemData(
                    row, self._torchvision_problem, Qt.ItemDataRole.ToolTipRole
                )
        self._add_row(form, "&Network:", self.backbone_combo)

        self.pretrained_check = QCheckBox("Start from ImageNet &weights")
        self.pretrained_check.setToolTip(
            "Begin with a network already trained on ImageNet photos (ResNet-18/50: downloaded "
            "once; EfficientNet-Lite0: always, its weights are installed with it). Usually "
            "better groups for everyday photos, sooner."
        )
        form.addRow(QLabel(""), self.pretrained_check)

        self.epochs_radio = QRadioButton("&Epochs:")
        self.epochs_radio.setToolTip("Train for a fixed number of passes over all photos.")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 100000)
        self.epochs_spin.setToolTip("How many times the training goes over every photo.")
        self.minutes_radio = QRadioButton("&Time budget:")
        self.minutes_radio.setToolTip("Train for as many passes as fit in this time.")
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.5, 10080.0)
        self.minutes_spin.setDecimals(1)
        self.minutes_spin.setSingleStep(5.0)
        self.minutes_spin.setValue(10.0)
        self.minutes_spin.setSuffix(" min")
        self.minutes_spin.setToolTip("Stop training after this many minutes.")
        self.length_group = QButtonGroup(self)
        self.length_group.addButton(self.epochs_radio)
        self.length_group.addButton(self.minutes_radio)
        self.epochs_radio.setChecked(True)
        length = QWidget()
        grid = QGridLayout(length)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.epochs_radio, 0, 0)
        grid.addWidget(self.epochs_spin, 0, 1)
        grid.addWidget(self.minutes_radio, 1, 0)
        grid.addWidget(self.minutes_spin, 1, 1)
        form.addRow(QLabel("Length:"), length)

        self.lambda_ent_spin = QDoubleSpinBox()
        self.lambda_ent_spin.setRange(0.0, 100.0)
        self.lambda_ent_spin.setDecimals(2)
        self.lambda_ent_spin.setSingleStep(0.1)
        self.lambda_ent_spin.setToolTip(
            "Entropy weight (lambda_ent): how strongly the training keeps the groups of similar "
            "size. Lower it if your photos fall into groups of very different sizes."
        )
        self._add_row(form, "E&ntropy weight:", self.lambda_ent_spin)

        self.critic_combo = _choice_combo(
            CRITIC_NAMES,
            _CRITIC_TEXT,
            "How the training compares the group guesses of two views of a photo. Keep the "
            "paper's choice unless you are experimenting.",
        )
        self._add_row(form, "&Critic:", self.critic_combo)

        self.framework_combo = _choice_combo(
            FRAMEWORKS,
            _FRAMEWORK_TEXT,
            "SimCLR compares two views of every photo in each step (the paper's best results). "
            "MemoryBank looks at one view and compares it with remembered photos: about half "
            "the time and less memory per step, but slower to converge.",
        )
        self._add_row(form, "&Framework:", self.framework_combo)

        self.stage_combo = _choice_combo(
            tuple(_STAGE_TEXT),
            _STAGE_TEXT,
            "Two-stage first learns what makes photos alike (stage 1), then finds each photo's "
            "50 nearest neighbours and trains the grouping so neighbours share a group "
            "(stage 2). Two runs; stage 2 can be repeated alone.",
        )
        self._add_row(form, "&Scheme:", self.stage_combo)
        self.freeze_check = QCheckBox("Keep the network &fixed in stage 2 (faster)")
        self.freeze_check.setToolTip(
            "Stage 2 trains only the grouping head on top of the stage-1 network."
        )
        form.addRow(QLabel(""), self.freeze_check)
        self.stage_optim_combo = _choice_combo(
            STAGE_OPTIMS,
            _STAGE_OPTIM_TEXT,
            "The paper trains stage 1 with SGD at lr 0.4 (cosine decay) and stage 2 with Adam at "
            "lr 1e-4, or SGD at lr 5.0 on a fixed network. Those values were tuned for large "
            "batches on a GPU; if stage 2 stops with a diverged loss, choose the preset's SGD.",
        )
        self._add_row(form, "&Optimisers:", self.stage_optim_combo)
        return box

    @staticmethod
    def _add_row(form: QFormLayout, text: str, field: QWidget) -> QLabel:
        """Add ``field`` with a label whose mnemonic focuses it; lists and boxes get wide."""
        if not isinstance(field, QSpinBox | QDoubleSpinBox):
            field.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        label = QLabel(text)
        label.setBuddy(field)
        form.addRow(label, field)
        return label

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

    def _device_tip(self, request: str) -> str:
        if request == "auto":
            return "Use the fastest device found: " + self._detected_text()
        if request == "cpu":
            return "Train on the processor. Works everywhere; slow for big networks."
        return "Available."

    def _detected_text(self) -> str:
        if self._auto is None:
            return "Detected: no device could be checked; using the CPU."
        return f"Detected: {self._auto.device} ({self._auto.reason})"

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
        request = self.device_request()
        return self.detected_kind if request == "auto" else request

    def is_device_available(self, request: str) -> bool:
        """Whether ``request`` can be chosen in the device list."""
        row = self.device_combo.findData(request)
        return row >= 0 and _combo_item_enabled(self.device_combo, row)

    def device_unavailable_reason(self, request: str) -> str | None:
        """Why ``request`` is unavailable (the probe's message), ``None`` if it is usable."""
        return self._device_notes.get(request)

    def uses_time_budget(self) -> bool:
        """Whether the run length is a time budget rather than epochs."""
        return self.minutes_radio.isChecked()

    def _preset_values(self, preset: str) -> dict[str, Any]:
        """The preset's value of every edited field (dataclass defaults where it is silent)."""
        defaults = TrainConfig(clusters=2)
        values = {name: getattr(defaults, name) for name in self.EDITED_FIELDS}
        preset_settings = PRESETS[preset].settings if preset in PRESETS else {}
        values.update({k: v for k, v in preset_settings.items() if k in values})
        return values

    def _widget_values(self) -> dict[str, Any]:
        return {
            "image_size": self.size_spin.value(),
            "backbone": str(self.backbone_combo.currentData()),
            "epochs": None if self.uses_time_budget() else self.epochs_spin.value(),
            "minutes": self.minutes_spin.value() if self.uses_time_budget() else None,
            "lambda_ent": round(self.lambda_ent_spin.value(), self.lambda_ent_spin.decimals()),
            "critic": str(self.critic_combo.currentData()),
            "pretrained": self._pretrained_value(),
            "framework": str(self.framework_combo.currentData()),
            "stage": str(self.stage_combo.currentData()),
            "freeze_backbone": self.stage_combo.currentData() == "two_stage"
            and self.freeze_check.isChecked(),
            "stage_optim": str(self.stage_optim_combo.currentData())
            if self.stage_combo.currentData() == "two_stage"
            else self._preset_values(self.preset_name())["stage_optim"],
        }

    def _pretrained_value(self) -> bool:
        """What the weights box means for the chosen network (EfficientNet: always pretrained,
        recorded as the preset has it)."""
        backbone = str(self.backbone_combo.currentData())
        if backbone == "efficientnet_lite0":
            return self._pretrained_wanted
        if backbone not in PRETRAINED_BACKBONES:
            return False
        return self.pretrained_check.isChecked()

    def overrides(self) -> dict[str, Any]:
        """The settings that differ from the chosen preset (what :meth:`config` passes on)."""
        preset = self._preset_values(self.preset_name())
        values = self._widget_values()
        changed: dict[str, Any] = {}
        for name in self._PLAIN_FIELDS:
            if values[name] != preset[name]:
                changed[name] = values[name]
        if self.uses_time_budget():
            if preset["epochs"] is not None or values["minutes"] != preset["minutes"]:
                changed["minutes"] = values["minutes"]
        elif values["epochs"] != preset["epochs"]:
            changed["epochs"] = values["epochs"]
        if self.device_request() != "auto":
            changed["device"] = self.device_request()
        return changed

    def config(self) -> TrainConfig:
        """The run's settings: the preset plus :meth:`overrides`.

        Raises:
            InvalidSettingError: the settings are invalid (the dialog shows why and keeps
                its OK button disabled meanwhile).
        """
        return resolve_train_config(
            self.clusters_spin.value(), self.preset_name(), self.overrides()
        )

    # -- reactions -----------------------------------------------------------------------------
    def _load_preset(self, preset: str, initial: bool = False) -> None:
        """Show ``preset``'s values in every field the user has not edited."""
        values = self._preset_values(preset)
        self._loading = True
        try:
            if initial or "image_size" not in self._edited:
                self.size_spin.setValue(int(values["image_size"]))
            if initial or "backbone" not in self._edited:
                _select_data(self.backbone_combo, values["backbone"])
            if initial or not self._edited & {"epochs", "minutes"}:
                if values["epochs"] is not None:
                    self.epochs_spin.setValue(int(values["epochs"]))
                    self.epochs_radio.setChecked(True)
                else:
                    self.minutes_radio.setChecked(True)
                if values["minutes"] is not None:
                    self.minutes_spin.setValue(float(values["minutes"]))
            if initial or "lambda_ent" not in self._edited:
                self.lambda_ent_spin.setValue(float(values["lambda_ent"]))
            if initial or "critic" not in self._edited:
                _select_data(self.critic_combo, values["critic"])
            if initial or "pretrained" not in self._edited:
                self.pretrained_check.setChecked(bool(values["pretrained"]))
            if initial or "framework" not in self._edited:
                _select_data(self.framework_combo, values["framework"])
            if initial or "stage" not in self._edited:
                _select_data(self.stage_combo, values["stage"])
            if initial or "freeze_backbone" not in self._edited:
                self.freeze_check.setChecked(bool(values["freeze_backbone"]))
            if initial or "stage_optim" not in self._edited:
                _select_data(self.stage_optim_combo, values["stage_optim"])
            self._update_length_widgets()
            self._update_variant_widgets()
        finally:
            self._loading = False
        why = PRESETS[preset].why if preset in PRESETS else ""
        self.preset_combo.setToolTip(why)

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
        values = self._widget_values()
        requested = {name: values[name] for name in self._edited if name in values}
        default = default_preset_name(
            self.device_kind(),
            self._quick_available,
            requested,
            torchvision_usable=self._torchvision_problem is None,
        )
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
        backbone = str(self.backbone_combo.currentData())
        blocked = self.pretrained_check.blockSignals(True)
        if backbone == "efficientnet_lite0":
            self.pretrained_check.setChecked(True)
            self.pretrained_check.setEnabled(False)
        elif backbone not in PRETRAINED_BACKBONES:
            self.pretrained_check.setChecked(False)
            self.pretrained_check.setEnabled(False)
        else:
            self.pretrained_check.setEnabled(True)
            if not self._pretrained_wanted and "pretrained" not in self._edited:
                self.pretrained_check.setChecked(False)
        self.pretrained_check.blockSignals(blocked)
        two_stage = self.stage_combo.currentData() == "two_stage"
        self.freeze_check.setEnabled(two_stage)
        self.stage_optim_combo.setEnabled(two_stage)

    @property
    def _pretrained_wanted(self) -> bool:
        return bool(self._preset_values(self.preset_name())["pretrained"])

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

    def _revalidate(self) -> None:
        if self._loading:
            return
        error: str | None = None
        config: TrainConfig | None = None
        if self._images < 2:
            error = f"Grouping needs at least 2 photos; this library has {self._images}."
        else:
            try:
                config = self.config()
            except InvalidSettingError as problem:
                error = f"These settings cannot be used: {problem}"
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
        decode = 0 if config.image_size in self._cached_sizes else self._images
        return estimate_training(
            config,
            self._images,
            self.device_kind(),
            self.calibration(config),
            decode_images=decode,
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
