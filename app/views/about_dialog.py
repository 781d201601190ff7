"""The About dialog: the app's version, the versions of the libraries it runs on, the device
it computes on (with the GPU's name) and where its log and settings are.

:func:`version_rows` and :func:`device_rows` are plain functions (no dialog needed), so the
same lines can go into a bug report; "Copy" puts them on the clipboard.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.icons import app_icon

__all__ = ["AboutDialog", "device_rows", "package_version", "version_rows"]

NOT_INSTALLED = "not installed"

#: Module -> the distributions that may provide it (the first one installed is reported).
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "numpy": ("numpy",),
    "faiss": ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss"),
    "PySide6": ("PySide6", "PySide6-Essentials"),
}


def package_version(module: str) -> str:
    """The version of ``module``: its ``__version__`` when it is imported already (what
    actually runs), else its distribution's metadata (without importing it), else
    "not installed"."""
    loaded = sys.modules.get(module)
    version = getattr(loaded, "__version__", None) if loaded is not None else None
    if isinstance(version, str) and version:
        return version
    for distribution in _DISTRIBUTIONS.get(module, (module,)):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return NOT_INSTALLED


def version_rows() -> list[tuple[str, str]]:
    """(name, version) of the app and of everything it runs on."""
    from crlc_engine import __version__

    torch_version = package_version("torch")
    torch_module = sys.modules.get("torch")
    cuda = getattr(getattr(torch_module, "version", None), "cuda", None)
    if torch_version != NOT_INSTALLED and torch_module is not None:
        torch_version += f" (CUDA {cuda})" if cuda else " (CPU build)"
    return [
        ("CRLC Organizer", __version__),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("PyTorch", torch_version),
        ("torchvision", package_version("torchvision")),
        ("PySide6 / Qt", f"{package_version('PySide6')} / Qt {qVersion()}"),
        ("NumPy", package_version("numpy")),
        ("faiss", package_version("faiss")),
        ("System", platform.platform()),
    ]


def device_rows(request: str = "auto") -> list[tuple[str, str]]:
    """(what, value) of the device used for grouping with the device setting ``request``.

    A device the settings ask for that this computer lacks is reported with the device
    "auto" picks instead. A CUDA device is named, with its memory.
    """
    from crlc_engine.api import CRLCError, resolve_device

    rows: list[tuple[str, str]] = []
    try:
        choice = resolve_device(request)
    except CRLCError as error:
        choice = resolve_device("auto")
        rows.append(("Device setting", f"{request}: not available here ({error})"))
    rows.insert(0, ("Device in use", f"{choice.device} ({choice.reason})"))
    if choice.device.type == "cuda":
        import torch

        index = choice.device.index or 0
        properties = torch.cuda.get_device_properties(index)
        memory = properties.total_memory / 2**30
        rows.append(("CUDA device", f"{properties.name}, {memory:.0f} GiB"))
    return rows


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(path: Path) -> str:
    return f'<a href="{QUrl.fromLocalFile(str(path)).toString()}">{_escape(str(path))}</a>'


class AboutDialog(QDialog):
    """What runs: versions, device, log folder and settings file.

    Args:
        device_request: The device setting (``auto``, ``cpu``, ``cuda``, ``mps``).
        log_folder: Where the log is written.
        settings_file: Where the settings are stored (None: not shown).
        parent: Parent widget.
    """

    def __init__(
        self,
        device_request: str,
        log_folder: Path,
        settings_file: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("About CRLC Organizer")
        self.rows = version_rows() + device_rows(device_request)
        self.rows.append(("Log folder", str(log_folder)))
        if settings_file is not None:
            self.rows.append(("Settings file", str(settings_file)))
        links = {"Log folder": log_folder, "Settings file": settings_file}
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(64, 64))
        intro = QLabel(
            "<b>CRLC Organizer</b><br>Sorts photos into groups with CRLC deep clustering "
            "(Do, Tran and Venkatesh, ICCV 2021)."
        )
        intro.setWordWrap(True)
        table = "".join(
            f"<tr><td><b>{_escape(name)}</b>&nbsp;&nbsp;</td><td>"
            f"{_link(path) if (path := links.get(name)) is not None else _escape(value)}"
            "</td></tr>"
            for name, value in self.rows
        )
        self.details = QLabel(f"<table>{table}</table>")
        self.details.setObjectName("about-details")
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setOpenExternalLinks(True)
        self.details.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        self.copy_button = QPushButton("&Copy")
        self.copy_button.setToolTip("Copy these lines (for a bug report)")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self.accept)
        self.copy_button.clicked.connect(self.copy)
        layout = QVBoxLayout(self)
        layout.addWidget(icon, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(intro)
        layout.addWidget(self.details)
        layout.addWidget(buttons)

    def text(self) -> str:
        """The rows as plain text, one "name: value" per line."""
        return _plain(self.rows)

    def copy(self) -> None:
        """Put :meth:`text` on the clipboard."""
        QGuiApplication.clipboard().setText(self.text())
        self.copy_button.setText("Copied")


def _plain(rows: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{name}: {value}\n" for name, value in rows)
