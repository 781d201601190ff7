"""Backbones (explicit registry), heads and the CRLC model."""

from crlc_engine.models.backbones import BACKBONES, Backbone, build_backbone, count_parameters
from crlc_engine.models.crlc_model import CRLCModel, CRLCOutput
from crlc_engine.models.heads import ClusterHeads, RepresentationHead

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
