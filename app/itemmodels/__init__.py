"""Qt item models over plain engine data (no widgets): groups and thumbnails.

Importing this package first works around a reference-counting bug of the PySide6 build in
use (seen with PySide6 6.12.0 on CPython 3.11): each time C++ calls a Python override that
returns ``None`` (``data()`` for a role it does not serve, ``paintEvent`` and every other
void override) one reference to ``None`` is lost, and each ``Signal.emit()`` loses one
reference to ``True``. After some thousands of paints or emits the interpreter aborts with
"none_dealloc: deallocating None" or "bool_dealloc: deallocating True or False". Where the
bug is detected, :func:`pin_python_singletons` raises the reference counts of ``None``,
``True`` and ``False`` by 2**56, which makes them immortal in effect, as CPython 3.12 does
for these objects anyway. Elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Signal

_PIN = 1 << 56


class _NoneModel(QAbstractListModel):
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 1

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> None:
        return None


class _Emitter(QObject):
    ping = Signal()


def binding_drops_references() -> bool:
    """Whether this PySide6 build loses references to ``None`` or ``True`` (see above)."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False  # None, True and False are immortal there
    model = _NoneModel()
    index = model.index(0, 0)
    emitter = _Emitter()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(16):
        index.data()  # C++ QModelIndex::data -> Python data() -> None
        emitter.ping.emit()
    lost_none = none_before - sys.getrefcount(None)
    lost_true = true_before - sys.getrefcount(True)
    return lost_none >= 16 or lost_true >= 16


def pin_python_singletons() -> bool:
    """Make ``None``, ``True`` and ``False`` immortal in effect if the binding needs it.

    Idempotent. Returns whether the workaround is active.
    """
    if not binding_drops_references():
        return False
    for singleton in (None, True, False):
        refcount = ctypes.c_ssize_t.from_address(id(singleton))  # ob_refcnt, CPython < 3.12
        if refcount.value < _PIN // 2:
            refcount.value += _PIN
    return True


#: Whether :func:`pin_python_singletons` found the bug and pinned the singletons.
PYSIDE_REFCOUNT_WORKAROUND = pin_python_singletons()

from app.itemmodels.clusters import PALETTE, GroupListModel, group_color  # noqa: E402
from app.itemmodels.thumbnail_cache import ThumbnailCache, decode_thumbnail  # noqa: E402
from app.itemmodels.thumbnails import (  # noqa: E402
    IMAGE_IDS_MIME,
    ThumbnailGridModel,
    cluster_members,
    decode_image_ids,
    encode_image_ids,
)

__all__ = [
    "IMAGE_IDS_MIME",
    "PALETTE",
    "PYSIDE_REFCOUNT_WORKAROUND",
    "GroupListModel",
    "ThumbnailCache",
    "ThumbnailGridModel",
    "binding_drops_references",
    "cluster_members",
    "decode_image_ids",
    "decode_thumbnail",
    "encode_image_ids",
    "group_color",
    "pin_python_singletons",
]
