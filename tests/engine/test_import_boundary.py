"""The engine must not depend on the GUI: importing it pulls in neither PySide6 nor app."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_no_qt_and_no_app() -> None:
    code = (
        "import sys\n"
        "import crlc_engine, crlc_engine.cli.main, crlc_engine.pipeline.jobs\n"
        "import crlc_engine.training.trainer\n"
        "import crlc_engine.pipeline.presets, crlc_engine.training.inference\n"
        "import crlc_engine.results.metrics\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'app'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_and_library_import_without_torch() -> None:
    """Scan workers are spawned processes that re-import the `crlc` script, i.e. the CLI
    module: it must not pull in torch (about 400 MB and seconds per worker)."""
    code = (
        "import sys\n"
        "import crlc_engine.cli.main, crlc_engine.library, crlc_engine.pipeline.presets\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_backbone_names_match_registry() -> None:
    from crlc_engine.core.config import BACKBONE_NAMES
    from crlc_engine.models import BACKBONES

    assert set(BACKBONE_NAMES) == set(BACKBONES)
