"""Options among the folders: ``crlc scan A --workspace W B``, ``--`` and unknown options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlc_engine.cli.arguments import parse_command_line
from crlc_engine.cli.main import build_parser, main
from crlc_engine.library.synthetic import write_shapes_folder


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else {}, captured.err


@pytest.fixture
def two_folders(tmp_path: Path) -> tuple[Path, Path]:
    one = write_shapes_folder(tmp_path / "one", per_class=2, size=16, classes=2)
    two = write_shapes_folder(tmp_path / "two", per_class=3, size=16, classes=2, seed=1)
    return one, two


@pytest.mark.parametrize(
    ("argv", "dest", "expected", "option", "value"),
    [
        (["scan", "A", "--workspace", "W", "B"], "folders", ["A", "B"], "workspace", "W"),
        (["scan", "A", "--size", "16", "B", "--json"], "folders", ["A", "B"], "size", 16),
        (["train", "A", "-k", "3", "B", "--epochs", "1"], "folders", ["A", "B"], "clusters", 3),
        (["evaluate", "A", "--run", "R", "B"], "folders", ["A", "B"], "run", "R"),
        (["forget", "A", "--workspace", "W", "B"], "folders", ["A", "B"], "workspace", "W"),
        (["runs", "A", "--delete", "R", "B"], "folders", ["A", "B"], "delete", "R"),
        (["assign", "A", "--top", "2", "B"], "folders", ["A", "B"], "top", 2),
        (["clusters", "A", "--top", "0", "B"], "folders", ["A", "B"], "top", 0),
        (["refine", "A", "--epochs", "1", "B"], "folders", ["A", "B"], "epochs", 1),
        (["undo", "A", "--workspace", "W", "B"], "folders", ["A", "B"], "workspace", "W"),
        (["redo", "A", "--json", "B"], "folders", ["A", "B"], "json", True),
        (["label", "A", "--as", "Dog", "x.png"], "paths", ["A", "x.png"], "name", "Dog"),
        (["move", "A", "--to", "3", "x.png"], "paths", ["A", "x.png"], "to", 3),
        (["ignore", "x.png", "--remove", "y.png"], "paths", ["x.png", "y.png"], "remove", True),
        (["neighbors", "A", "-k", "4", "x.png"], "paths", ["A", "x.png"], "k", 4),
        (["name", "A", "--run", "R", "B", "3", "Dog"], "items", ["A", "B", "3", "Dog"], "run", "R"),
        (["split", "A", "--parts", "3", "2"], "items", ["A", "2"], "parts", 3),
        (["export", "A", "--mode", "symlink", "OUT"], "paths", ["A", "OUT"], "mode", "symlink"),
        (["ablate", "A", "-k", "2", "B"], "folders", ["A", "B"], "clusters", 2),
    ],
)
def test_options_among_the_positional_arguments(
    argv: list[str], dest: str, expected: list[str], option: str, value: object
) -> None:
    args = parse_command_line(build_parser(), argv)
    assert args.command == argv[0]
    assert getattr(args, dest) == expected and getattr(args, option) == value


def test_fixed_forms_keep_working() -> None:
    parser = build_parser()
    args = parse_command_line(parser, ["name", "A", "B", "3", "Dog", "--run", "R"])
    assert (args.items, args.run) == (["A", "B", "3", "Dog"], "R")
    args = parse_command_line(parser, ["move", "--to", "2", "A", "x.png", "y.png"])
    assert (args.paths, args.to) == (["A", "x.png", "y.png"], 2)
    args = parse_command_line(parser, ["relink", "OLD", "--workspace", "W", "NEW"])
    assert (args.old, args.new, args.workspace) == ("OLD", "NEW", "W")
    args = parse_command_line(parser, ["export", "--undo", "manifest.csv"])
    assert (args.paths, args.undo) == ([], "manifest.csv")
    args = parse_command_line(parser, ["libraries", "--json"])
    assert args.command == "libraries" and args.json


def test_double_dash_ends_the_options() -> None:
    parser = build_parser()
    args = parse_command_line(parser, ["scan", "A", "--workspace", "W", "--", "-odd", "--json"])
    assert (args.folders, args.workspace, args.json) == (["A", "-odd", "--json"], "W", False)
    args = parse_command_line(parser, ["name", "A", "3", "--", "-Dog-"])
    assert args.items == ["A", "3", "-Dog-"]


def test_scan_takes_options_among_its_folders(
    two_folders: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = two_folders
    ws = tmp_path / "ws"
    code, out, err = _run(["scan", str(one), "--workspace", str(ws), str(two)], capsys)
    assert code == 0, err
    assert out["images_ok"] == 4 + 6 and Path(out["workspace"]).is_relative_to(ws)
    code, runs, err = _run(["runs", str(one), "--workspace", str(ws), str(two)], capsys)
    assert code == 0 and runs == {"runs": []}, err  # the same library: both folders


def test_a_folder_that_looks_like_an_option_after_double_dash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_shapes_folder(tmp_path / "-odd", per_class=2, size=16, classes=2)
    monkeypatch.chdir(tmp_path)
    ws = str(tmp_path / "ws")
    code, out, err = _run(["scan", "-odd", "--workspace", ws], capsys)
    assert code == 2 and out["error"]["type"] == "usage" and "Traceback" not in err
    code = main(["scan", "--workspace", ws, "--json", "--", "-odd"])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["images_ok"] == 4, captured.err
    code = main(["scan", "--json", str(tmp_path / "-odd"), "--workspace", ws, "--", "-odd"])
    captured = capsys.readouterr()  # the same folder twice: one library
    assert code == 0 and json.loads(captured.out)["images_ok"] == 4, captured.err


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "A", "--bogus", "B"],
        ["clusters", "A", "--top", "-1"],
        ["name", "A", "--nope", "3", "Dog"],
        ["export", "A", "--mode", "teleport", "OUT"],
        ["bogus", "A"],
        [],
    ],
)
def test_unknown_options_are_plain_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(argv, capsys)
    assert code == 2 and out["error"]["type"] == "usage"
    assert "Traceback" not in err and "usage: crlc" in err
    if argv and argv[0] != "bogus":  # the command's own usage line
        assert f"usage: crlc {argv[0]}" in err
