"""What the window shows: the group list, the grid of the selected group, the detail panel
of the selected image and the viewer that takes the grid's place.

Before a library is grouped (and while its first scan runs) the grid shows "All images":
the images the scan has finished so far. The grid and the viewer stay on the same photo:
the viewer steps through the grid's order and the grid's selection follows it.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt
from PySide6.QtWidgets import QListWidgetItem

from app.controllers.host import Controller, WindowHost
from app.core.scanned_images import ScannedImages
from app.core.text import escape, plural
from app.itemmodels.clusters import GroupListModel
from app.itemmodels.thumbnails import ThumbnailGridModel

__all__ = ["BrowsingController"]


class BrowsingController(Controller):
    """Keeps the group list, the grid, the detail panel and the viewer in step."""

    def __init__(self, window: WindowHost) -> None:
        super().__init__(window)
        self.shown_group: str | None = None  # the group whose images the grid shows

    # ------------------------------------------------------------------ groups
    def refresh(self, run_id: str | None = None, reload: bool = True) -> None:
        """Re-read the session and redraw the groups (keeping the selected group).

        Args:
            run_id: Show this completed run; ``None`` keeps the current one (on the first
                load: the run shown last in this library, else the newest).
            reload: Re-read the catalog and the run first (not needed after a correction:
                the session keeps itself current).
        """
        window, session = self.window, self.window.session
        if session is None:
            return
        current = self.current_group() if run_id is None else None
        viewed = window.viewer.current_image_id() if self.viewer_shown() else None
        was_all_images = window.all_images_mode
        if reload or run_id is not None:
            session.reload(run_id)
        if current is None or session.group(current) is None:
            current = session.remembered_group()
        window.all_images_mode = not session.has_results
        if window.all_images_mode:
            window.left.setCurrentWidget(window.no_groups)
            window.group_model.set_groups([])
            self.show_all_images(keep=was_all_images)
        else:
            window.left.setCurrentWidget(window.group_list)
            window.group_model.set_groups(session.groups())
            row = window.group_model.row_of(current) if current is not None else 0
            window.group_list.selectionModel().setCurrentIndex(
                window.group_model.index(max(row, 0)),
                QItemSelectionModel.SelectionFlag.ClearAndSelect,
            )
            self.show_selected_group()
        self.select_first_image()
        if self.viewer_shown():  # the viewer and the grid stay on the same photo
            if viewed is not None and window.grid_model is not None:
                row = window.grid_model.row_of(viewed)
                if row >= 0:
                    window.grid.selectionModel().setCurrentIndex(
                        window.grid_model.index(row),
                        QItemSelectionModel.SelectionFlag.ClearAndSelect,
                    )
            self.fill_viewer()
        window.update_state()

    def current_group(self) -> str | None:
        """The key of the group selected in the list."""
        window = self.window
        index = window.group_list.currentIndex()
        if not index.isValid() or window.all_images_mode:
            return None
        return str(window.group_model.data(index, GroupListModel.KeyRole))

    def select_group(self, key: str) -> None:
        """Make ``key`` the current group (after the list is refreshed)."""
        window = self.window
        if window.session is not None:
            window.session.remember_view(key)
        row = window.group_model.row_of(key)
        if row >= 0:
            window.group_list.setCurrentIndex(window.group_model.index(row))

    def show_selected_group(self, *args: object) -> None:
        """Fill the grid with the selected group's images."""
        window, key = self.window, self.current_group()
        if window.session is None or window.grid_model is None or key is None:
            return
        images = window.session.images_of(key)
        window.grid_model.set_images(
            images.image_ids,
            images.confidences,
            [str(p) for p in images.paths],
            labels=window.session.annotations.labels(),
        )
        window.grid_model.set_low_confidence_first(window.low_first.isChecked())
        self.update_grid_title()
        if key != self.shown_group:  # the image shown belongs to the group shown before
            self.shown_group = key
            window.detail.clear()
            window.shown_image = None
            if self.viewer_shown():  # the viewer shows the new group from its start
                self.fill_viewer()

    def update_grid_title(self) -> None:
        """The grid's title: the group, its size and its first flag (or "All images")."""
        window = self.window
        if window.session is None or window.grid_model is None:
            window.grid_title.setText("")
            return
        count = window.grid_model.rowCount()
        if window.all_images_mode:
            more = " so far (scanning…)" if window.scanning else ""
            window.grid_title.setText(f"<b>All images</b> · {count:,}{more}")
            return
        key = self.current_group()
        group = window.session.group(key) if key is not None else None
        if group is None:
            window.grid_title.setText("")
            return
        text = f"<b>{escape(group.title)}</b> · {plural(count, 'image')}"
        if group.flags:
            text += f" · <span style='color: palette(link)'>\u26a0 {escape(group.flags[0])}</span>"
        window.grid_title.setText(text)

    # ------------------------------------------------------------------ all images
    def show_all_images(self, keep: bool = False) -> None:
        """Every usable image; ``keep`` adds to the rows shown when none of them went away."""
        window = self.window
        if window.session is None or window.grid_model is None:
            return
        images = window.session.all_images()
        shown = window.grid_model.image_ids()
        reset = not keep or not bool(np.isin(shown, images.image_ids).all())
        self.show_scanned(images, reset=reset)

    def show_scanned(self, images: ScannedImages, reset: bool = False) -> None:
        """Show these images in the "All images" grid (added to those shown unless ``reset``)."""
        model = self.window.grid_model
        if model is None:
            return
        confidences = np.full(len(images), np.nan, dtype=np.float32)
        if reset:
            model.set_images(images.image_ids, confidences, images.paths)
        else:
            model.extend_images(images.image_ids, confidences, images.paths)
        self.select_first_image()
        self.update_grid_title()

    def on_scanned(self, images: object) -> None:
        """A running scan finished more images: the "All images" grid gets them."""
        if self.window.all_images_mode and isinstance(images, ScannedImages):
            self.show_scanned(images)

    # ------------------------------------------------------------------ images
    def select_first_image(self) -> None:
        """Select the grid's first image when none is current (clear the panel if empty)."""
        window = self.window
        if window.grid_model is None or window.grid_model.rowCount() == 0:
            window.detail.clear()
            window.shown_image = None
            return
        if not window.grid.currentIndex().isValid():
            window.grid.setCurrentIndex(window.grid_model.index(0))
            window.grid.scrollToTop()

    def selected_ids(self) -> list[int]:
        """The pictures L, M and Delete act on: the viewer's photo while it is shown, else
        the grid's selection."""
        window = self.window
        if self.viewer_shown():
            shown = window.viewer.current_image_id()
            return [] if shown is None else [shown]
        if window.grid_model is None:
            return []
        rows = sorted(i.row() for i in window.grid.selectionModel().selectedIndexes())
        return [window.grid_model.image_id(r) for r in rows]

    def show_selected_image(self, index: QModelIndex, previous: QModelIndex) -> None:
        """The grid's current image changed: show it in the detail panel."""
        window = self.window
        if window.session is None or window.grid_model is None or not index.isValid():
            return
        self.show_image(window.grid_model.image_id(index.row()))

    def show_image(self, image_id: int) -> None:
        """Show one image in the detail panel (with probabilities and neighbours if grouped)."""
        window, session = self.window, self.window.session
        if session is None:
            return
        window.shown_image = image_id
        thumbnail = session.thumbnail_path(image_id)
        detail_panel = window.detail
        if window.all_images_mode or not session.has_results:
            record = session.record(image_id)  # None for images scanned since reload
            if record is not None:
                detail_panel.show_image(thumbnail, record.path, record.width, record.height)
            else:
                detail_panel.show_image(thumbnail, self._grid_path(image_id), None, None)
            detail_panel.show_probabilities([], grouped=False)
            return
        detail = session.detail(image_id)
        detail_panel.show_image(thumbnail, detail.path, detail.width, detail.height, detail.label)
        detail_panel.show_probabilities(
            [
                f"{escape(line.name)}: {line.probability * 100:.1f}%"
                if line.probability is not None
                else f"<b>{escape(line.name)}</b>: made by a split (the model gives no "
                "probability for it; below, the groups it chose from)"
                for line in session.top_groups(detail, top=5)
            ]
        )
        detail_panel.show_neighbors(
            [
                (neighbor, similarity, session.thumbnail_path(neighbor))
                for neighbor, similarity in session.neighbors(image_id, k=window.settings.neighbors)
            ]
        )

    def _grid_path(self, image_id: int) -> str:
        model = self.window.grid_model
        if model is None or (row := model.row_of(image_id)) < 0:
            return ""
        return str(model.data(model.index(row), ThumbnailGridModel.PathRole))

    def neighbor_clicked(self, item: QListWidgetItem) -> None:
        """A similar image was clicked in the detail panel: select it."""
        self.select_image(int(item.data(Qt.ItemDataRole.UserRole)))

    def select_image(self, image_id: int) -> bool:
        """Make ``image_id`` the grid's current image, switching to its group if needed (so
        M, L and Delete act on the picture shown). False (and a status message) when no
        group shows it: the picture is ignored."""
        window = self.window
        if window.session is None or window.grid_model is None:
            return False
        if not window.all_images_mode and window.grid_model.row_of(image_id) < 0:
            key = window.session.detail(image_id).group
            if key is None or window.group_model.row_of(key) < 0:
                self.show_image(image_id)
                self.status(
                    "This picture is ignored, so no group shows it (Edit > Undo brings it "
                    "back if you just ignored it).",
                    8000,
                )
                return False
            self.select_group(key)
        row = window.grid_model.row_of(image_id)
        if row < 0:
            return False
        index = window.grid_model.index(row)
        window.grid.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        window.grid.scrollTo(index)
        if self.viewer_shown():
            self.fill_viewer()
        return True

    # ------------------------------------------------------------------ viewer
    def viewer_shown(self) -> bool:
        """Whether the viewer has the grid's place."""
        return self.window.center.currentWidget() is self.window.viewer

    def open_viewer(self) -> bool:
        """Show the grid's current picture large; the arrow keys step through the group's
        order and L, M, Delete and undo act on the picture shown. False: nothing to show."""
        window = self.window
        if window.grid_model is None or window.grid_model.rowCount() == 0:
            return False
        current = window.grid.currentIndex()
        if not current.isValid():
            current = window.grid_model.index(0)
        window.grid.selectionModel().setCurrentIndex(  # the grid selects the photo shown
            current, QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        self.fill_viewer()  # before it shows: it never starts on an old sequence
        window.center.setCurrentWidget(window.viewer)
        window.viewer.setFocus()
        return True

    def close_viewer(self) -> None:
        """Back to the grid, on the picture the viewer showed last."""
        window = self.window
        if not self.viewer_shown():
            return
        window.center.setCurrentWidget(window.middle)
        window.grid.scrollTo(window.grid.currentIndex())
        window.grid.setFocus()

    def fill_viewer(self) -> None:
        """Give the viewer the grid's order, on the grid's current picture (closed when the
        group is empty)."""
        window, model = self.window, self.window.grid_model
        if model is None or model.rowCount() == 0:
            self.close_viewer()
            return
        paths = [
            str(model.data(model.index(row), ThumbnailGridModel.PathRole))
            for row in range(model.rowCount())
        ]
        ids = [int(i) for i in model.image_ids()]
        window.viewer.set_sequence(ids, paths, max(0, window.grid.currentIndex().row()))
        self._caption_viewer()

    def _caption_viewer(self) -> None:
        window, session = self.window, self.window.session
        image_id = window.viewer.current_image_id()
        if image_id is None or session is None:
            return
        if window.all_images_mode or not session.has_results:
            window.viewer.set_caption("All images")
            return
        detail = session.detail(image_id)
        label = f" · labelled {detail.label}" if detail.label else ""
        window.viewer.set_caption(f"{detail.group_name} · {detail.confidence * 100:.0f} %{label}")

    def viewer_moved(self, image_id: int) -> None:
        """The viewer stepped: the grid's selection (and the detail panel) follow."""
        window = self.window
        if window.grid_model is not None and (row := window.grid_model.row_of(image_id)) >= 0:
            index = window.grid_model.index(row)
            window.grid.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect
            )
        self._caption_viewer()
