"""app.core stays Qt-free: none of its modules imports Qt, directly or through another module.

It runs before Qt's libraries load (the start-up check of app.main) and in tests without a
display. Two checks: statically, no import statement of the package (module level, inside
functions or under TYPE_CHECKING) names PySide6, shiboken6 or an app module outside
app.core; and for real, importing each module in a fresh interpreter loads no Qt module.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import app.core

CORE = Path(app.core.__file__).resolve().parent
ROOT = CORE.parent.parent
QT_PACKAGES = ("PySide6", "shiboken6")


def core_modules() -> list[str]:
    """Every module of app.core, the package first."""
    paths = sorted(CORE.glob("*.py"))
    return ["app.core", *(f"app.core.{path.stem}" for path in paths if path.stem != "__init__")]


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module an import statement of ``path`` names (absolute; relative made so)."""
    package = "app.core"
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def test_the_package_lists_its_modules() -> None:
    modules = core_modules()
    assert {"app.core.session", "app.core.settings_store", "app.core.system_check"} <= set(modules)


def test_no_core_module_imports_qt_or_a_qt_app_module() -> None:
    wrong = []
    for path in sorted(CORE.glob("*.py")):
        for name, line in _imports(path):
            top = name.split(".")[0]
            qt = top in QT_PACKAGES
            app_outside_core = top == "app" and not (name == "app" or name.startswith("app.core"))
            if qt or app_outside_core:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert wrong == [], "app.core must stay Qt-free:\n" + "\n".join(wrong)


def test_importing_each_core_module_loads_no_qt() -> None:
    script = (
        "import importlib, json, sys\n"
        f"qt = {QT_PACKAGES!r}\n"
        "loaded = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    importlib.import_module(name)\n"
        "    loaded[name] = sorted(m for m in sys.modules if m.split('.')[0] in qt)\n"
        "print(json.dumps(loaded))\n"
    )
    modules = core_modules()
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(modules)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(loaded) == modules
    # the first module after which a Qt module is loaded is the one that imported it
    assert {name: qt for name, qt in loaded.items() if qt} == {}
