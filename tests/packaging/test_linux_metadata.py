"""The Linux desktop integration files in packaging/linux/ (issue 14).

The .desktop entry and the AppStream metainfo must pass `desktop-file-validate` and
`appstreamcli validate --no-net` without errors or warnings; the hicolor PNGs must be
renderings of resources/icons/app.svg (made by packaging/make_icons.py). Without the
validators the validation tests skip, except under CI=true, where they fail: .ci/run installs
them.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
APP_ID = "io.github.crlc_organizer.CRLCOrganizer"
DESKTOP = LINUX / f"{APP_ID}.desktop"
METAINFO = LINUX / f"{APP_ID}.metainfo.xml"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def _make_icons() -> ModuleType:
    # packaging/ is not a Python package (that name would shadow the `packaging` library).
    spec = importlib.util.spec_from_file_location(
        "crlc_make_icons", ROOT / "packaging" / "make_icons.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    assert isinstance(project, dict)
    return project


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(DESKTOP, encoding="utf-8")
    return parser["Desktop Entry"]


def _tool(name: str, package: str) -> str:
    """The validator's path; skip without it, or fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (apt-get install {package})"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{message}: CI must run the metadata validation")
        pytest.skip(message)
    return path


def _run(*command: str) -> tuple[int, str]:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LC_ALL": "C.UTF-8", "NO_COLOR": "1"},
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def test_desktop_file_validates() -> None:
    rc, output = _run(_tool("desktop-file-validate", "desktop-file-utils"), str(DESKTOP))
    # It prints nothing for a clean file: errors, warnings and hints all fail here.
    assert (rc, output) == (0, "")


def test_metainfo_validates() -> None:
    rc, output = _run(_tool("appstreamcli", "appstream"), "validate", "--no-net", str(METAINFO))
    assert rc == 0, output
    problems = [line for line in output.splitlines() if re.match(r"\s*[EW]: ", line)]
    assert not problems, output
    assert not re.search(r"\b(errors|warnings): \d", output), output


def test_installed_tree_validates(tmp_path: Path) -> None:
    """Installed as a distribution would (launchable and icon found in the tree)."""
    appstreamcli = _tool("appstreamcli", "appstream")
    share = tmp_path / "usr" / "share"
    (share / "applications").mkdir(parents=True)
    (share / "metainfo").mkdir()
    shutil.copy2(DESKTOP, share / "applications")
    shutil.copy2(METAINFO, share / "metainfo")
    shutil.copytree(LINUX / "icons", share / "icons")
    rc, output = _run(appstreamcli, "validate-tree", "--no-net", str(tmp_path))
    assert rc == 0, output
    assert not re.search(r"^\s*[EW]: ", output, re.MULTILINE), output


def test_desktop_entry_names_the_app() -> None:
    entry = _desktop_entry()
    scripts = _pyproject()["scripts"]
    assert isinstance(scripts, dict)
    assert DESKTOP.stem == APP_ID
    from app.main import APP_ID as WINDOW_ID  # the window says which entry it belongs to

    assert WINDOW_ID == APP_ID
    assert entry["Icon"] == APP_ID
    assert entry["Type"] == "Application"
    assert entry["Terminal"] == "false"
    program, *field_codes = entry["Exec"].split()
    assert program == "crlc-organizer"
    assert scripts[program] == "app.main:main"
    assert field_codes == ["%F"]  # app.main takes folders as arguments
    assert entry.get("TryExec", program) == program
    assert entry.get("StartupWMClass", program) == program


def test_metainfo_matches_the_project() -> None:
    import crlc_engine

    project = _pyproject()
    root = ET.parse(METAINFO).getroot()
    assert root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    launchable = root.find("launchable")
    assert launchable is not None and launchable.get("type") == "desktop-id"
    assert launchable.text == DESKTOP.name
    scripts = project["scripts"]
    assert isinstance(scripts, dict)
    assert {b.text for b in root.iterfind("provides/binary")} == set(scripts)
    license_ = project["license"]  # an SPDX string (PEP 639) or a {text = ...} table
    spdx = license_["text"] if isinstance(license_, dict) else license_
    assert root.findtext("project_license") == spdx
    newest = root.find("releases/release")
    assert newest is not None
    assert newest.get("version") == project["version"] == crlc_engine.__version__
    rating = root.find("content_rating")
    assert rating is not None and rating.get("type") == "oars-1.1"


def _pixels(image: object) -> np.ndarray:
    from PySide6.QtGui import QImage

    assert isinstance(image, QImage)
    image = image.convertToFormat(QImage.Format.Format_ARGB32)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 4].reshape(image.height(), image.width(), 4).astype(int)


def test_icons_are_renderings_of_the_svg() -> None:
    from PySide6.QtGui import QImage

    make_icons = _make_icons()
    assert make_icons.APP_ID == APP_ID
    assert tuple(make_icons.SIZES) == SIZES
    hicolor = LINUX / "icons" / "hicolor"
    for size in SIZES:
        path = hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        image = QImage(str(path))
        assert not image.isNull(), f"missing or unreadable: {path}"
        assert (image.width(), image.height()) == (size, size), path
        assert image.hasAlphaChannel(), path
        stored = _pixels(image)
        alpha = stored[:, :, 3]  # ARGB32 is B, G, R, A in memory (little-endian)
        assert alpha[0, 0] == 0 and alpha[size // 2, size // 2] == 255, path  # rounded corner
        # A fresh rendering; another Qt version may round a few edge pixels differently.
        fresh = _pixels(make_icons.render(size))
        off = np.abs(stored - fresh).max(axis=2) > 8
        assert off.mean() < 0.01, f"{path} is stale: run python packaging/make_icons.py"
    scalable = hicolor / "scalable" / "apps" / f"{APP_ID}.svg"
    assert scalable.read_bytes() == (ROOT / "resources" / "icons" / "app.svg").read_bytes()
