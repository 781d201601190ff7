"""The ``crlc`` command line.

Output contract: progress and messages go to stderr; with ``--json`` the last line of
stdout is exactly one JSON object (the result, or ``{"error": {"type", "message"}}``).
Exit status: 0 on success, 1 on a user-level error, 2 on bad usage, 3 when a job finished
but some of its files failed or were missing (``"state": "finished_with_failures"``), 130 when
cancelled (Ctrl+C, SIGTERM or SIGHUP: the job stops after its current step and keeps its work).
Options may come before, among or after a command's folders and images; ``--`` ends the
options (what follows is taken as paths even when it starts with ``-``).

The commands live in their own modules, each adding its parsers to ``crlc``'s (see
:func:`build_parser`); a command's parser names the handler that runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from crlc_engine import __version__
from crlc_engine.api import CRLCError, JobControl, as_user_error
from crlc_engine.cli import bench, corrections, evaluation, export, library, results, train
from crlc_engine.cli.arguments import Handler, Parser, UsageError, parse_command_line
from crlc_engine.cli.signals import handle_stop_signals, restore_signals

#: Exit status of a job that finished but left files failed or missing (see the docstring).
EXIT_FAILURES = 3
EXIT_CANCELLED = 130
#: ``state`` of a result whose job finished with failed or missing files.
FINISHED_WITH_FAILURES = "finished_with_failures"


def build_parser() -> Parser:
    """The parser of ``crlc`` and its commands, in the order ``crlc --help`` lists them."""
    parser = Parser(
        prog="crlc",
        description="Group the images of a folder with CRLC deep clustering.",
    )
    parser.add_argument("--version", action="version", version=f"crlc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices
    train.add_parsers(sub)
    library.add_parsers(sub)
    evaluation.add_parsers(sub)
    results.add_parsers(sub)
    corrections.add_parsers(sub)
    export.add_parsers(sub)
    bench.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``crlc``; returns the exit status."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_command_line(parser, arguments)
    except UsageError as exc:
        (exc.parser or parser).print_usage(sys.stderr)
        return _fail(argparse.Namespace(json="--json" in arguments), "usage", str(exc), 2)
    handler: Handler = args.handler
    control = JobControl()
    previous = handle_stop_signals(control)
    try:
        result = handler(args, control)
    except CRLCError as exc:
        return _fail(args, exc.kind, str(exc))
    except InterruptedError as exc:
        return _fail(args, "cancelled", str(exc) or "cancelled", status=EXIT_CANCELLED)
    except KeyboardInterrupt:
        return _fail(args, "cancelled", "aborted by the user", status=EXIT_CANCELLED)
    except Exception as exc:  # a system error with a plain explanation, else a bug
        known = as_user_error(exc)
        if known is not None:
            return _fail(args, known.kind, str(known))
        traceback.print_exc(file=sys.stderr)
        return _fail(args, "internal", f"unexpected error: {type(exc).__name__}: {exc}")
    finally:
        restore_signals(previous)
    if result is None:  # a process that prints nothing (a torchrun rank other than 0)
        return 0
    if args.json:
        with contextlib.suppress(OSError):  # nobody reads a closed pipe
            print(json.dumps(result), flush=True)
    return _exit_status(result)


def _exit_status(result: dict[str, Any]) -> int:
    state = result.get("state")
    if state == "cancelled":
        return EXIT_CANCELLED
    return EXIT_FAILURES if state == FINISHED_WITH_FAILURES else 0


def _fail(args: argparse.Namespace, kind: str, message: str, status: int = 1) -> int:
    sys.stderr.write(f"crlc: error: {message}\n")
    if getattr(args, "json", False):
        print(json.dumps({"error": {"type": kind, "message": message}}))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
