"""Backbones (explicit registry), heads and the CRLC model; ImageNet weights (:mod:`.weights`).

The names below are loaded on first use (PEP 562 ``__getattr__``): the networks need torch,
and importing a torch-free part of the package, such as :mod:`.weights`, must not pull it in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crlc_engine.models.backbones import (
        BACKBONES,
        Backbone,
        build_backbone,
        count_parameters,
    )
    from crlc_engine.models.crlc_model import CRLCModel, CRLCOutput
    from crlc_engine.models.heads import ClusterHeads, RepresentationHead

#: Name -> the module that defines it.
_LOCATIONS = {
    "BACKBONES": "crlc_engine.models.backbones",
    "Backbone": "crlc_engine.models.backbones",
    "build_backbone": "crlc_engine.models.backbones",
    "count_parameters": "crlc_engine.models.backbones",
    "CRLCModel": "crlc_engine.models.crlc_model",
    "CRLCOutput": "crlc_engine.models.crlc_model",
    "ClusterHeads": "crlc_engine.models.heads",
    "RepresentationHead": "crlc_engine.models.heads",
}


def __getattr__(name: str) -> Any:
    """Import the module that holds ``name`` on first use and keep the value."""
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BACKBONES",
    "Backbone",
    "CRLCModel",
    "CRLCOutput",
    "ClusterHeads",
    "RepresentationHead",
    "build_backbone",
    "count_parameters",
]
