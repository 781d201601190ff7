"""The sections of the Group dialog: its basic fields, the advanced settings, the estimate.

Each builder makes the widgets of one section with their texts and tooltips; the dialog
(:class:`app.views.group_dialog.GroupDialog`) lays them out and gives them their meaning.
:func:`check_torchvision` greys out the ResNet choices later, when torchvision turns out to
be broken the first time a ResNet is chosen.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QLabel,
    QRadioButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.torchvision_check import checked_torchvision_problem
from app.views.form_widgets import add_row, choice_combo, set_item_enabled
from crlc_engine.api import (
    BACKBONE_NAMES,
    CRITIC_NAMES,
    DEVICE_OPTIONS,
    FRAMEWORKS,
    PRESETS,
    STAGE_OPTIMS,
    TORCHVISION_BACKBONES,
    DeviceOptions,
    PresetChoices,
    torchvision_presets,
)

__all__ = [
    "AdvancedSettings",
    "advanced_toggle",
    "check_torchvision",
    "clusters_spin",
    "device_box",
    "device_combo",
    "estimate_label",
    "grey_out",
    "preset_combo",
    "size_spin",
]

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


# ---------------------------------------------------------------------------- basic fields
def clusters_spin(images: int, default: int | None) -> QSpinBox:
    """The number of groups: 2 to the number of photos, ``default`` (else 10) to start."""
    spin = QSpinBox()
    spin.setRange(2, max(2, images))
    wanted = default if default else 10
    spin.setValue(min(max(2, wanted), max(2, images)))
    spin.setToolTip(
        "How many groups to sort the photos into. You can merge, rename and move photos "
        "between groups afterwards."
    )
    return spin


def preset_combo(choices: PresetChoices) -> QComboBox:
    """Every preset with its summary and reason; those that cannot be chosen greyed out, with
    why as their tooltip."""
    combo = QComboBox()
    for name, preset in PRESETS.items():
        combo.addItem(f"{name}: {preset.summary}", name)
        combo.setItemData(combo.count() - 1, preset.why, Qt.ItemDataRole.ToolTipRole)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(40)
    for name in PRESETS:
        why_not = choices.problem(name)
        if why_not is not None:
            grey_out(combo, [name], why_not)
    return combo


def grey_out(combo: QComboBox, names: Iterable[str], why: str) -> None:
    """Grey out the items of ``names`` in ``combo``, with ``why`` as their tooltip."""
    for name in names:
        row = combo.findData(name)
        if row >= 0:
            set_item_enabled(combo, row, False)
            combo.setItemData(row, why, Qt.ItemDataRole.ToolTipRole)


def check_torchvision(
    choices: PresetChoices, preset: QComboBox, backbone: QComboBox
) -> PresetChoices:
    """``choices`` once torchvision is checked, when ``backbone`` shows a ResNet and it was
    not checked yet (the dialog does not load torchvision before: see
    :mod:`app.core.torchvision_check`; the ResNet's run loads it anyway). A broken one greys
    out the presets and networks that need it, with why as their tooltip, and new choices
    are returned; otherwise ``choices`` itself."""
    if choices.torchvision_problem is not None:
        return choices
    if backbone.currentData() not in TORCHVISION_BACKBONES:
        return choices
    problem = checked_torchvision_problem()
    if problem is None:
        return choices
    grey_out(preset, torchvision_presets(), problem)
    grey_out(backbone, TORCHVISION_BACKBONES, problem)
    return PresetChoices(choices.quick_available, problem)


def size_spin() -> QSpinBox:
    """The training size in pixels."""
    spin = QSpinBox()
    spin.setRange(8, 1024)
    spin.setSingleStep(8)
    spin.setSuffix(" px")
    spin.setToolTip(
        "The side of the small square copy of each photo the training looks at. Larger "
        "keeps more detail but is slower and takes more disk space."
    )
    return spin


def device_combo(devices: DeviceOptions) -> QComboBox:
    """Every device request; the unavailable ones greyed out, with the probe's message."""
    combo = QComboBox()
    for request in DEVICE_OPTIONS:
        combo.addItem(devices.label(request), request)
        row = combo.count() - 1
        combo.setItemData(row, devices.tip(request), Qt.ItemDataRole.ToolTipRole)
        set_item_enabled(combo, row, devices.note(request) is None)
    combo.setToolTip("Where the training runs. A GPU is many times faster.")
    return combo


def device_box(combo: QComboBox, label: QLabel) -> QWidget:
    """The device list above the line saying what was detected (``label``)."""
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setStyleSheet("color: palette(placeholder-text);")
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    layout.addWidget(combo)
    layout.addWidget(label)
    return box


def advanced_toggle() -> QToolButton:
    """The button that shows and hides the advanced settings."""
    button = QToolButton()
    button.setText("&Advanced settings")
    button.setCheckable(True)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setArrowType(Qt.ArrowType.RightArrow)
    button.setAutoRaise(True)
    button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    button.setToolTip("Show the network, length and loss settings.")
    return button


def estimate_label() -> QLabel:
    """Where the estimate of the time and the disk space is shown."""
    label = QLabel()
    label.setWordWrap(True)
    label.setToolTip(
        "First a rough guess from typical speeds, then this computer's speed, measured "
        "with a few real training steps of these settings. Disk: the pixel cache at the "
        "training size and the checkpoint each run keeps (larger while it trains: it "
        "also holds the optimiser state)."
    )
    return label


# ------------------------------------------------------------------------ advanced settings
class AdvancedSettings(QFrame):
    """The network, length, loss and scheme fields (collapsed at first).

    Args:
        torchvision_problem: Why the ResNet networks cannot be chosen (greyed out, with
            this as their tooltip); ``None``: they can.
        parent: Parent widget.
    """

    def __init__(self, torchvision_problem: str | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self._build_network(form, torchvision_problem)
        self._build_length(form)
        self._build_loss(form)
        self._build_scheme(form)

    def _build_network(self, form: QFormLayout, torchvision_problem: str | None) -> None:
        self.backbone_combo = choice_combo(
            BACKBONE_NAMES,
            _BACKBONE_TEXT,
            "The network that looks at the photos. Bigger networks see finer differences but "
            "need a GPU.",
        )
        if torchvision_problem is not None:
            grey_out(self.backbone_combo, TORCHVISION_BACKBONES, torchvision_problem)
        add_row(form, "&Network:", self.backbone_combo)
        self.pretrained_check = QCheckBox("Start from ImageNet &weights")
        self.pretrained_check.setToolTip(
            "Begin with a network already trained on ImageNet photos (ResNet-18/50: downloaded "
            "once; EfficientNet-Lite0: always, its weights are installed with it). Usually "
            "better groups for everyday photos, sooner."
        )
        form.addRow(QLabel(""), self.pretrained_check)

    def _build_length(self, form: QFormLayout) -> None:
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

    def _build_loss(self, form: QFormLayout) -> None:
        self.lambda_ent_spin = QDoubleSpinBox()
        self.lambda_ent_spin.setRange(0.0, 100.0)
        self.lambda_ent_spin.setDecimals(2)
        self.lambda_ent_spin.setSingleStep(0.1)
        self.lambda_ent_spin.setToolTip(
            "Entropy weight (lambda_ent): how strongly the training keeps the groups of similar "
            "size. Lower it if your photos fall into groups of very different sizes."
        )
        add_row(form, "E&ntropy weight:", self.lambda_ent_spin)
        self.critic_combo = choice_combo(
            CRITIC_NAMES,
            _CRITIC_TEXT,
            "How the training compares the group guesses of two views of a photo. Keep the "
            "paper's choice unless you are experimenting.",
        )
        add_row(form, "&Critic:", self.critic_combo)
        self.framework_combo = choice_combo(
            FRAMEWORKS,
            _FRAMEWORK_TEXT,
            "SimCLR compares two views of every photo in each step (the paper's best results). "
            "MemoryBank looks at one view and compares it with remembered photos: about half "
            "the time and less memory per step, but slower to converge.",
        )
        add_row(form, "&Framework:", self.framework_combo)

    def _build_scheme(self, form: QFormLayout) -> None:
        self.stage_combo = choice_combo(
            tuple(_STAGE_TEXT),
            _STAGE_TEXT,
            "Two-stage first learns what makes photos alike (stage 1), then finds each photo's "
            "50 nearest neighbours and trains the grouping so neighbours share a group "
            "(stage 2). Two runs; stage 2 can be repeated alone.",
        )
        add_row(form, "&Scheme:", self.stage_combo)
        self.freeze_check = QCheckBox("Keep the network &fixed in stage 2 (faster)")
        self.freeze_check.setToolTip(
            "Stage 2 trains only the grouping head on top of the stage-1 network."
        )
        form.addRow(QLabel(""), self.freeze_check)
        self.stage_optim_combo = choice_combo(
            STAGE_OPTIMS,
            _STAGE_OPTIM_TEXT,
            "The paper trains stage 1 with SGD at lr 0.4 (cosine decay) and stage 2 with Adam at "
            "lr 1e-4, or SGD at lr 5.0 on a fixed network. Those values were tuned for large "
            "batches on a GPU; if stage 2 stops with a diverged loss, choose the preset's SGD.",
        )
        add_row(form, "&Optimisers:", self.stage_optim_combo)

    def focus_chain(self) -> list[QWidget]:
        """The fields in tab order."""
        return [
            self.backbone_combo,
            self.pretrained_check,
            self.epochs_radio,
            self.epochs_spin,
            self.minutes_radio,
            self.minutes_spin,
            self.lambda_ent_spin,
            self.critic_combo,
            self.framework_combo,
            self.stage_combo,
            self.freeze_check,
            self.stage_optim_combo,
        ]
