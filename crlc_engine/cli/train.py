"""``crlc train``: train a clustering model on the images of folders (end-to-end, two-stage,
stage 2 alone, or resumed)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from crlc_engine.api import (
    JobControl,
    RunRequest,
    TrainConfig,
    clusters_problem,
    default_preset_name,
    resolve_device,
    settings_of,
)
from crlc_engine.cli.arguments import Subparsers, add_common_options, usage_error
from crlc_engine.cli.output import ConsoleReporter
from crlc_engine.cli.scan_options import add_scan_options, scan_options_of
from crlc_engine.cli.train_options import (
    TRAIN_OVERRIDES,
    TWO_STAGE_OPTIONS,
    add_two_stage_options,
    check_optimizer_flags,
    resolve_stage_optim,
    training_options,
    training_overrides,
)

if TYPE_CHECKING:
    from crlc_engine.api import TrainOutcome


def add_parsers(sub: Subparsers) -> None:
    """Add ``crlc train``."""
    train = sub.add_parser(
        "train",
        parents=[training_options()],
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
    add_two_stage_options(train)
    add_scan_options(train)
    add_common_options(train)
    train.set_defaults(handler=_train)


def _check_train_flags(args: argparse.Namespace) -> None:
    """Usage errors for combinations of the two-stage and resume options."""
    two_stage_given = [n for n in TWO_STAGE_OPTIONS if getattr(args, n) is not None]
    if args.stage2_from is not None:
        if args.resume is not None or args.two_stage:
            raise usage_error("--stage2-from cannot be combined with --resume or --two-stage")
        if args.preset is not None:
            raise usage_error(
                "--preset does not apply to --stage2-from (the stage-1 run's settings are used)"
            )
        if args.stage1_epochs is not None:
            raise usage_error("--stage1-epochs does not apply to --stage2-from")
    elif args.resume is not None:
        if args.two_stage or two_stage_given:
            raise usage_error("a resumed run keeps its saved settings; leave out the options")
    elif two_stage_given and not args.two_stage:
        flags = ", ".join("--" + n.replace("_", "-") for n in two_stage_given)
        raise usage_error(f"{flags}: only with --two-stage or --stage2-from")


def _check_clusters(clusters: int) -> None:
    problem = clusters_problem(clusters)
    if problem is not None:
        raise usage_error(f"--clusters: {problem}")


def _planned_config(args: argparse.Namespace, overrides: dict[str, Any]) -> TrainConfig:
    """The settings of a new run (a placeholder when resuming: the run's own replace them)."""
    if args.resume is not None:
        return TrainConfig(clusters=2)  # replaced by the run's saved settings
    if args.clusters is None:
        raise usage_error("--clusters is required (how many groups to make)")
    _check_clusters(args.clusters)
    device = resolve_device(args.device)
    if args.two_stage:
        overrides["stage"] = "two_stage"
    preset = args.preset or default_preset_name(device.kind, requested=overrides)
    return settings_of(RunRequest(clusters=args.clusters, preset=preset, overrides=overrides))


def _train(args: argparse.Namespace, control: JobControl) -> dict[str, Any] | None:
    """``crlc train``; under ``torchrun`` with several processes, rank 0 runs the job and
    prints, the other ranks train their shards silently (and return ``None``)."""
    # imported here: the training pipeline brings torch, which `crlc --help` must not load
    from crlc_engine.api import (
        FOLLOWER_TIMEOUT,
        DistributedContext,
        follow_jobs,
        process_group,
        release_followers,
    )

    context = DistributedContext.from_environment(args.device or "auto")
    if not context.distributed:
        return _train_here(args, control)
    with process_group(context, FOLLOWER_TIMEOUT):
        if not context.is_main:
            args.json = False  # rank 0 alone writes the result line
            follow_jobs(context, control)
            return None
        try:
            return _train_here(args, control)
        finally:
            release_followers(context)


def _train_here(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    """``crlc train`` in this process (rank 0 of several)."""
    from crlc_engine.api import train_folder, train_stage2_folder

    _check_train_flags(args)
    check_optimizer_flags(args)
    reporter = ConsoleReporter()
    overrides = training_overrides(args, TRAIN_OVERRIDES + TWO_STAGE_OPTIONS)
    if args.two_stage or args.stage2_from is not None:
        overrides["stage_optim"] = resolve_stage_optim(args)
    outcome: TrainOutcome
    if args.stage2_from is not None:
        if args.clusters is not None:
            _check_clusters(args.clusters)
        outcome = train_stage2_folder(
            args.folders,
            args.stage2_from,
            {**overrides, "clusters": args.clusters},
            args.workspace,
            reporter,
            control,
            scan_options=scan_options_of(args),
        )
    else:
        outcome = train_folder(
            args.folders,
            _planned_config(args, overrides),
            args.workspace,
            reporter,
            control,
            resume=args.resume,
            scan_options=scan_options_of(args),
        )
    summary = outcome.summary()
    head = "" if summary["head"] is None else f", chosen sub-head {summary['head']}"
    reporter.status(
        f"Run {summary['run_id']} ({summary['kind']}) {summary['state']}: {summary['epochs']} "
        f"epochs, {summary['samples_per_s']:,.0f} images/s{head}; results in {outcome.run.path}"
    )
    return summary
