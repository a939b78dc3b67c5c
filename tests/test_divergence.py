"""Divergences: golden values, identities (JS symmetric, bounded by log 2, 0 at P = Q; the
generalized KL on normalised inputs is kl_div) and the zero-probability edges (finite value,
reverse and forward gradients in both arguments, second derivatives). Truths are the float64
formulas of specs_divergence.py or worked by hand."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, jacfwd, jacrev

import funcloss
from funcloss.testing import probabilities, shapes

from .helpers import assert_close
from .specs_divergence import generalized_kl_oracle, js_oracle

D = torch.float64


def _t(values, dtype=D) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# -- golden values -----------------------------------------------------------------------------


def test_js_golden_values() -> None:
    p, q = _t([[1.0, 0.0], [0.25, 0.75]]), _t([[0.0, 1.0], [0.5, 0.5]])
    # by hand: disjoint supports give log 2 per row; the second row term by term
    m = [0.375, 0.625]
    row = 0.5 * sum(
        a * math.log(a / b) + c * math.log(c / b)
        for a, c, b in zip(*[[0.25, 0.75], [0.5, 0.5], m], strict=True)
    )
    want = torch.tensor([math.log(2), row], dtype=D)
    ours = funcloss.js_div(q, p, reduction="none").sum(-1)
    assert_close(ours, want)
    assert_close(funcloss.js_div(q, p), want.sum() / 2)
    assert_close(funcloss.js_div(torch.log(q), p, log_input=True), want.sum() / 2)
    assert_close(funcloss.js_div(q, p, reduction="sum"), want.sum())
    assert_close(funcloss.js_div(q, p, reduction="mean"), want.sum() / 4)


def test_generalized_kl_golden_values() -> None:
    rate, t = _t([2.0, 0.5, 1.0, 0.0]), _t([1.0, 0.0, 3.0, 0.0])
    want = _t([1 - math.log(2), 0.5, 3 * math.log(3) - 2, 0.0])  # by hand
    assert_close(funcloss.generalized_kl_div(rate, t, log_input=False, reduction="none"), want)
    assert_close(funcloss.generalized_kl_div(torch.log(rate), t, reduction="none"), want)
    assert_close(funcloss.generalized_kl_div(torch.log(rate), t), want.sum() / 4)


# -- identities --------------------------------------------------------------------------------


@st.composite
def _two_distributions(draw: st.DrawFn):
    shape = draw(shapes(1, 3, max_side=5))
    dim = len(shape) - 1
    return draw(probabilities(shape, dim=dim)), draw(probabilities(shape, dim=dim))


@settings(max_examples=25)
@given(pair=_two_distributions())
def test_js_symmetric_bounded_and_zero_on_equal(pair) -> None:
    p, q = pair
    rows = funcloss.js_div(q, p, reduction="none").sum(-1)
    assert_close(rows, funcloss.js_div(p, q, reduction="none").sum(-1), "symmetry")
    assert bool((rows >= -1e-15).all()) and bool((rows <= math.log(2) + 1e-15).all()), rows
    assert_close(funcloss.js_div(p, p, reduction="sum"), torch.zeros((), dtype=D), "JS(P, P)")
    assert_close(funcloss.js_div(q, p), js_oracle(q, p), "oracle")
    # log-space input: the same divergence
    assert_close(funcloss.js_div(torch.log(q), p, log_input=True), funcloss.js_div(q, p))


def test_js_reaches_log_2_on_disjoint_supports() -> None:
    p = torch.eye(4, dtype=D)
    q = torch.roll(p, 1, dims=1)
    assert_close(
        funcloss.js_div(q, p, reduction="none").sum(-1), torch.full((4,), math.log(2), dtype=D)
    )


@settings(max_examples=25)
@given(pair=_two_distributions(), log_input=st.booleans())
def test_generalized_kl_on_normalised_inputs_is_kl_div(pair, log_input: bool) -> None:
    p, q = pair
    for reduction in ("none", "batchmean", "sum"):
        kl = funcloss.kl_div(torch.log(q), p, reduction=reduction)
        x = torch.log(q) if log_input else q
        ours = funcloss.generalized_kl_div(x, p, log_input=log_input, reduction=reduction)
        if reduction == "none":  # elementwise the terms differ by mu - t, which sum to 0
            kl, ours = kl.sum(-1), ours.sum(-1)
        assert_close(ours, kl, reduction)
    assert_close(
        funcloss.generalized_kl_div(q, p, log_input=False), generalized_kl_oracle(q, p, False)
    )


# -- edges: zero probabilities -----------------------------------------------------------------


def _finite_derivatives(f, *args: torch.Tensor) -> None:
    """grad, jacfwd (= jacrev) and the Hessian blocks (forward-over-reverse and
    reverse-over-reverse) of the scalar ``f`` in each of ``args`` are finite."""
    positions = tuple(range(len(args)))
    reverse = jacrev(f, argnums=positions)(*args)
    forward = jacfwd(f, argnums=positions)(*args)
    gradient = grad(f, argnums=positions)(*args)
    h1 = hessian(f, argnums=positions)(*args)
    h2 = jacrev(jacrev(f, argnums=positions), argnums=positions)(*args)
    for i in positions:
        for value in (gradient[i], forward[i], reverse[i]):
            assert bool(value.isfinite().all()), (i, value)
        assert_close(forward[i], reverse[i], f"jacfwd vs jacrev, argument {i}")
        for j in positions:
            assert bool(h1[i][j].isfinite().all()), (i, j, h1[i][j])
            assert_close(h1[i][j], h2[i][j], f"hessian vs jacrev(jacrev), block {i}{j}")


# target 0, input 0, both 0 (and an ordinary entry) in each row
_P = [[0.0, 0.6, 0.0, 0.4], [0.5, 0.0, 0.0, 0.5]]
_Q = [[0.3, 0.0, 0.0, 0.7], [0.0, 0.5, 0.0, 0.5]]


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean"])
@pytest.mark.parametrize("log_input", [False, True])
def test_js_zero_probabilities(log_input: bool, reduction: str) -> None:
    p, q = _t(_P), _t(_Q)
    x = torch.log(q) if log_input else q  # log 0 = -inf: the input of a zero probability
    value = funcloss.js_div(x, p, log_input=log_input, reduction="none")
    # by hand: an entry with one side 0 adds (other / 2) log 2, both 0 add 0
    half_log_2 = 0.5 * math.log(2)
    want = _t([[0.3, 0.6, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]) * half_log_2
    want[0, 3] = js_oracle(_t(0.7), _t(0.4), reduction="none")
    want[1, 3] = 0.0
    assert_close(value, want)

    def f(x, p):
        return funcloss.js_div(x, p, log_input=log_input, reduction=reduction)

    _finite_derivatives(f, x, p)


def test_js_gradient_through_softmax_is_the_limit() -> None:
    """A softmax that underflows to 0 (a logit 800 below the others, float64): the logits'
    gradient of js_div(softmax(z)) equals that of the log-space call, whose terms are exact
    there (the true gradient of the underflowed class is e^-800 log(...) = 0)."""
    z = _t([[0.0, -800.0, 1.0], [2.0, 0.5, -800.0]])
    p = _t([[0.2, 0.3, 0.5], [0.0, 0.5, 0.5]])
    assert float(torch.softmax(z, -1)[0, 1]) == 0.0
    by_probs = grad(lambda z: funcloss.js_div(torch.softmax(z, -1), p))(z)
    by_logs = grad(lambda z: funcloss.js_div(torch.log_softmax(z, -1), p, log_input=True))(z)
    assert bool(by_probs.isfinite().all())
    assert_close(by_probs, by_logs)
    # and both match the naive float64 formula with the underflowed class at a tiny 1e-300
    zt = z.clone()
    zt[0, 1] = zt[1, 2] = -690.0
    naive = grad(lambda z: js_oracle(torch.softmax(z, -1), p.clamp_min(1e-300)))(zt)
    torch.testing.assert_close(by_probs, naive)


@pytest.mark.parametrize("reduction", ["batchmean", "sum"])
def test_generalized_kl_zero_targets(reduction: str) -> None:
    t = _t([[0.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
    rate = _t([[1.5, 0.5, 0.0], [0.0, 2.0, 3.0]])  # rate 0 only where the target is 0
    for log_input, x in ((False, rate), (True, torch.log(rate))):
        value = funcloss.generalized_kl_div(x, t, log_input=log_input, reduction="none")
        want = _t([[1.5, 2 * math.log(4) - 1.5, 0.0], [0.0, 1 + math.log(0.5), 0.0]])  # by hand
        assert_close(value, want, f"log_input={log_input}")

        def f(x, t, log_input=log_input):
            return funcloss.generalized_kl_div(x, t, log_input=log_input, reduction=reduction)

        _finite_derivatives(f, x, t)
        # at t = 0 the gradient in the input is exact: 1 (rates), e^x (log-rates)
        gradient = grad(f)(x, t)
        scale = 1.0 if reduction == "sum" else 0.5
        exact = torch.ones_like(x) if not log_input else torch.exp(x)
        assert_close(gradient[t == 0], (scale * exact)[t == 0])


def test_generalized_kl_is_inf_where_only_the_rate_is_0() -> None:
    """t > 0 against mu = 0: the divergence is infinite, so is the value; the log-input's
    gradient, e^x - t, stays finite."""
    t = _t([1.0, 0.5])
    x = _t([-math.inf, 0.0])
    assert funcloss.generalized_kl_div(x, t, reduction="none")[0] == math.inf
    assert funcloss.generalized_kl_div(x.exp(), t, log_input=False, reduction="none")[0] == math.inf
    assert_close(
        grad(lambda x: funcloss.generalized_kl_div(x, t, reduction="sum"))(x), _t([-1.0, 0.5])
    )


# -- dtypes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["js_div", "generalized_kl_div"])
@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum", "none"])
@pytest.mark.parametrize("log_input", [False, True])
def test_float32_tangents_keep_dtype(name: str, reduction: str, log_input: bool) -> None:
    # pytorch#90065: under jacfwd a 0-dim tensor times a Python float has a float64 tangent
    fn = getattr(funcloss, name)
    q = torch.softmax(torch.randn(3, 4), -1)
    x = torch.log(q) if log_input else q
    p = torch.softmax(torch.randn(3, 4), -1)
    mask = torch.tensor([[True], [False], [True]])
    for where in (None, mask):

        def f(x, p, where=where):
            return fn(x, p, log_input=log_input, reduction=reduction, where=where)

        assert f(x, p).dtype == torch.float32
        for forward in jacfwd(f, argnums=(0, 1))(x, p):
            assert forward.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computes_in_float32(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(4, 50, dtype=D), -1)
    q = torch.softmax(torch.randn(4, 50, dtype=D), -1)
    for name, oracle in (("js_div", js_oracle), ("generalized_kl_div", generalized_kl_oracle)):
        fn = getattr(funcloss, name)
        ours = fn(q.to(dtype), p.to(dtype), log_input=False)
        truth = oracle(q.to(dtype).double(), p.to(dtype).double(), log_input=False)
        assert ours.dtype == dtype
        torch.testing.assert_close(ours.double(), truth, rtol=torch.finfo(dtype).eps, atol=0)


# -- where -------------------------------------------------------------------------------------


def test_where_batchmean_as_kl_div() -> None:
    """ "batchmean" under a mask: the mean over included elements times the elements per row,
    as kl_div's."""
    torch.manual_seed(1)
    q = torch.log_softmax(torch.randn(3, 5, dtype=D), -1)
    p = torch.softmax(torch.randn(3, 5, dtype=D), -1)
    where = torch.rand(3, 5) > 0.4
    where[0, 0] = True
    loss = js_oracle(q, p, log_input=True, reduction="none")
    want = torch.where(where, loss, 0).sum() / where.sum() * 5
    assert_close(funcloss.js_div(q, p, log_input=True, where=where), want)
    g = generalized_kl_oracle(q, p, reduction="none")
    want = torch.where(where, g, 0).sum() / where.sum() * 5
    assert_close(funcloss.generalized_kl_div(q, p, where=where), want)
