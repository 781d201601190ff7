"""Keep PySide6 from holding the source code of every module imported after it.

PySide6 looks at each module imported after it to see whether that module uses PySide6 (for
its ``from __feature__ import snake_case`` switches, PYSIDE-2029):
``shibokensupport.feature._mod_uses_pyside`` calls ``inspect.getsource(module)``, which reads
the whole file through :mod:`linecache`, and linecache keeps the lines for good. The window
imports torch, FAISS, numpy and scipy after PySide6: about 1,300 files, some 60 MB of Python
strings that the window then carries (the command line never imports PySide6). Clearing
linecache afterwards gives almost nothing back (the strings lie between long-lived objects),
so :func:`read_sources_uncached` replaces the check, once, before those imports, with one
that gives the same answer (does the module's source file mention ``PySide6``) reading the
file without keeping it (measured: the window 672 -> 611 MB resident once built). Anything
but a plain ``.py`` file is left to PySide6's own check. A PySide6 without the check is left
as it is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType

__all__ = ["read_sources_uncached"]

#: The module of PySide6's feature switches, and the check it runs on each import.
FEATURE_MODULE = "shibokensupport.feature"
CHECK = "_mod_uses_pyside"


def _uncached(check: Callable[[ModuleType], bool]) -> Callable[[ModuleType], bool]:
    def mod_uses_pyside(module: ModuleType) -> bool:
        """Whether ``module``'s source mentions PySide6 (``.py`` files read uncached)."""
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path.endswith(".py"):
            return check(module)  # a package without a file, a .pyc, a zip...: PySide6's way
        try:
            with open(path, "rb") as source:
                return b"PySide6" in source.read()
        except OSError:
            return False  # as PySide6's check: a module without a readable source

    mod_uses_pyside.crlc_uncached = True  # type: ignore[attr-defined]
    return mod_uses_pyside


def read_sources_uncached() -> bool:
    """Replace PySide6's check of imported modules by one that keeps no source (once; call
    it right after importing PySide6). Returns whether the check is the uncached one now."""
    feature = sys.modules.get(FEATURE_MODULE)
    check = getattr(feature, CHECK, None)
    if feature is None or not callable(check):
        return False
    if not getattr(check, "crlc_uncached", False):
        setattr(feature, CHECK, _uncached(check))
    return True
