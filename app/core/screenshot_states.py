"""What ``crlc-organizer --screenshot`` can render: the window states and the palettes.

Kept apart from :mod:`app.screenshots` (which needs Qt) so that the command line
(:mod:`app.main`) can offer them as choices before Qt loads.
"""

from __future__ import annotations

__all__ = ["SCREENSHOT_STATES", "SCREENSHOT_THEMES"]

#: Window states of ``--state`` (see :mod:`app.screenshots`).
SCREENSHOT_STATES = ("start", "scanning", "training", "clusters", "export", "viewer")
#: Palettes of ``--theme``.
SCREENSHOT_THEMES = ("light", "dark")
