"""The main window: clusters on the left, the selected cluster's thumbnails in the middle,
the selected image with its probabilities and neighbours on the right, the job panel below.

All long work (scan, train, refine, export) runs in :mod:`app.workers`; this module only
wires views to the Qt-free :class:`~app.session.LibrarySession` and the item models.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSettings, QSize, Qt
from PySide6.QtGui import QAction, QCloseEvent, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.models.clusters import ClusterListModel
from app.models.thumbnail_cache import ThumbnailCache
from app.models.thumbnails import ThumbnailGridModel
from app.session import LibrarySession
from app.views.plots import ClusterSizeBars, LossPlot
from app.workers import (
    JobRunner,
    JobWorker,
    export_job,
    refine_job,
    scan_job,
    train_job,
    undo_export_job,
)
from crlc_engine.events import EpochEnded, TrainingStarted

SCAN_SIZE = 32


_warmed_up = False


def warm_up_engine() -> None:
    """Import the training stack and FAISS once on the GUI thread, then freeze the heap.

    Importing torch/torchvision the first time inside a worker thread creates ~150k objects
    and triggers full garbage collections that hold the GIL for 110-190 ms, stalling the GUI
    (measured in benchmarks/gui_responsiveness.py). Imported up front and moved out of the
    collector's reach with ``gc.freeze()``, later collections stay short.
    """
    global _warmed_up
    if _warmed_up:
        return
    import gc

    import crlc_engine.jobs
    import crlc_engine.neighbors  # noqa: F401

    gc.collect()
    gc.freeze()
    _warmed_up = True


def settings() -> QSettings:
    """The app's persisted settings (an INI file in the platformdirs config folder)."""
    import platformdirs

    path = Path(platformdirs.user_config_dir("crlc-organizer")) / "settings.ini"
    return QSettings(str(path), QSettings.Format.IniFormat)


def log_file() -> Path:
    """Where the app writes its log (the platformdirs log folder)."""
    import platformdirs

    return Path(platformdirs.user_log_dir("crlc-organizer")) / "crlc-organizer.log"


class JobPanel(QWidget):
    """Progress, rate, ETA, status, Pause/Resume and Cancel of the running job."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("No job running")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        for button in (self.pause_button, self.cancel_button):
            button.setEnabled(False)
        self.loss_plot = LossPlot()
        self.size_bars = ClusterSizeBars()
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.pause_button)
        top.addWidget(self.cancel_button)
        text = QVBoxLayout()
        text.addLayout(top)
        text.addWidget(self.bar)
        text.addWidget(self.detail)
        layout = QHBoxLayout(self)
        layout.addLayout(text, 3)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.size_bars, 1)
        self.worker: JobWorker | None = None
        self.pause_button.clicked.connect(self._toggle_pause)
        self.cancel_button.clicked.connect(self._cancel)

    def attach(self, title: str, worker: JobWorker) -> None:
        """Show the progress of ``worker``."""
        self.worker = worker
        self.title.setText(title)
        self.bar.setValue(0)
        self.detail.setText("Starting...")
        self.pause_button.setText("Pause")
        self.pause_button.setEnabled(True)
        self.cancel_button.setEnabled(True)
        worker.progressChanged.connect(self._on_progress)
        worker.statusChanged.connect(self.detail.setText)
        worker.eventEmitted.connect(self._on_event)
        worker.done.connect(self._on_done)

    def _on_progress(self, done: float, total: float) -> None:
        if total > 0:
            self.bar.setValue(int(1000 * min(done / total, 1.0)))

    def _on_event(self, event: object) -> None:
        if isinstance(event, TrainingStarted):
            self.detail.setText(f"Training on {event.images} images, device {event.device}")
            self.loss_plot.clear()
            self.size_bars.set_sizes([])
        elif isinstance(event, EpochEnded):
            eta = (
                ""
                if event.eta_s is None
                else f", ETA {int(event.eta_s // 60)}:{int(event.eta_s % 60):02d}"
            )
            sizes = ", ".join(str(s) for s in event.cluster_sizes)
            self.loss_plot.add(event.losses["total"])
            self.size_bars.set_sizes(event.cluster_sizes)
            self.detail.setText(
                f"Epoch {event.epoch}: loss {event.losses['total']:.3f}, "
                f"{event.samples_per_s:,.0f} images/s{eta}; cluster sizes {sizes}"
            )

    def _toggle_pause(self) -> None:
        if self.worker is None:
            return
        if self.pause_button.text() == "Pause":
            self.worker.pause()
            self.pause_button.setText("Resume")
        else:
            self.worker.resume()
            self.pause_button.setText("Pause")

    def _cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.detail.setText("Cancelling after the current step...")

    def _on_done(self) -> None:
        self.worker = None
        self.pause_button.setEnabled(False)
        self.cancel_button.setEnabled(False)


class DetailPanel(QWidget):
    """The selected image: picture, path, cluster probabilities, neighbours."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.picture = QLabel("Select an image")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(256, 256)
        self.path = QLabel("")
        self.path.setWordWrap(True)
        self.path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.probabilities = QLabel("")
        self.probabilities.setWordWrap(True)
        self.neighbors = QListWidget()
        self.neighbors.setViewMode(QListWidget.ViewMode.IconMode)
        self.neighbors.setIconSize(QSize(64, 64))
        self.neighbors.setFlow(QListWidget.Flow.LeftToRight)
        self.neighbors.setWrapping(False)
        self.neighbors.setFixedHeight(100)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.path)
        layout.addWidget(QLabel("<b>Cluster probabilities</b>"))
        layout.addWidget(self.probabilities)
        layout.addWidget(QLabel("<b>Most similar images</b>"))
        layout.addWidget(self.neighbors)


class MainWindow(QMainWindow):
    """CRLC Organizer's main window."""

    def __init__(
        self, folders: Sequence[str | Path] = (), workspace: str | Path | None = None
    ) -> None:
        super().__init__()
        warm_up_engine()
        self.setWindowTitle("CRLC Organizer")
        self.workspace = workspace
        self.session: LibrarySession | None = None
        self.runner = JobRunner(self)
        self.cache: ThumbnailCache | None = None
        self.grid_model: ThumbnailGridModel | None = None
        self.cluster_model = ClusterListModel(self)
        self.cluster_model.renameRequested.connect(self._rename)
        self.cluster_model.moveRequested.connect(self._move_dropped)

        self.cluster_view = QListView()
        self.cluster_view.setModel(self.cluster_model)
        self.cluster_view.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setUniformItemSizes(True)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setIconSize(QSize(128, 128))
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setDragEnabled(True)  # drag images onto a cluster to move them
        self.grid.setMovement(QListView.Movement.Static)
        self.cluster_view.setAcceptDrops(True)
        self.cluster_view.setDropIndicatorShown(True)
        self.cluster_view.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.low_first = QCheckBox("Least confident first")
        self.low_first.toggled.connect(self._show_selected_cluster)
        self.detail = DetailPanel()
        self.detail.neighbors.itemClicked.connect(self._neighbor_clicked)
        self.jobs = JobPanel()
        self.empty = QLabel("Open a folder of photos to start (File > Open folder, Ctrl+O).")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)

        middle = QWidget()
        middle_layout = QVBoxLayout(middle)
        middle_layout.setContentsMargins(0, 0, 0, 0)
        middle_layout.addWidget(self.low_first)
        middle_layout.addWidget(self.grid)
        splitter = QSplitter()
        splitter.addWidget(self.cluster_view)
        splitter.addWidget(middle)
        splitter.addWidget(self.detail)
        splitter.setSizes([220, 640, 320])
        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.addWidget(self.empty)
        body_layout.addWidget(splitter, 1)
        body_layout.addWidget(self.jobs)
        self.splitter = splitter
        self.setCentralWidget(body)
        self._make_actions()
        self.device_label = QLabel("")
        self.statusBar().addPermanentWidget(self.device_label)
        self._show_device()
        self.cluster_view.selectionModel().currentChanged.connect(self._show_selected_cluster)
        self.resize(1280, 800)
        self._restore_layout()
        self._update_state()
        if folders:
            self.open_folders(folders, scan=False)

    # ------------------------------------------------------------------ set-up
    def _make_actions(self) -> None:
        menu = self.menuBar()
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        menus: dict[str, QMenu] = {}

        def action(
            text: str,
            slot: Any,
            shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
            menu_name: str = "&File",
        ) -> QAction:
            act = QAction(text, self)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            if menu_name not in menus:
                menus[menu_name] = menu.addMenu(menu_name)
            menus[menu_name].addAction(act)
            return act

        self.open_action = action(
            "Open folder...", self._choose_folder, QKeySequence.StandardKey.Open
        )
        self.group_action = action("Group images...", self._group, "Ctrl+G", "&Images")
        self.refine_action = action("Refine with labels", self._refine, "Ctrl+R", "&Images")
        self.export_action = action("Export...", self._export, "Ctrl+E")
        self.undo_export_action = action("Undo an export...", self._undo_export)
        self.undo_action = action("Undo", self._undo, QKeySequence.StandardKey.Undo, "&Edit")
        self.redo_action = action("Redo", self._redo, QKeySequence.StandardKey.Redo, "&Edit")
        self.move_action = action("Move to cluster...", self._move, "M", "&Edit")
        self.label_action = action("Label as...", self._label, "L", "&Edit")
        self.ignore_action = action("Ignore", self._ignore, "Delete", "&Edit")
        self.delete_run_action = action(
            "Delete the current run...", self._delete_run, None, "&Runs"
        )
        self.about_action = action("About CRLC Organizer", self._about, None, "&Help")
        self.runs_menu = menus["&Runs"]
        self.runs_menu.aboutToShow.connect(self._fill_runs_menu)
        for act in (
            self.open_action,
            self.group_action,
            self.refine_action,
            self.undo_action,
            self.redo_action,
        ):
            toolbar.addAction(act)
        self.grid.addActions([self.move_action, self.label_action, self.ignore_action])
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)

    def _show_device(self) -> None:
        from crlc_engine.device import resolve_device

        choice = resolve_device("auto")
        self.device_label.setText(f"Device: {choice.device} ({choice.reason})")

    # ------------------------------------------------------------------ library
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of photos")
        if folder:
            self.open_folders([folder])

    def open_folders(self, folders: Sequence[str | Path], scan: bool = True) -> None:
        """Open the library of ``folders`` and (by default) scan it in the background."""
        self._close_session()
        self.session = LibrarySession(folders, self.workspace)
        self.cache = ThumbnailCache(self.session.thumbnail_path, parent=self)
        self.grid_model = ThumbnailGridModel(self.cache, self)
        self.grid.setModel(self.grid_model)
        self.grid.selectionModel().currentChanged.connect(self._show_selected_image)
        self.setWindowTitle(f"CRLC Organizer - {', '.join(str(f) for f in self.session.folders)}")
        self.refresh()
        if scan:
            folders_now = list(self.session.folders)
            worker = scan_job(folders_now, SCAN_SIZE, self.workspace)
            worker.finished.connect(lambda _: self.refresh(newest=True))
            self._start("Scanning images", worker)

    def _close_session(self) -> None:
        if self.cache is not None:
            self.cache.shutdown()
        if self.session is not None:
            self.session.close()
        self.session = None

    def refresh(self, newest: bool = False) -> None:
        """Re-read the session and redraw clusters (keeping the selected cluster).

        Args:
            newest: Switch to the newest completed run (after a job), else keep the current.
        """
        if self.session is None:
            return
        current = self._current_cluster()
        self.session.reload(None if newest else self.session.run_id)
        self.cluster_model.set_clusters(self.session.clusters())
        if self.cluster_model.rowCount() > 0:
            row = self.cluster_model.row_of(current) if current is not None else 0
            self.cluster_view.selectionModel().setCurrentIndex(
                self.cluster_model.index(max(row, 0)),
                QItemSelectionModel.SelectionFlag.ClearAndSelect,
            )
        self._show_selected_cluster()
        grid_rows = self.grid_model.rowCount() if self.grid_model is not None else 0
        if grid_rows and self.grid_model is not None and not self.grid.currentIndex().isValid():
            self.grid.setCurrentIndex(self.grid_model.index(0))
            self.grid.scrollToTop()
        self._update_state()

    def _update_state(self) -> None:
        has_session = self.session is not None
        has_results = bool(self.session and self.session.has_results)
        self.empty.setVisible(not has_session)
        self.splitter.setVisible(has_session)
        self.group_action.setEnabled(has_session and not self.runner.running)
        self.refine_action.setEnabled(has_results and not self.runner.running)
        self.export_action.setEnabled(has_results and not self.runner.running)
        for act in (
            self.move_action,
            self.label_action,
            self.ignore_action,
            self.undo_action,
            self.redo_action,
        ):
            act.setEnabled(has_results)
        if has_session and not has_results:
            self.statusBar().showMessage("No groups yet: Images > Group images... (Ctrl+G)")

    # ------------------------------------------------------------------ browsing
    def _current_cluster(self) -> int | None:
        index = self.cluster_view.currentIndex()
        if not index.isValid():
            return None
        return int(self.cluster_model.data(index, ClusterListModel.ClusterRole))

    def _show_selected_cluster(self, *args: object) -> None:
        cluster = self._current_cluster()
        if self.session is None or self.grid_model is None or cluster is None:
            return
        images = self.session.images_of(cluster)
        self.grid_model.set_images(
            images.image_ids,
            images.confidences,
            [str(p) for p in images.paths],
            labels=self.session.annotations.labels(),
        )
        self.grid_model.set_low_confidence_first(self.low_first.isChecked())

    def _selected_ids(self) -> list[int]:
        if self.grid_model is None:
            return []
        rows = sorted(i.row() for i in self.grid.selectionModel().selectedIndexes())
        return [self.grid_model.image_id(r) for r in rows]

    def _show_selected_image(self, index: QModelIndex, previous: QModelIndex) -> None:
        if self.session is None or self.grid_model is None or not index.isValid():
            return
        self.show_image(self.grid_model.image_id(index.row()))

    def show_image(self, image_id: int) -> None:
        """Show one image in the detail panel with its probabilities and neighbours."""
        if self.session is None:
            return
        detail = self.session.detail(image_id)
        thumb = QImage(str(self.session.thumbnail_path(image_id)))
        if not thumb.isNull():
            self.detail.picture.setPixmap(
                QPixmap.fromImage(thumb).scaled(
                    256,
                    256,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        size = f"{detail.width} x {detail.height}" if detail.width else ""
        badge = f"  [label: {detail.label}]" if detail.label else ""
        self.detail.path.setText(f"{detail.path}\n{size}{badge}")
        order = detail.probabilities.argsort()[::-1][:5]
        self.detail.probabilities.setText(
            "<br>".join(
                f"{self.session.cluster_name(int(c))}: {detail.probabilities[c] * 100:.1f}%"
                for c in order
            )
        )
        self.detail.neighbors.clear()
        for neighbor, similarity in self.session.neighbors(image_id, k=10):
            item = QListWidgetItem(f"{similarity:.2f}")
            pix = QPixmap(str(self.session.thumbnail_path(neighbor)))
            if not pix.isNull():
                item.setIcon(pix.scaled(64, 64, Qt.AspectRatioMode.KeepAspectRatio))
            item.setData(Qt.ItemDataRole.UserRole, neighbor)
            self.detail.neighbors.addItem(item)

    def _neighbor_clicked(self, item: QListWidgetItem) -> None:
        self.show_image(int(item.data(Qt.ItemDataRole.UserRole)))

    # ------------------------------------------------------------------ corrections
    def _after_change(self, message: str | None) -> None:
        if message:
            self.statusBar().showMessage(message, 5000)
        self.refresh()

    def _rename(self, cluster: int, name: str) -> None:
        if self.session is not None and name.strip():
            self.session.rename(cluster, name)
            self._after_change(f"Cluster {cluster} is now {name!r}")

    def _move(self) -> None:
        ids = self._selected_ids()
        if self.session is None or not ids:
            return
        names = [self.session.cluster_name(c.cluster) for c in self.session.clusters()]
        choice, ok = QInputDialog.getItem(self, "Move to cluster", "Cluster:", names, 0, False)
        if ok:
            cluster = self.session.clusters()[names.index(choice)].cluster
            self._after_change(f"Moved to {self.session.move(ids, cluster)!r}")

    def _move_dropped(self, image_ids: list[int], cluster: int) -> None:
        if self.session is not None and image_ids:
            name = self.session.move([int(i) for i in image_ids], cluster)
            self._after_change(f"Moved {len(image_ids)} image(s) to {name!r}")

    def _label(self) -> None:
        ids = self._selected_ids()
        if self.session is None or not ids:
            return
        name, ok = QInputDialog.getText(self, "Label as", "Class name:")
        if ok and name.strip():
            self.session.label(ids, name)
            self._after_change(f"Labelled {len(ids)} image(s) as {name!r}")

    def _ignore(self) -> None:
        ids = self._selected_ids()
        if self.session is not None and ids:
            self.session.ignore(ids)
            self._after_change(f"Ignoring {len(ids)} image(s)")

    def _undo(self) -> None:
        if self.session is not None:
            done = self.session.undo()
            self._after_change(f"Undid: {done}" if done else "Nothing to undo")

    def _redo(self) -> None:
        if self.session is not None:
            done = self.session.redo()
            self._after_change(f"Redid: {done}" if done else "Nothing to redo")

    # ------------------------------------------------------------------ jobs
    def _start(self, title: str, worker: JobWorker) -> None:
        self.jobs.attach(title, worker)
        worker.failed.connect(self._job_failed)
        worker.done.connect(self._update_state)
        self.runner.start(worker)
        self._update_state()

    def _job_failed(self, kind: str, message: str, details: str) -> None:
        logging.getLogger("crlc_organizer").error("job failed (%s): %s\n%s", kind, message, details)
        box = QMessageBox(QMessageBox.Icon.Warning, "CRLC Organizer", message, parent=self)
        box.setDetailedText(details)  # "Show Details..." lets the user copy them
        box.open()

    # ------------------------------------------------------------------ runs, about
    def _fill_runs_menu(self) -> None:
        """List the completed runs (newest last); choosing one shows its groups."""
        for act in list(self.runs_menu.actions()):
            if act is not self.delete_run_action:
                self.runs_menu.removeAction(act)
        if self.session is None:
            return
        infos = {r.run_id: r for r in self.session.library.runs.all()}
        for run_id in self.session.runs():
            config = infos[run_id].read_config()
            train = config.get("train", {})
            kind = "refined" if config.get("parent") else str(train.get("preset", ""))
            act = QAction(f"{run_id}  ({kind}, {train.get('clusters', '?')} groups)", self)
            act.setCheckable(True)
            act.setChecked(run_id == self.session.run_id)
            act.triggered.connect(lambda _=False, r=run_id: self.show_run(r))
            self.runs_menu.insertAction(self.delete_run_action, act)
        self.runs_menu.insertSeparator(self.delete_run_action)

    def show_run(self, run_id: str) -> None:
        """Show the groups of another completed run."""
        if self.session is not None:
            self.session.reload(run_id)
            self.refresh()

    def _delete_run(self) -> None:
        from crlc_engine.jobs import delete_run

        if self.session is None or self.session.run_id is None or self.runner.running:
            return
        run_id = self.session.run_id
        answer = QMessageBox.question(
            self, "Delete run", f"Delete run {run_id} and its groups? Labels stay."
        )
        if answer == QMessageBox.StandardButton.Yes:
            folders = list(self.session.folders)
            self._close_session()
            delete_run(folders, run_id, self.workspace)
            self.open_folders(folders, scan=False)

    def _about(self) -> None:
        import platform

        import PySide6

        from crlc_engine import __version__
        from crlc_engine.device import resolve_device

        device = resolve_device("auto")
        QMessageBox.about(
            self,
            "About CRLC Organizer",
            f"<b>CRLC Organizer {__version__}</b><br>Groups photos with CRLC deep clustering "
            "(Do, Tran and Venkatesh, ICCV 2021).<br><br>"
            f"Python {platform.python_version()}, PySide6 {PySide6.__version__}<br>"
            f"Device: {device.device} ({device.reason})<br>"
            f"Log file: {log_file()}",
        )

    def _group(self) -> None:
        from app.views.group_dialog import GroupDialog

        if self.session is None:
            return
        dialog = GroupDialog(len(self.session.library.images()), self)
        if dialog.exec():
            worker = train_job(list(self.session.folders), dialog.config(), self.workspace)
            worker.finished.connect(lambda _: self.refresh(newest=True))
            self._start("Grouping images", worker)

    def _refine(self) -> None:
        if self.session is None or self.session.run_id is None:
            return
        worker = refine_job(
            list(self.session.folders), self.session.run_id, None, None, self.workspace
        )
        worker.finished.connect(lambda _: self.refresh(newest=True))
        self._start("Refining with your labels", worker)

    def _export(self) -> None:
        from app.views.export_dialog import ExportDialog
        from crlc_engine.cli_results import export_items

        if self.session is None or self.session.run_id is None:
            return
        items = export_items(self.session.library, self.session.run_id)
        dialog = ExportDialog(items, list(self.session.folders), self)
        if dialog.exec():
            opts = dialog.options()
            worker = export_job(
                items,
                opts.dest,
                opts.mode,
                list(self.session.folders),
                opts.min_confidence,
                opts.keep_subfolders,
                False,
            )
            self._start(f"Exporting to {opts.dest}", worker)

    def _undo_export(self) -> None:
        manifest, _ = QFileDialog.getOpenFileName(
            self, "Choose the manifest of the export to undo", "", "Export manifest (*.csv)"
        )
        if manifest:
            self._start("Undoing the export", undo_export_job(Path(manifest)))

    def _restore_layout(self) -> None:
        stored = settings()
        geometry = stored.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = stored.value("window/state")
        if state is not None:
            self.restoreState(state)
        splitter = stored.value("window/splitter")
        if splitter is not None:
            self.splitter.restoreState(splitter)
        self.low_first.setChecked(bool(stored.value("view/low_first", False, type=bool)))

    def save_layout(self) -> None:
        """Remember window geometry, toolbar/splitter layout and view options."""
        stored = settings()
        stored.setValue("window/geometry", self.saveGeometry())
        stored.setValue("window/state", self.saveState())
        stored.setValue("window/splitter", self.splitter.saveState())
        stored.setValue("view/low_first", self.low_first.isChecked())
        stored.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Ask before closing while a job runs; stop jobs and threads cleanly."""
        if self.runner.running:
            answer = QMessageBox.question(
                self,
                "CRLC Organizer",
                "A job is still running. Stop it and close? (Training keeps its last "
                "checkpoint and can be resumed.)",
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.save_layout()
        self.runner.shutdown()
        self._close_session()
        event.accept()
