"""The wheel and sdist of ``python -m build``, installed and run like a user's install.

The module builds both archives from a copy of the source tree (so nothing is written into
the checkout), the wheel from the unpacked sdist as ``python -m build`` does (so a missing
file in the sdist fails here too), without build isolation (no downloads: ``build`` and
``setuptools`` come with the ``dev`` extra). The wheel goes with ``--no-deps`` into a fresh
virtual environment that sees this environment's packages (torch, Qt, ...) through a ``.pth``
line, so nothing heavy is installed twice. A ``.pth`` line rather than
``--system-site-packages``: the tests usually run in a venv, and a venv made from it would
see the base interpreter's packages, not this venv's. A plain path line adds the folder to
``sys.path`` without running the ``.pth`` files in it, so the editable install of this
checkout (an import hook started by such a file) stays off and the wheel's copy is imported.

Then, from an empty folder, with HOME and the XDG folders in a temporary directory:
``crlc --help``, where ``app``/``crlc_engine`` and the icons come from, and
``crlc-organizer --screenshot`` offscreen.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DIST = "crlc_organizer"
#: What a build needs from the checkout (the sdist must carry all of it).
SOURCE_ENTRIES = ("pyproject.toml", "README.md", "MANIFEST.in", "app", "crlc_engine", "resources")
ICON_DATA = "share/crlc-organizer/icons"
TIMEOUT = 300


@dataclass(frozen=True)
class Installed:
    """The built archives and the virtual environment the wheel went into."""

    wheel: Path
    sdist: Path
    venv: Path
    python: Path
    bin: Path
    work: Path  # an empty folder: the current directory of every command
    env: dict[str, str]


def _run(
    cmd: list[str | Path], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(c) for c in cmd],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result


def _require_build_tools() -> None:
    missing = [m for m in ("build", "setuptools", "pip") if importlib.util.find_spec(m) is None]
    if missing:
        message = f"needs {', '.join(missing)} (pip install -e '.[dev]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def _user_env(home: Path) -> dict[str, str]:
    """This environment minus anything that would point the child at the checkout or the
    user's folders: HOME and XDG folders under ``home``, Qt offscreen."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "XDG_", "QT_")) and k not in ("VIRTUAL_ENV", "HOME")
    }
    for name in ("config", "data", "cache", "state", "runtime"):
        folder = home / name
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[f"XDG_{name.upper()}_{'DIR' if name == 'runtime' else 'HOME'}"] = str(folder)
    env.update(HOME=str(home), PYTHONNOUSERSITE="1", QT_QPA_PLATFORM="offscreen")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    _require_build_tools()
    base = tmp_path_factory.mktemp("packaging")
    src, dist, venv, work = base / "src", base / "dist", base / "venv", base / "work"
    src.mkdir()
    work.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCE_ENTRIES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, src / name)
    env = _user_env(base / "home")

    # sdist, then the wheel from the unpacked sdist (what `python -m build` does)
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src], env=env)
    (wheel,) = dist.glob(f"{DIST}-*.whl")
    (sdist,) = dist.glob(f"{DIST}-*.tar.gz")

    # a bare venv (made from the base interpreter even when this one is a venv)
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    pip: list[str | Path] = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "--disable-pip-version-check",
    ]
    # Installed before the .pth below exists: pip must not see this checkout's editable
    # install (same name and version) as already satisfying the wheel.
    _run([*pip, "install", "--no-deps", "--no-index", "--no-compile", wheel], env=env)

    purelib = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    ours = sysconfig.get_paths()
    lines = dict.fromkeys([ours["purelib"], ours["platlib"]])  # ordered, without duplicates
    # `.pth` folders go after the venv's own site-packages: the wheel's copy wins
    (purelib / "zz-crlc-test-host-packages.pth").write_text("\n".join(lines) + "\n")
    return Installed(wheel, sdist, venv, python, venv / "bin", work, env)


def test_archives_carry_the_icons_and_the_sources(installed: Installed) -> None:
    icons = sorted(p.name for p in (ROOT / "resources" / "icons").glob("*.svg"))
    assert icons, "no icons in resources/icons"

    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    data = "-".join(installed.wheel.name.split("-")[:2]) + ".data"  # crlc_organizer-0.1.0.data
    assert {f"{data}/data/{ICON_DATA}/{n}" for n in icons} <= names
    assert {"app/main.py", "app/icons.py", "crlc_engine/cli/main.py"} <= names
    assert not any(n.startswith(("tests/", "resources/")) for n in names)

    with tarfile.open(installed.sdist) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    needed = {"pyproject.toml", "README.md", "PKG-INFO", "app/main.py", "crlc_engine/cli/main.py"}
    assert needed | {f"resources/icons/{n}" for n in icons} <= members
    assert not any("__pycache__" in m for m in members)


def test_crlc_help_runs_from_the_wheel(installed: Installed) -> None:
    result = _run([installed.bin / "crlc", "--help"], env=installed.env, cwd=installed.work)
    assert "usage: crlc" in result.stdout


def test_code_and_icons_come_from_the_installed_wheel(installed: Installed) -> None:
    probe = (
        "import json, sys, app, crlc_engine, app.icons as i\n"
        "print(json.dumps({'app': app.__file__, 'engine': crlc_engine.__file__,"
        " 'path': sys.path, 'icons': {n: str(i.icon_path(n)) for n in i.ICON_NAMES}}))"
    )
    out = _run([installed.python, "-c", probe], env=installed.env, cwd=installed.work)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    venv = installed.venv.resolve()
    for key in ("app", "engine"):
        assert Path(seen[key]).resolve().is_relative_to(venv), f"{key} imported from {seen[key]}"
    assert str(ROOT) not in seen["path"], "the checkout is on the installed program's sys.path"
    icon_dir = venv / ICON_DATA
    for name, where in seen["icons"].items():
        assert where != "None", f"icon {name} not found"
        assert Path(where).resolve() == icon_dir / f"{name}.svg", f"icon {name} from {where}"


def test_window_screenshot_from_the_wheel(installed: Installed) -> None:
    out = installed.work / "start.png"
    result = _run(
        [installed.bin / "crlc-organizer", "--screenshot", out, "--state", "start"],
        env=installed.env,
        cwd=installed.work,
    )
    assert "not found" not in result.stderr, result.stderr[-2000:]
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    assert struct.unpack(">II", header[16:24]) == (1280, 800)
