"""Cross-checks of the robust regression losses against their anchors (kornia in torch, optax
in JAX float64), with the convention adapters, and the anchors' defects measured here."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import funcloss
from funcloss.testing import floats, shapes

from .anchors import anchor, jax64
from .helpers import assert_close
from .specs_robust import kornia_adapter

KORNIA_NAMED = ["charbonnier_loss", "cauchy_loss", "geman_mcclure_loss", "welsch_loss"]


def _quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kwargs)


@st.composite
def _pairs(draw: st.DrawFn):
    shape = draw(shapes(1, 3, max_side=5))
    return draw(floats(shape, min_value=-8, max_value=8)), draw(floats(shape))


# -- kornia: charbonnier, cauchy, geman_mcclure, welsch ----------------------------------------


@pytest.mark.parametrize("name", KORNIA_NAMED)
@settings(max_examples=10)
@given(pair=_pairs(), reduction=st.sampled_from(["none", "mean", "sum"]))
def test_kornia_named_losses_agree(name: str, pair, reduction: str) -> None:
    """kornia 0.9: Barron at c = 1 on the residual, default reduction "none"; a scale c is the
    residual divided by c (the adapter)."""
    losses = anchor("kornia").losses
    x, y = pair
    ours = getattr(funcloss, name)(x, y, reduction=reduction)
    assert_close(ours, _quiet(getattr(losses, name), x, y, reduction=reduction))
    theirs_scaled = _quiet(kornia_adapter(name), x, y, 2.5, reduction)
    assert_close(getattr(funcloss, name)(x, y, 2.5, reduction), theirs_scaled)
    # kornia's default reduction is "none", funcloss's "mean"
    assert_close(
        getattr(funcloss, name)(x, y, reduction="none"), _quiet(getattr(losses, name), x, y)
    )


def test_kornia_named_losses_in_float32() -> None:
    losses = anchor("kornia").losses
    x, y = torch.randn(64, 10) * 3, torch.randn(64, 10)
    for name in KORNIA_NAMED:
        ours = getattr(funcloss, name)(x, y, reduction="none")
        theirs = _quiet(getattr(losses, name), x, y)
        torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=1e-7)


def test_kornia_overflows_at_large_residuals_in_float32() -> None:
    """kornia squares the residual: from |r| = 2e19 (float32) its Charbonnier and Cauchy are
    inf, Geman-McClure nan, and at 3e38 every gradient is nan; funcloss's values are the
    float64 truth and its gradients finite."""
    losses = anchor("kornia").losses
    r = torch.tensor([1e20, 3e38])
    truth = {  # float64, by the formulas
        "charbonnier_loss": [1e20, 3e38],
        "cauchy_loss": [math.log(0.5e40), math.log(0.5 * 9e76)],
        "geman_mcclure_loss": [2.0, 2.0],
        "welsch_loss": [1.0, 1.0],
    }
    broken = {
        "charbonnier_loss": "inf",
        "cauchy_loss": "inf",
        "geman_mcclure_loss": "nan",
        "welsch_loss": None,
    }
    for name in KORNIA_NAMED:
        x = r.clone().requires_grad_()
        theirs = _quiet(getattr(losses, name), x, torch.zeros(2))
        (their_grad,) = torch.autograd.grad(theirs.sum(), x)
        if broken[name] == "inf":
            assert bool((theirs == math.inf).all()), theirs
        elif broken[name] == "nan":
            assert bool(theirs.isnan().all()), theirs
        assert bool(their_grad[1].isnan()), their_grad
        x = r.clone().requires_grad_()
        ours = getattr(funcloss, name)(x, torch.zeros(2), reduction="none")
        (our_grad,) = torch.autograd.grad(ours.sum(), x)
        assert torch.allclose(ours.double(), torch.tensor(truth[name], dtype=torch.float64))
        assert bool(our_grad.isfinite().all()), our_grad


# -- log-cosh: optax (JAX, float64) and the naive torch composition ----------------------------


@settings(max_examples=10)
@given(pair=_pairs())
def test_optax_log_cosh_agrees(pair) -> None:
    jax = jax64()
    optax = anchor("optax")
    x, y = pair
    theirs = _quiet(optax.losses.log_cosh, jax.numpy.asarray(x.numpy()), y.numpy())
    ours = funcloss.log_cosh_loss(x, y, reduction="none")
    assert_close(ours, torch.tensor(np.asarray(theirs)))


def test_optax_log_cosh_loses_tiny_residuals_in_float32() -> None:
    """optax computes logaddexp(r, -r) - log 2: at r = 1e-4 (float32) it returns 0 and at 1e-3
    it is 7% off; funcloss is within 2 ulp."""
    anchor("jax")
    optax = anchor("optax")
    import jax.numpy as jnp

    r = [1e-4, 1e-3]
    rounded = torch.tensor(r).double().tolist()  # the float32 inputs, exactly
    truth = torch.tensor([math.log(math.cosh(v)) for v in rounded], dtype=torch.float64)
    theirs = np.asarray(_quiet(optax.losses.log_cosh, jnp.asarray(r, dtype=jnp.float32)))
    assert theirs[0] == 0.0
    assert abs(theirs[1] / float(truth[1]) - 1) > 0.05
    ours = funcloss.log_cosh_loss(torch.tensor(r), torch.zeros(2), reduction="none")
    assert torch.allclose(ours.double(), truth, rtol=2.5e-7, atol=0)


@pytest.mark.parametrize(("dtype", "residual"), [(torch.float32, 700.0), (torch.float16, 12.0)])
def test_naive_log_cosh_overflows(dtype: torch.dtype, residual: float) -> None:
    """log(cosh(r)) in torch (torchmetrics #3488's formula) is inf from |r| = 89 in float32 and
    12 in float16, with a nan gradient; funcloss is |r| - log 2 with gradient 1."""
    x = torch.tensor([residual], dtype=dtype, requires_grad=True)
    theirs = torch.log(torch.cosh(x))
    (their_grad,) = torch.autograd.grad(theirs.sum(), x)
    assert bool(theirs.isinf().all()) and bool(their_grad.isnan().all())
    x = torch.tensor([residual], dtype=dtype, requires_grad=True)
    ours = funcloss.log_cosh_loss(x, torch.zeros(1, dtype=dtype), reduction="sum")
    (our_grad,) = torch.autograd.grad(ours, x)
    assert (
        abs(float(ours.detach()) - (residual - math.log(2)))
        <= 4 * torch.finfo(dtype).eps * residual
    )
    assert float(our_grad) == 1.0


# -- quantile: scikit-learn's mean_pinball_loss -------------------------------------------------


@settings(max_examples=10)
@given(pair=_pairs(), quantile=st.floats(0.01, 0.99))
def test_sklearn_mean_pinball_loss_agrees(pair, quantile: float) -> None:
    """sklearn.metrics.mean_pinball_loss(y_true, y_pred, alpha=q): funcloss's (input=y_pred,
    target=y_true, q) with "mean"; sklearn averages per output column first (the same mean)."""
    metrics = anchor("sklearn.metrics")
    x, y = pair
    x2, y2 = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    theirs = _quiet(metrics.mean_pinball_loss, y2.numpy(), x2.numpy(), alpha=quantile)
    assert_close(funcloss.quantile_loss(x, y, quantile), torch.tensor(theirs, dtype=x.dtype))


# -- cosine distance: optax (JAX, float64) ------------------------------------------------------


@settings(max_examples=10)
@given(pair=_pairs(), eps=st.sampled_from([1e-8, 1e-3]))
def test_optax_cosine_distance_agrees(pair, eps: float) -> None:
    """optax.losses.cosine_distance clamps the squared norms: its epsilon is eps**2."""
    jax = jax64()
    optax = anchor("optax")
    x, y = pair
    jnp = jax.numpy
    theirs = _quiet(
        optax.losses.cosine_distance,
        jnp.asarray(x.numpy()),
        jnp.asarray(y.numpy()),
        epsilon=eps**2,
    )
    ours = funcloss.cosine_distance_loss(x, y, eps=eps, reduction="none")
    assert_close(ours, torch.tensor(np.asarray(theirs)))


def test_optax_cosine_distance_is_nan_at_a_zero_vector() -> None:
    """optax's default epsilon=0: a zero prediction gives nan, value and gradient; funcloss's
    default eps gives 1 and a finite gradient."""
    jax = jax64()
    optax = anchor("optax")
    jnp = jax.numpy
    y = jnp.ones((1, 3))
    value = _quiet(optax.losses.cosine_distance, jnp.zeros((1, 3)), y)
    gradient = _quiet(
        jax.grad(lambda p: optax.losses.cosine_distance(p, y).sum()), jnp.zeros((1, 3))
    )
    assert bool(np.isnan(np.asarray(value)).all()) and bool(np.isnan(np.asarray(gradient)).all())
    x = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    ours = funcloss.cosine_distance_loss(x, torch.ones(1, 3, dtype=torch.float64))
    (g,) = torch.autograd.grad(ours, x)
    assert float(ours.detach()) == 1.0 and bool(g.isfinite().all())
