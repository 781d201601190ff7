"""A message bar above the window's content with a few action buttons (non-modal).

Used for offers that should not block the window: "An unfinished run can be resumed:
Resume / Discard / Later", "The folder … was not found: Locate folder… / Remove from
recent". Every button hides the bar before it runs its action.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

__all__ = ["NoticeBar"]


class NoticeBar(QFrame):
    """One notice at a time: a text and buttons ``(label, action)``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notice-bar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet(
            "#notice-bar { background: #fff4d6; border: 1px solid #e0c46c; border-radius: 4px; }"
            " #notice-bar QLabel { color: #3d3000; }"
        )
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(10, 6, 6, 6)
        self._layout.addWidget(self.text, 1)
        self.buttons: list[QPushButton] = []
        self.key: str | None = None
        self.setVisible(False)

    def show_notice(
        self, text: str, actions: Sequence[tuple[str, Callable[[], object]]], key: str = ""
    ) -> None:
        """Show ``text`` with one button per action (replacing any notice shown).

        Args:
            text: Rich text.
            actions: (button label, what it does).
            key: Names the notice (see :attr:`key`) so callers can tell which one is shown.
        """
        for button in self.buttons:
            self._layout.removeWidget(button)
            button.deleteLater()
        self.buttons = []
        self.text.setText(text)
        for label, action in actions:
            button = QPushButton(label)
            button.clicked.connect(lambda _=False, run=action: self._run(run))
            self._layout.addWidget(button)
            self.buttons.append(button)
        self.key = key or None
        self.setVisible(True)

    def button(self, label: str) -> QPushButton | None:
        """The shown button with this label (``&`` ignored), if any."""
        for button in self.buttons:
            if button.text().replace("&", "") == label.replace("&", ""):
                return button
        return None

    def dismiss(self) -> None:
        """Hide the notice."""
        self.key = None
        self.setVisible(False)

    def _run(self, action: Callable[[], object]) -> None:
        self.dismiss()
        action()
