"""``crlc scan``, ``libraries``, ``forget`` and ``relink``: the libraries of the workspace.

None of them imports torch: scanning stays light (its decoding workers re-import the CLI).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from crlc_engine.api import (
    JobControl,
    forget_library,
    list_libraries,
    relink_root,
    scan_folders,
)
from crlc_engine.cli.arguments import Subparsers, add_common_options
from crlc_engine.cli.output import ConsoleReporter
from crlc_engine.cli.scan_options import add_scan_options, scan_options_of

#: The training size ``crlc scan`` caches without ``--size`` (the cpu preset's).
DEFAULT_SCAN_SIZE = 32
#: Skipped files and outside links named on the terminal (the rest: with ``--json``).
_FIRST_LISTED = 50


def add_parsers(sub: Subparsers) -> None:
    """Add ``crlc scan``, ``libraries``, ``forget`` and ``relink``."""
    _add_scan_parser(sub)
    _add_libraries_parser(sub)
    _add_forget_parser(sub)
    _add_relink_parser(sub)


def _worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"must be 0 (decode in this process) or a number of processes (got {text})"
        )
    return value


def _add_scan_parser(sub: Subparsers) -> None:
    scan = sub.add_parser(
        "scan",
        help="find, check and cache the images of folders",
        description=(
            "Scan FOLDER(s) recursively: decode every new or changed image once into the "
            "workspace's pixel cache at --size and a thumbnail, list files that cannot be used "
            "with the reason, mark vanished files missing. Nothing is written inside FOLDER."
        ),
    )
    scan.add_argument("folders", nargs="+", metavar="FOLDER", help="photo folder(s)")
    scan.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SCAN_SIZE,
        help=f"training size to cache, in pixels (default {DEFAULT_SCAN_SIZE}, the cpu preset's; "
        "`crlc train` caches any other size it needs)",
    )
    scan.add_argument(
        "--workers",
        type=_worker_count,
        default=None,
        help="decoding processes, at most the number of CPU cores (more are lowered to it; "
        "default: all cores but one; 0: decode in this process)",
    )
    add_scan_options(scan)
    add_common_options(scan)
    scan.set_defaults(handler=_scan)


def _add_libraries_parser(sub: Subparsers) -> None:
    libraries = sub.add_parser(
        "libraries",
        help="list the libraries in the workspace",
        description="List every library: its folders, images and disk use.",
    )
    add_common_options(libraries)
    libraries.set_defaults(handler=_libraries)


def _add_forget_parser(sub: Subparsers) -> None:
    forget = sub.add_parser(
        "forget",
        help="delete the workspace of a library (never the photos)",
        description="Delete the cached pixels, thumbnails, catalog and runs of the library of "
        "FOLDER(s). The photos themselves are not touched.",
    )
    forget.add_argument("folders", nargs="+", metavar="FOLDER", help="the library's folder(s)")
    add_common_options(forget)
    forget.set_defaults(handler=_forget)


def _add_relink_parser(sub: Subparsers) -> None:
    relink = sub.add_parser(
        "relink",
        help="tell a library that one of its folders has moved",
        description="Re-link every library that has the folder OLD to NEW (after moving or "
        "renaming it): images keep their ids, cache, thumbnails and runs.",
    )
    relink.add_argument("old", metavar="OLD", help="where the folder was")
    relink.add_argument("new", metavar="NEW", help="where it is now")
    add_common_options(relink)
    relink.set_defaults(handler=_relink)


def _scan(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    size = args.size
    summary = scan_folders(
        args.folders,
        size,
        args.workspace,
        scan_options_of(args),
        ConsoleReporter(),
        control,
        args.workers,
    )
    out = sys.stderr
    out.write(
        f"{summary.images_ok} images ready at {size} px ({summary.new} new, "
        f"{summary.changed} changed, {summary.unchanged} unchanged, {summary.missing} "
        f"missing; {summary.decoded} decoded at {summary.files_per_s:.1f} files/s)\n"
    )
    if summary.skipped:
        out.write(f"{summary.images_skipped} skipped:\n")
        for item in summary.skipped[:_FIRST_LISTED]:
            out.write(f"  {item.path}: {item.reason}\n")
        if summary.images_skipped > _FIRST_LISTED:
            out.write(f"  ... and {summary.images_skipped - _FIRST_LISTED} more (see --json)\n")
    links = sorted(summary.links_outside.items())
    if links:
        out.write(f"{len(links)} symbolic link(s) lead outside the folders (followed):\n")
        for path, target in links[:_FIRST_LISTED]:
            out.write(f"  {path} -> {target}\n")
        if len(links) > _FIRST_LISTED:
            out.write(f"  ... and {len(links) - _FIRST_LISTED} more (see --json)\n")
    out.write(f"Workspace: {summary.workspace}\n")
    result = summary.as_dict()
    result["size"] = size
    if summary.cancelled:
        result["state"] = "cancelled"
    return result


def _libraries(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    infos = list_libraries(args.workspace)
    for info in infos:
        ok = info.counts.get("ok", 0)
        sys.stderr.write(
            f"{info.key}  {ok} images, {info.runs} runs, "
            f"{info.disk_bytes / 1e6:.1f} MB  {'; '.join(info.roots)}\n"
        )
        if info.problem is not None:
            sys.stderr.write(f"  damaged: {info.problem}\n")
    if not infos:
        sys.stderr.write("No libraries yet: run `crlc scan FOLDER` or `crlc train FOLDER`.\n")
    return {"libraries": [info.as_dict() for info in infos]}


def _forget(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    removed = forget_library(args.folders, args.workspace)
    sys.stderr.write(f"Removed {removed} (your photos were not touched)\n")
    return {"removed": str(removed)}


def _relink(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    moved = relink_root(args.old, args.new, args.workspace)
    for workspace in moved:
        sys.stderr.write(f"Re-linked: {workspace}\n")
    return {"workspaces": [str(w) for w in moved]}
