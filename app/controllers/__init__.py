"""The main window's behaviour, one controller per area; the window keeps the layout and
wires its widgets to them.

- :mod:`~app.controllers.browsing`: the group list, the grid, the detail panel and the
  viewer, kept in step;
- :mod:`~app.controllers.library`: opening, closing and re-linking a library;
- :mod:`~app.controllers.scans`: scanning, and the files a scan skipped;
- :mod:`~app.controllers.jobs`: starting jobs (progress in the job panel), grouping and
  refining;
- :mod:`~app.controllers.runs`: the Runs menu and the unfinished runs;
- :mod:`~app.controllers.corrections`: rename, move, label, ignore, split, undo, redo;
- :mod:`~app.controllers.export`: export and undo an export;
- :mod:`~app.controllers.preferences`: the settings and the window layout.

Each takes the window as a :class:`~app.controllers.host.WindowHost` (a Protocol), and
the controllers it calls; they import neither the window nor each other in a circle.
"""
