"""The app's Qt-free core: what the window shows and keeps, without a widget.

The open library and its run (:mod:`~app.core.session`), the images of a scan
(:mod:`~app.core.scanned_images`), the runs that can be resumed
(:mod:`~app.core.unfinished_runs`), the user's settings (:mod:`~app.core.settings_store`), the
recent libraries (:mod:`~app.core.recent`) and the small state files they are kept in
(:mod:`~app.core.state_file`), plain explanations of errors (:mod:`~app.core.error_help`),
the start-up check of the system's libraries (:mod:`~app.core.system_check`), whether
torchvision is usable without loading it (:mod:`~app.core.torchvision_check`), handing freed
memory back to the system (:mod:`~app.core.memory`) and the wording helpers of messages
(:mod:`~app.core.text`).

Nothing here imports Qt (PySide6, shiboken6) or a Qt module of the app, so it runs before
Qt's libraries load and in tests without a display: ``tests/app/test_qt_free.py`` keeps it
so. This package imports none of its modules itself.
"""
