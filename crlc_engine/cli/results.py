"""``crlc runs``, ``assign``, ``clusters`` and ``neighbors``: a library's runs and what they
made of its images."""

from __future__ import annotations

import argparse
from typing import Any

from crlc_engine.api import (
    GroupStore,
    ImageLibrary,
    ImageNotInLibraryError,
    InvalidSettingError,
    JobControl,
    ResultStore,
)
from crlc_engine.cli.arguments import Subparsers, add_common_options, add_run_option, count
from crlc_engine.cli.output import print_lines, say
from crlc_engine.cli.paths import image_ids, open_library, split_paths


def add_parsers(sub: Subparsers) -> None:
    """Add ``crlc runs``, ``assign``, ``clusters`` and ``neighbors``."""
    _add_runs_parser(sub)
    _add_assign_parser(sub)
    _add_clusters_parser(sub)
    _add_neighbors_parser(sub)


def _add_top_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--top",
        type=count(0),
        default=5,
        metavar="N",
        help="most confident images to list per group (default 5; 0: headers only)",
    )


def _add_runs_parser(sub: Subparsers) -> None:
    runs = sub.add_parser(
        "runs",
        help="list (or delete) the runs of a library",
        description="List the runs of the library of FOLDER(s): id, parent, preset, epochs, "
        "state, clusters K, chosen sub-head, duration.",
    )
    runs.add_argument("folders", nargs="+", metavar="FOLDER")
    runs.add_argument("--delete", metavar="ID", help="delete this run (its folder and results)")
    add_common_options(runs)
    runs.set_defaults(handler=_runs)


def _add_assign_parser(sub: Subparsers) -> None:
    assign = sub.add_parser(
        "assign",
        help="recompute a run's assignments from its checkpoint",
        description="Compute every image's cluster, confidence, probabilities and feature with "
        "a run's checkpoint and store them in the catalog; then list the groups as "
        "`crlc clusters` does.",
    )
    assign.add_argument("folders", nargs="+", metavar="FOLDER")
    add_run_option(assign)
    _add_top_option(assign)
    add_common_options(assign)
    assign.set_defaults(handler=_assign)


def _add_clusters_parser(sub: Subparsers) -> None:
    clusters = sub.add_parser(
        "clusters",
        help="list a run's clusters",
        description="Per group of a run (a named group may hold several clusters): a header "
        "line '# NAME (clusters ...): SIZE images, mean confidence X' with any warnings after "
        "'!', then the full paths of its --top most confident images, one per line (stdout). "
        "--json prints every cluster and group as one JSON object instead.",
    )
    clusters.add_argument("folders", nargs="+", metavar="FOLDER")
    add_run_option(clusters)
    _add_top_option(clusters)
    add_common_options(clusters)
    clusters.set_defaults(handler=_clusters)


def _add_neighbors_parser(sub: Subparsers) -> None:
    neighbors = sub.add_parser(
        "neighbors",
        help="the most similar images of an image",
        description="The k nearest neighbours of IMAGE by cosine similarity of the run's "
        "features (FAISS).",
    )
    neighbors.add_argument("paths", nargs="+", metavar="FOLDER... IMAGE")
    neighbors.add_argument("-k", type=count(1), default=10, help="how many neighbours (default 10)")
    add_run_option(neighbors)
    add_common_options(neighbors)
    neighbors.set_defaults(handler=_neighbors)


def _runs(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    # imported here: the run pipeline brings torch, which `crlc --help` must not load
    from crlc_engine.api import delete_run, list_runs

    folders, _ = split_paths(args.folders)
    if args.delete:
        removed = delete_run(folders, args.delete, args.workspace)
        say(f"Deleted run {args.delete} ({removed})")
        return {"deleted": args.delete}
    infos = list_runs(folders, args.workspace)
    for info in infos:
        if info.problem is not None:
            say(f"{info.run_id}  damaged: {info.problem} (`--delete {info.run_id}` removes it)")
            continue
        duration = "" if info.duration_s is None else f"{info.duration_s / 60:.1f} min"
        parent = f" <- {info.parent}" if info.parent else ""
        head = "-" if info.head is None else str(info.head)
        say(
            f"{info.run_id}  {info.state:9s} {info.kind:6s} preset {info.preset:8s} "
            f"K={info.clusters:<3d} epochs {info.epochs or '-'!s:5s} head {head} "
            f"{duration}{parent}"
        )
    if not infos:
        say("No runs yet: `crlc train FOLDER --clusters K`.")
    return {"runs": [info.as_dict() for info in infos]}


def _summaries(library: ImageLibrary, run_id: str, top: int, as_json: bool) -> dict[str, Any]:
    """The ``clusters`` (what the model made) and ``groups`` (the group view) of a run, as
    JSON. Each group is printed: without ``--json`` its header and top image paths on stdout
    (see :func:`_group_header`), with ``--json`` its header on stderr."""
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
            say(line)
    else:
        print_lines(lines)
    if not shown:
        say(f"Run {run_id} has no groups (no images were assigned).")
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


def _assign(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    # imported here: assigning runs the model (torch), which `crlc --help` must not load
    from crlc_engine.api import assign_run

    folders, _ = split_paths(args.folders)
    run = assign_run(folders, args.run, args.workspace)
    with ImageLibrary.open(folders, args.workspace) as library:
        return _summaries(library, run.run_id, args.top, args.json)


def _clusters(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    folders, _ = split_paths(args.folders)
    with ImageLibrary.open(folders, args.workspace, read_only=True) as library:
        run = library.runs.get(args.run, state="completed")
        return _summaries(library, run.run_id, args.top, args.json)


def _neighbors(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    # imported here: the index brings FAISS, which `crlc --help` need not load
    from crlc_engine.api import NeighborIndex

    folders, files = split_paths(args.paths)
    if len(files) != 1:
        raise InvalidSettingError("give exactly one image to find the neighbours of")
    with open_library(folders, files, args.workspace, read_only=True) as library:
        (image_id,) = image_ids(library, files)
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
            say(f"{similarity:.3f}  {paths[neighbor]}")
        return {
            "image": str(files[0]),
            "run_id": run.run_id,
            "index": index.kind,
            "neighbors": result,
        }
