"""Whether torchvision is usable, without loading it only to grey out the Group dialog.

The Group dialog greys out the presets and networks that train a ResNet when torchvision is
not usable (:func:`crlc_engine.pipeline.presets.torchvision_problem`). That check imports
torchvision, which brings torch's compiler stack with it (``torch._dynamo``, sympy, triton):
about 200 MB that the window then keeps for good (measured with the CUDA torch build: 692 ->
905 MB resident when the dialog opened), although the quick and cpu presets never use it.

:func:`torchvision_problem` answers without that import: the engine's answer when it costs
nothing (torchvision is loaded already, the full check ran before, or torchvision is not
installed at all, so that its import fails at once), else ``None``: installed, and taken as
usable until a ResNet is chosen. Then the dialog calls :func:`checked_torchvision_problem`,
which imports it (the ResNet run imports it anyway); a broken install (a build for another
torch) is found there and greys the ResNet choices from then on.
"""

from __future__ import annotations

import importlib.util
import sys

from crlc_engine import api as engine

__all__ = ["checked_torchvision_problem", "torchvision_problem"]

_checked = False  # the engine's check ran in this process (its answer is cached there)


def _installed_not_loaded() -> bool:
    """Whether torchvision is installed but not imported yet (importing it is the cost)."""
    if _checked or "torchvision" in sys.modules:
        return False
    try:
        return importlib.util.find_spec("torchvision") is not None
    except (ImportError, ValueError):  # a broken package entry: the real check says why
        return False


def torchvision_problem() -> str | None:
    """Why torchvision is not usable, when that is known without importing it; ``None``
    when it is usable or installed but not loaded yet (see the module's description)."""
    if _installed_not_loaded():
        return None
    return checked_torchvision_problem()


def checked_torchvision_problem() -> str | None:
    """Why torchvision is not usable (``None``: it is), importing it if needed (the engine's
    :func:`~crlc_engine.pipeline.presets.torchvision_problem`, cached per process)."""
    global _checked
    problem = engine.torchvision_problem()
    _checked = True
    return problem
