"""The Runs menu: the completed runs (the one shown is checked) and the unfinished ones.

The entries are rebuilt each time the menu opens, from a
:class:`~app.core.session.LibrarySession`; the fixed actions added by the window (e.g. "Delete
the current run...") stay at the end. Choosing an entry emits a signal; the window does the
work.
"""

# Qt names signals in mixedCase.
# ruff: noqa: N815

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QWidget

from app.core.session import LibrarySession

__all__ = ["RunsMenu"]


#: How the menu names each kind of run (a plain training run shows its preset).
_RUN_KIND_TEXT = {"refine": "refined", "stage2": "two-stage", "quick": "quick"}


def _duration_text(seconds: float) -> str:
    """Training time in words: ``45 s``, ``12 min``, ``2.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _started_text(run_id: str) -> str:
    """``26 Nov 2026 07:30`` from a run id ``YYYYmmdd-HHMMSS-xxxx`` (the id if it is not one)."""
    try:
        started = dt.datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S")
    except ValueError:
        return run_id
    return started.strftime("%d %b %Y %H:%M")


class RunsMenu(QMenu):
    """A menu listing a library's runs.

    Signals:
        showRun(str): a completed run was chosen.
        resumeRun(str): "Resume" of an unfinished run was chosen.
        discardRun(str): "Discard..." of an unfinished run was chosen.
    """

    showRun = Signal(str)
    resumeRun = Signal(str)
    discardRun = Signal(str)

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self._fixed: list[QAction] = []

    def add_fixed(self, action: QAction) -> None:
        """An action that stays below the listed runs."""
        self.addAction(action)
        self._fixed.append(action)

    def fill(self, session: LibrarySession | None, busy: bool) -> None:
        """List the runs of ``session``; ``busy`` (a job runs) disables resuming."""
        for act in list(self.actions()):
            if act not in self._fixed:
                self.removeAction(act)
        if session is None:
            return
        anchor = self._fixed[0] if self._fixed else None
        infos = {r.run_id: r for r in session.library.runs.all()}
        for run_id in session.runs():
            config = infos[run_id].read_config()
            train = config.get("train", {})
            kind = _RUN_KIND_TEXT.get(str(config.get("kind") or ""), "") or str(
                train.get("preset", "")
            )
            if config.get("kind") in (None, "", "train") and config.get("parent"):
                kind = "refined"
            status = infos[run_id].read_status()
            seconds = status.get("elapsed_s")
            took = f", {_duration_text(float(seconds))}" if seconds is not None else ""
            act = QAction(
                f"{run_id}  ({kind}, {train.get('clusters', '?')} groups{took}, "
                f"started {_started_text(run_id)})",
                self,
            )
            act.setCheckable(True)
            act.setChecked(run_id == session.run_id)
            act.triggered.connect(lambda _=False, r=run_id: self.showRun.emit(r))
            self.insertAction(anchor, act)  # type: ignore[arg-type]
        self.insertSeparator(anchor)  # type: ignore[arg-type]
        unfinished = session.unfinished_runs()
        for run in unfinished:
            sub = QMenu(f"Unfinished: {run.describe()}", self)
            resume = sub.addAction("Resume")
            resume.triggered.connect(lambda _=False, r=run.run_id: self.resumeRun.emit(r))
            discard = sub.addAction("Discard...")
            discard.triggered.connect(lambda _=False, r=run.run_id: self.discardRun.emit(r))
            for act in (resume, discard):
                act.setEnabled(not busy and run.busy_pid is None)
            self.insertMenu(anchor, sub)  # type: ignore[arg-type]
        if unfinished:
            self.insertSeparator(anchor)  # type: ignore[arg-type]
