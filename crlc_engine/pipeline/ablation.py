"""The paper's ablations at a fixed budget per configuration: `crlc ablate`.

Configurations (each a normal run of the library, then scored against the folder names):
CRLC as configured; the C-head only (lambda_FC = 0); the other three critics of L_PC
(dot, neg_l2, neg_js); lambda_FC in {0, 1, 3, 10}; the other framework (MemoryBank when
the base uses SimCLR, else SimCLR: paper Fig. 4 left). Identical configurations run once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlc_engine.core.config import CRITIC_NAMES, TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.events import NullReporter, Reporter
from crlc_engine.core.fileio import atomic_write_json, atomic_write_text

LAMBDA_FC_VALUES = (0.0, 1.0, 3.0, 10.0)
FRAMEWORK_NAMES = {"simclr": "SimCLR", "memorybank": "MemoryBank"}


def ablation_configs(base: TrainConfig) -> list[tuple[str, TrainConfig]]:
    """(name, config) of every ablation, duplicates removed, the base first."""
    other = "memorybank" if base.framework == "simclr" else "simclr"
    candidates: list[tuple[str, TrainConfig]] = [
        (f"CRLC ({base.critic}, lambda_FC {base.lambda_fc:g})", base),
        ("C-head only (lambda_FC 0)", base.replace(lambda_fc=0.0)),
    ]
    candidates += [
        (f"critic {c}", base.replace(critic=c)) for c in CRITIC_NAMES if c != base.critic
    ]
    candidates += [(f"lambda_FC {v:g}", base.replace(lambda_fc=v)) for v in LAMBDA_FC_VALUES]
    candidates.append((f"{FRAMEWORK_NAMES[other]} framework", base.replace(framework=other)))
    seen: set[tuple[Any, ...]] = set()
    unique = []
    for name, config in candidates:
        key = tuple(sorted(config.to_dict().items()))
        if key not in seen:
            seen.add(key)
            unique.append((name, config))
    return unique


@dataclass
class AblationResult:
    """The table of one ablation: one row per configuration."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    json_path: Path | None = None
    markdown_path: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object of ``crlc ablate``."""
        return {"rows": self.rows, "json": str(self.json_path), "markdown": str(self.markdown_path)}

    def markdown(self, title: str) -> str:
        """The table as Markdown (percentages, one decimal)."""
        lines = [
            f"# {title}",
            "",
            "| configuration | ACC | NMI | ARI | best-head ACC | epochs | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            lines.append(
                f"| {row['name']} | {row['acc'] * 100:.1f} | {row['nmi'] * 100:.1f} | "
                f"{row['ari'] * 100:.1f} | {row['best_acc'] * 100:.1f} | {row['epochs']} | "
                f"{row['seconds']:.1f} |"
            )
        lines += [
            "",
            "ACC/NMI/ARI of the sub-head chosen without labels (lowest loss); "
            "best-head ACC uses the labels (as the official evaluation does).",
        ]
        return "\n".join(lines) + "\n"


def run_ablation(
    folders: Sequence[str | Path],
    base: TrainConfig,
    workspace: str | Path | None = None,
    out_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    control: JobControl | None = None,
) -> AblationResult:
    """Train and score every configuration of :func:`ablation_configs` at ``base``'s budget.

    Writes ``ablation-<UTC time>.json`` and ``.md`` into ``out_dir`` (default: the library
    workspace's ``ablations/``).

    Raises:
        NoGroundTruthError: the images are not in class sub-folders (nothing to score).
    """
    from crlc_engine.pipeline.jobs import evaluate_folder, train_folder

    reporter = reporter or NullReporter()
    control = control or JobControl()
    result = AblationResult()
    configs = ablation_configs(base)
    workspace_dir: Path | None = None
    for number, (name, config) in enumerate(configs, start=1):
        if control.cancelled:
            break
        reporter.status(f"Ablation {number}/{len(configs)}: {name}")
        started = time.monotonic()
        outcome = train_folder(folders, config, workspace, reporter, control)
        seconds = time.monotonic() - started
        workspace_dir = outcome.workspace
        if outcome.state != "completed":
            break
        scores = evaluate_folder(folders, outcome.run.run_id, workspace)
        result.rows.append(
            {
                "name": name,
                "run_id": outcome.run.run_id,
                "critic": config.critic,
                "lambda_fc": config.lambda_fc,
                "framework": config.framework,
                "acc": scores.chosen.acc,
                "nmi": scores.chosen.nmi,
                "ari": scores.chosen.ari,
                "best_acc": scores.best.acc,
                "epochs": outcome.fit.epochs,
                "seconds": round(seconds, 2),
                "samples_per_s": round(outcome.fit.samples_per_s, 1),
            }
        )
    target = Path(out_dir) if out_dir else (workspace_dir or Path.cwd()) / "ablations"
    target.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    result.json_path = target / f"ablation-{stamp}.json"
    result.markdown_path = target / f"ablation-{stamp}.md"
    budget = f"{base.epochs} epochs" if base.epochs else f"{base.minutes:g} minutes"
    framework = FRAMEWORK_NAMES.get(base.framework, base.framework)
    atomic_write_json(
        result.json_path, {"base": base.to_dict(), "budget": budget, "rows": result.rows}
    )
    atomic_write_text(
        result.markdown_path,
        result.markdown(
            f"Ablation at {budget} per configuration ({base.backbone}, {base.image_size} px, "
            f"{framework} unless stated)"
        ),
    )
    reporter.status(f"Ablation table: {result.markdown_path}")
    return result
