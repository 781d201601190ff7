"""``crlc bench`` through :func:`crlc_engine.cli.main.main`: the ``--json`` contract, the
progress on stderr, and plain messages for bad input."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest
import torch

from crlc_engine.bench.run import run_bench
from crlc_engine.cli.main import main
from crlc_engine.core.control import JobControl
from tests.engine.bench.conftest import TINY_FLAGS, TINY_REQUEST, no_compile
from tests.engine.bench.test_report import check_report_dict


@pytest.fixture(scope="module")
def bench_run() -> dict[str, Any]:
    """One tiny ``crlc bench --json`` (compile stubbed out), its status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "compile", no_compile)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["bench", *TINY_FLAGS, "--json"])
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def test_json_contract(bench_run: dict[str, Any]) -> None:
    assert bench_run["code"] == 0, bench_run["stderr"]
    lines = bench_run["stdout"].strip().splitlines()
    assert len(lines) == 1  # only the result on stdout
    payload = json.loads(lines[-1])
    check_report_dict(payload)
    assert (payload["device"], payload["backbone"], payload["size"], payload["batch"]) == (
        "cpu",
        "small",
        16,
        8,
    )


def test_progress_and_figures_go_to_stderr(bench_run: dict[str, Any]) -> None:
    err = bench_run["stderr"]
    for text in (
        "model-only ceiling, eager: 1 warm-up + 2 timed steps",
        "trainer step:",
        "reference pipeline (",
        "trainer / best ceiling:",
        "memory peak:",
    ):
        assert text in err


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main(args)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else {}, captured.err


@pytest.mark.parametrize(
    ("flags", "status", "kind", "message"),
    [
        (["--size", "3"], 1, "invalid_setting", "image size must be 8..1024 px (got 3)"),
        (["--batch", "0"], 1, "invalid_setting", "batch size must be at least 2 (got 0)"),
        (["--backbone", "nope"], 1, "invalid_setting", "unknown backbone 'nope'"),
        (["--steps", "0"], 2, "usage", "argument --steps: must be at least 1 (got 0)"),
        (["--size", "big"], 2, "usage", "argument --size: invalid int value: 'big'"),
    ],
)
def test_bad_input_is_one_plain_line(
    capsys: pytest.CaptureFixture[str], flags: list[str], status: int, kind: str, message: str
) -> None:
    code, payload, err = run_cli(["bench", "--device", "cpu", *flags, "--json"], capsys)
    assert code == status
    assert payload["error"]["type"] == kind and message in payload["error"]["message"]
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("crlc: error:")] == [
        f"crlc: error: {payload['error']['message']}"
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here")
def test_cuda_without_a_gpu_is_a_plain_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, payload, err = run_cli(["bench", "--device", "cuda", "--json"], capsys)
    assert code == 1 and payload["error"]["type"] == "device_unavailable"
    assert "no CUDA GPU is available" in payload["error"]["message"]
    assert "Traceback" not in err


def test_a_cancelled_bench_stops() -> None:
    control = JobControl()
    control.cancel()
    with pytest.raises(InterruptedError):
        run_bench(TINY_REQUEST, control=control)
