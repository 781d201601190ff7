"""Frozen entry point of ``crlc`` (the command line) in the PyInstaller bundle.

Same as the ``crlc`` console script (``crlc_engine.cli.main:main``), plus
``multiprocessing.freeze_support()``: the library scan decodes images in ``spawn``-ed worker
processes, which in a frozen program start this same executable again.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from crlc_engine.cli.main import main

    sys.exit(main())
