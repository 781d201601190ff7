"""``crlc label``, ``move``, ``name``, ``split``, ``ignore``, ``undo`` and ``redo``: your
corrections of a run's groups; and ``crlc refine``, which retrains with them (CRLC-semi)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from crlc_engine.api import ImageLibrary, InvalidSettingError, JobControl
from crlc_engine.cli.arguments import (
    Handler,
    Subparsers,
    add_common_options,
    add_run_option,
    count,
)
from crlc_engine.cli.output import ConsoleReporter, say
from crlc_engine.cli.paths import (
    check_cluster,
    cluster_number,
    image_ids,
    open_library,
    split_paths,
)

if TYPE_CHECKING:
    from crlc_engine.api import Annotations


def add_parsers(sub: Subparsers) -> None:
    """Add the correction commands and ``crlc refine``."""
    _add_label_parser(sub)
    _add_move_parser(sub)
    _add_name_parser(sub)
    _add_split_parser(sub)
    _add_ignore_parser(sub)
    _add_history_parser(sub, "undo", "undo the last label, name, split or ignore change", _undo)
    _add_history_parser(sub, "redo", "redo the last undone change", _redo)
    _add_refine_parser(sub)


def _add_label_parser(sub: Subparsers) -> None:
    label = sub.add_parser(
        "label",
        help="label images as a class",
        description="Label IMAGE(s) as the class NAME (used by `crlc refine` and `crlc export`).",
    )
    label.add_argument("paths", nargs="+", metavar="FOLDER... IMAGE...")
    label.add_argument("--as", dest="name", required=True, metavar="NAME", help="class name")
    add_common_options(label)
    label.set_defaults(handler=_label)


def _add_move_parser(sub: Subparsers) -> None:
    move = sub.add_parser(
        "move",
        help="move images to another cluster",
        description="Move IMAGE(s) to cluster CLUSTER of the run: labels them with its name.",
    )
    move.add_argument("paths", nargs="+", metavar="FOLDER... IMAGE...")
    move.add_argument("--to", type=int, required=True, metavar="CLUSTER", help="cluster number")
    add_run_option(move)
    add_common_options(move)
    move.set_defaults(handler=_move)


def _add_name_parser(sub: Subparsers) -> None:
    name = sub.add_parser(
        "name",
        help="name a cluster",
        description="Name cluster CLUSTER (a number) of the run NAME; the name becomes a class. "
        "Two clusters with one name are merged.",
    )
    name.add_argument("items", nargs="+", metavar="FOLDER... CLUSTER NAME")
    add_run_option(name)
    add_common_options(name)
    name.set_defaults(handler=_name)


def _add_split_parser(sub: Subparsers) -> None:
    split = sub.add_parser(
        "split",
        help="split a cluster in parts",
        description="Split cluster CLUSTER of the run into N parts by k-means on its images' "
        "features (ignored images stay). The largest part keeps the cluster and its name; the "
        "others become new clusters numbered after the run's last one. Undo with `crlc undo`.",
    )
    split.add_argument("items", nargs="+", metavar="FOLDER... CLUSTER")
    split.add_argument(
        "--parts", type=count(2), default=2, metavar="N", help="how many parts (default 2)"
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
    split.add_argument("--seed", type=count(0), default=0, help="k-means seed (default 0)")
    split.add_argument("--dry-run", action="store_true", help="show the part sizes only")
    add_run_option(split)
    add_common_options(split)
    split.set_defaults(handler=_split)


def _add_ignore_parser(sub: Subparsers) -> None:
    ignore = sub.add_parser(
        "ignore",
        help="leave images out of training and export",
        description="Ignore IMAGE(s): they are left out of training, refining and export.",
    )
    ignore.add_argument("paths", nargs="+", metavar="[FOLDER...] IMAGE...")
    ignore.add_argument("--remove", action="store_true", help="stop ignoring them")
    add_common_options(ignore)
    ignore.set_defaults(handler=_ignore)


def _add_history_parser(sub: Subparsers, word: str, text: str, handler: Handler) -> None:
    """``crlc undo`` or ``crlc redo`` (``word``), described by ``text``."""
    description = f"{text[0].upper()}{text[1:]} of the library of FOLDER(s)."
    step = sub.add_parser(word, help=text, description=description)
    step.add_argument("folders", nargs="+", metavar="FOLDER")
    add_common_options(step)
    step.set_defaults(handler=handler)


def _add_refine_parser(sub: Subparsers) -> None:
    refine = sub.add_parser(
        "refine",
        help="retrain with your labels (CRLC-semi)",
        description="Continue a completed run with the labelled images (CRLC-semi) as a new "
        "run; names and labels are kept.",
    )
    refine.add_argument("folders", nargs="+", metavar="FOLDER")
    add_run_option(refine)
    budget = refine.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=count(1), help="passes over all images")
    budget.add_argument("--minutes", type=float, help="time budget")
    refine.add_argument("--device", default=None, help="auto, cpu, cuda or mps")
    add_common_options(refine)
    refine.set_defaults(handler=_refine)


def _annotations(library: ImageLibrary) -> Annotations:
    # imported here: splitting brings SciPy's k-means, which `crlc --help` need not load
    from crlc_engine.api import Annotations

    return Annotations(library.catalog)


def _label(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    folders, files = split_paths(args.paths)
    with open_library(folders, files, args.workspace) as library, library.locked("labelling"):
        ids = image_ids(library, files)
        _annotations(library).label(ids, args.name)
    say(f"Labelled {len(ids)} image(s) as {args.name!r}")
    return {"labelled": len(ids), "class": args.name}


def _move(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    folders, files = split_paths(args.paths)
    with open_library(folders, files, args.workspace) as library, library.locked("labelling"):
        ids = image_ids(library, files)
        run = library.runs.get(args.run, state="completed")
        check_cluster(library, run, args.to)
        name = _annotations(library).move_to_cluster(run.run_id, ids, args.to)
    say(f"Moved {len(ids)} image(s) to cluster {args.to} ({name!r})")
    return {"moved": len(ids), "cluster": args.to, "class": name}


def _name(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    if len(args.items) < 3:
        raise InvalidSettingError("usage: crlc name FOLDER... CLUSTER NAME")
    *folder_args, cluster_text, name = args.items
    folders, _ = split_paths(folder_args)
    cluster = cluster_number(cluster_text)
    with ImageLibrary.open(folders, args.workspace) as library, library.locked("naming"):
        run = library.runs.get(args.run, state="completed")
        check_cluster(library, run, cluster)
        _annotations(library).name_cluster(run.run_id, cluster, name)
    say(f"Cluster {cluster} of run {run.run_id} is now {name!r}")
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


def _split(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    if len(args.items) < 2:
        raise InvalidSettingError("usage: crlc split FOLDER... CLUSTER [--parts N]")
    *folder_args, cluster_text = args.items
    folders, _ = split_paths(folder_args)
    cluster = cluster_number(cluster_text)
    names = _part_names(args.names, args.parts)
    with ImageLibrary.open(folders, args.workspace) as library, library.locked("splitting"):
        run = library.runs.get(args.run, state="completed")
        check_cluster(library, run, cluster)
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
    say(f"{verb} cluster {cluster} of run {run.run_id} into {args.parts} parts:")
    for row in parts:
        label = row["name"] or "(unnamed)"
        say(f"  cluster {row['cluster']:3d}  {label:24s} {row['size']} images")
    return {
        "run_id": run.run_id,
        "cluster": cluster,
        "parts": parts,
        "applied": not args.dry_run,
    }


def _ignore(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    folders, files = split_paths(args.paths)
    with open_library(folders, files, args.workspace) as library, library.locked("labelling"):
        ids = image_ids(library, files)
        _annotations(library).set_ignored(ids, not args.remove)
    verb = "No longer ignoring" if args.remove else "Ignoring"
    say(f"{verb} {len(ids)} image(s) (left out of training and export)")
    return {"ignored" if not args.remove else "unignored": len(ids)}


def _history_step(args: argparse.Namespace, redo: bool) -> dict[str, Any]:
    folders, _ = split_paths(args.folders)
    with ImageLibrary.open(folders, args.workspace) as library, library.locked("labelling"):
        notes = _annotations(library)
        done = notes.redo() if redo else notes.undo()
    word = "Redid" if redo else "Undid"
    say(f"{word}: {done}" if done else f"Nothing to {'redo' if redo else 'undo'}")
    return {"redone" if redo else "undone": done}


def _undo(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    return _history_step(args, redo=False)


def _redo(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    return _history_step(args, redo=True)


def _refine(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    # imported here: the run pipeline brings torch, which `crlc --help` must not load
    from crlc_engine.api import refine_folder

    folders, _ = split_paths(args.folders)
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
    say(
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
        say("; ".join(shares))
    return summary
