"""Parsing the ``crlc`` command line: the parser class, usage errors, the options every
command shares, and options among a command's folders (``crlc scan A --workspace W B``).

Each command module adds its subcommands with parser builders that end in
``parser.set_defaults(handler=...)``: the :data:`Handler` that runs the command.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeAlias

from crlc_engine.api import CRLCError, JobControl

#: What runs a command: the parsed arguments and the job's control -> the result (``--json``).
Handler: TypeAlias = Callable[[argparse.Namespace, JobControl], dict[str, Any] | None]
#: The subparsers of the ``crlc`` parser, to which each command module adds its commands.
Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"


class UsageError(CRLCError):
    """A wrong command line (exit status 2, error type ``usage``)."""

    kind = "usage"

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None) -> None:
        super().__init__(message)
        #: The parser whose usage line explains the error (``None``: the top-level one).
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors reach ``main`` (for the ``--json`` error object)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The subcommands' parsers by name (filled on the top-level parser only).
        self.commands: Mapping[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", self)


def usage_error(message: str) -> UsageError:
    """A usage error explained by the top-level parser's usage line."""
    return UsageError(message)


def add_common_options(sub: argparse.ArgumentParser) -> None:
    """``--workspace`` and ``--json``, which every command takes."""
    sub.add_argument(
        "--workspace",
        help="where runs are stored (default: $CRLC_WORKSPACE, else your user data folder)",
    )
    sub.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON object on the last line of stdout",
    )


def add_run_option(sub: argparse.ArgumentParser) -> None:
    """``--run``: the run a result command works on."""
    sub.add_argument("--run", help="run id (default: the newest completed run)")


def count(least: int) -> Callable[[str], int]:
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


def parse_command_line(parser: Parser, arguments: list[str]) -> argparse.Namespace:
    """Parse a command line; a command's options may come among its positional arguments.

    ``crlc scan A --workspace W B`` gives the folders A and B. argparse's
    ``parse_intermixed_args`` refuses a parser with subcommands (TypeError), and on Python
    3.11 it drops a ``--`` that comes before the first positional argument, so: the top-level
    parser only handles what comes before a command (``--version``, ``--help``, a missing or
    unknown command), and the command's own parser parses the rest with ``parse_known_args``;
    the positional arguments it leaves over (those after an option) are appended to the
    command's list of paths (see :func:`_leftover_paths`). ``--`` still ends the options, and
    an unknown option stays a usage error.
    """
    if not arguments or arguments[0] not in parser.commands:
        return parser.parse_args(arguments)
    command = parser.commands[arguments[0]]
    rest = arguments[1:]
    args, extras = command.parse_known_args(rest)
    args.command = arguments[0]
    if extras:
        paths = _leftover_paths(command, rest, extras)
        variadic = [a for a in command._actions if not a.option_strings and a.nargs in ("+", "*")]
        if not variadic:
            command.error(f"unrecognized arguments: {' '.join(paths)}")
        setattr(args, variadic[0].dest, [*getattr(args, variadic[0].dest), *paths])
    return args


def _leftover_paths(
    command: argparse.ArgumentParser, rest: list[str], extras: list[str]
) -> list[str]:
    """The positional arguments among ``extras`` (what ``parse_known_args`` left over), in
    order; an unknown option among them is a usage error.

    What follows the first ``--`` in ``rest`` is never an option: it is either wholly in
    ``extras``, at its end, or wholly taken by a positional argument (argparse versions differ
    on whether they keep the ``--`` itself in ``extras``; it is dropped here).
    """
    after = rest[rest.index("--") + 1 :] if "--" in rest else []
    tail: list[str] = []
    head = extras
    if after and extras[-len(after) :] == after:
        head, tail = extras[: -len(after)], after
    head = [token for token in head if token != "--"]
    unknown = [token for token in head if _looks_like_option(token)]
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    return head + tail


#: What argparse takes for a negative number (a positional argument) rather than an option.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def _looks_like_option(token: str) -> bool:
    """Whether argparse would read ``token`` as an option (here: one it does not know)."""
    return (
        token.startswith("-")
        and len(token) > 1
        and " " not in token
        and not _NEGATIVE_NUMBER.match(token)
    )
