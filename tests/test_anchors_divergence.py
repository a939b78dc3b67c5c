"""Cross-checks of the divergences against optax (JAX, float64), with the convention adapters,
and optax's defects measured here (optax #1786: NaN gradients at zero targets).

optax's divergences take ``(log_predictions, targets)`` and sum over ``axis=-1``: funcloss's
``(input, target)`` with log-space input, ``reduction="none"`` summed over the last dimension.
optax has no Jensen-Shannon divergence: the adapter builds Lin's JS from optax's
``kl_divergence``, ``KL(P || M) / 2 + KL(Q || M) / 2`` with ``log M = log((P + Q) / 2)``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad

import funcloss
from funcloss.testing import floats, logits, probabilities, shapes

from .anchors import anchor, jax64
from .helpers import assert_close


def _quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kwargs)


def _np(value) -> torch.Tensor:
    return torch.from_numpy(np.array(value, dtype=np.float64))


def _optax_js(jnp, optax, log_q, p):
    """Lin's JS from optax's kl_divergence(log_predictions, targets), summed over axis -1."""
    q = jnp.exp(log_q)
    log_m = jnp.log((p + q) / 2)
    kl = optax.losses.kl_divergence
    return 0.5 * kl(log_m, p) + 0.5 * kl(log_m, q)


@st.composite
def _distributions(draw: st.DrawFn):
    shape = draw(shapes(1, 3, max_side=5))
    dim = len(shape) - 1
    log_q = torch.log_softmax(draw(logits(shape)), dim)
    return log_q, draw(probabilities(shape, dim=dim))


@settings(max_examples=10, deadline=None)
@given(pair=_distributions())
def test_js_agrees_with_js_built_from_optax_kl(pair) -> None:
    jax = jax64()
    optax = anchor("optax")
    log_q, p = pair
    theirs = _quiet(_optax_js, jax.numpy, optax, log_q.numpy(), p.numpy())
    ours = funcloss.js_div(log_q, p, log_input=True, reduction="none").sum(-1)
    assert_close(ours, _np(theirs))
    ours = funcloss.js_div(log_q.exp(), p, reduction="none").sum(-1)
    assert_close(ours, _np(theirs))


@st.composite
def _measures(draw: st.DrawFn):
    shape = draw(shapes(1, 3, max_side=5))
    return draw(floats(shape, min_value=-3.0, max_value=2.0)), draw(
        floats(shape, min_value=0.05, max_value=5.0)
    )


@settings(max_examples=10, deadline=None)
@given(pair=_measures())
def test_generalized_kl_agrees_with_optax(pair) -> None:
    """optax 0.2.8 generalized_kl_divergence(log_predictions, targets) = funcloss's
    generalized_kl_div(input, target) (log_input=True), summed over the last dimension; its
    deprecated alias convex_kl_divergence is the same function."""
    jax = jax64()
    optax = anchor("optax")
    x, t = pair
    theirs = _np(_quiet(optax.losses.generalized_kl_divergence, x.numpy(), t.numpy()))
    assert_close(funcloss.generalized_kl_div(x, t, reduction="none").sum(-1), theirs)
    assert_close(
        funcloss.generalized_kl_div(x.exp(), t, log_input=False, reduction="none").sum(-1), theirs
    )
    alias = _np(_quiet(optax.losses.convex_kl_divergence, x.numpy(), t.numpy()))
    assert_close(alias, theirs)
    # the gradients agree too where optax's are finite (targets > 0)
    g_x, g_t = jax.grad(
        lambda x, t: optax.losses.generalized_kl_divergence(x, t).sum(), argnums=(0, 1)
    )(jax.numpy.asarray(x.numpy()), jax.numpy.asarray(t.numpy()))
    ours = grad(lambda x, t: funcloss.generalized_kl_div(x, t, reduction="sum"), argnums=(0, 1))
    g_ours = ours(x, t)
    assert_close(g_ours[0], _np(g_x))
    assert_close(g_ours[1], _np(g_t))


# -- optax #1786, measured ---------------------------------------------------------------------

# a log_softmax prediction, a target with zero classes (optax #1786's example)
_Z = [0.5, 1.0, 2.0, -1.0]
_T = [0.0, 0.4, 0.6, 0.0]


def test_optax_kl_gradient_is_nan_at_a_zero_target() -> None:
    """optax 0.2.8: kl_divergence guards the value with where(targets == 0, 0, log(targets)),
    but differentiates log on the untaken branch: the gradient in the targets is nan at each
    zero target (#1786, still open); generalized_kl_divergence calls it and inherits it, and so
    does JS built from it. funcloss's gradients are finite in both arguments."""
    jax = jax64()
    jnp = jax.numpy
    optax = anchor("optax")
    log_q = jax.nn.log_softmax(jnp.asarray(_Z))
    t = jnp.asarray(_T)
    for theirs in (optax.losses.kl_divergence, optax.losses.generalized_kl_divergence):
        g_t = np.asarray(jax.grad(theirs, argnums=1)(log_q, t))
        assert np.isnan(g_t[[0, 3]]).all() and np.isfinite(g_t[[1, 2]]).all(), g_t
    js_t = np.asarray(jax.grad(lambda p: _optax_js(jnp, optax, log_q, p))(t))
    assert np.isnan(js_t[[0, 3]]).all(), js_t

    x = torch.log_softmax(torch.tensor(_Z, dtype=torch.float64), -1)
    p = torch.tensor(_T, dtype=torch.float64)
    for ours in (
        funcloss.generalized_kl_div,
        lambda x, p, **kw: funcloss.js_div(x, p, log_input=True, **kw),
    ):
        g_x, g_p = grad(lambda x, p, f=ours: f(x, p, reduction="sum"), argnums=(0, 1))(x, p)
        assert bool(g_x.isfinite().all()) and bool(g_p.isfinite().all()), (g_x, g_p)
    # the value agrees with optax's, which is finite there
    theirs = float(optax.losses.generalized_kl_divergence(log_q, t))
    assert math.isclose(float(funcloss.generalized_kl_div(x, p, reduction="sum")), theirs)


def test_optax_kl_value_is_nan_at_a_masked_logit() -> None:
    """A zero target at a log-prediction of -inf (a masked logit under log_softmax): optax's
    guarded term is 0 * (0 - (-inf)) = nan (#1786's second case); funcloss's is 0."""
    jax = jax64()
    jnp = jax.numpy
    optax = anchor("optax")
    log_q = jnp.asarray([-math.inf, math.log(0.5), math.log(0.5)])
    t = jnp.asarray([0.0, 0.25, 0.75])
    assert np.isnan(float(optax.losses.generalized_kl_divergence(log_q, t)))
    x, p = _np(log_q), _np(t)
    value = funcloss.generalized_kl_div(x, p, reduction="sum")
    want = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)  # by hand: the rates sum to t's sum
    assert math.isclose(float(value), want)
    assert bool(
        grad(lambda x: funcloss.generalized_kl_div(x, p, reduction="sum"))(x).isfinite().all()
    )


@pytest.mark.parametrize("name", ["js_div", "generalized_kl_div"])
def test_float32_agrees_with_float64_optax(name: str) -> None:
    """float32 funcloss against optax in float64 at C = 1000 (rounding only)."""
    jax = jax64()
    optax = anchor("optax")
    torch.manual_seed(0)
    log_q = torch.log_softmax(torch.randn(8, 1000, dtype=torch.float64) * 3, -1)
    p = torch.softmax(torch.randn(8, 1000, dtype=torch.float64) * 3, -1)
    if name == "js_div":
        truth = _np(_quiet(_optax_js, jax.numpy, optax, log_q.numpy(), p.numpy()))
    else:
        truth = _np(_quiet(optax.losses.generalized_kl_divergence, log_q.numpy(), p.numpy()))
    ours = getattr(funcloss, name)(log_q.float(), p.float(), log_input=True, reduction="none")
    torch.testing.assert_close(ours.sum(-1).double(), truth, rtol=1e-5, atol=1e-6)


def test_naive_torch_js_gradient_is_nan_where_a_probability_is_0() -> None:
    """The composition people write in torch, 0.5 (xlogy(p, p / m) + xlogy(q, q / m)) (the
    benchmark's contender): torch.xlogy's gradient is nan at x = 0 (0 / 0), in both arguments at
    every entry where either probability is 0; funcloss's is finite there."""
    q = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)

    def naive(q, p):
        m = (p + q) / 2
        return (0.5 * (torch.xlogy(p, p / m) + torch.xlogy(q, q / m))).sum()

    for g in grad(naive, argnums=(0, 1))(q, p):
        assert bool(g[[0, 2]].isnan().all()) and bool(g[1].isfinite()), g
    ours = grad(lambda q, p: funcloss.js_div(q, p, reduction="sum"), argnums=(0, 1))(q, p)
    assert all(bool(g.isfinite().all()) for g in ours), ours
    assert_close(funcloss.js_div(q, p, reduction="sum"), naive(q, p))
