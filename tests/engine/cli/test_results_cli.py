"""The results commands through the CLI, the way a user types them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crlc_engine.cli.main import main
from tests.conftest import TINY_TRAIN_FLAGS as TINY


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main([*args, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


@pytest.fixture
def library(
    shapes_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, str]:
    photos = tmp_path / "photos"
    shutil.copytree(shapes_folder, photos)
    ws = str(tmp_path / "ws")
    code, payload = run(["train", str(photos), "-k", "3", "--workspace", ws, *TINY], capsys)
    assert code == 0, payload
    return photos, ws


def test_runs_clusters_and_assign(
    library: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, ws = library
    code, runs = run(["runs", str(photos), "--workspace", ws], capsys)
    assert code == 0 and len(runs["runs"]) == 1
    info = runs["runs"][0]
    assert info["state"] == "completed" and info["clusters"] == 3 and info["parent"] is None
    assert info["preset"] and info["epochs"] == 2 and info["duration_s"] > 0
    code, clusters = run(["clusters", str(photos), "--workspace", ws, "--top", "2"], capsys)
    assert code == 0
    assert sum(c["size"] for c in clusters["clusters"]) == 48
    assert all(
        len(c["top"]) <= 2 and 0 < c["mean_confidence"] <= 1
        for c in clusters["clusters"]
        if c["size"]
    )
    code, again = run(["assign", str(photos), "--workspace", ws, "--top", "2"], capsys)
    assert code == 0 and again["clusters"] == clusters["clusters"]  # same checkpoint, same result


def test_label_name_move_ignore_undo_redo(
    library: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, ws = library
    disc = sorted((photos / "disc").iterdir())
    code, out = run(
        ["label", str(photos), str(disc[0]), str(disc[1]), "--as", "Round", "--workspace", ws],
        capsys,
    )
    assert code == 0 and out == {"labelled": 2, "class": "Round"}
    code, out = run(["name", str(photos), "1", "Squares", "--workspace", ws], capsys)
    assert code == 0 and out["cluster"] == 1 and out["name"] == "Squares"
    code, out = run(["move", str(photos), str(disc[2]), "--to", "0", "--workspace", ws], capsys)
    assert code == 0 and out["class"] == "Cluster 0"
    code, out = run(["ignore", str(disc[3]), "--workspace", ws], capsys)  # no FOLDER needed
    assert code == 0 and out == {"ignored": 1}
    code, out = run(["clusters", str(photos), "--workspace", ws], capsys)
    names = {c["cluster"]: c["name"] for c in out["clusters"]}
    assert names[1] == "Squares" and names[0] == "Cluster 0"
    assert sum(c["size"] for c in out["clusters"]) == 47  # the ignored image is left out
    code, out = run(["undo", str(photos), "--workspace", ws], capsys)
    assert code == 0 and "ignore" in out["undone"]
    code, out = run(["undo", str(photos), "--workspace", ws], capsys)
    assert "move" in out["undone"]
    code, out = run(["clusters", str(photos), "--workspace", ws], capsys)
    names = {c["cluster"]: c["name"] for c in out["clusters"]}
    assert names.get(0) is None and sum(c["size"] for c in out["clusters"]) == 48
    code, out = run(["redo", str(photos), "--workspace", ws], capsys)
    assert "move" in out["redone"]


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (["name", "{photos}", "7", "X"], "invalid_setting"),
        (["name", "{photos}", "one", "X"], "invalid_setting"),
        (["label", "{photos}", "{photos}/nope.png", "--as", "X"], "image_not_found"),
        (["label", "{photos}", "{outside}", "--as", "X"], "image_not_found"),
        (["runs", "{photos}", "--delete", "20000101-000000-dead"], "run_not_found"),
    ],
)
def test_errors(
    args: list[str],
    kind: str,
    library: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    photos, ws = library
    outside = tmp_path / "outside.png"
    shutil.copy(next((photos / "disc").iterdir()), outside)
    filled = [a.format(photos=photos, outside=outside) for a in args]
    code, out = run([*filled, "--workspace", ws], capsys)
    assert code == 1 and out["error"]["type"] == kind


def test_refine_and_delete_run(
    library: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, ws = library
    discs = sorted((photos / "disc").iterdir())[:2]
    run(["label", str(photos), *map(str, discs), "--as", "Round", "--workspace", ws], capsys)
    code, out = run(
        ["refine", str(photos), "--epochs", "1", "--device", "cpu", "--workspace", ws], capsys
    )
    assert code == 0 and out["state"] == "completed" and out["parent"]
    code, runs = run(["runs", str(photos), "--workspace", ws], capsys)
    refined = [r for r in runs["runs"] if r["parent"]]
    assert len(refined) == 1 and refined[0]["kind"] == "refine"
    code, _ = run(
        ["runs", str(photos), "--delete", refined[0]["run_id"], "--workspace", ws], capsys
    )
    assert code == 0
    code, runs = run(["runs", str(photos), "--workspace", ws], capsys)
    assert [r["run_id"] for r in runs["runs"]] == [out["parent"]]


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_export_copy_dry_run_move_and_undo(
    library: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, ws = library
    before = _tree(photos)
    discs = sorted((photos / "disc").iterdir())
    run(["name", str(photos), "0", "Zero/../Zero", "--workspace", ws], capsys)
    run(["label", str(photos), str(discs[0]), "--as", "Round", "--workspace", ws], capsys)
    run(["ignore", str(photos), str(discs[1]), "--workspace", ws], capsys)

    dry = tmp_path / "dry"
    code, out = run(["export", str(photos), str(dry), "--dry-run", "--workspace", ws], capsys)
    assert code == 0 and out["dry_run"] and out["files"] == 47 and not dry.exists()

    dest = tmp_path / "sorted"
    code, out = run(
        ["export", str(photos), str(dest), "--min-confidence", "0.99", "--workspace", ws], capsys
    )
    assert code == 0 and out["files"] == 47 and Path(out["manifest"]).is_file()
    assert out["folders"].get("Round") == 1  # a label wins over the cluster
    assert "_uncertain" in out["folders"]
    assert all("/" not in name and ".." not in name for name in out["folders"])
    assert not (dest / discs[1].name).exists() and _tree(photos) == before  # copy: untouched
    assert (dest / "Round" / discs[0].name).read_bytes() == discs[0].read_bytes()

    moved_to = tmp_path / "moved"
    code, out = run(
        ["export", str(photos), str(moved_to), "--mode", "move", "--workspace", ws], capsys
    )
    assert code == 0 and out["files"] == 47
    assert len(_tree(photos)) == 1  # only the ignored image stayed
    code = main(["export", "--undo", out["manifest"], "--json"])  # not knowing the library
    said = capsys.readouterr()
    undone = json.loads(said.out.strip().splitlines()[-1])
    assert code == 0 and undone["restored"] == 0 and len(undone["kept"]) == 47
    assert "run the undo again with --workspace" in said.err and len(_tree(photos)) == 1
    code, undone = run(["export", "--undo", out["manifest"], "--workspace", ws], capsys)
    assert code == 0 and undone["restored"] == 47 and _tree(photos) == before

    inside = photos / "out"
    code, out = run(["export", str(photos), str(inside), "--workspace", ws], capsys)
    assert code == 1 and out["error"]["type"] == "export_destination"


def test_neighbors_of_an_image(
    library: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, ws = library
    image = sorted((photos / "cross").iterdir())[0]
    code, out = run(["neighbors", str(photos), str(image), "-k", "5", "--workspace", ws], capsys)
    assert code == 0 and out["index"] == "exact" and len(out["neighbors"]) == 5
    sims = [n["similarity"] for n in out["neighbors"]]
    assert sims == sorted(sims, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-6 for s in sims)
    assert str(image) not in {n["path"] for n in out["neighbors"]}
    code, out = run(["neighbors", str(photos), "-k", "5", "--workspace", ws], capsys)
    assert code == 1 and out["error"]["type"] == "invalid_setting"


def test_groups_in_clusters_and_export_with_flags_and_old_runs(
    library: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from crlc_engine.library import ImageLibrary
    from crlc_engine.results.groups import GroupCheck

    photos, ws = library
    code, shown = run(["clusters", str(photos), "--workspace", ws], capsys)
    first = shown["run_id"]
    one, two = (c["cluster"] for c in shown["clusters"][:2])
    for cluster in (one, two):  # a merge: one group
        assert run(["name", str(photos), str(cluster), "Shapes", "--workspace", ws], capsys)[0] == 0
    with ImageLibrary.open([photos], ws) as lib:  # as if a retraining had moved most away
        lib.catalog.db.execute(
            "INSERT INTO group_checks VALUES (?, 'Shapes', 'older', 10, 3)", (first,)
        )
    code, shown = run(["clusters", str(photos), "--workspace", ws], capsys)
    assert code == 0 and [c["cluster"] for c in shown["clusters"]][:2] == [one, two]  # as before
    (merged,) = [g for g in shown["groups"] if g["name"] == "Shapes"]
    assert merged["clusters"] == sorted([one, two]) and merged["size"] == sum(
        c["size"] for c in shown["clusters"] if c["cluster"] in (one, two)
    )
    assert merged["flags"] == [GroupCheck("Shapes", 10, 3, "older").flag_text()]
    code = main(["clusters", str(photos), "--workspace", ws, "--top", "1"])
    (header,) = [line for line in capsys.readouterr().out.splitlines() if "Shapes" in line]
    clusters_text = ", ".join(map(str, merged["clusters"]))
    assert header.startswith(f"# Shapes (clusters {clusters_text}): {merged['size']} images")
    assert header.endswith(f"  ! {merged['flags'][0]}")
    code, exported = run(
        ["export", str(photos), str(tmp_path / "out"), "--dry-run", "--workspace", ws], capsys
    )
    assert code == 0 and "Shapes" in exported["group_flags"] and "Shapes" in exported["folders"]

    code, _ = run(["train", str(photos), "-k", "3", "--workspace", ws, *TINY], capsys)
    assert code == 0
    code, old = run(["clusters", str(photos), "--run", first, "--workspace", ws], capsys)
    assert code == 0 and old["run_id"] == first  # each run keeps its own names
    assert [g["clusters"] for g in old["groups"] if g["name"] == "Shapes"] == [merged["clusters"]]


def _text(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """Exit status, stdout lines and stderr of a command run without ``--json``."""
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def _expected_lines(groups: list[dict], with_paths: bool = True) -> list[tuple[str, str]]:
    """("header", title) and ("path", path) rows that the text output must show, in order."""
    rows = []
    for g in groups:
        rows.append(("header", g["name"] or f"Cluster {g['clusters'][0]}"))
        rows.extend(("path", p) for p in g["top"] if with_paths)
    return rows


def _shown(lines: list[str]) -> list[tuple[str, str]]:
    rows = []
    for line in lines:
        if line.startswith("# "):
            rows.append(("header", line[2:].split(" (")[0].split(":")[0]))
        else:
            assert Path(line).is_absolute() and Path(line).is_file(), line  # nothing else
            rows.append(("path", line))
    return rows


def test_clusters_text_prints_a_header_and_the_top_paths_per_group(
    library: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, ws = library
    disc = sorted((photos / "disc").iterdir())
    code, shown = run(["clusters", str(photos), "--workspace", ws], capsys)
    run_id, first = shown["run_id"], shown["groups"][0]["clusters"][0]
    # options among the positional arguments of name and move
    assert main(["name", str(photos), "--workspace", ws, str(first), "--run", run_id, "Dots"]) == 0
    assert main(["move", str(photos), "--to", str(first), str(disc[0]), "--workspace", ws]) == 0
    capsys.readouterr()

    for top, flag in ((2, ["--top", "2"]), (5, [])):  # 5: the default
        code, json_out = run(["clusters", str(photos), "--workspace", ws, *flag], capsys)
        code, lines, err = _text(["clusters", *flag, str(photos), "--workspace", ws], capsys)
        assert code == 0, err
        assert _shown(lines) == _expected_lines(json_out["groups"])
        for g in json_out["groups"]:
            assert len(g["top"]) == min(top, g["size"])
        assert not any(line.startswith("/") for line in err.splitlines())  # paths: stdout
    (dots,) = [line for line in lines if line.startswith("# Dots")]
    assert dots.startswith(f"# Dots (cluster {first}): ") and " labelled" in dots
    assert "mean confidence" in dots

    code, lines, err = _text(["clusters", str(photos), "--top", "0", "--workspace", ws], capsys)
    assert code == 0, err
    assert _shown(lines) == _expected_lines(json_out["groups"], with_paths=False)
    assert all(line.startswith("# ") for line in lines)

    code, lines, err = _text(["assign", str(photos), "--workspace", ws, "--top", "1"], capsys)
    assert code == 0, err
    code, json_out = run(["clusters", str(photos), "--workspace", ws, "--top", "1"], capsys)
    assert _shown(lines) == _expected_lines(json_out["groups"])  # as clusters does


def test_clusters_json_keeps_stdout_for_the_json_object(
    library: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, ws = library
    code = main(["clusters", str(photos), "--top", "1", "--workspace", ws, "--json"])
    captured = capsys.readouterr()
    assert code == 0 and len(captured.out.strip().splitlines()) == 1
    payload = json.loads(captured.out)
    assert set(payload) == {"run_id", "clusters", "groups"}
    assert set(payload["clusters"][0]) == {"cluster", "name", "size", "mean_confidence", "top"}
    headers = [line for line in captured.err.splitlines() if line.startswith("# ")]
    assert len(headers) == len(payload["groups"])  # the headers on stderr, for a person
