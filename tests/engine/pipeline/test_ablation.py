"""`crlc ablate`: every configuration trained and scored at one budget; tables written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlc_engine.cli.main import main
from crlc_engine.core.config import TrainConfig
from crlc_engine.pipeline.ablation import ablation_configs


def test_configurations_cover_the_paper_ablations_without_duplicates() -> None:
    base = TrainConfig(clusters=3, lambda_fc=10.0)
    configs = dict(ablation_configs(base))
    assert next(iter(configs)) == "CRLC (log_dot, lambda_FC 10)"
    assert configs["C-head only (lambda_FC 0)"].lambda_fc == 0.0
    assert {c.critic for c in configs.values()} == {"log_dot", "dot", "neg_l2", "neg_js"}
    assert {c.lambda_fc for c in configs.values()} == {0.0, 1.0, 3.0, 10.0}
    bank = configs["MemoryBank framework"]
    assert bank.framework == "memorybank" and bank.replace(framework="simclr") == base
    assert {c.framework for n, c in configs.items() if n != "MemoryBank framework"} == {"simclr"}
    assert len(configs) == 8  # lambda_FC 0 and 10 duplicate earlier rows
    flipped = dict(ablation_configs(base.replace(framework="memorybank")))
    assert flipped["SimCLR framework"].framework == "simclr" and len(flipped) == 8


def test_ablate_cli_writes_tables(
    shapes_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "ablate",
            str(shapes_folder),
            "-k",
            "4",
            "--epochs",
            "1",
            "--size",
            "16",
            "--subheads",
            "1",
            "--device",
            "cpu",
            "--workspace",
            str(tmp_path / "ws"),
            "--out",
            str(tmp_path / "out"),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and len(out["rows"]) == 8
    assert [r["framework"] for r in out["rows"]].count("memorybank") == 1
    for row in out["rows"]:
        assert 0.25 <= row["acc"] <= row["best_acc"] + 1e-9 <= 1.0 + 1e-9
        assert 0.0 <= row["nmi"] <= 1.0 and row["epochs"] == 1 and row["seconds"] > 0
    table = Path(out["markdown"]).read_text()
    assert "| C-head only (lambda_FC 0) |" in table and "critic neg_js" in table
    assert "| MemoryBank framework |" in table
    assert json.loads(Path(out["json"]).read_text())["budget"] == "1 epochs"
