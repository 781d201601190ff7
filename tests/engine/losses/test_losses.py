"""Tests for crlc_engine.losses against independent pure-Python references.

The references below use plain loops, ``math`` and Python lists only; nothing from
``crlc_engine`` is used to compute expected values.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from crlc_engine.core.config import LossSettings
from crlc_engine.losses import (
    CRITICS,
    critic_matrix,
    crlc_loss,
    feature_contrastive_loss,
    logit_guard,
    marginal_entropy,
    probability_contrastive_loss,
    smooth_probabilities,
)

Matrix = list[list[float]]

TIGHT64 = {"rel_tol": 1e-9, "abs_tol": 1e-9}


# --------------------------------------------------------------------------------------
# Pure-Python references
# --------------------------------------------------------------------------------------


def ref_dot(u: list[float], v: list[float]) -> float:
    total = 0.0
    for a, b in zip(u, v, strict=True):
        total += a * b
    return total


def ref_logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def ref_nt_xent(logits: Matrix) -> float:
    """Mean over rows of -log softmax(positive) with the row itself excluded."""
    n = len(logits)
    b = n // 2
    total = 0.0
    for i in range(n):
        pos = i + b if i < b else i - b
        others = [logits[i][j] for j in range(n) if j != i]
        total += ref_logsumexp(others) - logits[i][pos]
    return total / n


def ref_feature(za: Matrix, zb: Matrix, tau: float) -> tuple[float, float]:
    rows = za + zb
    logits = [[ref_dot(u, v) / tau for v in rows] for u in rows]
    pos_sim = sum(ref_dot(u, v) for u, v in zip(za, zb, strict=True)) / len(za)
    return ref_nt_xent(logits), pos_sim


def ref_xlogx(x: float) -> float:
    return 0.0 if x == 0.0 else x * math.log(x)


def ref_critic(p: list[float], q: list[float], critic: str) -> float:
    if critic == "log_dot":
        d = ref_dot(p, q)
        return math.log(d) if d > 0 else -math.inf
    if critic == "dot":
        return ref_dot(p, q)
    if critic == "neg_l2":
        return -sum((a - b) ** 2 for a, b in zip(p, q, strict=True))
    if critic == "neg_js":
        kl_p = 0.0
        kl_q = 0.0
        for a, b in zip(p, q, strict=True):
            m = 0.5 * (a + b)
            if a > 0:
                kl_p += a * math.log(a / m)
            if b > 0:
                kl_q += b * math.log(b / m)
        return -0.5 * (kl_p + kl_q)
    raise AssertionError(critic)


def ref_smooth(p: list[float], gamma: float) -> list[float]:
    return [(1.0 - gamma) * x + gamma / len(p) for x in p]


def ref_pc(pa: Matrix, pb: Matrix, critic: str, gamma: float) -> tuple[float, float]:
    rows = [ref_smooth(r, gamma) for r in pa + pb]
    logits = [[ref_critic(u, v, critic) for v in rows] for u in rows]
    b = len(pa)
    pos = sum(logits[i][i + b] for i in range(b)) / b
    return ref_nt_xent(logits), pos


def ref_marginal(p: Matrix, eps: float = 1e-12) -> tuple[float, list[float]]:
    b = len(p)
    c = len(p[0])
    m = [sum(p[i][k] for i in range(b)) / b for k in range(c)]
    return -sum(x * math.log(max(x, eps)) for x in m), m


def ref_guard(logits: Matrix, bound: float) -> float:
    total = 0.0
    for row in logits:
        for u in row:
            e = min(u + bound, 0.0) + max(u - bound, 0.0)
            total += u * e
    return total / len(logits)


def ref_softmax(row: list[float]) -> list[float]:
    top = max(row)
    ex = [math.exp(v - top) for v in row]
    s = sum(ex)
    return [v / s for v in ex]


def ref_crlc(
    za: Matrix | None,
    zb: Matrix | None,
    la: list[Matrix],
    lb: list[Matrix],
    lambda_fc: float,
    lambda_ent: float,
    tau: float,
    gamma: float,
    critic: str,
    guard_weight: float,
    guard_bound: float,
) -> dict[str, float | list[float]]:
    feature = 0.0 if za is None or zb is None else ref_feature(za, zb, tau)[0]
    pcs: list[float] = []
    ents: list[float] = []
    guards: list[float] = []
    clusters: list[float] = []
    for ha, hb in zip(la, lb, strict=True):
        pa = [ref_softmax(r) for r in ha]
        pb = [ref_softmax(r) for r in hb]
        pc = ref_pc(pa, pb, critic, gamma)[0]
        ent = 0.5 * (ref_marginal(pa)[0] + ref_marginal(pb)[0])
        g = 0.5 * (ref_guard(ha, guard_bound) + ref_guard(hb, guard_bound))
        pcs.append(pc)
        ents.append(ent)
        guards.append(g)
        clusters.append(pc - lambda_ent * ent + guard_weight * g)
    total = lambda_fc * feature + sum(clusters) / len(clusters)
    return {
        "total": total,
        "feature": feature,
        "cluster": clusters,
        "probability_contrastive": pcs,
        "entropy": ents,
        "guard": guards,
    }


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_unit(b: int, d: int, g: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    z = torch.randn(b, d, generator=g, dtype=torch.float64)
    return (z / z.norm(dim=-1, keepdim=True)).to(dtype)


def rand_probs(shape: tuple[int, ...], g: torch.Generator, scale: float = 2.0) -> Tensor:
    return torch.softmax(scale * torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def assert_close_list(actual: list[float], expected: list[float], rtol: float, atol: float) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert math.isclose(a, e, rel_tol=rtol, abs_tol=atol), (actual, expected)


def as_list(x: Tensor) -> list[float]:
    value = x.detach().tolist()
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------------------
# Feature contrastive
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("b", [1, 2, 5, 8])
@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5])
def test_feature_contrastive_matches_reference(b: int, tau: float) -> None:
    g = gen(100 * b + int(tau * 100))
    for d in (3, 16):
        za = rand_unit(b, d, g)
        zb = rand_unit(b, d, g)
        out = feature_contrastive_loss(za, zb, tau=tau)
        exp_loss, exp_pos = ref_feature(za.tolist(), zb.tolist(), tau)
        assert out.loss.shape == ()
        assert out.loss.dtype == torch.float64
        assert math.isclose(out.loss.item(), exp_loss, **TIGHT64)
        assert math.isclose(out.positive_similarity.item(), exp_pos, **TIGHT64)
        assert not out.positive_similarity.requires_grad


@pytest.mark.parametrize("b", [1, 2, 5, 8])
def test_feature_contrastive_float32_matches_reference(b: int) -> None:
    g = gen(7 + b)
    za = rand_unit(b, 12, g, torch.float32)
    zb = rand_unit(b, 12, g, torch.float32)
    out = feature_contrastive_loss(za, zb, tau=0.1)
    assert out.loss.dtype == torch.float32
    exp_loss, _ = ref_feature(za.double().tolist(), zb.double().tolist(), 0.1)
    assert math.isclose(out.loss.item(), exp_loss, rel_tol=1e-5, abs_tol=1e-5)


def test_feature_contrastive_does_not_renormalise() -> None:
    g = gen(3)
    za = rand_unit(4, 6, g) * 2.0
    zb = rand_unit(4, 6, g) * 0.5
    out = feature_contrastive_loss(za, zb, tau=0.2)
    exp_loss, _ = ref_feature(za.tolist(), zb.tolist(), 0.2)
    assert math.isclose(out.loss.item(), exp_loss, **TIGHT64)


@pytest.mark.parametrize("b", [1, 2, 4, 6])
@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5])
def test_feature_contrastive_orthonormal_closed_form(b: int, tau: float) -> None:
    d = 8
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(b), dtype=torch.float64))
    z = q[:b]
    out = feature_contrastive_loss(z, z.clone(), tau=tau)
    expected = math.log(1.0 + (2 * b - 2) * math.exp(-1.0 / tau))
    assert math.isclose(out.loss.item(), expected, **TIGHT64)
    assert math.isclose(out.positive_similarity.item(), 1.0, **TIGHT64)
    # Identity rows too.
    eye = torch.eye(d, dtype=torch.float64)[:b]
    assert math.isclose(feature_contrastive_loss(eye, eye, tau).loss.item(), expected, **TIGHT64)


def test_feature_contrastive_gradcheck() -> None:
    g = gen(11)
    za = rand_unit(5, 4, g).requires_grad_(True)
    zb = rand_unit(5, 4, g).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: feature_contrastive_loss(a, b, tau=0.2).loss, (za, zb)
    )


def test_feature_contrastive_bf16_gives_float32() -> None:
    g = gen(12)
    za = rand_unit(4, 8, g, torch.bfloat16)
    zb = rand_unit(4, 8, g, torch.bfloat16)
    out = feature_contrastive_loss(za, zb)
    assert out.loss.dtype == torch.float32
    assert out.positive_similarity.dtype == torch.float32
    exp_loss, _ = ref_feature(za.double().tolist(), zb.double().tolist(), 0.1)
    assert math.isclose(out.loss.item(), exp_loss, rel_tol=1e-5, abs_tol=1e-5)


def test_feature_contrastive_rejects_bad_input() -> None:
    z = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="tau"):
        feature_contrastive_loss(z, z, tau=0.0)
    with pytest.raises(ValueError):
        feature_contrastive_loss(z, torch.zeros(2, 4))
    with pytest.raises(ValueError):
        feature_contrastive_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))


# --------------------------------------------------------------------------------------
# Probability contrastive
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("critic", CRITICS)
@pytest.mark.parametrize("b", [1, 2, 5, 8])
@pytest.mark.parametrize("c", [2, 3, 10])
def test_probability_contrastive_matches_reference(critic: str, b: int, c: int) -> None:
    g = gen(1000 * b + 10 * c + CRITICS.index(critic))
    for h in (1, 3):
        for gamma in (0.0, 0.01, 0.3, 1.0):
            pa = rand_probs((h, b, c), g)
            pb = rand_probs((h, b, c), g)
            out = probability_contrastive_loss(pa, pb, critic=critic, gamma=gamma)  # type: ignore[arg-type]
            assert out.loss.shape == (h,)
            assert out.positive_critic.shape == (h,)
            assert out.loss.dtype == torch.float64
            assert not out.positive_critic.requires_grad
            for k in range(h):
                exp_loss, exp_pos = ref_pc(pa[k].tolist(), pb[k].tolist(), critic, gamma)
                assert math.isclose(out.loss[k].item(), exp_loss, **TIGHT64), (h, gamma, k)
                assert math.isclose(out.positive_critic[k].item(), exp_pos, **TIGHT64)
        # 2-D input gives scalars equal to the per-head value.
        pa2 = rand_probs((b, c), g)
        pb2 = rand_probs((b, c), g)
        out2 = probability_contrastive_loss(pa2, pb2, critic=critic, gamma=0.01)  # type: ignore[arg-type]
        assert out2.loss.shape == ()
        exp2, _ = ref_pc(pa2.tolist(), pb2.tolist(), critic, 0.01)
        assert math.isclose(out2.loss.item(), exp2, **TIGHT64)


@pytest.mark.parametrize("critic", CRITICS)
def test_probability_contrastive_float32_matches_reference(critic: str) -> None:
    g = gen(55 + CRITICS.index(critic))
    pa = rand_probs((2, 6, 4), g).float()
    pb = rand_probs((2, 6, 4), g).float()
    out = probability_contrastive_loss(pa, pb, critic=critic)  # type: ignore[arg-type]
    assert out.loss.dtype == torch.float32
    for k in range(2):
        exp_loss, _ = ref_pc(pa[k].double().tolist(), pb[k].double().tolist(), critic, 0.01)
        assert math.isclose(out.loss[k].item(), exp_loss, rel_tol=1e-5, abs_tol=1e-5)


@pytest.mark.parametrize("critic", CRITICS)
def test_critic_matrix_matches_reference(critic: str) -> None:
    g = gen(77 + CRITICS.index(critic))
    p = rand_probs((2, 3, 5), g)
    q = rand_probs((2, 4, 5), g)
    mat = critic_matrix(p, q, critic)  # type: ignore[arg-type]
    assert mat.shape == (2, 3, 4)
    for h in range(2):
        for i in range(3):
            for j in range(4):
                expected = ref_critic(p[h, i].tolist(), q[h, j].tolist(), critic)
                assert math.isclose(mat[h, i, j].item(), expected, **TIGHT64)


def test_critic_neg_js_handles_zeros() -> None:
    p = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    mat = critic_matrix(p, q, "neg_js")
    assert torch.isfinite(mat).all()
    for i in range(2):
        for j in range(2):
            expected = ref_critic(p[i].tolist(), q[j].tolist(), "neg_js")
            assert math.isclose(mat[i, j].item(), expected, **TIGHT64)
    # Disjoint one-hots: JS = log 2.
    assert math.isclose(mat[0, 0].item(), -math.log(2.0), **TIGHT64)


def test_smooth_probabilities() -> None:
    p = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    s = smooth_probabilities(p, 0.2)
    assert_close_list(s[0].tolist(), [0.85, 0.05, 0.05, 0.05], 1e-12, 1e-12)
    assert smooth_probabilities(p.bfloat16(), 0.1).dtype == torch.float32
    with pytest.raises(ValueError):
        smooth_probabilities(p, 1.5)
    with pytest.raises(ValueError):
        smooth_probabilities(p, -0.1)


@pytest.mark.parametrize("critic", CRITICS)
def test_probability_contrastive_gradcheck(critic: str) -> None:
    g = gen(21 + CRITICS.index(critic))
    pa = rand_probs((2, 3, 4), g).requires_grad_(True)
    pb = rand_probs((2, 3, 4), g).requires_grad_(True)

    def fn(a: Tensor, b: Tensor) -> Tensor:
        return probability_contrastive_loss(a, b, critic=critic, gamma=0.05).loss  # type: ignore[arg-type]

    assert torch.autograd.gradcheck(fn, (pa, pb))

    # Also through the softmax of random logits.
    la = torch.randn(2, 3, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    lb = torch.randn(2, 3, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: fn(torch.softmax(a, -1), torch.softmax(b, -1)), (la, lb)
    )


def test_log_dot_without_smoothing_is_non_finite_for_disjoint_one_hots() -> None:
    pa = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pb = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    out = probability_contrastive_loss(pa, pb, critic="log_dot", gamma=0.0)
    assert not torch.isfinite(out.loss).all()
    # B = 1 as well.
    out1 = probability_contrastive_loss(pa[:1], pb[:1], critic="log_dot", gamma=0.0)
    assert not torch.isfinite(out1.loss)
    # Smoothing makes it finite, and the value matches the reference.
    sm = probability_contrastive_loss(pa, pb, critic="log_dot", gamma=0.01)
    assert torch.isfinite(sm.loss).all()
    exp_loss, _ = ref_pc(pa.double().tolist(), pb.double().tolist(), "log_dot", 0.01)
    assert math.isclose(sm.loss.item(), exp_loss, rel_tol=1e-5, abs_tol=1e-5)


@pytest.mark.parametrize("critic", CRITICS)
def test_smoothed_loss_and_grads_finite_for_saturated_softmax(critic: str) -> None:
    logits = torch.tensor([[[200.0, -200.0, 0.0], [-200.0, 200.0, 0.0]]])
    la = logits.clone().requires_grad_(True)
    lb = logits.flip(-1).clone().requires_grad_(True)
    pa = torch.softmax(la, -1)
    pb = torch.softmax(lb, -1)
    assert (pa == 0).any()  # truly saturated
    out = probability_contrastive_loss(pa, pb, critic=critic, gamma=0.01)  # type: ignore[arg-type]
    assert torch.isfinite(out.loss).all()
    out.loss.sum().backward()
    assert la.grad is not None and lb.grad is not None
    assert torch.isfinite(la.grad).all()
    assert torch.isfinite(lb.grad).all()


def test_probability_contrastive_bf16_gives_float32() -> None:
    g = gen(31)
    pa = rand_probs((3, 4, 5), g).bfloat16()
    pb = rand_probs((3, 4, 5), g).bfloat16()
    out = probability_contrastive_loss(pa, pb)
    assert out.loss.dtype == torch.float32
    assert out.positive_critic.dtype == torch.float32


def test_probability_contrastive_rejects_bad_input() -> None:
    p = torch.full((2, 3), 1.0 / 3)
    with pytest.raises(ValueError, match="log_dot"):
        probability_contrastive_loss(p, p, critic="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="neg_js"):
        critic_matrix(p, p, "bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        probability_contrastive_loss(p, p, gamma=2.0)
    with pytest.raises(ValueError):
        probability_contrastive_loss(p, torch.full((3, 3), 1.0 / 3))


# --------------------------------------------------------------------------------------
# Marginal entropy
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("b", [1, 2, 5, 8])
@pytest.mark.parametrize("c", [2, 3, 10])
def test_marginal_entropy_matches_reference(b: int, c: int) -> None:
    g = gen(300 + 10 * b + c)
    for h in (1, 3):
        p = rand_probs((h, b, c), g, scale=4.0)
        out = marginal_entropy(p)
        assert out.entropy.shape == (h,)
        assert out.marginal.shape == (h, c)
        assert not out.marginal.requires_grad
        for k in range(h):
            exp_ent, exp_m = ref_marginal(p[k].tolist())
            assert math.isclose(out.entropy[k].item(), exp_ent, **TIGHT64)
            assert_close_list(out.marginal[k].tolist(), exp_m, 1e-12, 1e-12)
    p2 = rand_probs((b, c), g).float()
    out2 = marginal_entropy(p2)
    assert out2.entropy.shape == () and out2.marginal.shape == (c,)
    exp2, _ = ref_marginal(p2.double().tolist())
    assert math.isclose(out2.entropy.item(), exp2, rel_tol=1e-5, abs_tol=1e-5)


@pytest.mark.parametrize("c", [2, 3, 10])
def test_marginal_entropy_closed_forms(c: int) -> None:
    uniform = torch.full((4, c), 1.0 / c, dtype=torch.float64)
    assert math.isclose(marginal_entropy(uniform).entropy.item(), math.log(c), **TIGHT64)
    # Balanced one-hot batch: each class appears twice.
    labels = torch.arange(2 * c) % c
    one_hot = torch.nn.functional.one_hot(labels, c).to(torch.float64)
    assert math.isclose(marginal_entropy(one_hot).entropy.item(), math.log(c), **TIGHT64)
    # Collapsed batch: entropy 0, finite gradient thanks to eps.
    collapsed = torch.zeros(3, c, dtype=torch.float64)
    collapsed[:, 0] = 1.0
    collapsed.requires_grad_(True)
    ent = marginal_entropy(collapsed).entropy
    assert ent.item() == 0.0
    ent.backward()
    assert collapsed.grad is not None and torch.isfinite(collapsed.grad).all()


def test_marginal_entropy_eps_floor() -> None:
    # A tiny marginal entry below eps is multiplied by log(eps), not log(m).
    p = torch.tensor([[1.0 - 1e-14, 1e-14]], dtype=torch.float64)
    out = marginal_entropy(p, eps=1e-12)
    m0, m1 = 1.0 - 1e-14, 1e-14
    expected = -(m0 * math.log(m0) + m1 * math.log(1e-12))
    assert math.isclose(out.entropy.item(), expected, rel_tol=1e-12, abs_tol=1e-20)
    with pytest.raises(ValueError):
        marginal_entropy(p, eps=0.0)


def test_marginal_entropy_gradcheck() -> None:
    p = rand_probs((2, 5, 4), gen(41)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: marginal_entropy(x).entropy, (p,))


def test_marginal_entropy_bf16_gives_float32() -> None:
    p = rand_probs((2, 5, 4), gen(42)).bfloat16()
    out = marginal_entropy(p)
    assert out.entropy.dtype == torch.float32
    assert out.marginal.dtype == torch.float32


# --------------------------------------------------------------------------------------
# Logit guard
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("b", [1, 2, 5, 8])
@pytest.mark.parametrize("bound", [0.5, 2.0, 25.0])
def test_logit_guard_matches_reference(b: int, bound: float) -> None:
    g = gen(500 + b + int(bound))
    for h, c in ((1, 3), (3, 10)):
        logits = bound * 2.0 * torch.randn(h, b, c, generator=g, dtype=torch.float64)
        out = logit_guard(logits, bound=bound)
        assert out.shape == (h,)
        for k in range(h):
            assert math.isclose(out[k].item(), ref_guard(logits[k].tolist(), bound), **TIGHT64)


def test_logit_guard_closed_forms() -> None:
    inside = torch.tensor([[[-25.0, 0.0, 24.9], [3.0, -7.0, 25.0]]], dtype=torch.float64)
    assert logit_guard(inside).tolist() == [0.0]
    one = torch.tensor([[30.0, 0.0]], dtype=torch.float64)
    assert logit_guard(one).item() == 30.0 * 5.0
    both = torch.tensor([[30.0, -27.0], [0.0, 1.0]], dtype=torch.float64)
    # (30*5 + (-27)*(-2) + 0) / 2
    assert math.isclose(logit_guard(both).item(), (150.0 + 54.0) / 2.0, **TIGHT64)
    assert logit_guard(one, bound=10.0).item() == 30.0 * 20.0


def test_logit_guard_gradient_is_detached_excess() -> None:
    # Gradient = e / B (e detached); logits away from the kinks at +-bound.
    logits = torch.tensor(
        [[[30.0, -40.0, 10.0], [0.0, 26.5, -24.0]], [[-31.0, 5.0, 60.0], [1.0, 2.0, 3.0]]],
        dtype=torch.float64,
        requires_grad=True,
    )
    logit_guard(logits, bound=25.0).sum().backward()
    assert logits.grad is not None
    b = logits.shape[1]
    for u, gr in zip(
        logits.detach().flatten().tolist(), logits.grad.flatten().tolist(), strict=True
    ):
        e = min(u + 25.0, 0.0) + max(u - 25.0, 0.0)
        assert math.isclose(gr, e / b, **TIGHT64)

    # Equivalently: the gradient is the finite-difference derivative of the potential
    # 0.5 * mean_b sum_c e_c^2, checked here with a pure-Python central difference.
    def potential(x: list[list[float]]) -> float:
        tot = 0.0
        for row in x:
            for u in row:
                e = min(u + 25.0, 0.0) + max(u - 25.0, 0.0)
                tot += 0.5 * e * e
        return tot / len(x)

    head = logits.detach()[0].tolist()
    step = 1e-6
    for i in range(len(head)):
        for j in range(len(head[0])):
            plus = [row[:] for row in head]
            minus = [row[:] for row in head]
            plus[i][j] += step
            minus[i][j] -= step
            fd = (potential(plus) - potential(minus)) / (2 * step)
            assert math.isclose(logits.grad[0, i, j].item(), fd, rel_tol=1e-6, abs_tol=1e-8)


def test_logit_guard_gradcheck_inside_bound() -> None:
    # Inside the bound the guard and its gradient vanish identically.
    logits = (3.0 * torch.randn(2, 4, 5, generator=gen(61), dtype=torch.float64)).clamp(-20, 20)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: logit_guard(x, 25.0), (logits,))


def test_logit_guard_gradcheck_outside_bound() -> None:
    # e is detached, so logit_guard's gradient is e/B, not the derivative of its value
    # u * e(u) (that would be (u + e)/B). Plain gradcheck therefore cannot apply; instead
    # gradcheck a function whose *value* is u * e0 (e0 = e frozen at the base point; its
    # exact derivative is e0/B) but whose *gradient* comes only from logit_guard.
    logits = torch.tensor(
        [[[30.0, -40.0, 10.0], [0.0, 26.5, -24.0]]], dtype=torch.float64, requires_grad=True
    )
    base = logits.detach().clone()
    e0 = (base + 25.0).clamp_max(0.0) + (base - 25.0).clamp_min(0.0)

    def stop_gradient_form(x: Tensor) -> Tensor:
        guard = logit_guard(x, 25.0)
        return guard - guard.detach() + (x * e0).sum(-1).mean(-1).detach()

    assert torch.autograd.gradcheck(stop_gradient_form, (logits,))
    assert math.isclose(logit_guard(logits).item(), ref_guard(base[0].tolist(), 25.0), **TIGHT64)


def test_logit_guard_bf16_and_bad_bound() -> None:
    out = logit_guard(torch.full((2, 3, 4), 30.0, dtype=torch.bfloat16))
    assert out.dtype == torch.float32
    assert out.tolist() == [4 * 150.0, 4 * 150.0]
    with pytest.raises(ValueError):
        logit_guard(torch.zeros(2, 3), bound=-1.0)


# --------------------------------------------------------------------------------------
# Combined CRLC loss
# --------------------------------------------------------------------------------------


def _crlc_case(
    h: int, b: int, c: int, d: int, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = gen(seed)
    za = rand_unit(b, d, g, dtype)
    zb = rand_unit(b, d, g, dtype)
    la = (10.0 * torch.randn(h, b, c, generator=g, dtype=torch.float64)).to(dtype)
    lb = (10.0 * torch.randn(h, b, c, generator=g, dtype=torch.float64)).to(dtype)
    return za, zb, la, lb


def _check_against_ref(
    out_vals: dict[str, list[float]], exp: dict[str, float | list[float]], tol: float
) -> None:
    for key, expected in exp.items():
        exp_list = expected if isinstance(expected, list) else [expected]
        assert_close_list(out_vals[key], exp_list, tol, tol)


@pytest.mark.parametrize("critic", CRITICS)
@pytest.mark.parametrize("h", [1, 3])
@pytest.mark.parametrize("b", [1, 2, 5, 8])
def test_crlc_loss_matches_reference(critic: str, h: int, b: int) -> None:
    for c, cfg in (
        (2, LossSettings(critic=critic)),
        (
            10,
            LossSettings(
                lambda_fc=3.0,
                lambda_ent=1.0,
                tau=0.5,
                gamma=0.2,
                critic=critic,
                guard_weight=0.5,
                guard_bound=5.0,
            ),
        ),
    ):
        za, zb, la, lb = _crlc_case(h, b, c, 6, seed=b * 31 + h * 7 + c)
        out = crlc_loss(za, zb, la, lb, cfg)
        assert out.total.shape == ()
        assert out.feature.shape == ()
        for part in (out.cluster, out.probability_contrastive, out.entropy, out.guard):
            assert part.shape == (h,)
        exp = ref_crlc(
            za.tolist(),
            zb.tolist(),
            la.tolist(),
            lb.tolist(),
            cfg.lambda_fc,
            cfg.lambda_ent,
            cfg.tau,
            cfg.gamma,
            cfg.critic,
            cfg.guard_weight,
            cfg.guard_bound,
        )
        vals = {k: as_list(v) for k, v in out._asdict().items()}
        _check_against_ref(vals, exp, 1e-9)


def test_crlc_loss_float32_matches_reference() -> None:
    za, zb, la, lb = _crlc_case(3, 6, 4, 8, seed=5, dtype=torch.float32)
    cfg = LossSettings()
    out = crlc_loss(za, zb, la, lb, cfg)
    assert out.total.dtype == torch.float32
    exp = ref_crlc(
        za.double().tolist(),
        zb.double().tolist(),
        la.double().tolist(),
        lb.double().tolist(),
        cfg.lambda_fc,
        cfg.lambda_ent,
        cfg.tau,
        cfg.gamma,
        cfg.critic,
        cfg.guard_weight,
        cfg.guard_bound,
    )
    vals = {k: as_list(v) for k, v in out._asdict().items()}
    _check_against_ref(vals, exp, 1e-5)


def test_crlc_loss_defaults() -> None:
    cfg = LossSettings()
    assert cfg.lambda_fc == 10.0
    assert cfg.lambda_ent == 2.0
    assert cfg.tau == 0.1
    assert cfg.gamma == 0.01
    assert cfg.critic == "log_dot"
    assert cfg.guard_weight == 0.01
    assert cfg.guard_bound == 25.0


def test_crlc_loss_total_is_hand_combination() -> None:
    za, zb, la, lb = _crlc_case(3, 5, 4, 8, seed=9)
    la = la * 4.0  # push some logits beyond the guard bound
    cfg = LossSettings(lambda_fc=7.0, lambda_ent=1.5, guard_weight=0.3)
    out = crlc_loss(za, zb, la, lb, cfg)
    assert out.guard.gt(0).any()
    cluster = out.probability_contrastive - 1.5 * out.entropy + 0.3 * out.guard
    assert torch.allclose(out.cluster, cluster, rtol=1e-12, atol=1e-12)
    assert math.isclose(
        out.total.item(), 7.0 * out.feature.item() + out.cluster.mean().item(), **TIGHT64
    )
    # The parts agree with the standalone losses (entropy on unsmoothed probabilities).
    pa, pb = torch.softmax(la, -1), torch.softmax(lb, -1)
    feat = feature_contrastive_loss(za, zb, tau=0.1).loss
    pc = probability_contrastive_loss(pa, pb, gamma=0.01).loss
    ent = 0.5 * (marginal_entropy(pa).entropy + marginal_entropy(pb).entropy)
    guard = 0.5 * (logit_guard(la) + logit_guard(lb))
    assert torch.allclose(out.feature, feat, rtol=1e-12, atol=1e-12)
    assert torch.allclose(out.probability_contrastive, pc, rtol=1e-12, atol=1e-12)
    assert torch.allclose(out.entropy, ent, rtol=1e-12, atol=1e-12)
    assert torch.allclose(out.guard, guard, rtol=1e-12, atol=1e-12)


def test_crlc_loss_gradcheck() -> None:
    za, zb, la, lb = _crlc_case(2, 3, 4, 5, seed=13)
    la = (la / 4.0).clamp(-20, 20)  # inside the guard bound: guard is smooth (zero) here
    lb = (lb / 4.0).clamp(-20, 20)
    cfg = LossSettings()
    inputs = tuple(t.clone().requires_grad_(True) for t in (za, zb, la, lb))
    assert torch.autograd.gradcheck(lambda *x: crlc_loss(*x, config=cfg).total, inputs)


def test_crlc_loss_guard_gradient_contribution() -> None:
    _, _, la, lb = _crlc_case(2, 4, 3, 5, seed=17)
    la = la * 5.0  # many logits beyond +-25
    grads = []
    for weight in (0.0, 0.25):
        cfg = LossSettings(lambda_fc=0.0, guard_weight=weight)
        x = la.clone().requires_grad_(True)
        crlc_loss(None, None, x, lb, cfg).total.backward()
        assert x.grad is not None
        grads.append(x.grad)
    diff = (grads[1] - grads[0]).flatten().tolist()
    h, b = la.shape[0], la.shape[1]
    for u, d in zip(la.flatten().tolist(), diff, strict=True):
        e = min(u + 25.0, 0.0) + max(u - 25.0, 0.0)
        # total = mean_h(... + w * 0.5 * (G_a + G_b)), dG_a/du = e / B
        assert math.isclose(d, 0.25 * 0.5 * e / b / h, rel_tol=1e-9, abs_tol=1e-12)


def test_crlc_loss_bf16_gives_float32() -> None:
    za, zb, la, lb = _crlc_case(3, 4, 5, 8, seed=19, dtype=torch.bfloat16)
    out = crlc_loss(za, zb, la, lb)
    for part in out:
        assert part.dtype == torch.float32
    assert torch.isfinite(out.total)


def test_crlc_loss_without_features() -> None:
    _, _, la, lb = _crlc_case(3, 4, 5, 8, seed=23)
    cfg = LossSettings(lambda_fc=0.0)
    out = crlc_loss(None, None, la, lb, cfg)
    assert out.feature.shape == ()
    assert out.feature.item() == 0.0
    assert math.isclose(out.total.item(), out.cluster.mean().item(), **TIGHT64)
    exp = ref_crlc(None, None, la.tolist(), lb.tolist(), 0.0, 2.0, 0.1, 0.01, "log_dot", 0.01, 25.0)
    vals = {k: as_list(v) for k, v in out._asdict().items()}
    _check_against_ref(vals, exp, 1e-9)
    with pytest.raises(ValueError, match="lambda_fc"):
        crlc_loss(None, None, la, lb, LossSettings(lambda_fc=1.0))
    with pytest.raises(ValueError):
        crlc_loss(None, None, la, lb)  # default lambda_fc = 10


def test_crlc_loss_rejects_bad_shapes() -> None:
    za, zb, la, lb = _crlc_case(2, 4, 3, 5, seed=29)
    with pytest.raises(ValueError):
        crlc_loss(za, None, la, lb)
    with pytest.raises(ValueError):
        crlc_loss(za, zb, la[0], lb[0])  # not [H, B, C]
    with pytest.raises(ValueError):
        crlc_loss(za, zb, la, lb[:, :3])
    with pytest.raises(ValueError):
        crlc_loss(za[:3], zb[:3], la, lb)  # feature batch != logit batch


BadConfig = Callable[[], LossSettings]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: LossSettings(tau=0.0), "tau"),
        (lambda: LossSettings(tau=-0.1), "tau"),
        (lambda: LossSettings(tau=math.nan), "tau"),
        (lambda: LossSettings(gamma=-0.01), "gamma"),
        (lambda: LossSettings(gamma=1.5), "gamma"),
        (lambda: LossSettings(tau=math.inf), "tau"),
        (lambda: LossSettings(lambda_fc=-1.0), "lambda-fc"),
        (lambda: LossSettings(lambda_fc=math.inf), "lambda-fc"),
        (lambda: LossSettings(lambda_ent=-0.5), "lambda-ent"),
        (lambda: LossSettings(guard_weight=-0.1), "guard weight"),
        (lambda: LossSettings(guard_bound=-1.0), "bound"),
        (lambda: LossSettings(guard_bound=0.0), "bound"),
        (lambda: LossSettings(critic="cosine"), "critic"),
    ],
)
def test_crlc_config_validation(make: BadConfig, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()


def test_crlc_config_accepts_edges() -> None:
    LossSettings(lambda_fc=0.0, lambda_ent=0.0, gamma=0.0, guard_weight=0.0, guard_bound=1e-6)
    LossSettings(gamma=1.0)
    for critic in CRITICS:
        LossSettings(critic=critic)
