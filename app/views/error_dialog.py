"""The error dialog: a plain message, what to do, and the details one click away.

Never a traceback in the face of the user: the dialog shows the title and message of
:func:`app.core.error_help.explain` and its advice; the technical details (the traceback
and the versions) stay folded under "Show details" and go to the clipboard with
"Copy details".
"""

from __future__ import annotations

import platform

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.core.error_help import ErrorHelp, explain

__all__ = ["ErrorDialog", "error_details_text", "show_error"]


def _versions() -> str:
    import PySide6

    from crlc_engine import __version__

    return (
        f"CRLC Organizer {__version__}, Python {platform.python_version()}, "
        f"PySide6 {PySide6.__version__}, {platform.platform()}"
    )


def error_details_text(help_: ErrorHelp, kind: str, details: str) -> str:
    """Everything "Copy details" puts on the clipboard (plain text)."""
    parts = [help_.title, "", help_.message]
    if help_.what_to_do:
        parts += ["", f"What to do: {help_.what_to_do}"]
    parts += ["", f"Kind: {kind}", f"Versions: {_versions()}"]
    if details.strip():
        parts += ["", details.rstrip()]
    return "\n".join(parts) + "\n"


class ErrorDialog(QDialog):
    """A non-technical error message with advice and copyable details.

    Args:
        kind: The error's kind (engine ``CRLCError.kind`` or an
            :mod:`app.core.error_help` kind).
        message: What happened, in words (no traceback).
        details: Technical details (traceback); shown only on request.
        parent: Parent widget.
    """

    def __init__(
        self, kind: str, message: str, details: str = "", parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.kind = kind
        self.help = explain(kind, message)
        self.details = details
        self.setWindowTitle(f"CRLC Organizer - {self.help.title}")

        icon = QLabel()
        style_icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        icon.setPixmap(style_icon.pixmap(48, 48))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.title_label = QLabel(f"<b>{_escape(self.help.title)}</b>")
        self.message_label = QLabel(self.help.message)
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.advice_label = QLabel(
            f"<b>What to do:</b> {_escape(self.help.what_to_do)}" if self.help.what_to_do else ""
        )
        self.advice_label.setWordWrap(True)
        self.advice_label.setVisible(bool(self.help.what_to_do))
        self.details_view = QPlainTextEdit(details.rstrip())
        self.details_view.setReadOnly(True)
        self.details_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.details_view.setMinimumHeight(160)
        self.details_view.setVisible(False)

        text = QVBoxLayout()
        text.addWidget(self.title_label)
        text.addWidget(self.message_label)
        text.addWidget(self.advice_label)
        text.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(icon)
        top.addLayout(text, 1)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        self.copy_button = QPushButton("&Copy details")
        self.copy_button.setToolTip("Copy the message, the versions and the technical details")
        self.toggle_button = QPushButton("Show &details")
        self.toggle_button.setCheckable(True)
        self.toggle_button.setEnabled(bool(details.strip()))
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.toggle_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self.accept)
        self.copy_button.clicked.connect(self.copy_details)
        self.toggle_button.toggled.connect(self._toggle_details)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.details_view, 1)
        layout.addWidget(buttons)
        self.setMinimumWidth(540)
        self.adjustSize()

    def details_text(self) -> str:
        """What :meth:`copy_details` copies."""
        return error_details_text(self.help, self.kind, self.details)

    def copy_details(self) -> None:
        """Put the message, advice, versions and details on the clipboard."""
        QGuiApplication.clipboard().setText(self.details_text())
        self.copy_button.setText("Copied")

    def _toggle_details(self, shown: bool) -> None:
        self.details_view.setVisible(shown)
        self.toggle_button.setText("Hide &details" if shown else "Show &details")
        self.adjustSize()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def show_error(parent: QWidget | None, kind: str, message: str, details: str = "") -> ErrorDialog:
    """Open an :class:`ErrorDialog` window-modally (non-blocking) and return it."""
    dialog = ErrorDialog(kind, message, details, parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
