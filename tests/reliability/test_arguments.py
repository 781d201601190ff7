"""Out-of-range numbers and a remembered pattern that leaves nothing: plain messages, and no
failed run left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN_FLAGS
from tests.reliability.conftest import assert_plain_error, crlc_here


def _without(flags: list[str], name: str) -> list[str]:
    at = flags.index(name)
    return flags[:at] + flags[at + 2 :]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--minutes", "inf"], "minutes"),
        (["--minutes", "1e308"], "minutes"),
        (["--minutes", "nan"], "minutes"),
        (["--seed", "99999999999999999999"], "seed"),
        (["--seed", "-1"], "seed"),
        (["--lr", "inf"], "finite"),
    ],
)
def test_bad_numbers_are_refused_before_any_run_starts(
    trained_library: tuple[Path, Path], tmp_path: Path, flags: list[str], needle: str
) -> None:
    photos, _ = trained_library
    workspace = tmp_path / "ws"
    base = _without(TINY_TRAIN_FLAGS, "--epochs") if flags[0] == "--minutes" else TINY_TRAIN_FLAGS
    code, payload, err = crlc_here(
        "train", str(photos), "-k", "3", *base, *flags, "--workspace", str(workspace)
    )
    assert_plain_error(code, payload, err)
    assert needle in payload["error"]["message"]
    assert not list(workspace.glob("libraries/*/runs/*"))  # no failed run left behind


@pytest.mark.parametrize(
    "args",
    [
        ["neighbors", "-k", "0"],
        ["clusters", "--top", "-1"],
        ["refine", "--epochs", "0"],
        ["split", "0", "--parts", "1"],
    ],
)
def test_bad_counts_of_the_result_commands_are_usage_errors(
    trained_library: tuple[Path, Path], args: list[str]
) -> None:
    photos, workspace = trained_library
    image = sorted((photos / "disc").iterdir())[0]
    where = [str(photos), str(image)] if args[0] == "neighbors" else [str(photos)]
    code, payload, err = crlc_here(args[0], *where, *args[1:], "--workspace", str(workspace))
    assert code == 2 and "Traceback" not in err, err
    assert payload["error"]["type"] == "usage"


def test_a_remembered_pattern_that_leaves_nothing_is_named(tmp_path: Path) -> None:
    from crlc_engine.library.synthetic import write_shapes_folder

    photos = write_shapes_folder(tmp_path / "photos", per_class=3, size=32)
    workspace = str(tmp_path / "ws")
    code, payload, err = crlc_here("scan", str(photos), "--include", "[", "--workspace", workspace)
    assert_plain_error(code, payload, err)
    code, payload, err = crlc_here("scan", str(photos), "--workspace", workspace)  # remembered
    assert_plain_error(code, payload, err)
    message = payload["error"]["message"]
    assert "--include '['" in message and "--include '*'" in message
    code, payload, err = crlc_here("scan", str(photos), "--include", "*", "--workspace", workspace)
    assert code == 0 and payload["images_ok"] == 12, err
    shutil.rmtree(workspace)
