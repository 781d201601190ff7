"""MemoryBank framework: bank update, negative sampling and losses against plain-loop
references; closed forms; the trainer with a bank (exact resume, learning, ablation settings).

The references use Python floats, loops and ``math`` only.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from crlc_engine.core.config import CRITIC_NAMES, LossSettings, TrainConfig
from crlc_engine.core.control import JobControl
from crlc_engine.core.errors import CheckpointError
from crlc_engine.core.events import RecordingReporter
from crlc_engine.library.synthetic import make_shapes_dataset
from crlc_engine.losses.memory_bank import (
    BankSample,
    MemoryBank,
    bank_feature_loss,
    bank_nt_xent,
    bank_probability_loss,
    excluded_negatives,
    memory_bank_crlc_loss,
    momentum_update,
    sample_negative_rows,
)
from crlc_engine.training.checkpoint import load_checkpoint
from crlc_engine.training.trainer import CRLCTrainer
from tests.conftest import small_train_config

CPU = torch.device("cpu")
Vector = list[float]


# ----------------------------------------------------------------------------- references
def ref_logsumexp(values: Vector) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def ref_critic(p: Vector, q: Vector, critic: str) -> float:
    dot = sum(a * b for a, b in zip(p, q, strict=True))
    if critic == "log_dot":
        return math.log(dot)
    if critic == "dot":
        return dot
    if critic == "neg_l2":
        return -sum((a - b) ** 2 for a, b in zip(p, q, strict=True))

    def kl(x: Vector, y: Vector) -> float:
        return sum(a * math.log(a / b) for a, b in zip(x, y, strict=True) if a > 0)

    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    return -0.5 * (kl(p, m) + kl(q, m))


def ref_smooth(p: Vector, gamma: float) -> Vector:
    return [(1 - gamma) * v + gamma / len(p) for v in p]


def ref_bank_info_nce(
    anchors: list[Vector],
    positives: list[Vector],
    negatives: list[Vector],
    excluded: list[list[bool]],
    score: object,
) -> float:
    """Mean over anchors of -log(e^s(a,pos) / (e^s(a,pos) + sum_kept e^s(a,neg)))."""
    assert callable(score)
    total = 0.0
    for b, anchor in enumerate(anchors):
        pos = score(anchor, positives[b])
        row = [pos] + [score(anchor, neg) for m, neg in enumerate(negatives) if not excluded[b][m]]
        total += ref_logsumexp(row) - pos
    return total / len(anchors)


def ref_entropy(probs: list[Vector]) -> float:
    c = len(probs[0])
    mean = [sum(p[k] for p in probs) / len(probs) for k in range(c)]
    return -sum(m * math.log(m) for m in mean if m > 0)


def ref_guard(logits: list[Vector], bound: float) -> float:
    total = 0.0
    for row in logits:
        for u in row:
            excess = min(u + bound, 0.0) + max(u - bound, 0.0)
            total += u * excess
    return total / len(logits)


def unit_rows(rows: int, dim: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, dim, generator=g, dtype=torch.float64)
    return torch.nn.functional.normalize(x, dim=1)


def prob_rows(*shape: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


# ----------------------------------------------------------------------------- update rule
def test_update_rule_matches_a_plain_loop() -> None:
    bank = MemoryBank(7, subheads=2, clusters=3, feature_dim=4, device=CPU, seed=1)
    bank.probabilities = prob_rows(2, 7, 3, seed=2).float()
    before_p = bank.probabilities.clone()
    before_f = bank.features.clone()
    rows = torch.tensor([5, 0, 3])
    new_p = prob_rows(2, 3, 3, seed=3).float()
    new_f = unit_rows(3, 4, seed=4).float()
    alpha = 0.3
    bank.update(rows, alpha, probabilities=new_p, features=new_f)
    for h in range(2):
        for n in range(7):
            for c in range(3):
                if n in rows.tolist():
                    b = rows.tolist().index(n)
                    want = alpha * float(before_p[h, n, c]) + (1 - alpha) * float(new_p[h, b, c])
                else:
                    want = float(before_p[h, n, c])
                assert math.isclose(float(bank.probabilities[h, n, c]), want, abs_tol=1e-6)
    for n in range(7):
        if n in rows.tolist():
            b = rows.tolist().index(n)
            mixed = [
                alpha * float(before_f[n, d]) + (1 - alpha) * float(new_f[b, d]) for d in range(4)
            ]
            norm = math.sqrt(sum(v * v for v in mixed))
            want_row = [v / norm for v in mixed]
        else:
            want_row = [float(v) for v in before_f[n]]
        for d in range(4):
            assert math.isclose(float(bank.features[n, d]), want_row[d], abs_tol=1e-6)


def test_update_closed_forms_alpha_zero_replaces_alpha_one_keeps() -> None:
    bank = MemoryBank(5, subheads=1, clusters=4, feature_dim=3, device=CPU, seed=0)
    rows = torch.tensor([1, 4])
    new_p = prob_rows(1, 2, 4, seed=5).float()
    new_f = unit_rows(2, 3, seed=6).float()
    kept_p, kept_f = bank.probabilities.clone(), bank.features.clone()
    bank.update(rows, 1.0, probabilities=new_p, features=new_f)
    assert torch.equal(bank.probabilities, kept_p) and torch.allclose(bank.features, kept_f)
    bank.update(rows, 0.0, probabilities=new_p, features=new_f)
    torch.testing.assert_close(bank.probabilities[:, rows], new_p)
    torch.testing.assert_close(bank.features[rows], new_f)
    untouched = torch.tensor([0, 2, 3])
    assert torch.equal(bank.probabilities[:, untouched], kept_p[:, untouched])
    with pytest.raises(ValueError, match="momentum"):
        momentum_update(kept_p, kept_p, 1.5)


def test_bank_initialisation() -> None:
    bank = MemoryBank(6, subheads=2, clusters=5, feature_dim=8, device=CPU, seed=3)
    assert torch.equal(bank.probabilities, torch.full((2, 6, 5), 0.2))
    torch.testing.assert_close(bank.features.norm(dim=1), torch.ones(6))
    again = MemoryBank(6, subheads=2, clusters=5, feature_dim=8, device=CPU, seed=3)
    assert torch.equal(bank.features, again.features)  # seeded
    assert float((bank.features @ bank.features.T - torch.eye(6)).abs().max()) > 0.05


# ----------------------------------------------------------------------------- sampling
def test_negatives_are_distinct_uniform_rows_and_exclusions_are_exact() -> None:
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(10)
    for _ in range(2000):
        rows = sample_negative_rows(10, 4, g, CPU)
        assert len(set(rows.tolist())) == 4 and int(rows.min()) >= 0 and int(rows.max()) < 10
        counts[rows] += 1
    assert float(counts.min()) > 700 and float(counts.max()) < 900  # 800 expected each
    negatives = torch.tensor([3, 8, 1])
    anchors = torch.tensor([1, 5])
    positives = torch.tensor([8, 5])
    mask = excluded_negatives(negatives, anchors, positives)
    assert mask.tolist() == [[False, True, True], [False, False, False]]
    bank = MemoryBank(5, 1, 2, 3, CPU)
    assert bank.negatives_per_step(4096) == 4
    with pytest.raises(ValueError):
        sample_negative_rows(5, 6, g, CPU)


# ----------------------------------------------------------------------------- losses
@pytest.mark.parametrize("critic", CRITIC_NAMES)
def test_probability_loss_matches_plain_loop(critic: str) -> None:
    h, b, m, c, gamma = 2, 3, 4, 3, 0.05
    p = prob_rows(h, b, c, seed=10)
    pos = prob_rows(h, b, c, seed=11)
    neg = prob_rows(h, m, c, seed=12)
    excluded = torch.tensor([[False, True, False, False], [False] * 4, [True, False, False, True]])
    got = bank_probability_loss(p, pos, neg, critic, gamma, excluded)  # type: ignore[arg-type]
    for head in range(h):
        want = ref_bank_info_nce(
            [ref_smooth(r, gamma) for r in p[head].tolist()],
            [ref_smooth(r, gamma) for r in pos[head].tolist()],
            [ref_smooth(r, gamma) for r in neg[head].tolist()],
            excluded.tolist(),
            lambda u, v: ref_critic(u, v, critic),
        )
        assert math.isclose(float(got[head]), want, rel_tol=1e-9, abs_tol=1e-9)


def test_log_dot_shortcut_equals_the_generic_logsumexp_path() -> None:
    """The O(HBC) log-dot denominator gives the generic path's values and gradients."""
    h, b, m, c, gamma = 3, 5, 7, 4, 0.01
    g = torch.Generator().manual_seed(40)
    logits = (3 * torch.randn(h, b, c, generator=g, dtype=torch.float64)).requires_grad_(True)
    pos, neg = prob_rows(h, b, c, seed=41), prob_rows(h, m, c, seed=42)
    excluded = torch.rand(b, m, generator=g) < 0.3
    excluded[0] = True  # an anchor without any negative: loss 0, finite gradient
    fast = bank_probability_loss(torch.softmax(logits, -1), pos, neg, "log_dot", gamma, excluded)
    (fast_grad,) = torch.autograd.grad(fast.sum(), logits)
    a = (1 - gamma) * torch.softmax(logits, -1) + gamma / c
    ps, ns = (1 - gamma) * pos + gamma / c, (1 - gamma) * neg + gamma / c
    generic = bank_nt_xent(
        torch.log((a * ps).sum(-1)), torch.log(a @ ns.transpose(-1, -2)), excluded
    )
    (generic_grad,) = torch.autograd.grad(generic.sum(), logits)
    torch.testing.assert_close(fast, generic, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast_grad, generic_grad, rtol=1e-10, atol=1e-12)
    assert torch.isfinite(fast_grad).all()


def test_feature_loss_matches_plain_loop_and_only_anchors_get_gradients() -> None:
    tau = 0.2
    z = unit_rows(3, 5, seed=20).requires_grad_(True)
    pos = unit_rows(3, 5, seed=21).requires_grad_(True)
    neg = unit_rows(6, 5, seed=22)
    excluded = torch.zeros(3, 6, dtype=torch.bool)
    excluded[2, 4] = True
    got = bank_feature_loss(z, pos, neg, tau, excluded)
    want = ref_bank_info_nce(
        z.tolist(),
        pos.tolist(),
        neg.tolist(),
        excluded.tolist(),
        lambda u, v: sum(a * b for a, b in zip(u, v, strict=True)) / tau,
    )
    assert math.isclose(float(got.detach()), want, rel_tol=1e-9)
    got.backward()  # type: ignore[no-untyped-call]
    assert z.grad is not None and float(z.grad.abs().sum()) > 0
    assert pos.grad is None  # bank rows are constants


def test_memory_bank_crlc_loss_matches_plain_loop() -> None:
    config = LossSettings(lambda_fc=3.0, lambda_ent=2.0, tau=0.5, gamma=0.01, guard_bound=1.5)
    h, b, m, c, d = 2, 4, 3, 3, 4
    g = torch.Generator().manual_seed(30)
    logits = 2 * torch.randn(h, b, c, generator=g, dtype=torch.float64)
    z = unit_rows(b, d, seed=31)
    sample = BankSample(
        feature_positive=unit_rows(b, d, seed=32),
        feature_negative=unit_rows(m, d, seed=33),
        probability_positive=prob_rows(h, b, c, seed=34),
        probability_negative=prob_rows(h, m, c, seed=35),
        excluded=torch.tensor([[True, False, False]] + [[False] * 3] * 3),
    )
    out = memory_bank_crlc_loss(z, logits, sample, config)
    keep = sample.excluded.tolist()
    feature = ref_bank_info_nce(
        z.tolist(),
        sample.feature_positive.tolist(),
        sample.feature_negative.tolist(),
        keep,
        lambda u, v: sum(a * b for a, b in zip(u, v, strict=True)) / config.tau,
    )
    clusters = []
    for head in range(h):
        rows = logits[head].tolist()
        probs = [[math.exp(u) / sum(math.exp(w) for w in row) for u in row] for row in rows]
        pc = ref_bank_info_nce(
            [ref_smooth(r, config.gamma) for r in probs],
            [ref_smooth(r, config.gamma) for r in sample.probability_positive[head].tolist()],
            [ref_smooth(r, config.gamma) for r in sample.probability_negative[head].tolist()],
            keep,
            lambda u, v: ref_critic(u, v, "log_dot"),
        )
        cluster = (
            pc
            - config.lambda_ent * ref_entropy(probs)
            + config.guard_weight * ref_guard(rows, config.guard_bound)
        )
        assert math.isclose(float(out.probability_contrastive[head]), pc, rel_tol=1e-9)
        clusters.append(cluster)
    assert math.isclose(float(out.feature), feature, rel_tol=1e-9)
    for head in range(h):
        assert math.isclose(float(out.cluster[head]), clusters[head], rel_tol=1e-9)
    total = config.lambda_fc * feature + sum(clusters) / h
    assert math.isclose(float(out.total), total, rel_tol=1e-9)


def test_uniform_bank_gives_log_one_plus_m_and_no_gradient() -> None:
    """Rows all 1/C: every log-dot critic is log(1/C), so L_PC = log(1 + kept negatives)."""
    bank = MemoryBank(9, subheads=2, clusters=4, feature_dim=3, device=CPU)
    anchors = torch.tensor([0, 4, 7])
    sample = bank.sample(anchors, anchors, 5, torch.Generator().manual_seed(1))
    logits = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(logits, dim=-1)
    loss = bank_probability_loss(
        p,
        sample.probability_positive.double(),
        sample.probability_negative.double(),
        excluded=sample.excluded,
    )
    kept = (~sample.excluded).sum(dim=1).double()
    want = torch.log1p(kept).mean()
    torch.testing.assert_close(loss, want.expand(2))
    loss.sum().backward()  # type: ignore[no-untyped-call]
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, torch.zeros_like(logits), atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- trainer
def bank_config(**changes: object) -> TrainConfig:
    bank = {"seed": 5, "framework": "memorybank", "bank_negatives": 20}
    return small_train_config(**{**bank, **changes})


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)


class CancelAtStep(RecordingReporter):
    def __init__(self, control: JobControl, at: int) -> None:
        super().__init__()
        self.control = control
        self.at = at

    def progress(self, done: float, total: float | None) -> None:
        super().progress(done, total)
        if int(done) == self.at:
            self.control.cancel()


def test_one_view_per_image_and_bank_rows_follow_the_batch(images: np.ndarray) -> None:
    trainer = CRLCTrainer(bank_config(epochs=1), images, CPU)
    seen: list[int] = []
    original = trainer.model.backbone.forward

    def spy(x: Tensor) -> Tensor:
        seen.append(x.shape[0])
        return original(x)

    trainer.model.backbone.forward = spy  # type: ignore[method-assign,assignment]
    assert trainer.bank is not None
    start = trainer.bank.probabilities.clone()
    trainer.fit()
    assert seen == [8] * 5  # 5 steps of 8 images, ONE view each
    changed = (trainer.bank.probabilities != start).any(dim=2).any(dim=0)
    assert bool(changed.all())  # every image was in a batch once (40 = 5 x 8)


def test_bank_resume_is_exact(images: np.ndarray, tmp_path: Path) -> None:
    config = bank_config()
    straight = CRLCTrainer(config, images, CPU)
    straight.fit()
    ckpt = tmp_path / "c.pt"
    first = CRLCTrainer(config, images, CPU, ckpt)
    control = JobControl()
    fit = first.fit(CancelAtStep(control, 7), control)  # mid-epoch 2 (5 steps per epoch)
    assert fit.state == "cancelled" and first.total_steps == 7
    assert load_checkpoint(ckpt)["memory_bank"] is not None
    resumed = CRLCTrainer(config, images, CPU, ckpt)
    resumed.load()
    assert resumed.fit().steps == 15
    assert straight.bank is not None and resumed.bank is not None
    assert torch.equal(straight.bank.probabilities, resumed.bank.probabilities)
    assert torch.equal(straight.bank.features, resumed.bank.features)
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    simclr = CRLCTrainer(config.replace(framework="simclr"), images, CPU)
    with pytest.raises(CheckpointError, match="framework"):
        simclr.load(ckpt)


@pytest.mark.parametrize(
    ("lambda_fc", "critic"), [(0.0, "log_dot")] + [(1.0, c) for c in CRITIC_NAMES]
)
def test_ablation_settings_train_with_the_bank(
    images: np.ndarray, lambda_fc: float, critic: str
) -> None:
    trainer = CRLCTrainer(
        bank_config(epochs=1, lambda_fc=lambda_fc, critic=critic), images[:24], CPU
    )
    rl_before = [p.clone() for p in trainer.model.rl_head.parameters()]
    fit = trainer.fit()
    losses = trainer.history[-1]["losses"]
    assert fit.state == "completed" and all(math.isfinite(v) for v in losses.values())
    rl_after = list(trainer.model.rl_head.parameters())
    unchanged = all(torch.equal(a, b) for a, b in zip(rl_before, rl_after, strict=True))
    assert unchanged == (lambda_fc == 0.0)  # C-head only: the RL-head is not trained
    assert (losses["feature"] == 0.0) == (lambda_fc == 0.0)


def test_a_tiny_bank_run_learns() -> None:
    """On shapes, L_FC and L_PC fall below chance, log(1 + M), within a few epochs.

    The first epoch's L_FC is above chance: the feature bank starts as random unit vectors,
    so the positives are still random.
    """
    data, _ = make_shapes_dataset(per_class=32, size=16, classes=3, seed=2)
    config = bank_config(
        epochs=15, batch_size=32, feature_dim=128, bank_negatives=256, lambda_fc=1.0
    )
    trainer = CRLCTrainer(config, data, CPU)
    trainer.fit()
    chance = math.log(1 + 95)  # M is capped at N - 1 = 95
    first = trainer.history[0]["losses"]
    last = [r["losses"] for r in trainer.history[-3:]]
    assert first["feature"] > chance
    assert np.mean([r["feature"] for r in last]) < chance - 0.25
    assert np.mean([r["probability_contrastive"] for r in last]) < chance - 0.1
