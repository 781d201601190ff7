"""The engine must not depend on the GUI: importing it pulls in neither PySide6 nor app."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_no_qt_and_no_app() -> None:
    code = (
        "import sys\n"
        "import crlc_engine, crlc_engine.cli, crlc_engine.jobs, crlc_engine.training.trainer\n"
        "import crlc_engine.presets, crlc_engine.inference, crlc_engine.metrics\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'app'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
