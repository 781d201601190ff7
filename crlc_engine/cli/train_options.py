"""The options that set how a run trains: those ``crlc train`` and ``crlc ablate`` share
(preset, budget, network, losses, optimiser, device), the two-stage options of ``crlc
train``, and the checks of their combinations."""

from __future__ import annotations

import argparse
from typing import Any

from crlc_engine.api import (
    BACKBONE_NAMES,
    COMPILE_CHOICES,
    CRITIC_NAMES,
    DEFAULT_PRESET_RULE,
    DEVICE_CHOICES,
    FRAMEWORKS,
    HEAD_INITS,
    MEMORY_FORMATS,
    OPTIMIZERS,
    PRECISIONS,
    PRESETS,
    STAGE_OPTIMS,
    STEMS,
)
from crlc_engine.cli.arguments import Parser, usage_error

#: The options that override the preset's settings, by their ``TrainConfig`` names.
TRAIN_OVERRIDES = (
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
    "precision",
    "memory_format",
    "compile",
    "head_init",
)
#: The options of two-stage training (only with ``--two-stage`` or ``--stage2-from``).
TWO_STAGE_OPTIONS = ("stage1_epochs", "neighbors", "freeze_backbone", "stage_optim")
#: Options that set the optimiser; with two-stage training they mean ``--stage-optim run``.
_OPTIMIZER_OPTIONS = ("lr", "optimizer")


# argparse names a type function in its message for a value it cannot convert ("invalid
# _positive_int value: 'x'"): these names are part of the command line's output.
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


def training_options() -> Parser:
    """A parent parser with the options ``crlc train`` and ``crlc ablate`` share."""
    shared = Parser(add_help=False)
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
        "--head-init",
        choices=HEAD_INITS,
        help="how the heads' weights start: torch (PyTorch's default) or he_uniform (the "
        "official code's; the paper preset's)",
    )
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
    compute = shared.add_argument_group(
        "how the network computes",
        "Each 'auto' (the default) picks per device: bfloat16, channels-last and compiled on "
        "CUDA; float32, contiguous and uncompiled elsewhere.",
    )
    compute.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="the network's arithmetic: bfloat16 (autocast; the losses stay float32) or float32",
    )
    compute.add_argument(
        "--memory-format",
        choices=MEMORY_FORMATS,
        help="layout of the network's weights and input images: channels_last or contiguous",
    )
    compute.add_argument(
        "--compile",
        choices=COMPILE_CHOICES,
        help="run the network through torch.compile (on; the first steps take longer while it "
        "compiles, and it runs uncompiled if compiling fails) or not (off)",
    )
    shared.add_argument("--seed", type=int, help="random seed (same seed, same result on a CPU)")
    shared.add_argument(
        "--checkpoint-every", type=_positive_int, help="save a checkpoint every N epochs"
    )
    return shared


def add_two_stage_options(train: argparse.ArgumentParser) -> None:
    """The ``two-stage CRLC`` options of ``crlc train``."""
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


def training_overrides(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The options ``names`` as overrides of the preset, with the requested device."""
    overrides = {name: getattr(args, name) for name in names}
    overrides["device"] = args.device
    return overrides


def check_optimizer_flags(args: argparse.Namespace) -> None:
    """``--optimizer adam`` needs an explicit ``--lr`` (the presets' rates are SGD rates)."""
    if args.optimizer == "adam" and args.lr is None:
        raise usage_error(
            "--optimizer adam needs --lr too: the presets' learning rates are SGD rates "
            "(Adam usually wants 1e-4 to 1e-3)"
        )


def resolve_stage_optim(args: argparse.Namespace) -> str | None:
    """The ``stage_optim`` a two-stage request gets (``None``: the setting's default).

    An explicit ``--lr`` or ``--optimizer`` means the user's own optimiser for the stages
    (``run``); together with an explicit ``--stage-optim paper`` that is a usage error.
    """
    given = [n for n in _OPTIMIZER_OPTIONS if getattr(args, n) is not None]
    if not given:
        return args.stage_optim  # type: ignore[no-any-return]
    flags = " and ".join("--" + n for n in given)
    if args.stage_optim == "paper":
        raise usage_error(
            f"{flags} cannot be combined with --stage-optim paper (the paper's per-stage "
            "optimisers); leave them out, or use --stage-optim run"
        )
    return "run"
