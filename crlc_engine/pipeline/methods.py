"""The registry of training methods: which method trains a run's settings.

Each entry is a :class:`~crlc_engine.pipeline.method_base.TrainingMethod` subclass; the
first whose ``applies_to`` accepts the settings trains the run, so the most specific comes
first and :class:`PixelMethod` (CRLC on the pixels) is the fallback. A new training variant
is one class and one line here.
"""

from __future__ import annotations

from crlc_engine.core.config import TrainConfig
from crlc_engine.pipeline.feature_method import FeatureHeadsMethod
from crlc_engine.pipeline.method_base import TrainingMethod
from crlc_engine.pipeline.pixel_method import PixelMethod

#: Every training method, most specific first.
METHODS: list[type[TrainingMethod]] = [
    FeatureHeadsMethod,
    PixelMethod,
]


def method_for(config: TrainConfig) -> TrainingMethod:
    """A new instance of the method that trains runs with ``config``."""
    for method in METHODS:
        if method.applies_to(config):
            return method()
    raise LookupError(f"no training method for the settings of preset {config.preset!r}")
