"""The pixel trainer's precision, memory format and compilation (``TrainConfig.precision``,
``memory_format``, ``compile``): ``auto`` resolved per device, the checks and the CLI flags,
then, on the CPU, every eager combination against float32 + contiguous (one step's loss, a
tiny run's ACC, an exact resume), the fallback of a forward that fails to compile, and one
compiled run."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from crlc_engine.cli.main import main
from crlc_engine.core.config import TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import InvalidSettingError
from crlc_engine.core.events import RecordingReporter
from crlc_engine.results.metrics import cluster_accuracy
from crlc_engine.training import compute_settings
from crlc_engine.training.checkpoint import load_checkpoint, save_checkpoint
from crlc_engine.training.compute_settings import ComputeSettings
from crlc_engine.training.frozen_features import resolve_precision as feature_precision
from crlc_engine.training.inference import predict
from crlc_engine.training.trainer import CRLCTrainer
from tests.conftest import CapturedError, small_train_config
from tests.engine.pipeline.test_estimate import CancelAtStep

CPU = torch.device("cpu")
#: The eager combinations of precision and memory format, float32 + contiguous first.
COMBINATIONS = list(itertools.product(("float32", "bfloat16"), ("contiguous", "channels_last")))
#: Relative difference of one step's total loss to float32 + contiguous's, by precision.
#: Measured on 32 random 16 px images (seeds 0-4): float32 + channels-last at most 8e-8,
#: bfloat16 1e-5 to 1.5e-3 (either layout).
STEP_LOSS_RTOL = {"float32": 1e-5, "bfloat16": 1e-2}
#: ACC a tiny run may lose to float32 + contiguous's: 3 of 64 images. Measured: every
#: combination reaches 1.0 with seeds 0 and 1.
ACC_MARGIN = 0.05


def compute_config(
    precision: str = "float32", memory_format: str = "contiguous", **changes: object
) -> TrainConfig:
    """The trainer tests' tiny settings, eager, in this precision and memory format."""
    return small_train_config(
        **{"precision": precision, "memory_format": memory_format, "compile": "off", **changes}
    )


@functools.cache
def random_images() -> np.ndarray:
    """uint8 [32, 16, 16, 3] noise."""
    return np.random.default_rng(0).integers(0, 256, size=(32, 16, 16, 3), dtype=np.uint8)


@functools.cache
def dark_and_bright() -> tuple[np.ndarray, np.ndarray]:
    """Clearly separable images: uint8 [64, 16, 16, 3] of grey level 50 or 200 with pixel
    noise (sd 25), and their labels int64 [64] (0 dark, 1 bright). Brightness survives
    every augmentation (jitter scales it by 0.6-1.4 at most)."""
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(2), 32))
    level = np.where(labels == 0, 50, 200)[:, None, None, None]
    noisy = level + rng.normal(0, 25, size=(64, 16, 16, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8), labels.astype(np.int64)


def largest_difference(a: CRLCTrainer, b: CRLCTrainer) -> float:
    """The largest absolute difference between the two networks' weights and buffers."""
    pairs = zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True)
    return max(float((x.double() - y.double()).abs().max()) for x, y in pairs)


# ---------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("cpu", ComputeSettings("float32", "contiguous", compile=False)),
        ("cuda", ComputeSettings("bfloat16", "channels_last", compile=True)),
        ("mps", ComputeSettings("float32", "contiguous", compile=False)),
    ],
)
def test_auto_resolves_per_device(device: str, expected: ComputeSettings) -> None:
    # Resolving reads only the device's type: "cuda" resolves without a GPU.
    assert ComputeSettings.of(TrainConfig(clusters=2), torch.device(device)) == expected


# ids other than "cuda": the conftest skips tests with that keyword when no GPU is present
@pytest.mark.parametrize("device", ["cpu", "cuda"], ids=["on-cpu", "on-a-gpu"])
def test_explicit_values_win_over_auto(device: str) -> None:
    for precision, memory_format in COMBINATIONS:
        for setting, compiled in (("on", True), ("off", False)):
            config = TrainConfig(
                clusters=2, precision=precision, memory_format=memory_format, compile=setting
            )
            resolved = ComputeSettings.of(config, torch.device(device))
            assert resolved == ComputeSettings(precision, memory_format, compiled)


def test_auto_precision_is_float32_on_a_bf16_cpu_but_not_for_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The feature backbone's ``auto`` uses a CPU's bfloat16 instructions; training's not."""
    monkeypatch.setattr(compute_settings, "cpu_runs_bf16_natively", lambda: True)
    assert feature_precision("auto", CPU) == "bfloat16"
    assert ComputeSettings.of(TrainConfig(clusters=2), CPU).precision == "float32"
    monkeypatch.setattr(compute_settings, "cpu_runs_bf16_natively", lambda: False)
    assert feature_precision("auto", CPU) == "float32"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"precision": "fp16"}, "unknown precision 'fp16'; choose one of auto, float32, bfloat16"),
        (
            {"memory_format": "nhwc"},
            "unknown memory format 'nhwc'; choose one of auto, contiguous, channels_last",
        ),
        ({"compile": "yes"}, "unknown compile setting 'yes'; choose one of auto, off, on"),
    ],
)
def test_unknown_values_are_refused(changes: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSettingError) as error:
        TrainConfig(clusters=2, **changes)  # type: ignore[arg-type]
    assert str(error.value) == message


def test_a_config_json_without_the_settings_reads_as_auto() -> None:
    saved = TrainConfig(clusters=3, seed=4).to_dict()
    for name in ("precision", "memory_format", "compile"):
        del saved[name]
    config = TrainConfig.from_dict(saved)
    assert (config.precision, config.memory_format, config.compile) == ("auto",) * 3
    assert config == TrainConfig(clusters=3, seed=4)


def test_cli_flags_reach_the_config(
    tmp_path: Path,
    captured_settings: list[CapturedError],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crlc_engine.cli import evaluation

    ablated: list[TrainConfig] = []

    def fake_ablation(folders: object, config: TrainConfig, *args: object) -> None:
        ablated.append(config)
        raise InvalidSettingError("captured")

    monkeypatch.setattr(evaluation, "run_ablation", fake_ablation)
    flags = ["--precision", "bfloat16", "--memory-format", "channels_last", "--compile", "on"]
    base = [str(tmp_path), "-k", "3", "--preset", "cpu", "--device", "cpu", "--json"]
    assert main(["train", *base, *flags]) == 1
    assert main(["ablate", *base, *flags]) == 1
    for config in (captured_settings[-1].config, ablated[-1]):
        assert config is not None
        assert (config.precision, config.memory_format, config.compile) == (
            "bfloat16",
            "channels_last",
            "on",
        )
    main(["train", *base])
    config = captured_settings[-1].config
    assert config is not None
    assert (config.precision, config.memory_format, config.compile) == ("auto",) * 3
    capsys.readouterr()
    assert main(["train", *base, "--precision", "float16"]) == 2
    assert "invalid choice: 'float16'" in capsys.readouterr().out


# ---------------------------------------------------------------------- eager combinations
@functools.cache
def one_step_loss(precision: str, memory_format: str, seed: int) -> float:
    """Total loss of the first step (batch of all 32 random images)."""
    config = compute_config(precision, memory_format, seed=seed, batch_size=32, epochs=1)
    trainer = CRLCTrainer(config, random_images(), CPU)
    assert (trainer.precision, trainer.memory_format, trainer.compiled) == (
        precision,
        memory_format,
        False,
    )
    trainer.fit()
    return float(trainer.history[0]["losses"]["total"])


@pytest.mark.parametrize(("precision", "memory_format"), COMBINATIONS[1:])
def test_one_step_loss_matches_float32_contiguous(precision: str, memory_format: str) -> None:
    for seed in (0, 1):
        reference = one_step_loss("float32", "contiguous", seed)
        loss = one_step_loss(precision, memory_format, seed)
        assert loss == pytest.approx(reference, rel=STEP_LOSS_RTOL[precision])


@functools.cache
def tiny_run_acc(precision: str, memory_format: str) -> float:
    """ACC of the chosen sub-head after 12 epochs (24 steps) on :func:`dark_and_bright`."""
    images, labels = dark_and_bright()
    config = compute_config(
        precision, memory_format, clusters=2, batch_size=32, epochs=12, lambda_fc=1.0, seed=0
    )
    trainer = CRLCTrainer(config, images, CPU)
    fit = trainer.fit()
    predictions = predict(trainer.model, images, trainer.augment_config, CPU)
    return cluster_accuracy(labels, predictions.labels(fit.chosen_head))


@pytest.mark.parametrize(("precision", "memory_format"), COMBINATIONS)
def test_a_tiny_run_reaches_float32s_acc(precision: str, memory_format: str) -> None:
    reference = tiny_run_acc("float32", "contiguous")
    assert reference >= 0.95
    assert tiny_run_acc(precision, memory_format) >= reference - ACC_MARGIN


@pytest.mark.parametrize(("precision", "memory_format"), COMBINATIONS)
def test_a_resumed_run_equals_an_uninterrupted_one(
    precision: str, memory_format: str, tmp_path: Path
) -> None:
    """Cancelled mid-epoch 2 (step 3 of 4), resumed: the same weights, bit for bit (in
    bfloat16 too: the same kernels in the same order on the CPU)."""
    images = random_images()
    config = compute_config(precision, memory_format, batch_size=16, epochs=2)
    straight = CRLCTrainer(config, images, CPU)
    straight.fit()
    control = JobControl()
    first = CRLCTrainer(config, images, CPU, tmp_path / "c.pt")
    assert first.fit(CancelAtStep(control, at=3), control).state == "cancelled"
    resumed = CRLCTrainer(config, images, CPU, tmp_path / "c.pt")
    resumed.load()
    assert resumed.fit().steps == 4
    assert largest_difference(straight, resumed) == 0.0


def test_a_run_resumes_in_another_precision_and_format(tmp_path: Path) -> None:
    """A bfloat16 channels-last checkpoint goes on in float32 contiguous; one written
    before the settings existed (no ``compute`` record, no keys in its config) loads too."""
    images = random_images()
    path = tmp_path / "c.pt"
    control = JobControl()
    bf16 = compute_config("bfloat16", "channels_last", batch_size=16, epochs=2)
    assert CRLCTrainer(bf16, images, CPU, path).fit(CancelAtStep(control, 1), control).steps == 1
    state = load_checkpoint(path)
    assert state["compute"] == {
        "precision": "bfloat16",
        "memory_format": "channels_last",
        "compiled": False,
    }
    for name in ("precision", "memory_format", "compile"):
        del state["config"][name]
    del state["compute"]
    save_checkpoint(path, state)
    float32 = CRLCTrainer(compute_config(batch_size=16, epochs=2), images, CPU, path)
    float32.load()
    assert float32.fit().steps == 4
    assert load_checkpoint(path)["compute"]["precision"] == "float32"
    weights = [p for p in float32.model.parameters() if p.ndim == 4]
    assert all(p.is_contiguous() for p in weights)


# ---------------------------------------------------------------------- compilation
class _FailInBackward(torch.autograd.Function):
    """Identity whose backward raises (a backward graph that fails to compile)."""

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        raise RuntimeError("backward failed to compile")


def failing_compile(where: str) -> object:
    """A stand-in for ``torch.compile`` that fails ``where``: at once (``compile``), on the
    first call (``forward``) or in the first call's backward (``backward``, after the eager
    forward ran: BatchNorm statistics moved, the generator drew the views)."""

    def compile_(function: object) -> object:
        if where == "compile":
            raise RuntimeError("no compiler")
        calls = []

        def compiled(views: Tensor) -> tuple[Tensor | None, Tensor | None]:
            calls.append(1)
            if where == "forward" and len(calls) == 1:
                raise RuntimeError("inductor failed")
            z, logits = function(views)  # type: ignore[operator]
            return (z if len(calls) > 1 else _FailInBackward.apply(z)), logits

        return compiled

    return compile_


@functools.cache
def eager_run(config: TrainConfig) -> CRLCTrainer:
    """A trainer that trained ``config`` on :func:`random_images` (read it, don't train it)."""
    trainer = CRLCTrainer(config, random_images(), CPU)
    trainer.fit()
    return trainer


@pytest.mark.parametrize("where", ["compile", "forward", "backward"])
def test_a_forward_that_fails_to_compile_runs_eagerly(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed step is undone and taken again eagerly: the run equals an eager one."""
    config = compute_config(batch_size=16, epochs=1)
    eager = eager_run(config)
    monkeypatch.setattr(torch, "compile", failing_compile(where))
    trainer = CRLCTrainer(config.replace(compile="on"), random_images(), CPU)
    assert trainer.compiled == (where != "compile")
    reporter = RecordingReporter()
    assert trainer.fit(reporter).steps == 2
    assert not trainer.compiled and "RuntimeError" in trainer.compile_fallback_reason
    told = [s for s in reporter.statuses if s.startswith("Compiling the network failed")]
    assert len(told) == 1 and trainer.compile_fallback_reason in told[0]
    assert largest_difference(eager, trainer) == 0.0


@pytest.mark.slow
def test_a_compiled_forward_trains_like_the_eager_one() -> None:
    """Two steps with the forward compiled by inductor (float32, CPU) match eager.

    Measured: the losses differ by 2e-7 (relative) and 0, the weights by 3e-5 at most after
    the two steps (inductor fuses and reorders sums). Compiling (the forward at the first
    step, its backward at the first backward) takes 20-45 s on 2 cores.
    """
    config = compute_config(batch_size=32, epochs=2)
    compiled = CRLCTrainer(config.replace(compile="on"), random_images(), CPU)
    compiled.fit()
    if not compiled.compiled:
        pytest.skip(f"torch.compile cannot compile here: {compiled.compile_fallback_reason}")
    eager = eager_run(config)
    for ours, theirs in zip(compiled.history, eager.history, strict=True):
        assert ours["losses"]["total"] == pytest.approx(theirs["losses"]["total"], rel=1e-5)
    assert largest_difference(compiled, eager) < 1e-3


@pytest.mark.cuda
def test_auto_on_a_gpu_is_bf16_channels_last_and_compiled() -> None:
    """On CUDA, ``auto`` trains in bfloat16, channels-last and compiled; its first step's
    loss is float32 eager's within the bfloat16 tolerance (same views: same generator)."""
    gpu = torch.device("cuda")
    config = small_train_config(batch_size=32, epochs=1)
    trainer = CRLCTrainer(config, random_images(), gpu)
    trainer.fit()
    assert (trainer.precision, trainer.memory_format) == ("bfloat16", "channels_last")
    assert trainer.compiled, trainer.compile_fallback_reason
    reference = CRLCTrainer(compute_config(batch_size=32, epochs=1), random_images(), gpu)
    reference.fit()
    loss, expected = (t.history[0]["losses"]["total"] for t in (trainer, reference))
    assert loss == pytest.approx(expected, rel=STEP_LOSS_RTOL["bfloat16"])
