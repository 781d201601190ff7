"""Which files a scan takes: the options ``crlc scan``, ``train`` and ``ablate`` share
(``--include``, ``--exclude``, ``--hidden``, ``--no-follow-symlinks``, ``--max-files``)."""

from __future__ import annotations

import argparse
import dataclasses

from crlc_engine.api import DEFAULT_MAX_FILES, ScanOptions, stored_scan_options


def _file_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {text})")
    return value


def add_scan_options(sub: argparse.ArgumentParser) -> None:
    """Add the options that choose the files of a scan to a command's parser."""
    sub.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only take files matching this glob (relative path or name); repeatable",
    )
    sub.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out files and folders matching this glob; repeatable",
    )
    sub.add_argument(
        "--hidden",
        action="store_true",
        help="also scan hidden files and folders (names starting with a dot)",
    )
    sub.add_argument(
        "--no-follow-symlinks",
        action="store_true",
        help="do not follow symbolic links (links to /, /proc, /sys, /dev, /run and to "
        "folders above the photos are never followed)",
    )
    sub.add_argument(
        "--max-files",
        type=_file_limit,
        metavar="N",
        help=f"stop, adding nothing, when the folders hold more than N image files (default "
        f"{DEFAULT_MAX_FILES}; remembered for later scans of the library)",
    )


def scan_options_of(args: argparse.Namespace) -> ScanOptions | None:
    """The scan options given on the command line; ``None`` keeps the library's stored ones.

    The selection flags (``--include``, ``--exclude``, ``--hidden``,
    ``--no-follow-symlinks``) replace the stored selection together; ``--max-files`` alone
    changes only the stored limit, and the stored limit stays unless it is given.
    """
    given = args.hidden or args.include or args.exclude or args.no_follow_symlinks
    if not given and args.max_files is None:
        return None
    stored = stored_scan_options(args.folders, args.workspace)
    options = stored
    if given:
        options = ScanOptions(
            include_hidden=args.hidden,
            include=tuple(args.include),
            exclude=tuple(args.exclude),
            follow_symlinks=not args.no_follow_symlinks,
            max_files=stored.max_files,
        )
    if args.max_files is not None:
        options = dataclasses.replace(options, max_files=args.max_files)
    return options
