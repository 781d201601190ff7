"""Watch a MemoryBank (or SimCLR) run on the generated three-shape toy, epoch by epoch.

Runs the real :class:`~crlc_engine.training.trainer.CRLCTrainer` with the ``cpu`` preset's
settings (small CNN, 32 px, batch 64) on the three-shape toy of the ablation table in
docs/benchmarks.md (hbar / vbar / disc, colour cells, data seed 1, 100 per shape) and
records per epoch, averaged over its steps:

* ``fc`` / ``pc``: L_FC and mean L_PC (chance for the bank form is ``log(1 + M)``);
* ``zcos``: mean pairwise cosine of the batch's z (1.0 = every image at one point);
* ``zpos``: mean cosine of z with its positive (bank row, or the other view for SimCLR);
* ``zneg``: mean cosine of z with the drawn negative bank rows;
* ``feat_std``: std over the batch of the backbone features, averaged over channels
  (0 = the backbone maps every image to the same vector);
* ``raw_norm``: mean norm of the RL-head output before L2 normalisation;
* ``ent_marg`` / ``ent_cond``: marginal entropy and mean per-image entropy of sub-head 0;
* ``g_bb`` / ``g_rl`` / ``g_c``: gradient norms of backbone, RL-head, C-head before the step.

At the end: ACC / NMI of the lowest-loss sub-head on the training images.

    .venv/bin/python benchmarks/memorybank_probe.py --framework memorybank --lambda-fc 10 \\
        --seed 0 --epochs 60
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crlc_engine.core.config import TrainConfig
from crlc_engine.core.events import NullReporter
from crlc_engine.library.synthetic import make_shapes_dataset
from crlc_engine.pipeline.presets import get_preset
from crlc_engine.results.metrics import cluster_accuracy, normalized_mutual_info
from crlc_engine.training.data_parallel import GlobalViews
from crlc_engine.training.inference import predict
from crlc_engine.training.trainer import CRLCTrainer


def _grad_norm(module: torch.nn.Module) -> float:
    total = 0.0
    for p in module.parameters():
        if p.grad is not None:
            total += float(p.grad.detach().pow(2).sum())
    return math.sqrt(total)


def _mean_offdiag(a: Tensor, b: Tensor | None = None) -> float:
    b = a if b is None else b
    sim = a @ b.T
    if b is a:
        n = a.shape[0]
        return float((sim.sum() - sim.diagonal().sum()) / max(1, n * (n - 1)))
    return float(sim.mean())


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    # The toy of docs/benchmarks.md's ablation table (write_shapes_folder with these values).
    images, labels = make_shapes_dataset(
        args.per_class,
        32,
        seed=args.data_seed,
        shapes=("hbar", "vbar", "disc"),
        colour_cells=True,
    )
    settings = dict(get_preset("cpu").settings)
    settings.update(
        clusters=3,
        epochs=args.epochs,
        lambda_fc=args.lambda_fc,
        lr=args.lr,
        framework=args.framework,
        seed=args.seed,
        checkpoint_every=10_000,
        bank_negatives=args.negatives,
        bank_momentum=args.bank_momentum,
    )
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    if args.subheads is not None:
        settings["subheads"] = args.subheads
    config = TrainConfig(**settings)
    trainer = CRLCTrainer(config, images, torch.device("cpu"))
    model = trainer.model
    if trainer.bank is not None and args.feature_init != "random":
        with torch.no_grad():
            if args.feature_init == "same":
                trainer.bank.features[:] = trainer.bank.features[0]
            else:  # "network": z of one augmented view of every image
                model.train()
                data = trainer.data
                assert isinstance(data, Tensor)  # the probe's images are in memory
                views = trainer.augmenter(data, trainer.augment_generator)
                trainer.bank.features[:] = model.rl_head(model.backbone(views))
    rows: list[dict[str, float]] = []
    current: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        current.setdefault(key, []).append(value)

    captured: dict[str, Tensor] = {}

    def hook_backbone(_m: torch.nn.Module, _i: Any, out: Tensor) -> None:
        captured["feat"] = out.detach()

    def hook_raw(_m: torch.nn.Module, _i: Any, out: Tensor) -> None:
        captured["raw"] = out.detach()

    model.backbone.register_forward_hook(hook_backbone)
    model.rl_head.net.register_forward_hook(hook_raw)

    original_objective = trainer._objective

    def objective(views: GlobalViews, indices: Tensor, pos: Tensor) -> Any:
        b = indices.shape[0]
        bank = trainer.bank
        state = torch.random.get_rng_state()
        gen_state = trainer.augment_generator.get_state()
        z, logits = views.z_a, views.logits_a
        if args.center_grad:
            for part in (views.z_a, views.z_b):
                if part is not None and part.requires_grad:
                    # Causal test only: remove the batch-common part of dL/dz ("drift" mode).
                    part.register_hook(lambda g: g - g.mean(dim=0, keepdim=True))  # type: ignore[no-untyped-call]
        out = original_objective(views, indices, pos)
        note("fc", float(out.feature.detach()))
        note("pc", float(out.probability_contrastive.detach().mean()))
        if z is not None:
            za = z.detach()
            note("zcos", _mean_offdiag(za))
            if bank is None:
                if views.z_b is not None:
                    note("zpos", float((za * views.z_b.detach()).sum(1).mean()))
            else:
                # Re-draw the same sample (same generator state) to read its rows.
                after = trainer.augment_generator.get_state()
                trainer.augment_generator.set_state(gen_state)
                sample = bank.sample(indices, pos, config.bank_negatives, trainer.augment_generator)
                trainer.augment_generator.set_state(after)
                note("zpos", float((za * sample.feature_positive).sum(1).mean()))
                note("zneg", _mean_offdiag(za, sample.feature_negative))
                note("bankcos", _mean_offdiag(bank.features))
        feat = captured["feat"][:b].float()
        note("feat_std", float(feat.std(0).mean()))
        if z is not None:
            note("raw_norm", float(captured["raw"][:b].float().norm(dim=1).mean()))
        if logits is not None:
            p = logits[0].detach().float().softmax(-1)
            marg = p.mean(0)
            note("ent_marg", float(-(marg * marg.clamp_min(1e-12).log()).sum()))
            note("ent_cond", float(-(p * p.clamp_min(1e-12).log()).sum(1).mean()))
        torch.random.set_rng_state(state)
        if args.steps:
            print({k: round(v[-1], 4) for k, v in current.items()}, flush=True)
        return out

    trainer._objective = objective  # type: ignore[method-assign,assignment]
    original_step = trainer.optimizer.step

    def step(*a: Any, **k: Any) -> Any:
        note("g_bb", _grad_norm(model.backbone))
        note("g_rl", _grad_norm(model.rl_head))
        note("g_c", _grad_norm(model.c_head))
        return original_step(*a, **k)

    trainer.optimizer.step = step  # type: ignore[method-assign]

    class Epochs(NullReporter):
        def event(self, event: Any) -> None:
            if type(event).__name__ != "EpochEnded":
                return
            row = {k: float(np.mean(v)) for k, v in current.items()}
            row["epoch"] = len(rows) + 1
            rows.append(row)
            current.clear()
            if args.verbose and (row["epoch"] <= 5 or row["epoch"] % args.every == 0):
                print(
                    " ".join(
                        f"{k}={v:.3g}" if k != "epoch" else f"ep={int(v)}" for k, v in row.items()
                    ),
                    flush=True,
                )

    reporter = Epochs()
    started = time.perf_counter()
    trainer.fit(reporter)
    seconds = time.perf_counter() - started
    preds = predict(model, images, trainer.augment_config, torch.device("cpu"))
    head = trainer.chosen_head
    pred = preds.labels(head)
    result = {
        "framework": args.framework,
        "lambda_fc": args.lambda_fc,
        "lr": args.lr,
        "seed": args.seed,
        "epochs": args.epochs,
        "acc": 100 * cluster_accuracy(labels, pred),
        "nmi": 100 * normalized_mutual_info(labels, pred),
        "sizes": np.bincount(pred, minlength=3).tolist(),
        "train_s": round(seconds, 1),
        "last": rows[-1] if rows else {},
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--framework", default="memorybank", choices=["memorybank", "simclr"])
    parser.add_argument("--lambda-fc", type=float, default=10.0)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--negatives", type=int, default=4096)
    parser.add_argument("--bank-momentum", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--subheads", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--feature-init", default="random", choices=["random", "same", "network"])
    parser.add_argument("--center-grad", action="store_true", help="diagnostic: centre dL/dz")
    parser.add_argument("--steps", action="store_true", help="print every step")
    parser.add_argument("--verbose", action="store_true")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
