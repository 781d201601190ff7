"""``crlc evaluate`` and ``crlc ablate``: score runs against the class sub-folders."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from crlc_engine.api import (
    JobControl,
    RunRequest,
    clusters_problem,
    default_preset_name,
    resolve_device,
    run_ablation,
    settings_of,
)
from crlc_engine.cli.arguments import Subparsers, add_common_options, usage_error
from crlc_engine.cli.output import ConsoleReporter
from crlc_engine.cli.scan_options import add_scan_options
from crlc_engine.cli.train_options import (
    TRAIN_OVERRIDES,
    check_optimizer_flags,
    training_options,
    training_overrides,
)


def add_parsers(sub: Subparsers) -> None:
    """Add ``crlc evaluate`` and ``crlc ablate``."""
    _add_evaluate_parser(sub)
    _add_ablate_parser(sub)


def _add_evaluate_parser(sub: Subparsers) -> None:
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
    add_common_options(evaluate)
    evaluate.set_defaults(handler=_evaluate)


def _add_ablate_parser(sub: Subparsers) -> None:
    ablate = sub.add_parser(
        "ablate",
        parents=[training_options()],
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
    add_scan_options(ablate)
    add_common_options(ablate)
    ablate.set_defaults(handler=_ablate)


def _evaluate(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    # imported here: scoring runs the model (torch), which `crlc --help` must not load
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


def _ablate(args: argparse.Namespace, control: JobControl) -> dict[str, Any]:
    if args.clusters is None:
        raise usage_error("--clusters is required (how many groups to make)")
    problem = clusters_problem(args.clusters)
    if problem is not None:
        raise usage_error(f"--clusters: {problem}")
    check_optimizer_flags(args)
    device = resolve_device(args.device)
    overrides = training_overrides(args, TRAIN_OVERRIDES)
    # an ablation varies lambda_FC, the critics and the framework: pixel training, never quick
    preset = args.preset or default_preset_name(device.kind, quick_available=False)
    if preset == "quick":
        raise usage_error(
            "crlc ablate compares settings of training on the pixels; the quick preset trains "
            "heads on fixed pretrained features (lambda_FC cannot change its clusters and the "
            "MemoryBank framework does not apply): choose cpu, balanced or paper"
        )
    config = settings_of(RunRequest(clusters=args.clusters, preset=preset, overrides=overrides))
    result = run_ablation(
        args.folders, config, args.workspace, args.out, ConsoleReporter(), control
    )
    sys.stderr.write(result.markdown("Ablation"))
    return result.as_dict()
