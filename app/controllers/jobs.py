"""Background jobs of the window: starting any job with its progress in the job panel, and
the grouping jobs, Images > Group images (train) and Images > Refine with labels.

A job runs in :mod:`app.workers` (built by :mod:`app.engine_jobs`); when a training or a
refinement completes, the window shows its groups. When any job is done, the memory it freed
goes back to the system (:func:`app.core.memory.release_freed_memory`).
"""

from __future__ import annotations

from typing import Any

from app.controllers.browsing import BrowsingController
from app.controllers.host import Controller, WindowHost, run_modal
from app.core.memory import release_freed_memory
from app.engine_jobs import refine_job, train_job
from app.views.group_dialog import GroupDialog
from app.views.refine_dialog import RefineDialog
from app.workers import JobWorker
from crlc_engine import api as engine

__all__ = ["JobsController"]


class JobsController(Controller):
    """Starts the window's jobs; groups and refines the open library."""

    def __init__(self, window: WindowHost, browsing: BrowsingController) -> None:
        super().__init__(window)
        self.browsing = browsing

    def start(
        self,
        title: str,
        worker: JobWorker,
        unit: str | None = None,
        report_failure: bool = True,
    ) -> None:
        """Run ``worker`` in the background with its progress in the job panel.

        Args:
            title: What the panel says the job does.
            worker: The job.
            unit: What its progress counts ("files"), for the rate and time left.
            report_failure: Show a failure in the error dialog (else the caller handles it).
        """
        window = self.window
        if (window.notice.key or "").startswith("resume:"):  # a job now would conflict with it
            window.notice.dismiss()
        window.jobs.attach(title, worker, unit)
        if report_failure:
            worker.failed.connect(window.show_error)
        worker.done.connect(window.update_state)
        # the job's freed memory goes back to the system (the window would keep its peak)
        worker.done.connect(release_freed_memory)
        window.runner.start(worker)
        window.update_state()

    def on_trained(self, outcome: Any) -> None:
        """A training or refinement ended: show its groups (completed) or say it stopped."""
        if getattr(outcome, "state", None) == "completed":
            self.browsing.refresh(outcome.run.run_id)
            self.status(f"Grouping finished: run {outcome.run.run_id}", 8000)

    def on_training_stopped(self) -> None:
        """A training or refinement was stopped: say how to go on."""
        self.status("Grouping stopped. It can be resumed later from the Runs menu.", 10000)

    def start_training(self, title: str, worker: JobWorker) -> None:
        """Start a training, refinement or resumed run (its groups shown when it completes)."""
        worker.finished.connect(self.on_trained)
        worker.cancelled.connect(self.on_training_stopped)
        self.start(title, worker)

    def group(self) -> None:
        """Images > Group images: the Group dialog, then a training of the library."""
        window, session = self.window, self.window.session
        if session is None:
            return
        settings = window.settings
        dialog = GroupDialog(
            len(session.library.images()),
            window.widget,
            default_clusters=settings.default_clusters,
            default_preset=settings.default_preset or None,
            default_device=settings.default_device,
        )
        if run_modal(dialog):
            worker = train_job(
                list(session.folders),
                dialog.config(),
                self.library_workspace(),
                workers=window.scan_workers,
                names_from=session.run_id,  # names follow the groups shown now
            )
            self.start_training("Grouping images", worker)

    def refine_dialog(self) -> RefineDialog | None:
        """The Refine dialog for the shown run (what it will do, length, device, estimate)."""
        session = self.window.session
        if session is None or session.run_id is None:
            return None
        setup = session.refine_setup()
        speeds = engine.SpeedCache()  # the estimate modules load when first needed
        # a quick run's features are cached: its refinement trains the heads only
        cached = setup.images if engine.is_quick(setup.base) else 0

        def estimate(epochs: int | None, minutes: float | None, kind: str) -> Any:
            config = setup.config(epochs, minutes)
            return engine.estimate_training(
                config,
                setup.images,
                kind,
                speeds.get(config, kind) or speeds.get(setup.base, kind),
                cached_features=cached,
            )

        return RefineDialog(
            setup.labels,
            setup.groups,
            setup.default_epochs,
            estimate,
            self.window.widget,
            default_device=self.window.settings.default_device,
        )

    def refine(self) -> None:
        """Images > Refine with labels: the Refine dialog, then a refinement of the run."""
        dialog = self.refine_dialog()
        session = self.window.session
        if dialog is None or session is None or not run_modal(dialog):
            return
        choice = dialog.choice()
        worker = refine_job(
            list(session.folders),
            session.run_id,
            choice.epochs,
            choice.minutes,
            self.library_workspace(),
            device=choice.device,
        )
        self.start_training("Refining with your labels", worker)
