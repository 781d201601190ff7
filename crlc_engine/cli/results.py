"""``crlc`` subcommands that work on a run's results: runs, assign, clusters, neighbors,
label, name, move, split, ignore, undo, redo, refine, export.

Positional paths are sorted by what they are: existing folders are the library's roots,
files are images (commands that take a cluster, a name or a destination read those from
the end of the list). Without a folder, the library is the one whose roots hold the images.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crlc_engine.api import (
    ImageLibrary,
    ImageNotInLibraryError,
    InvalidSettingError,
    JobControl,
    LibraryNotFoundError,
    RunDir,
    export_items,
    export_undo_checks,
    list_libraries,
)

if TYPE_CHECKING:
    from crlc_engine.api import ExportResult, UndoResult

Handler = Callable[[argparse.Namespace, JobControl], dict[str, Any]]
#: Failed, missing or kept files named on the terminal (the rest: in the manifest, --json).
_FIRST_LISTED = 10


def _split(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """(folders, files) among ``paths``; anything else is an error."""
    folders, files = [], []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            folders.append(path)
        elif path.is_file():
            files.append(path.resolve())
        else:
            raise ImageNotInLibraryError(f"no such file or folder: {path}")
    return folders, files


def _library_of_images(files: list[Path], base: str | None) -> list[Path]:
    """The roots of the one library that holds every file."""
    matches = [
        info
        for info in list_libraries(base)
        if all(any(f.is_relative_to(r) for r in info.roots) for f in files)
    ]
    if not matches:
        raise LibraryNotFoundError(
            "none of your libraries holds these images; give the library's folder(s) too"
        )
    if len(matches) > 1:
        raise InvalidSettingError(
            "several libraries hold these images; give the library's folder(s) too"
        )
    return [Path(r) for r in matches[0].roots]


@contextmanager
def _library(
    folders: list[Path], files: list[Path], base: str | None, read_only: bool = False
) -> Iterator[ImageLibrary]:
    roots = folders or _library_of_images(files, base)
    library = ImageLibrary.open(roots, base, read_only)
    try:
        yield library
    finally:
        library.close()


def _image_ids(library: ImageLibrary, files: list[Path]) -> list[int]:
    ids = []
    for path in files:
        record = library.catalog.image_by_path(path)
        if record is None or record.status != "ok":
            state = "not in this library" if record is None else f"{record.status}"
            raise ImageNotInLibraryError(f"{path} is {state}; scan the library first (`crlc scan`)")
        ids.append(record.id)
    if not ids:
        raise InvalidSettingError("give at least one image")
    return ids


def _check_cluster(library: ImageLibrary, run: RunDir, cluster: int) -> None:
    """``cluster`` is one of the run's head's C or one made by a split (it holds images)."""
    from crlc_engine.api import ResultStore

    clusters = int(run.read_config()["train"]["clusters"])
    if 0 <= cluster < clusters:
        return
    extra = [c for c in ResultStore(library.catalog).cluster_ids(run.run_id) if c >= clusters]
    if cluster in extra:
        return
    split = f" and {', '.join(map(str, extra))}" if extra else ""
    raise InvalidSettingError(
        f"run {run.run_id} has clusters 0..{clusters - 1}{split}, not {cluster}"
    )


def _cluster_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidSettingError(f"CLUSTER must be a cluster number, not {text!r}") from None


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")


# ---------------------------------------------------------------------- commands
def _cmd_runs(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import delete_run, list_runs

    folders, _ = _split(args.folders)
    if args.delete:
        removed = delete_run(folders, args.delete, args.workspace)
        _say(f"Deleted run {args.delete} ({removed})")
        return {"deleted": args.delete}
    infos = list_runs(folders, args.workspace)
    for info in infos:
        if info.problem is not None:
            _say(f"{info.run_id}  damaged: {info.problem} (`--delete {info.run_id}` removes it)")
            continue
        duration = "" if info.duration_s is None else f"{info.duration_s / 60:.1f} min"
        parent = f" <- {info.parent}" if info.parent else ""
        head = "-" if info.head is None else str(info.head)
        _say(
            f"{info.run_id}  {info.state:9s} {info.kind:6s} preset {info.preset:8s} "
            f"K={info.clusters:<3d} epochs {info.epochs or '-'!s:5s} head {head} "
            f"{duration}{parent}"
        )
    if not infos:
        _say("No runs yet: `crlc train FOLDER --clusters K`.")
    return {"runs": [info.as_dict() for info in infos]}


def _summaries(library: ImageLibrary, run_id: str, top: int, as_json: bool) -> dict[str, Any]:
    """The ``clusters`` (what the model made) and ``groups`` (the group view) of a run, as
    JSON. Each group is printed: without ``--json`` its header and top image paths on stdout
    (see :func:`_group_header`), with ``--json`` its header on stderr."""
    from crlc_engine.api import GroupStore, ResultStore

    paths = {r.id: str(r.path) for r in library.images(None)}
    groups = GroupStore(library.catalog)
    clusters = [
        {
            "cluster": s.cluster,
            "name": s.name,
            "size": s.size,
            "mean_confidence": round(s.mean_confidence, 4),
            "top": [paths[i] for i in s.top_image_ids],
        }
        for s in ResultStore(library.catalog).summaries(run_id, top, exclude=groups.ignored())
    ]
    shown = []
    lines = []
    for g in groups.view(run_id, top).groups:
        top_paths = [paths[i] for i in g.top_image_ids]
        entry: dict[str, Any] = {
            "name": g.name,
            "clusters": list(g.clusters),
            "size": g.size,
            "mean_confidence": round(g.mean_confidence, 4),
            "labelled": g.labelled,
            "top": top_paths,
            "flags": list(g.flags),
        }
        shown.append(entry)
        lines.append(_group_header(g.title, g.name is not None, entry))
        if not as_json:
            lines.extend(top_paths)
    if as_json:
        for line in lines:
            _say(line)
    else:
        _print(lines)
    if not shown:
        _say(f"Run {run_id} has no groups (no images were assigned).")
    return {"run_id": run_id, "clusters": clusters, "groups": shown}


def _group_header(title: str, named: bool, group: dict[str, Any]) -> str:
    """One group's header line: ``# NAME (clusters 3, 7): SIZE images, mean confidence X``,
    then how many are labelled and any warnings (``!``). It starts with ``#`` and the paths
    below it are absolute, so ``grep -v '^#'`` keeps only the paths."""
    clusters = group["clusters"]
    if not clusters and not group["size"]:
        where = " (no cluster and no picture left)"
    elif not clusters:
        where = " (labels only)"
    elif named:
        word = "cluster" if len(clusters) == 1 else "clusters"
        where = f" ({word} {', '.join(map(str, clusters))})"
    else:  # "Cluster 3" says it already
        where = ""
    size = group["size"]
    images = f"{size} image" if size == 1 else f"{size} images"
    text = f"# {title}{where}: {images}, mean confidence {group['mean_confidence']:.2f}"
    if group["labelled"]:
        text += f", {group['labelled']} labelled"
    for flag in group["flags"]:
        text += f"  ! {flag}"
    return text


def _print(lines: list[str]) -> None:
    """Write ``lines`` to stdout; a reader that stops early (``| head``) is no error."""
    if not lines:
        return
    try:
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the unflushed rest at exit: send it to the null device
        with suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)


def _cmd_assign(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import assign_run

    folders, _ = _split(args.folders)
    run = assign_run(folders, args.run, args.workspace)
    with ImageLibrary.open(folders, args.workspace) as library:
        return _summaries(library, run.run_id, args.top, args.json)


def _cmd_clusters(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    folders, _ = _split(args.folders)
    with ImageLibrary.open(folders, args.workspace, read_only=True) as library:
        run = library.runs.get(args.run, state="completed")
        return _summaries(library, run.run_id, args.top, args.json)


def _cmd_neighbors(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import NeighborIndex, ResultStore

    folders, files = _split(args.paths)
    if len(files) != 1:
        raise InvalidSettingError("give exactly one image to find the neighbours of")
    with _library(folders, files, args.workspace, read_only=True) as library:
        (image_id,) = _image_ids(library, files)
        run = library.runs.get(args.run, state="completed")
        stored = ResultStore(library.catalog).load(run.run_id)
        if image_id not in set(stored.image_ids.tolist()):
            raise ImageNotInLibraryError(f"{files[0]} was not part of run {run.run_id}")
        index = NeighborIndex.build(stored.features, ids=stored.image_ids)
        found = index.neighbors_of([stored.row_of(image_id)], k=args.k)
        paths = {r.id: str(r.path) for r in library.images(None)}
        result = []
        for neighbor, similarity in zip(
            found.ids[0].tolist(), found.similarities[0].tolist(), strict=True
        ):
            result.append({"path": paths[neighbor], "similarity": round(float(similarity), 6)})
            _say(f"{similarity:.3f}  {paths[neighbor]}")
        return {
            "image": str(files[0]),
            "run_id": run.run_id,
            "index": index.kind,
            "neighbors": result,
        }


def _annotations(library: ImageLibrary) -> Any:
    from crlc_engine.api import Annotations

    return Annotations(library.catalog)


def _cmd_label(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    folders, files = _split(args.paths)
    with _library(folders, files, args.workspace) as library, library.locked("labelling"):
        ids = _image_ids(library, files)
        _annotations(library).label(ids, args.name)
    _say(f"Labelled {len(ids)} image(s) as {args.name!r}")
    return {"labelled": len(ids), "class": args.name}


def _cmd_move(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    folders, files = _split(args.paths)
    with _library(folders, files, args.workspace) as library, library.locked("labelling"):
        ids = _image_ids(library, files)
        run = library.runs.get(args.run, state="completed")
        _check_cluster(library, run, args.to)
        name = _annotations(library).move_to_cluster(run.run_id, ids, args.to)
    _say(f"Moved {len(ids)} image(s) to cluster {args.to} ({name!r})")
    return {"moved": len(ids), "cluster": args.to, "class": name}


def _cmd_name(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    if len(args.items) < 3:
        raise InvalidSettingError("usage: crlc name FOLDER... CLUSTER NAME")
    *folder_args, cluster_text, name = args.items
    folders, _ = _split(folder_args)
    cluster = _cluster_number(cluster_text)
    with ImageLibrary.open(folders, args.workspace) as library, library.locked("naming"):
        run = library.runs.get(args.run, state="completed")
        _check_cluster(library, run, cluster)
        _annotations(library).name_cluster(run.run_id, cluster, name)
    _say(f"Cluster {cluster} of run {run.run_id} is now {name!r}")
    return {"run_id": run.run_id, "cluster": cluster, "name": name}


def _part_names(text: str | None, parts: int) -> list[str | None] | None:
    """``--names A,B``: one name per part, largest first; an empty entry keeps the default."""
    if text is None:
        return None
    names: list[str | None] = [n.strip() or None for n in text.split(",")]
    if len(names) != parts:
        raise InvalidSettingError(
            f"--names needs {parts} comma-separated names (one per part, largest part "
            f"first; leave one empty to keep the default), got {len(names)}"
        )
    return names


def _cmd_split(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    if len(args.items) < 2:
        raise InvalidSettingError("usage: crlc split FOLDER... CLUSTER [--parts N]")
    *folder_args, cluster_text = args.items
    folders, _ = _split(folder_args)
    cluster = _cluster_number(cluster_text)
    names = _part_names(args.names, args.parts)
    with ImageLibrary.open(folders, args.workspace) as library, library.locked("splitting"):
        run = library.runs.get(args.run, state="completed")
        _check_cluster(library, run, cluster)
        notes = _annotations(library)
        plan = notes.plan_split(run.run_id, cluster, args.parts, args.seed)
        if not args.dry_run:
            notes.apply_split(plan, names, args.label)
        shown = notes.names(run.run_id)
    parts = []
    for k, (part, size) in enumerate(zip(plan.clusters, plan.sizes, strict=True)):
        name = shown.get(part)
        if args.dry_run and names and names[k]:
            name = names[k]
        parts.append({"cluster": part, "name": name, "size": size})
    verb = "Would split" if args.dry_run else "Split"
    _say(f"{verb} cluster {cluster} of run {run.run_id} into {args.parts} parts:")
    for part in parts:
        label = part["name"] or "(unnamed)"
        _say(f"  cluster {part['cluster']:3d}  {label:24s} {part['size']} images")
    return {
        "run_id": run.run_id,
        "cluster": cluster,
        "parts": parts,
        "applied": not args.dry_run,
    }


def _cmd_ignore(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    folders, files = _split(args.paths)
    with _library(folders, files, args.workspace) as library, library.locked("labelling"):
        ids = _image_ids(library, files)
        _annotations(library).set_ignored(ids, not args.remove)
    verb = "No longer ignoring" if args.remove else "Ignoring"
    _say(f"{verb} {len(ids)} image(s) (left out of training and export)")
    return {"ignored" if not args.remove else "unignored": len(ids)}


def _history_step(args: argparse.Namespace, redo: bool) -> dict[str, Any]:
    folders, _ = _split(args.folders)
    with ImageLibrary.open(folders, args.workspace) as library, library.locked("labelling"):
        notes = _annotations(library)
        done = notes.redo() if redo else notes.undo()
    word = "Redid" if redo else "Undid"
    _say(f"{word}: {done}" if done else f"Nothing to {'redo' if redo else 'undo'}")
    return {"redone" if redo else "undone": done}


def _cmd_undo(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    return _history_step(args, redo=False)


def _cmd_redo(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    return _history_step(args, redo=True)


def _cmd_refine(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import refine_folder
    from crlc_engine.cli.main import ConsoleReporter

    folders, _ = _split(args.folders)
    outcome = refine_folder(
        folders,
        args.run,
        args.epochs,
        args.minutes,
        args.workspace,
        ConsoleReporter(),
        control,
        {"device": args.device},
    )
    summary = outcome.summary()
    _say(
        f"Run {summary['run_id']} (refined from {outcome.parent}) {summary['state']}: "
        f"{summary['epochs']} epochs, {summary['clusters']} clusters"
    )
    shares = [
        f"{text} {summary[key]:.0%}"
        for key, text in (
            ("labelled_in_group", "labelled pictures in their group:"),
            ("unlabelled_in_group", "other pictures of labelled groups still in them:"),
        )
        if summary.get(key) is not None
    ]
    if shares:
        _say("; ".join(shares))
    return summary


def _cmd_export(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import export_images, undo_export
    from crlc_engine.cli.main import ConsoleReporter

    if args.undo:
        if args.paths:
            raise InvalidSettingError("`crlc export --undo MANIFEST` takes no FOLDER or DEST")
        with export_undo_checks(args.workspace) as (roots, catalog):
            undone = undo_export(Path(args.undo), roots, ConsoleReporter(), catalog)
        _say_undone(undone)
        return undone.as_dict()
    if len(args.paths) < 2:
        raise InvalidSettingError("usage: crlc export FOLDER... DEST")
    *folder_args, dest_text = args.paths
    folders, _ = _split(folder_args)
    mode = "csv" if args.csv_only else args.mode
    dest = Path(dest_text).expanduser()
    # the export only reads the library (its lock is a separate file): it works on a full or
    # read-only workspace disk
    with ImageLibrary.open(folders, args.workspace, read_only=True) as library:
        run = library.runs.get(args.run, state="completed")
        items = export_items(library, run.run_id)
        flags = _say_group_flags(library, run.run_id)
        lock = library.locked(f"exporting to {dest}", name="export.lock")
        with nullcontext() if args.dry_run else lock:
            result = export_images(
                items,
                dest,
                mode,
                library.roots,
                args.min_confidence,
                args.keep_subfolders,
                args.dry_run,
                ConsoleReporter(),
                control,
            )
    _say_exported(result)
    return {**result.as_dict(), "group_flags": flags}


def _say_exported(result: ExportResult) -> None:
    """The export's counts, its folders and the first failed and missing photos (stderr)."""
    verb = "Would export" if result.dry_run else "Exported"
    _say(
        f"{verb} {result.done} photos into {len(result.folders)} folders ({result.mode}); "
        f"{result.counts_text()}"
    )
    for folder, count in sorted(result.folders.items()):
        _say(f"  {folder}: {count}")
    for word, rows in (("failed", result.failed), ("missing", result.missing)):
        for path, reason in rows[:_FIRST_LISTED]:
            _say(f"  {word}: {path} ({reason})")
        if len(rows) > _FIRST_LISTED:
            _say(f"  ... and {len(rows) - _FIRST_LISTED} more {word} (all in the manifest)")
    if result.failed:
        _say(
            "Some photos could not be exported: fix the cause and run the same export again "
            "(photos already exported are not exported twice)."
        )
    if result.missing:
        _say(
            "Some photos are missing (deleted or moved since training): put them back, or "
            "scan the library again (`crlc scan`) to forget them."
        )


def _say_undone(undone: UndoResult) -> None:
    """What undo kept, and why (stderr)."""
    if undone.unverified:
        _say(
            f"Kept {undone.unverified} file(s) exported by an older version that recorded no "
            "checksums, so undo cannot tell they are unchanged; the reasons below say what "
            "to do."
        )
    for path, reason in undone.kept[:_FIRST_LISTED]:
        _say(f"  kept: {path} ({reason})")
    if len(undone.kept) > _FIRST_LISTED:
        _say(f"  ... and {len(undone.kept) - _FIRST_LISTED} more kept (see --json)")
    if any("none of your libraries" in reason for _, reason in undone.kept):
        _say(
            "Photos whose library lives in another workspace are put back only when undo "
            "knows that library: run the undo again with --workspace DIR (that workspace)."
        )


def _say_group_flags(library: ImageLibrary, run_id: str) -> dict[str, list[str]]:
    """Warn (stderr) about groups that changed a lot with the run; name -> flags."""
    from crlc_engine.api import GroupStore

    flagged = {g.title: list(g.flags) for g in GroupStore(library.catalog).view(run_id).groups}
    flagged = {name: flags for name, flags in flagged.items() if flags}
    for name, flags in flagged.items():
        for flag in flags:
            _say(f"Check the group {name!r} before relying on this export: {flag}")
    return flagged


# ---------------------------------------------------------------------- parser
def _count(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``least`` (a plain usage error else)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least} (got {text})")
        return value

    return parse


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> dict[str, Handler]:
    """Add the result subcommands to ``sub`` (argparse subparsers); returns name -> handler."""

    def parser(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=description)
        return p

    def run_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--run", help="run id (default: the newest completed run)")

    def top_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--top",
            type=_count(0),
            default=5,
            metavar="N",
            help="most confident images to list per group (default 5; 0: headers only)",
        )

    runs = parser(
        "runs",
        "list (or delete) the runs of a library",
        "List the runs of the library of FOLDER(s): id, parent, preset, epochs, "
        "state, clusters K, chosen sub-head, duration.",
    )
    runs.add_argument("folders", nargs="+", metavar="FOLDER")
    runs.add_argument("--delete", metavar="ID", help="delete this run (its folder and results)")
    common(runs)

    assign = parser(
        "assign",
        "recompute a run's assignments from its checkpoint",
        "Compute every image's cluster, confidence, probabilities and feature with "
        "a run's checkpoint and store them in the catalog; then list the groups as "
        "`crlc clusters` does.",
    )
    assign.add_argument("folders", nargs="+", metavar="FOLDER")
    run_option(assign)
    top_option(assign)
    common(assign)

    clusters = parser(
        "clusters",
        "list a run's clusters",
        "Per group of a run (a named group may hold several clusters): a header line "
        "'# NAME (clusters ...): SIZE images, mean confidence X' with any warnings after "
        "'!', then the full paths of its --top most confident images, one per line (stdout). "
        "--json prints every cluster and group as one JSON object instead.",
    )
    clusters.add_argument("folders", nargs="+", metavar="FOLDER")
    run_option(clusters)
    top_option(clusters)
    common(clusters)

    neighbors = parser(
        "neighbors",
        "the most similar images of an image",
        "The k nearest neighbours of IMAGE by cosine similarity of the run's features (FAISS).",
    )
    neighbors.add_argument("paths", nargs="+", metavar="FOLDER... IMAGE")
    neighbors.add_argument(
        "-k", type=_count(1), default=10, help="how many neighbours (default 10)"
    )
    run_option(neighbors)
    common(neighbors)

    label = parser(
        "label",
        "label images as a class",
        "Label IMAGE(s) as the class NAME (used by `crlc refine` and `crlc export`).",
    )
    label.add_argument("paths", nargs="+", metavar="FOLDER... IMAGE...")
    label.add_argument("--as", dest="name", required=True, metavar="NAME", help="class name")
    common(label)

    move = parser(
        "move",
        "move images to another cluster",
        "Move IMAGE(s) to cluster CLUSTER of the run: labels them with its name.",
    )
    move.add_argument("paths", nargs="+", metavar="FOLDER... IMAGE...")
    move.add_argument("--to", type=int, required=True, metavar="CLUSTER", help="cluster number")
    run_option(move)
    common(move)

    name = parser(
        "name",
        "name a cluster",
        "Name cluster CLUSTER (a number) of the run NAME; the name becomes a class. "
        "Two clusters with one name are merged.",
    )
    name.add_argument("items", nargs="+", metavar="FOLDER... CLUSTER NAME")
    run_option(name)
    common(name)

    split = parser(
        "split",
        "split a cluster in parts",
        "Split cluster CLUSTER of the run into N parts by k-means on its images' features "
        "(ignored images stay). The largest part keeps the cluster and its name; the others "
        "become new clusters numbered after the run's last one. Undo with `crlc undo`.",
    )
    split.add_argument("items", nargs="+", metavar="FOLDER... CLUSTER")
    split.add_argument(
        "--parts", type=_count(2), default=2, metavar="N", help="how many parts (default 2)"
    )
    split.add_argument(
        "--names",
        metavar="A,B,...",
        help="a name per part, largest first (leave one empty for the default)",
    )
    split.add_argument(
        "--label",
        action="store_true",
        help="also label the parts' unlabelled images with their part's name (so that "
        "`crlc refine` learns the split)",
    )
    split.add_argument("--seed", type=_count(0), default=0, help="k-means seed (default 0)")
    split.add_argument("--dry-run", action="store_true", help="show the part sizes only")
    run_option(split)
    common(split)

    ignore = parser(
        "ignore",
        "leave images out of training and export",
        "Ignore IMAGE(s): they are left out of training, refining and export.",
    )
    ignore.add_argument("paths", nargs="+", metavar="[FOLDER...] IMAGE...")
    ignore.add_argument("--remove", action="store_true", help="stop ignoring them")
    common(ignore)

    for word, text in (
        ("undo", "undo the last label, name, split or ignore change"),
        ("redo", "redo the last undone change"),
    ):
        step = parser(word, text, f"{text[0].upper()}{text[1:]} of the library of FOLDER(s).")
        step.add_argument("folders", nargs="+", metavar="FOLDER")
        common(step)

    refine = parser(
        "refine",
        "retrain with your labels (CRLC-semi)",
        "Continue a completed run with the labelled images (CRLC-semi) as a new run; "
        "names and labels are kept.",
    )
    refine.add_argument("folders", nargs="+", metavar="FOLDER")
    run_option(refine)
    budget = refine.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=_count(1), help="passes over all images")
    budget.add_argument("--minutes", type=float, help="time budget")
    refine.add_argument("--device", default=None, help="auto, cpu, cuda or mps")
    common(refine)

    export = parser(
        "export",
        "copy (or link, or move) the images into one folder per cluster",
        "Export into DEST/<cluster name>/<file>; images below --min-confidence go to "
        "DEST/_uncertain; ignored images stay out; a manifest CSV records every "
        "file. Nothing is overwritten; only --mode move changes your photo folders. Images "
        "that failed or are missing are listed, and the command then exits 3.",
    )
    export.add_argument("paths", nargs="*", metavar="FOLDER... DEST")
    export.add_argument(
        "--mode",
        choices=("copy", "hardlink", "symlink", "move"),
        default="copy",
        help="copy (default), hardlink, symlink or move",
    )
    export.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        metavar="X",
        help="images less confident than X (0..1) go to _uncertain",
    )
    export.add_argument(
        "--keep-subfolders",
        action="store_true",
        help="keep each image's sub-folders below its cluster folder",
    )
    export.add_argument("--dry-run", action="store_true", help="show what would happen only")
    export.add_argument(
        "--csv-only", action="store_true", help="write the manifest without touching any file"
    )
    export.add_argument(
        "--undo",
        metavar="MANIFEST",
        help="reverse an export (e.g. a move); files changed since the export are kept",
    )
    run_option(export)
    common(export)

    return {
        "runs": _cmd_runs,
        "assign": _cmd_assign,
        "clusters": _cmd_clusters,
        "neighbors": _cmd_neighbors,
        "label": _cmd_label,
        "move": _cmd_move,
        "name": _cmd_name,
        "split": _cmd_split,
        "ignore": _cmd_ignore,
        "undo": _cmd_undo,
        "redo": _cmd_redo,
        "refine": _cmd_refine,
        "export": _cmd_export,
    }
