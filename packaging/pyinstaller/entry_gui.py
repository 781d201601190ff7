"""Frozen entry point of ``crlc-organizer`` (the window) in the PyInstaller bundle.

Same as the ``crlc-organizer`` console script (``app.main:main``), plus
``multiprocessing.freeze_support()``: the library scan decodes images in ``spawn``-ed worker
processes, which in a frozen program start this same executable again.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.main import main

    sys.exit(main())
