"""The user's corrections of the groups: rename (a name already in use merges), move (menu or
drag and drop), label, ignore, split, separate a merge, undo and redo.

Each goes through the session (:class:`~app.core.session.LibrarySession`), which keeps
itself current; then the window redraws with the grid on the same row.
"""

from __future__ import annotations

import traceback

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog, QMenu, QMessageBox

from app.controllers.browsing import BrowsingController
from app.controllers.host import Controller, WindowHost, run_modal
from app.core.text import plural
from app.views.split_dialog import SplitDialog
from crlc_engine.api import CRLCError

__all__ = ["CorrectionsController", "popup"]


def popup(menu: QMenu, where: QPoint) -> QAction | None:
    """Show a menu at ``where`` until the user picks an entry (tests replace this: a
    binding's own ``QMenu.exec`` cannot be patched)."""
    return menu.exec(where)


class CorrectionsController(Controller):
    """Applies the user's corrections to the shown run."""

    def __init__(self, window: WindowHost, browsing: BrowsingController) -> None:
        super().__init__(window)
        self.browsing = browsing

    def after_change(self, message: str | None) -> None:
        """Redraw after a correction. The grid keeps its scroll position and the selection
        stays on the same row: after a move, label or ignore that took the image out of the
        group, the image that takes its place is selected."""
        grid = self.window.grid
        row = grid.currentIndex().row()
        scroll = grid.verticalScrollBar().value()
        if message:
            self.status(message, 5000)
        self.browsing.refresh(reload=False)  # the session re-read what the change touched
        model = self.window.grid_model
        count = model.rowCount() if model is not None else 0
        if model is not None and count and row >= 0:
            grid.setCurrentIndex(model.index(min(row, count - 1)))
            grid.verticalScrollBar().setValue(scroll)
        if self.browsing.viewer_shown():  # the viewer follows: the picture that took the place
            self.browsing.fill_viewer()

    # ------------------------------------------------------------------ groups
    def rename(self, key: str, name: str) -> None:
        """Name a group (edited in the list); a name in use merges the two groups."""
        session = self.window.session
        if session is None or session.run_id is None or not name.strip():
            return
        old, name = session.group_name(key), " ".join(name.split())
        target = f"group:{name}"
        merges = session.group(target) is not None and target != key
        self.window.group_list.setFocus()
        new_key = session.rename(key, name)
        self.browsing.select_group(new_key)
        if merges:  # one name on several clusters merges them (one group, one folder)
            self.after_change(
                f"{old!r} merged with {name!r}: they are one group and export into one "
                "folder (Edit > Undo separates them)"
            )
        else:
            self.after_change(f"{old!r} is now {name!r}")

    def edit_group_name(self) -> None:
        """Start editing the selected group's name in the list."""
        window = self.window
        index = window.group_list.currentIndex()
        if index.isValid() and not window.all_images_mode:
            window.group_list.edit(index)

    def split(self) -> None:
        """Split the selected group (a preview dialog, then one undoable step); a merged
        group is first separated into its clusters (after a question)."""
        session, key = self.window.session, self.browsing.current_group()
        group = session.group(key) if session is not None and key is not None else None
        if session is None or key is None or group is None:
            return
        if len(group.clusters) > 1:
            self.separate(key)
            return
        if not group.clusters:
            self.status("This group is held by labels only: nothing to split")
            return
        names = session.annotations.names(session.run_id or "")
        dialog = SplitDialog(
            group.clusters[0],
            group.name,
            group.size,
            lambda parts: session.plan_split(key, parts),
            self.window.widget,
            names_in_use=names,
        )
        if not run_modal(dialog):
            return
        plan = dialog.plan()
        if plan is None:
            return
        try:
            session.split(plan, dialog.names(), dialog.label_parts())
        except CRLCError as error:  # e.g. the cluster changed since the preview
            self.window.show_error(error.kind, str(error), traceback.format_exc())
            self.browsing.refresh()
            return
        sizes = ", ".join(str(n) for n in plan.sizes)
        self.after_change(
            f"Split {group.title!r} into {len(plan.sizes)} groups of {sizes} images "
            "(Edit > Undo joins them again)"
        )

    def separate(self, key: str, confirm: bool = True) -> None:
        """Give each cluster of a merged group its own group (after a question)."""
        session = self.window.session
        if session is None or (group := session.group(key)) is None:
            return
        if confirm:
            answer = QMessageBox.question(
                self.window.widget,
                "Separate the merged clusters?",
                f"{group.title!r} is {len(group.clusters)} clusters under one name. Give each "
                "its own group (the first keeps the name), so that one can be split or "
                "renamed alone? Edit > Undo joins them again.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        names = session.separate(key)
        self.after_change(f"{group.title!r} separated into {', '.join(map(repr, names))}")

    # ------------------------------------------------------------------ images
    def move(self) -> None:
        """Move the selected images to a group chosen from a menu (one entry per group,
        with its colour)."""
        window, ids = self.window, self.browsing.selected_ids()
        if window.session is None or not ids:
            return
        menu = self.move_menu()
        if self.browsing.viewer_shown():
            canvas = window.viewer.canvas
            where = canvas.mapToGlobal(canvas.rect().center())
        else:
            rect = window.grid.visualRect(window.grid.currentIndex())
            where = window.grid.viewport().mapToGlobal(rect.center())
        chosen = popup(menu, where)
        if chosen is not None:
            self.move_to(ids, str(chosen.data()))

    def move_menu(self) -> QMenu:
        """The "Move to group" menu: every group of the run, with its colour swatch."""
        model = self.window.group_model
        menu = QMenu("Move to group", self.window.widget)
        for row, group in enumerate(model.groups()):
            if group.key == self.browsing.current_group():
                continue
            act = menu.addAction(
                model.data(model.index(row), Qt.ItemDataRole.DecorationRole), group.title
            )
            act.setData(group.key)
        return menu

    def move_to(self, image_ids: list[int], key: str) -> None:
        """Move images into a group (undoable); the next image takes the selection."""
        session = self.window.session
        if session is not None and image_ids:
            name = session.move(image_ids, key)
            self.after_change(f"Moved {plural(len(image_ids), 'image')} to {name!r}")

    def move_dropped(self, image_ids: list[int], key: str) -> None:
        """Images dropped on a group in the list: move them there."""
        self.move_to([int(i) for i in image_ids], key)

    def label(self) -> None:
        """Edit > Label as: label the selected images with a class name."""
        session, ids = self.window.session, self.browsing.selected_ids()
        if session is None or not ids:
            return
        name, ok = QInputDialog.getText(self.window.widget, "Label as", "Class name:")
        if ok and name.strip():
            session.label(ids, name)
            self.after_change(f"Labelled {len(ids)} image(s) as {name!r}")

    def ignore(self) -> None:
        """Edit > Ignore: leave the selected images out of training and export."""
        session, ids = self.window.session, self.browsing.selected_ids()
        if session is not None and ids:
            session.ignore(ids)
            self.after_change(f"Ignoring {len(ids)} image(s)")

    # ------------------------------------------------------------------ history
    def undo(self) -> None:
        """Edit > Undo: undo the last correction."""
        if self.window.session is not None:
            done = self.window.session.undo()
            self.after_change(f"Undid: {done}" if done else "Nothing to undo")

    def redo(self) -> None:
        """Edit > Redo: redo the last undone correction."""
        if self.window.session is not None:
            done = self.window.session.redo()
            self.after_change(f"Redid: {done}" if done else "Nothing to redo")
