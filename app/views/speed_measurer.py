"""Measures this computer's speed for a run's settings on a worker thread, for a dialog.

A measurement builds the run's network (the quick preset: the pretrained backbone) and runs
a few real steps; when it ends, the memory it freed is handed back to the system
(:func:`app.core.memory.trim_heap`), else the window would keep it through the run that
follows (measured: about 100 MB with the quick preset).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Signal

from app.core.memory import trim_heap
from crlc_engine.api import JobControl, SpeedCache, TrainConfig

__all__ = ["SpeedMeasurer"]


class SpeedMeasurer(QObject):
    """Measures the speed of one setting at a time on a worker thread.

    :meth:`start` cancels the measurement in progress (its result is dropped) and starts a
    new one; the results come back on the GUI thread through :attr:`measured` and
    :attr:`failed` (with the measured setting's key).
    """

    measured = Signal(str, object)
    failed = Signal(str, str)

    def __init__(self, speeds: SpeedCache, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.speeds = speeds
        self._control: JobControl | None = None
        self.key: str | None = None

    @property
    def running(self) -> bool:
        """Whether a measurement is in progress."""
        return self._control is not None

    def start(self, key: str, config: TrainConfig, device_kind: str) -> None:
        """Measure ``config`` on ``device_kind`` (``key``: its speed key)."""
        self.cancel()
        control = JobControl()
        self._control, self.key = control, key
        thread = threading.Thread(
            target=self._run,
            args=(key, config, device_kind, control),
            name="crlc-speed-measure",
            daemon=True,
        )
        thread.start()

    def cancel(self) -> None:
        """Stop the measurement in progress; its result is dropped."""
        if self._control is not None:
            self._control.cancel()
        self._control, self.key = None, None

    def _run(self, key: str, config: TrainConfig, kind: str, control: JobControl) -> None:
        try:
            calibration = self.speeds.measure(config, kind, control)
        except InterruptedError:
            return
        except Exception as error:  # any failure only leaves the rough estimate
            self._emit(control, self.failed, key, str(error) or type(error).__name__)
            return
        finally:  # the network and its activations are gone: give their pages back
            trim_heap()
        self._emit(control, self.measured, key, calibration)

    def _emit(self, control: JobControl, signal: Any, key: str, value: object) -> None:
        if control.cancelled or not shiboken6.isValid(self):
            return
        with contextlib.suppress(RuntimeError):  # the dialog went away meanwhile
            signal.emit(key, value)
