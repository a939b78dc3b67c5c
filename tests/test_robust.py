"""Robust regression losses: edge inputs, Barron's limits, identities, gradients in alpha and
scale. Truths are float64 formulas written here (or Barron's limits and their series)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss

from .helpers import assert_close
from .specs_robust import barron_rho

NAMED = {
    "charbonnier_loss": 1.0,
    "cauchy_loss": 0.0,
    "geman_mcclure_loss": -2.0,
    "welsch_loss": -math.inf,
}


def _t(values, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def _finite_derivatives(f, x: torch.Tensor) -> None:
    """grad, jacfwd (= jacrev) and hessian (forward-over-reverse and reverse-over-reverse) of
    the scalar ``f`` at ``x`` are finite."""
    g = grad(f)(x)
    forward, reverse = jacfwd(f)(x), jacrev(f)(x)
    h1, h2 = hessian(f)(x), jacrev(jacrev(f))(x)
    for value in (g, forward, h1, h2):
        assert bool(value.isfinite().all()), value
    assert_close(forward, reverse, "jacfwd vs jacrev")
    assert_close(h1, h2, "hessian vs jacrev(jacrev)")


# -- log_cosh_loss ------------------------------------------------------------------------------


def test_log_cosh_golden_and_tiny_residuals() -> None:
    r = [0.0, 1e-4, 0.5, -2.0, 30.0]
    want = _t([math.log(math.cosh(v)) for v in r])  # by hand (math.cosh, float64)
    assert_close(funcloss.log_cosh_loss(_t(r), _t([0.0] * 5), reduction="none"), want)
    # float32: relative accuracy at a tiny residual (log(cosh(1e-4)) in float32 is 0)
    ours = funcloss.log_cosh_loss(_t(r, torch.float32), torch.zeros(5), reduction="none")
    assert torch.allclose(ours.double(), want, rtol=3e-7, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("residual", [100.0, 700.0, -700.0, 3e4])
def test_log_cosh_does_not_overflow(dtype: torch.dtype, residual: float) -> None:
    x = torch.tensor([residual], dtype=dtype)
    value = funcloss.log_cosh_loss(x, torch.zeros(1, dtype=dtype), reduction="none")
    truth = abs(float(x)) - math.log(2)  # exact here: the rest is below 1e-80
    assert value.dtype == dtype
    assert abs(float(value) - truth) <= 4 * torch.finfo(dtype).eps * truth

    def f(x):
        return funcloss.log_cosh_loss(x, torch.zeros_like(x), reduction="sum")

    x32 = x.float()
    assert_close(grad(f)(x32), torch.sign(x32))
    _finite_derivatives(f, x32)
    assert float(hessian(f)(x32)) == 0.0


def test_log_cosh_derivatives_at_zero_are_the_true_ones() -> None:
    def f(x):
        return funcloss.log_cosh_loss(x, torch.zeros_like(x), reduction="sum")

    for dtype in (torch.float64, torch.float32):
        x = torch.zeros(3, dtype=dtype)
        assert_close(grad(f)(x), torch.zeros(3, dtype=dtype))  # tanh(0)
        assert_close(jacfwd(f)(x), torch.zeros(3, dtype=dtype))
        assert_close(hessian(f)(x), torch.eye(3, dtype=dtype))  # 1 - tanh(0)^2
        assert_close(jacrev(jacrev(f))(x), torch.eye(3, dtype=dtype))
        # (jacfwd(jacfwd) through a custom jvp is zeros: pytorch#197867, docs/design.md §3)


def test_log_cosh_gradient_is_tanh_for_both_arguments() -> None:
    x, y = _t([0.3, -4.0, 50.0]), _t([1.0, 2.0, -1.0])
    gx, gy = torch.func.grad(
        lambda a, b: funcloss.log_cosh_loss(a, b, reduction="sum"), argnums=(0, 1)
    )(x, y)
    assert_close(gx, torch.tanh(x - y))
    assert_close(gy, -torch.tanh(x - y))


def test_log_cosh_broadcast_target_matches_the_expanded_one() -> None:
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64)
    for reduction in ("none", "sum"):
        assert_close(
            funcloss.log_cosh_loss(x, y, reduction),
            funcloss.log_cosh_loss(x, y.expand(4, 3).clone(), reduction),
        )


# -- jacfwd keeps float32 (0-dim and per-sample) -----------------------------------------------

FLOAT32_CALLS = [
    ("log_cosh_loss", ()),
    ("general_robust_loss", (0.5,)),
    ("general_robust_loss", (torch.tensor(0.5),)),
    ("charbonnier_loss", (2.0,)),
    ("cauchy_loss", (2.0,)),
    ("geman_mcclure_loss", (2.0,)),
    ("welsch_loss", (2.0,)),
]


@pytest.mark.parametrize(("name", "extra"), FLOAT32_CALLS, ids=[c[0] for c in FLOAT32_CALLS])
def test_forward_mode_keeps_float32(name: str, extra: tuple) -> None:
    fn = getattr(funcloss, name)

    def f(x):
        return fn(x, torch.zeros_like(x), *extra, reduction="sum")

    x = torch.tensor(0.7)
    assert jacfwd(f)(x).dtype == torch.float32
    assert hessian(f)(x).dtype == torch.float32
    assert vmap(jacfwd(f))(torch.rand(3)).dtype == torch.float32


# -- Barron's general loss ----------------------------------------------------------------------

X = _t([0.0, 0.3, -1.0, 2.5, 10.0, -40.0])


def _limit(alpha: float, z: torch.Tensor) -> torch.Tensor:
    """Barron's limits (eq. 3), in float64."""
    if alpha == 2:
        return z / 2
    if alpha == 0:
        return torch.log1p(z / 2)
    return -torch.expm1(-z / 2)


def _near_zero(alpha: float, z: torch.Tensor) -> torch.Tensor:
    """rho at a small alpha to second order, from rho = b ell exprel(alpha ell), b = 2 - alpha,
    ell = log1p(z / b) / 2 (hand-derived): rho(0) + alpha rho'(0) + O(alpha^2 z)."""
    ell = torch.log1p(z / 2) / 2
    derivative = -ell + z / (2 * (2 + z)) + ell * ell
    return 2 * ell + alpha * derivative


@pytest.mark.parametrize("alpha", [2.0, 0.0, -math.inf])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["number", "tensor"])
def test_general_limits_are_exact(alpha: float, as_tensor: bool) -> None:
    a = torch.tensor(alpha, dtype=torch.float64) if as_tensor else alpha
    for scale in (1.0, 0.5):
        ours = funcloss.general_robust_loss(X, torch.zeros(6), a, scale, reduction="none")
        assert_close(ours, _limit(alpha, (X / scale) ** 2))


@pytest.mark.parametrize("as_tensor", [False, True], ids=["number", "tensor"])
def test_general_near_alpha_zero(as_tensor: bool) -> None:
    for alpha in (1e-7, -1e-7, 1e-5):
        a = torch.tensor(alpha, dtype=torch.float64) if as_tensor else alpha
        ours = funcloss.general_robust_loss(X, torch.zeros(6), a, reduction="none")
        assert_close(ours, _near_zero(alpha, X**2), rtol=1e-9)
        # float32: within a few ulp of the float64 truth
        a32 = torch.tensor(alpha) if as_tensor else alpha
        ours32 = funcloss.general_robust_loss(X.float(), torch.zeros(6), a32, reduction="none")
        truth = _near_zero(alpha, X**2)
        assert torch.allclose(ours32.double(), truth, rtol=1e-6, atol=0)


@pytest.mark.parametrize("as_tensor", [False, True], ids=["number", "tensor"])
def test_general_near_alpha_two(as_tensor: bool) -> None:
    for alpha in (2 - 1e-7, 2 + 1e-7, 2 - 1e-4):
        a = torch.tensor(alpha, dtype=torch.float64) if as_tensor else alpha
        ours = funcloss.general_robust_loss(X, torch.zeros(6), a, reduction="none")
        # the naive float64 formula is accurate here: (z/b + 1)^(alpha/2) ~ 1e8 z, then - 1
        assert_close(ours, barron_rho(X, alpha), rtol=1e-8)
        if abs(alpha - 2) < 1e-6:  # and close to the L2 limit: (z eps / 4) log(z / eps) off
            assert_close(ours, X**2 / 2, rtol=1e-5)
    # float32 resolves 2 - 1.2e-7 (the float below 2). There rho = (b / alpha) exp(alpha ell)
    # with alpha ell ~ 20, which turns ell's rounding (eps ell) into a relative error of
    # ~eps alpha ell: 30 ulp is the conditioning, not the formula
    alpha32 = float(torch.tensor(2.0).nextafter(torch.tensor(0.0)))
    a32 = torch.tensor(alpha32) if as_tensor else alpha32
    x32 = X.float()
    ours32 = funcloss.general_robust_loss(x32, torch.zeros(6), a32, reduction="none")
    truth = barron_rho(x32.double(), alpha32)
    assert torch.allclose(ours32.double(), truth, rtol=30 * 2**-23, atol=1e-30)


def test_general_alpha_derivative_at_zero_is_exact() -> None:
    """d rho / d alpha at alpha = 0 (tensor alpha): the series' derivative, equal to the
    hand-derived -ell + z / (2 (2 + z)) + ell^2; finite at 2 and -inf."""
    z = X**2
    ell = torch.log1p(z / 2) / 2
    want = -ell + z / (2 * (2 + z)) + ell * ell

    def rho(alpha):
        return funcloss.general_robust_loss(X, torch.zeros(6), alpha, reduction="none")

    assert_close(jacrev(rho)(torch.tensor(0.0, dtype=torch.float64)), want)
    assert_close(jacfwd(rho)(torch.tensor(0.0, dtype=torch.float64)), want)
    # and by finite differences of the float64 values just off 0 (second order)
    h = 1e-5
    fd = rho(torch.tensor(h, dtype=torch.float64)) - rho(torch.tensor(-h, dtype=torch.float64))
    assert_close(fd / (2 * h), want, rtol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 2.0, -math.inf, 1e-7, 2 - 1e-7, 1.0, -2.0, 4.0])
def test_general_every_derivative_finite(alpha: float) -> None:
    """In input, alpha and scale (all tensors), first and second order, forward and reverse."""
    y = torch.zeros(6, dtype=torch.float64)

    def f(v):  # v = (input..., alpha, scale)
        return funcloss.general_robust_loss(v[:6], y, v[6], v[7], reduction="sum")

    v = torch.cat([X, _t([alpha, 1.5])])
    _finite_derivatives(f, v)


def test_general_gradients_in_alpha_and_scale_match_the_formula() -> None:
    x, y = _t([0.3, -1.0, 2.5]), _t([0.0, 0.5, 1.0])
    for alpha in (1.3, -0.7, 3.0):
        a, c = _t(alpha).requires_grad_(), _t(1.7).requires_grad_()
        ours = torch.autograd.grad(
            funcloss.general_robust_loss(x, y, a, c, reduction="sum"), (a, c)
        )
        a2, c2 = _t(alpha).requires_grad_(), _t(1.7).requires_grad_()
        want = torch.autograd.grad(barron_rho(x - y, a2, c2).sum(), (a2, c2))
        assert_close(ours, want)


def test_general_per_channel_alpha_and_scale() -> None:
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    alpha, scale = _t([1.5, -0.5, 3.0]), _t([0.5, 1.0, 2.0])
    ours = funcloss.general_robust_loss(x, y, alpha, scale, reduction="none")
    assert_close(ours, barron_rho(x - y, alpha, scale))
    assert ours.shape == (5, 3)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.0, -2.0, 1.5, 4.0])
def test_general_huge_residuals_in_float32(alpha: float) -> None:
    """(x/c)^2 overflows float32 from 2e19; the loss does not where its value fits (for
    1 < alpha < 2, (x^2 / b)^(alpha / 2) overflows within a factor alpha / b of the range)."""
    x = torch.tensor([1e20, -3e38])
    ours = funcloss.general_robust_loss(x, torch.zeros(2), alpha, reduction="none")
    truth = torch.log1p(x.double() ** 2 / 2) if alpha == 0 else barron_rho(x.double(), alpha)
    fits = truth < torch.finfo(torch.float32).max
    assert torch.allclose(ours.double()[fits], truth[fits], rtol=1e-5)
    assert bool((ours[~fits] == math.inf).all())


@pytest.mark.parametrize("name", list(NAMED))
@pytest.mark.parametrize("as_tensor", [False, True], ids=["number", "tensor"])
def test_named_losses_are_barron_at_their_alpha(name: str, as_tensor: bool) -> None:
    alpha = NAMED[name]
    a = torch.tensor(alpha, dtype=torch.float64) if as_tensor else alpha
    x, y = torch.randn(4, 3, dtype=torch.float64) * 3, torch.randn(4, 3, dtype=torch.float64)
    for scale in (1.0, 0.3, _t([0.5, 1.0, 2.0])):
        named = getattr(funcloss, name)(x, y, scale, reduction="none")
        assert_close(named, funcloss.general_robust_loss(x, y, a, scale, reduction="none"))


@pytest.mark.parametrize("name", list(NAMED))
def test_named_losses_at_zero_and_huge(name: str) -> None:
    fn = getattr(funcloss, name)

    def f(x):
        return fn(x, torch.zeros_like(x), 0.8, reduction="sum")

    x = torch.tensor([0.0, 1e20, -3e38])
    value = fn(x, torch.zeros(3), reduction="none")
    assert bool(value.isfinite().all()), value
    _finite_derivatives(f, x)
    assert_close(hessian(f)(torch.zeros(1)), torch.full((1, 1), 1 / 0.8**2))  # rho''(0) = 1/c^2


def test_scale_gradient_and_buffer_module() -> None:
    x, y = _t([0.3, -1.0, 2.5]), _t([0.0, 0.5, 1.0])
    c = _t(1.7).requires_grad_()
    module = funcloss.nn.CauchyLoss(scale=c)
    assert "scale" in dict(module.named_buffers())
    (ours,) = torch.autograd.grad(module(x, y), c)
    c2 = _t(1.7).requires_grad_()
    (want,) = torch.autograd.grad(torch.log1p(((x - y) / c2) ** 2 / 2).mean(), c2)
    assert_close(ours, want)
    assert funcloss.nn.CauchyLoss(scale=2.0).scale == 2.0  # a number stays an attribute


# -- quantile_loss ------------------------------------------------------------------------------


def test_quantile_golden_and_kink_subgradient() -> None:
    x, y = _t([0.0, 3.0, 1.0]), _t([1.0, 1.0, 1.0])
    # by hand: q (y - x) = 0.9; (q - 1)(y - x) = 0.2; 0 at the kink
    assert_close(funcloss.quantile_loss(x, y, 0.9, reduction="none"), _t([0.9, 0.2, 0.0]))
    g = grad(lambda v: funcloss.quantile_loss(v, y, 0.9, reduction="sum"))(x)
    assert_close(g, _t([-0.9, 0.1, -0.9]))  # -q where y >= x (the kink too), 1 - q elsewhere
    assert_close(funcloss.quantile_loss(x, y), funcloss.l1_loss(x, y) / 2)  # q = 1/2


def test_several_quantiles_broadcast() -> None:
    x, y = torch.randn(5, 1, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    q = _t([0.1, 0.5, 0.9])
    ours = funcloss.quantile_loss(x, y, q, reduction="none")
    assert ours.shape == (5, 3)
    for k in range(3):
        assert_close(ours[:, k : k + 1], funcloss.quantile_loss(x, y, float(q[k]), "none"))
    # and gradients w.r.t. each prediction column under vmap over quantiles
    per_quantile = vmap(lambda qk: funcloss.quantile_loss(x, y, qk))(q)
    assert_close(per_quantile, ours.mean(0))


def test_quantile_loss_float32_forward_mode() -> None:
    def f(x):
        return funcloss.quantile_loss(x, torch.zeros_like(x), 0.3, reduction="sum")

    assert jacfwd(f)(torch.tensor(0.7)).dtype == torch.float32
    assert vmap(jacfwd(f))(torch.rand(3)).dtype == torch.float32


# -- cosine_distance_loss -----------------------------------------------------------------------


def test_cosine_distance_golden_and_zero_vectors() -> None:
    x = _t([[1.0, 0.0], [0.0, 0.0], [-2.0, 0.0]])
    y = _t([[1.0, 1.0]])
    # by hand: 1 - 1/sqrt(2); a zero vector: 1; opposite-ish: 1 + 1/sqrt(2)
    want = _t([1 - 0.5**0.5, 1.0, 1 + 0.5**0.5])
    assert_close(funcloss.cosine_distance_loss(x, y, reduction="none"), want)

    def f(x, y):
        return funcloss.cosine_distance_loss(x, y, eps=1e-3, reduction="sum")

    zero = torch.zeros(2, 3, dtype=torch.float64)
    for args in ((zero, torch.ones(2, 3, dtype=torch.float64)), (zero, zero)):
        for position in (0, 1):
            g = grad(f, argnums=position)(*args)
            forward = jacfwd(f, argnums=position)(*args)
            h = hessian(f, argnums=position)(*args)
            assert bool(g.isfinite().all()) and bool(h.isfinite().all())
            assert_close(forward, g)
    # the eps-regularised derivative at a zero vector: -unit(y) / eps
    g = grad(f)(zero, torch.ones(2, 3, dtype=torch.float64))
    assert_close(g, torch.full((2, 3), -(3**-0.5) / 1e-3, dtype=torch.float64))


def test_cosine_distance_dim_and_mask() -> None:
    x, y = torch.randn(3, 4, 2, dtype=torch.float64), torch.randn(3, 4, 2, dtype=torch.float64)
    ours = funcloss.cosine_distance_loss(x, y, dim=1, reduction="none")
    assert_close(ours, 1 - torch.nn.functional.cosine_similarity(x, y, dim=1))
    where = torch.tensor([[True, False], [False, False], [True, True]])
    poisoned = torch.where(where.unsqueeze(1), x, torch.nan)
    masked = funcloss.cosine_distance_loss(poisoned, y, 1, where=where)
    assert_close(masked, ours[where].mean())


# -- the eager fast path (a custom_backward Function) against the composition -------------------
#
# A mask of all True takes the composition (the exact forms with double ``where``, autodiffed);
# without it an equal-shape call takes the Function's in-place eager forms. They must agree, in
# value and in the gradient of both arguments, on ordinary and edge residuals: in float32 with
# the composition in float64 (its float32 gradient of Welsch loses exp(-u^2 / 2) below float32's
# eps to ``expm1``'s backward, 1 + expm1; the fast form has it), and where the float64 truth is
# beyond float32's range the fast value is an infinity of its sign.

EDGE_RESIDUALS = [0.0, -0.0, 1e-30, -3e-5, 0.3, -1.0, 2.5, -40.0, 1e3, 1e20, -3e38, math.inf]
FAST_CALLS = [
    ("log_cosh_loss", ()),
    ("charbonnier_loss", (1.0,)),
    ("charbonnier_loss", (0.3,)),
    ("cauchy_loss", (1.0,)),
    ("cauchy_loss", (0.5,)),  # k = c sqrt 2 < 1: (r / k)^2 overflows at 3e38, the log does not
    ("geman_mcclure_loss", (1.0,)),
    ("geman_mcclure_loss", (2.5,)),
    ("welsch_loss", (0.7,)),
    ("general_robust_loss", (1.5,)),
    ("general_robust_loss", (1.5, 0.5)),
    ("general_robust_loss", (-0.01,)),  # bounded, and (r / k)^2 overflows: the exact form
    ("general_robust_loss", (4.0, 2.0)),
    ("general_robust_loss", (-6.0,)),
    ("general_robust_loss", (0.5, 3.0)),
    ("general_robust_loss", (2.0, 0.5)),
    ("general_robust_loss", (1e-7,)),
]


def _value_and_grads(fn, x, y, extra, reduction, where):
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    value = fn(x, y, *extra, reduction=reduction, where=where)
    gx, gy = torch.autograd.grad(value.sum(), (x, y))
    return value.detach(), gx, gy


def _agree(ours: torch.Tensor, truth: torch.Tensor, what: str) -> None:
    # the composition's gradient at an infinite residual is nan for alpha > 0 (0 * inf): the
    # fast path's limits there are test_fast_path_gradient_limits_at_infinity's
    truth = torch.where(truth.isnan() & ~ours.isnan(), ours.double(), truth)
    fits = truth.abs() <= torch.finfo(ours.dtype).max
    rtol = 1e-6 if ours.dtype == torch.float64 else 1e-5
    assert_close(ours[fits].double(), truth[fits], what, rtol=rtol)
    beyond = ours[~fits]
    assert bool((beyond.isinf() & (beyond.sign() == truth[~fits].sign())).all()), (what, ours)


@pytest.mark.parametrize(("name", "extra"), FAST_CALLS, ids=[f"{c[0]}{c[1]}" for c in FAST_CALLS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_path_equals_the_composition(name: str, extra: tuple, dtype: torch.dtype) -> None:
    fn = getattr(funcloss, name)
    r = _t(EDGE_RESIDUALS, dtype)
    noise = torch.randn(8, dtype=dtype) * 3
    x = torch.cat([r, -r, noise + torch.randn(8, dtype=dtype)])
    y = torch.cat([torch.zeros(2 * len(r), dtype=dtype), noise])
    for reduction in ("none", "mean", "sum"):
        if reduction != "none":  # no sums of values near float32's max (they may overflow)
            x, y = x[x.abs() < 1e4], y[x.abs() < 1e4]
        everything = torch.ones_like(x, dtype=torch.bool)
        fast = _value_and_grads(fn, x, y, extra, reduction, None)
        exact = _value_and_grads(fn, x.double(), y.double(), extra, reduction, everything)
        for ours, truth, what in zip(fast, exact, ("value", "grad x", "grad y"), strict=True):
            _agree(ours, truth, f"{name}{extra} {reduction} {what}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_path_gradient_limits_at_infinity(dtype: torch.dtype) -> None:
    """d rho / dr at r = +-inf, the limit of r / c^2 (r^2 / (c^2 |alpha - 2|) + 1)^(alpha / 2 - 1)
    (by hand): 0 for alpha < 1, 1 / c at alpha = 1, inf above; the finite ones under jacfwd too."""
    x = torch.tensor([math.inf, -math.inf], dtype=dtype)
    for alpha, c, limit in [
        (0.5, 1.0, 0.0),
        (-2.0, 1.0, 0.0),
        (0.99, 2.0, 0.0),
        (1.0, 2.0, 0.5),
        (1.5, 1.0, math.inf),
        (1.5, 0.5, math.inf),
        (4.0, 1.0, math.inf),
    ]:

        def f(v, alpha=alpha, c=c):
            return funcloss.general_robust_loss(v, torch.zeros_like(v), alpha, c, reduction="sum")

        leaf = x.clone().requires_grad_()
        (eager,) = torch.autograd.grad(f(leaf), leaf)
        want = torch.tensor([limit, -limit], dtype=dtype)
        assert_close(eager, want, f"alpha {alpha}")
        if math.isfinite(limit):  # (an infinite slope times the other basis tangent's 0: nan)
            assert_close(jacfwd(f)(x), want, f"jacfwd, alpha {alpha}")


def test_fast_path_overflow_falls_back_to_the_exact_log() -> None:
    """cauchy at c = 0.5 and Barron at alpha = -0.01: (r / k)^2 overflows float32 at 3e38
    (k < 1) where the loss, a log, fits: the float64 truth."""
    x = torch.tensor([3e38, 1.0])
    truth = torch.log1p((x.double() / 0.5) ** 2 / 2)
    assert_close(
        funcloss.cauchy_loss(x, torch.zeros(2), 0.5, reduction="none").double(), truth, rtol=1e-6
    )
    ours = funcloss.general_robust_loss(x, torch.zeros(2), -0.01, reduction="none")
    assert_close(ours.double(), barron_rho(x.double(), -0.01), rtol=1e-6)


def test_cosine_distance_fast_path_equals_the_composition() -> None:
    """Eager, equal shapes: three reads and a closed-form backward (float32), against the
    composition in float64; huge vectors (whose norms overflow float32) and a tiny eps take
    the composition."""
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    x[1] = 0.0  # a zero vector: gradient -unit(y) / eps
    x[2] = x[2] * 3e37  # its norm overflows float32
    everything = torch.ones(6, dtype=torch.bool)
    for eps in (1e-8, 1e-3, 1e-30):
        for reduction in ("none", "mean", "sum"):
            args = (-1, eps)
            fast = _value_and_grads(funcloss.cosine_distance_loss, x, y, args, reduction, None)
            exact = _value_and_grads(
                funcloss.cosine_distance_loss, x.double(), y.double(), args, reduction, everything
            )
            for ours, truth, what in zip(fast, exact, ("value", "grad x", "grad y"), strict=True):
                assert bool(ours.isfinite().all())
                # a float32 gradient entry is a difference of terms of its row's size: rounding
                # leaves an absolute error of a few float32 ulps of the row's largest entry (a
                # small entry cannot be relatively exact; unseeded draws found 2.9e-5 at 1.3e-3)
                rows = truth.abs().amax(-1, keepdim=True) if truth.dim() == 2 else truth.abs()
                bound = 1e-5 * truth.abs() + 8 * torch.finfo(torch.float32).eps * rows + 1e-9
                error = (ours.double() - truth).abs()
                assert bool((error <= bound).all()), (eps, reduction, what, (error / bound).max())


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cosine_distance_infinite_coordinate_is_the_limit(sign: float) -> None:
    """x with an infinite coordinate points along it: 1 - sign y_i / ||y||, gradient 0 in x
    (the float64 limit at 1e300), the same under grad and jacfwd."""
    y = _t([[1.0, 2.0, -2.0]])
    x = _t([[sign * math.inf, 1.0, 5.0]])
    want = 1 - sign * 1.0 / 3.0
    assert_close(funcloss.cosine_distance_loss(x, y), _t(want))

    def f(x):
        return funcloss.cosine_distance_loss(x, y, reduction="sum")

    for g in (grad(f)(x), jacfwd(f)(x), torch.autograd.grad(f(x.requires_grad_()), x)[0]):
        assert_close(g, torch.zeros_like(x))
    # two infinite coordinates: their signs, normalised
    x2 = _t([[math.inf, -math.inf, 5.0]])
    assert_close(funcloss.cosine_distance_loss(x2, y), _t(1 - (1.0 - 2.0) / (3 * 2**0.5)))


def test_tensor_alpha_gradient_fits_where_the_value_overflows() -> None:
    """A tensor alpha > 1 at residuals near 1e38 in float32: rho (about |r|^alpha) overflows,
    rightly, while d rho / d r (about |r|^(alpha - 1)) and d rho / d c fit. Autograd of the
    formula multiplies exp(alpha ell) = inf by d ell / d r and gives inf or nan; the log-domain
    backward gives float64's derivatives, and inf (not nan) for d / d alpha where it overflows.
    """
    residual = torch.tensor([1e38, 3e37, -2e38, 10.0, -5.0, 3.0])
    alpha = torch.tensor([1.5, 1.9, 1.2, 1.5, -1.0, 0.7])
    scale = torch.tensor(0.5)

    def derivatives(dtype):
        leaves = [t.to(dtype).requires_grad_() for t in (residual, alpha, scale)]
        target = torch.zeros(6, dtype=dtype)
        value = funcloss.general_robust_loss(
            leaves[0], target, leaves[1], leaves[2], reduction="none"
        )
        return (value.detach(), *torch.autograd.grad(value.sum(), leaves))

    value, d_r, d_alpha, d_scale = derivatives(torch.float32)
    value64, d_r64, d_alpha64, d_scale64 = derivatives(torch.float64)
    big = torch.finfo(torch.float32).max
    assert bool((value[:3] == math.inf).all()) and bool((value64[:3] > big).all())
    assert torch.allclose(d_r.double(), d_r64, rtol=1e-5, atol=0)
    assert bool((d_alpha[:3] == math.inf).all()) and bool((d_alpha64[:3] > big).all())
    assert torch.allclose(d_alpha[3:].double(), d_alpha64[3:], rtol=1e-5, atol=0)
    assert float(d_scale64) < -big and float(d_scale) == -math.inf  # the sum overflows
    # the scale's derivative where every residual is ordinary
    leaves = [t.clone().requires_grad_() for t in (residual[3:], alpha[3:], scale)]
    truth = [t.detach().double().requires_grad_() for t in leaves]
    for got, want in zip(
        torch.autograd.grad(
            funcloss.general_robust_loss(leaves[0], torch.zeros(3), *leaves[1:]), leaves
        ),
        torch.autograd.grad(
            funcloss.general_robust_loss(truth[0], torch.zeros(3).double(), *truth[1:]), truth
        ),
        strict=True,
    ):
        assert torch.allclose(got.double(), want, rtol=1e-5, atol=0)
