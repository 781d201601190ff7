"""The runs of the open library: the Runs menu (show another completed run, delete the current
one) and the unfinished runs (resume one from its checkpoint, or discard it), offered in the
notice bar when a library opens or a scan ends.
"""

from __future__ import annotations

import traceback

from PySide6.QtWidgets import QMessageBox

from app.controllers.browsing import BrowsingController
from app.controllers.host import Controller, WindowHost
from app.controllers.jobs import JobsController
from app.core.unfinished_runs import UnfinishedRun
from app.engine_jobs import delete_run_job, resume_job
from crlc_engine import api as engine
from crlc_engine.api import CRLCError

__all__ = ["RunsController"]


class RunsController(Controller):
    """Shows, resumes, discards and deletes the library's runs."""

    def __init__(
        self, window: WindowHost, browsing: BrowsingController, jobs: JobsController
    ) -> None:
        super().__init__(window)
        self.browsing = browsing
        self.jobs = jobs

    # ------------------------------------------------------------------ completed runs
    def fill_runs_menu(self) -> None:
        """List the completed runs (newest last) and the unfinished ones."""
        self.window.runs_menu.fill(self.window.session, self.window.runner.running)

    def show_run(self, run_id: str) -> None:
        """Show the groups of another completed run."""
        if self.window.session is not None:
            self.browsing.refresh(run_id)

    def delete_run(self) -> None:
        """Runs > Delete the current run (after a question); the library opens again."""
        window, session = self.window, self.window.session
        if session is None or session.run_id is None or window.runner.running:
            return
        run_id = session.run_id
        answer = QMessageBox.question(
            window.widget, "Delete run", f"Delete run {run_id} and its groups? Labels stay."
        )
        if answer == QMessageBox.StandardButton.Yes:
            folders = list(session.folders)
            workspace = self.library_workspace()
            window.close_session()
            try:
                engine.delete_run(folders, run_id, workspace)
            except CRLCError as error:
                window.show_error(error.kind, str(error), traceback.format_exc())
            window.open_folders(folders, scan=False, workspace=workspace)

    # ------------------------------------------------------------------ unfinished runs
    def offer_resume(self) -> UnfinishedRun | None:
        """Offer, in the notice bar, to resume the newest unfinished run (if any)."""
        window, session = self.window, self.window.session
        if session is None or window.runner.running:
            return None
        runs = [r for r in session.unfinished_runs() if r.busy_pid is None and r.state != "failed"]
        if not runs:
            return None
        run = runs[-1]
        if run.has_checkpoint:
            text, action = f"An unfinished {run.describe()} can be resumed.", "Resume"
        else:
            text = (
                f"An unfinished {run.describe()} stopped before its first checkpoint; it can "
                "start again from the beginning with the same settings."
            )
            action = "Start again"
        window.notice.show_notice(
            text,
            [
                (action, lambda: self.resume_run(run.run_id)),
                ("Discard…", lambda: self.discard_run(run.run_id)),
                ("Later", lambda: None),
            ],
            key=f"resume:{run.run_id}",
        )
        return run

    def resume_run(self, run_id: str) -> None:
        """Continue an unfinished run from its checkpoint (progress in the job panel)."""
        window, session = self.window, self.window.session
        if session is None or window.runner.running:
            return
        worker = resume_job(
            list(session.folders), run_id, self.library_workspace(), window.scan_workers
        )
        self.jobs.start_training("Resuming the grouping", worker)

    def discard_run(self, run_id: str, confirm: bool = True) -> None:
        """Delete an unfinished run (after a confirmation)."""
        window, session = self.window, self.window.session
        if session is None or window.runner.running:
            return
        if confirm:
            answer = QMessageBox.question(
                window.widget,
                "Discard the unfinished run?",
                f"Delete run {run_id} and its checkpoint? It cannot be resumed afterwards. "
                "Your photos, labels and other runs stay.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        worker = delete_run_job(list(session.folders), run_id, self.library_workspace())
        worker.finished.connect(lambda _: self.status(f"Run {run_id} deleted"))
        self.jobs.start("Deleting the unfinished run", worker)
