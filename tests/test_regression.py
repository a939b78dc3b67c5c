"""Golden values, float32 parity with torch, kinks and modules for the regression losses."""

from __future__ import annotations

import math
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss
import funcloss.nn as fnn

from .helpers import assert_close

REDUCTIONS = ("none", "mean", "sum")
# Hand-picked inputs: differences 0.5, -1.5, -0.5, 0, 4, -1 (one exactly at L1's kink).
X = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]], dtype=torch.float64)
Y = torch.tensor([[0.0, 0.5, 2.5], [0.0, -1.0, 0.75]], dtype=torch.float64)
W = torch.tensor([[1.0, 2.0, 0.5], [1.5, 1.0, 0.25]], dtype=torch.float64)


def _torch_kl_div(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "reduction: 'mean' divides", UserWarning)
        return F.kl_div(*args, **kwargs)


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# -- golden values -----------------------------------------------------------------------------

# (function, kwargs, "none", "mean", "sum"), all by hand from the differences above.
ELEMENTWISE_GOLDEN = [
    (funcloss.l1_loss, {}, [[0.5, 1.5, 0.5], [0.0, 4.0, 1.0]], 7.5 / 6, 7.5),
    # weighted mean = sum(w l) / sum(w) = 8 / 6.25
    (funcloss.l1_loss, {"weight": W}, [[0.5, 3.0, 0.25], [0.0, 4.0, 0.25]], 1.28, 8.0),
    (funcloss.mse_loss, {}, [[0.25, 2.25, 0.25], [0.0, 16.0, 1.0]], 19.75 / 6, 19.75),
    (funcloss.mse_loss, {"weight": W}, [[0.25, 4.5, 0.125], [0.0, 16.0, 0.25]], 3.38, 21.125),
    # delta = 1.5: 0.5 d^2 inside, 1.5 (|d| - 0.75) outside (|d| = 1.5 is outside)
    (funcloss.huber_loss, {"delta": 1.5}, [[0.125, 1.125, 0.125], [0.0, 4.875, 0.5]], 1.125, 6.75),
    # huber's weighted mean divides by the number of elements (torch 2.13 F.huber_loss)
    (
        funcloss.huber_loss,
        {"delta": 1.5, "weight": W},
        [[0.125, 2.25, 0.0625], [0.0, 4.875, 0.125]],
        7.4375 / 6,
        7.4375,
    ),
    # beta = 0.5: 0.5 d^2 / 0.5 inside, |d| - 0.25 outside (|d| = 0.5 is outside)
    (
        funcloss.smooth_l1_loss,
        {"beta": 0.5},
        [[0.25, 1.25, 0.25], [0.0, 3.75, 0.75]],
        6.25 / 6,
        6.25,
    ),
    # beta = 0 is L1
    (funcloss.smooth_l1_loss, {"beta": 0.0}, [[0.5, 1.5, 0.5], [0.0, 4.0, 1.0]], 1.25, 7.5),
]


@pytest.mark.parametrize(("fn", "kwargs", "none", "mean", "total"), ELEMENTWISE_GOLDEN)
def test_elementwise_golden(fn, kwargs, none, mean, total) -> None:
    assert_close(fn(X, Y, reduction="none", **kwargs), _t(none), "none")
    assert_close(fn(X, Y, reduction="mean", **kwargs), _t(mean), "mean")
    assert_close(fn(X, Y, reduction="sum", **kwargs), _t(total), "sum")
    # and torch 2.13 agrees
    oracle = getattr(F, fn.__name__)
    for reduction in REDUCTIONS:
        expected = oracle(X, Y, reduction=reduction, **kwargs)
        assert_close(fn(X, Y, reduction=reduction, **kwargs), expected, reduction)


def test_poisson_golden() -> None:
    # by hand: exp(x) - y x; x - y log(x + eps); Stirling y log y - y + log(2 pi y) / 2 for y > 1
    log_rate, counts = _t([0.0, math.log(2.0), 1.0]), _t([1.0, 3.0, 0.0])
    expected = _t([1.0, 2.0 - 3.0 * math.log(2.0), math.e])
    assert_close(funcloss.poisson_nll_loss(log_rate, counts, reduction="none"), expected)
    stirling = 3.0 * math.log(3.0) - 3.0 + 0.5 * math.log(6.0 * math.pi)
    full = funcloss.poisson_nll_loss(log_rate, counts, full=True, reduction="none")
    assert_close(full, expected + _t([0.0, stirling, 0.0]))
    rate = _t([1.0, 2.0, 0.5])
    eps = 1e-3
    expected = _t([1.0 - math.log(1.0 + eps), 2.0 - 3.0 * math.log(2.0 + eps), 0.5])
    got = funcloss.poisson_nll_loss(rate, counts, log_input=False, eps=eps, reduction="sum")
    assert_close(got, expected.sum())


def test_gaussian_golden() -> None:
    # by hand: (log var + (x - y)^2 / var) / 2, + log(2 pi) / 2 with full
    mean, target = _t([0.0, 1.0, 3.0]), _t([1.0, 1.0, 1.0])
    var = _t([1.0, 0.5, 2.0])
    expected = _t([0.5, 0.5 * math.log(0.5), 0.5 * (math.log(2.0) + 2.0)])
    assert_close(funcloss.gaussian_nll_loss(mean, target, var, reduction="none"), expected)
    full = funcloss.gaussian_nll_loss(mean, target, var, full=True, reduction="mean")
    assert_close(full, expected.mean() + 0.5 * math.log(2 * math.pi))
    assert_close(funcloss.gaussian_nll_loss(mean, target, 1.0, reduction="sum"), _t(2.5))


def test_kl_div_golden() -> None:
    # by hand: sum p (log p - log q); a zero p contributes 0
    q = _t([[0.5, 0.5], [0.9, 0.1]])
    p = _t([[1.0, 0.0], [0.5, 0.5]])
    rows = [math.log(2.0), 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)]
    none = funcloss.kl_div(q.log(), p, reduction="none")
    assert_close(none[0], _t([math.log(2.0), 0.0]))
    assert_close(funcloss.kl_div(q.log(), p, reduction="batchmean"), _t(sum(rows) / 2))
    assert_close(funcloss.kl_div(q.log(), p, reduction="mean"), _t(sum(rows) / 4))
    assert_close(funcloss.kl_div(q.log(), p, reduction="sum"), _t(sum(rows)))
    # log_target: the second row only (a log-probability of -inf would give exp(-inf) * inf)
    got = funcloss.kl_div(q[1:].log(), p[1:].log(), reduction="batchmean", log_target=True)
    assert_close(got, _t(rows[1]))


# -- float32 parity with torch (values and gradients of every tensor argument) ------------------


def _float32_cases():
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    x, y = randn(4, 5), randn(4, 5)
    w = torch.rand(4, 5, generator=g) + 0.1
    counts = torch.poisson(torch.full((4, 5), 2.0), generator=g)
    var = torch.rand(4, 5, generator=g) + 0.1
    log_q = torch.log_softmax(randn(4, 5), 1)
    p = torch.softmax(randn(4, 5), 1)
    return [
        ("l1_loss", (x, y), {}),
        ("l1_loss", (x, y), {"weight": w}),
        ("mse_loss", (x, y), {}),
        ("mse_loss", (x, y), {"weight": w}),
        ("huber_loss", (x, y), {"delta": 0.7}),
        ("huber_loss", (x, y), {"delta": 0.7, "weight": w}),
        ("smooth_l1_loss", (x, y), {"beta": 0.6}),
        ("smooth_l1_loss", (x, y), {"beta": 0.0}),
        ("poisson_nll_loss", (x, counts), {"full": True}),
        ("poisson_nll_loss", (var, counts), {"log_input": False, "eps": 1e-4}),
        ("gaussian_nll_loss", (x, y, var), {"full": True}),
        ("gaussian_nll_loss", (x, y, var[:, 0]), {}),
        ("gaussian_nll_loss", (x, y, 0.3), {"eps": 1e-3}),
        ("kl_div", (log_q, p), {}),
        ("kl_div", (log_q, p.log()), {"log_target": True}),
    ]


FLOAT32 = [
    pytest.param(name, args, kwargs, reduction, id=f"{name}-{i}-{reduction}")
    for i, (name, args, kwargs) in enumerate(_float32_cases())
    for reduction in (*REDUCTIONS, *(("batchmean",) if name == "kl_div" else ()))
]


@pytest.mark.parametrize(("name", "args", "kwargs", "reduction"), FLOAT32)
def test_float32_parity(name, args, kwargs, reduction) -> None:
    ours, theirs = getattr(funcloss, name), _torch_kl_div if name == "kl_div" else getattr(F, name)
    leaves = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]
    extra = {k: v.clone().requires_grad_() for k, v in kwargs.items() if k == "weight"}
    value = ours(*leaves, **{**kwargs, **extra}, reduction=reduction)
    expected = theirs(*args, **kwargs, reduction=reduction)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    # gradients of every tensor argument (and the weight), float32 against float32
    inputs = [t for t in (*leaves, *extra.values()) if isinstance(t, torch.Tensor)]
    cotangent = torch.rand(value.shape, generator=torch.Generator().manual_seed(1))
    ours_grads = torch.autograd.grad(value, inputs, cotangent)
    oracle_leaves = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]
    oracle_extra = {k: v.clone().requires_grad_() for k, v in extra.items()}
    reference = theirs(*oracle_leaves, **{**kwargs, **oracle_extra}, reduction=reduction)
    oracle_inputs = [
        t for t in (*oracle_leaves, *oracle_extra.values()) if isinstance(t, torch.Tensor)
    ]
    for got, want in zip(
        ours_grads, torch.autograd.grad(reference, oracle_inputs, cotangent), strict=True
    ):
        # torch's d/dtarget of poisson_nll_loss(full=True) is nan at target 0, ours finite
        # (test_poisson_target_gradient_finite_at_zero)
        finite = torch.isfinite(want)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got[finite], want[finite], rtol=1e-5, atol=1e-6)


# -- unbatched and K-dimensional inputs --------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (3,), (2, 3, 4, 2)])
@pytest.mark.parametrize(
    "name", ["l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss", "poisson_nll_loss", "kl_div"]
)
def test_any_shape(name, shape) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.rand(shape, generator=g, dtype=torch.float64) * 3
    theirs = _torch_kl_div if name == "kl_div" else getattr(F, name)
    reductions = (*REDUCTIONS, "batchmean") if name == "kl_div" else REDUCTIONS
    for reduction in reductions:
        got = getattr(funcloss, name)(x, y, reduction=reduction)
        assert_close(got, theirs(x, y, reduction=reduction), f"{name} {shape} {reduction}")


@pytest.mark.parametrize(
    ("input_shape", "var_shape", "target_shape"),
    [
        ((), (), ()),  # a single scalar
        ((3,), (), (3,)),  # unbatched, one variance
        ((3,), (1,), (3,)),
        ((4, 3), (4,), (4, 3)),  # one fewer dimension
        ((4, 3), (4, 1), (4, 3)),  # last dimension 1
        ((4, 3, 5, 5), (4, 1, 5, 5), (4, 3, 5, 5)),  # one dimension 1 (torch's own example)
        ((4, 3), (4, 3), (4, 1)),  # target with a dimension 1
        ((4, 3), (1, 3), (1, 3)),
    ],
)
def test_gaussian_shapes(input_shape, var_shape, target_shape) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(input_shape, generator=g, dtype=torch.float64)
    y = torch.randn(target_shape, generator=g, dtype=torch.float64)
    var = torch.rand(var_shape, generator=g, dtype=torch.float64) + 0.2
    for reduction in REDUCTIONS:
        got = funcloss.gaussian_nll_loss(x, y, var, reduction=reduction)
        assert_close(got, F.gaussian_nll_loss(x, y, var, reduction=reduction), reduction)
        if reduction == "none":
            assert got.shape == x.shape
    ours = jacrev(lambda v: funcloss.gaussian_nll_loss(x, y, v), argnums=0)(var)
    assert_close(ours, jacrev(lambda v: F.gaussian_nll_loss(x, y, v))(var), "d/dvar")


# -- kinks and subgradients --------------------------------------------------------------------


def _reverse_hessian(f, x):
    return torch.autograd.functional.hessian(f, x)


def test_l1_subgradient_at_zero() -> None:
    # torch 2.13 F.l1_loss: sign(x - y), 0 at x == y, for input and target, every mode
    x, y = _t([1.0, 2.0, -3.0]), _t([1.0, 0.0, -3.0])
    expected = _t([0.0, 1.0, 0.0])
    for fn in (
        lambda x: funcloss.l1_loss(x, y, reduction="sum"),
        lambda x: funcloss.smooth_l1_loss(x, y, beta=0.0, reduction="sum"),
    ):
        assert_close(grad(fn)(x), expected)
        assert_close(jacfwd(fn)(x), expected)
        assert_close(hessian(fn)(x), torch.zeros(3, 3, dtype=torch.float64))
    assert_close(grad(lambda x: F.l1_loss(x, y, reduction="sum"))(x), expected)
    target_grad = grad(lambda t: funcloss.l1_loss(x, t, reduction="sum", weight=_t([2.0] * 3)))(y)
    assert_close(target_grad, _t([0.0, -2.0, 0.0]))


@pytest.mark.parametrize(("name", "param"), [("huber_loss", "delta"), ("smooth_l1_loss", "beta")])
@pytest.mark.parametrize("width", [0.5, 1.0, 2.0])
def test_switch_points(name, param, width) -> None:
    # At |x - y| = width the first derivative is continuous and the second jumps: torch 2.13's
    # reverse-mode double backward takes the linear branch (0), and so do we in every mode.
    # (torch's forward-over-reverse hessian of F.huber_loss gives 1 there: it disagrees with
    # its own reverse mode.)
    x = _t([width, -width, 0.0, width / 2])
    y = torch.zeros(4, dtype=torch.float64)

    def ours(x):
        return getattr(funcloss, name)(x, y, reduction="sum", **{param: width})

    def theirs(x):
        return getattr(F, name)(x, y, reduction="sum", **{param: width})

    assert_close(ours(x), theirs(x), "value")
    expected_grad = torch.autograd.functional.jacobian(theirs, x)
    for transform in (grad, jacrev, jacfwd):
        assert_close(transform(ours)(x), expected_grad, transform.__name__)
    expected = _reverse_hessian(theirs, x)
    at_switch = torch.diag(expected)[:2]
    assert_close(at_switch, torch.zeros(2, dtype=torch.float64), "torch's reverse hessian")
    assert_close(hessian(ours)(x), expected, "hessian")
    assert_close(jacrev(jacrev(ours))(x), expected, "jacrev(jacrev)")


@pytest.mark.parametrize("name", ["huber_loss", "smooth_l1_loss"])
def test_huge_outliers(name) -> None:
    # float32 residuals whose square overflows, and infinities: torch 2.13's values and
    # gradients (the linear branch), no inf * 0 = nan
    x = torch.tensor([1e30, -1e30, float("inf"), 0.25])
    y = torch.zeros(4)

    def ours(x):
        return getattr(funcloss, name)(x, y, reduction="sum")

    def theirs(x):
        return getattr(F, name)(x, y, reduction="sum")

    assert ours(x) == theirs(x) == float("inf")
    ours_none = getattr(funcloss, name)(x, y, reduction="none")
    torch.testing.assert_close(ours_none, getattr(F, name)(x, y, reduction="none"))
    torch.testing.assert_close(grad(ours)(x), torch.autograd.functional.jacobian(theirs, x))


def test_smooth_l1_beta_zero_is_l1() -> None:
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    for reduction in REDUCTIONS:
        assert torch.equal(
            funcloss.smooth_l1_loss(x, y, beta=0.0, reduction=reduction),
            funcloss.l1_loss(x, y, reduction=reduction),
        )


# -- poisson: counts, the Stirling switch, target gradients ------------------------------------


def test_poisson_integer_counts_match_torch() -> None:
    # counts 0 and 1 (no Stirling term) and larger ones, values and input gradients (torch 2.13)
    log_rate = _t([0.3, -0.5, 1.2, 0.0, 2.0])
    counts = _t([0.0, 1.0, 2.0, 5.0, 1.0])
    for full in (False, True):
        for reduction in REDUCTIONS:

            def ours(x, full=full, reduction=reduction):
                return funcloss.poisson_nll_loss(x, counts, full=full, reduction=reduction)

            def theirs(x, full=full, reduction=reduction):
                return F.poisson_nll_loss(x, counts, full=full, reduction=reduction)

            assert_close(ours(log_rate), theirs(log_rate))
            expected = torch.autograd.functional.jacobian(theirs, log_rate)
            assert_close(jacrev(ours)(log_rate), expected)


def test_poisson_stirling_only_above_one() -> None:
    counts = _t([0.0, 0.5, 1.0, 1.0 + 1e-9, 2.0])
    zero = torch.zeros(5, dtype=torch.float64)
    difference = funcloss.poisson_nll_loss(zero, counts, full=True, reduction="none") - (
        funcloss.poisson_nll_loss(zero, counts, reduction="none")
    )
    assert torch.equal(difference[:3], torch.zeros(3, dtype=torch.float64))
    assert difference[3] < 0 and difference[4] > 0  # the Stirling term at 1+ is -0.081...
    assert_close(difference, F.poisson_nll_loss(zero, counts, full=True, reduction="none") - 1)


def test_poisson_target_gradient_finite_at_zero() -> None:
    # torch 2.13 gives nan for d/dtarget at target 0 with full=True (0 * log 0 inside a masked
    # term); the term is masked there, so the true derivative is -x (log_input) / -log(x + eps).
    x, counts = _t([0.5, 0.5, 0.5]), _t([0.0, 0.5, 3.0])
    for log_input in (True, False):

        def ours(t, log_input=log_input):
            return funcloss.poisson_nll_loss(x, t, log_input, True, reduction="sum")

        def theirs(t, log_input=log_input):
            return F.poisson_nll_loss(x, t, log_input, True, reduction="sum")

        got = grad(ours)(counts)
        expected = torch.autograd.functional.jacobian(theirs, counts)
        assert torch.isnan(expected[0])
        first = -x[0] if log_input else -torch.log(x[0] + 1e-8)
        assert_close(got[0], first)
        assert_close(got[1:], expected[1:])


# -- gaussian: the clamp at eps, negative var --------------------------------------------------


def test_gaussian_clamp_matches_torch() -> None:
    # var below eps (and 0): values, first and second derivatives as torch 2.13 gives them (the
    # clamp is invisible to autograd: d/dvar is the formula at max(var, eps)).
    x, y = _t([1.0, 2.0, 0.0, 0.5]), _t([0.0, 0.0, 0.0, 0.0])
    var = _t([1e-8, 0.5, 0.0, 1e-3])
    eps = 1e-3
    for reduction in REDUCTIONS:

        def ours(v, reduction=reduction):
            return funcloss.gaussian_nll_loss(x, y, v, eps=eps, reduction=reduction)

        def theirs(v, reduction=reduction):
            return F.gaussian_nll_loss(x, y, v, eps=eps, reduction=reduction)

        assert_close(ours(var), theirs(var), "value")
        jacobian = torch.autograd.functional.jacobian(theirs, var)
        assert_close(jacrev(ours)(var), jacobian, "jacrev")
        assert_close(jacfwd(ours)(var), jacobian, "jacfwd")

    def total(v):
        return funcloss.gaussian_nll_loss(x, y, v, eps=eps, reduction="sum")

    def torch_total(v):
        return F.gaussian_nll_loss(x, y, v, eps=eps, reduction="sum")

    expected = _reverse_hessian(torch_total, var)
    assert_close(hessian(total)(var), expected, "hessian")
    assert_close(jacrev(jacrev(total))(var), expected, "jacrev(jacrev)")
    # the clamped value is exactly eps
    got = funcloss.gaussian_nll_loss(y, y, var, eps=eps, reduction="none")
    assert got[0] == 0.5 * math.log(eps)
    # a float var below eps
    assert_close(
        funcloss.gaussian_nll_loss(x, y, 1e-9, eps=eps), F.gaussian_nll_loss(x, y, 1e-9, eps=eps)
    )


def test_gaussian_negative_var_not_checked_under_transforms() -> None:
    # eager raises (test_errors_regression.py); vmap, grad and compile must not (torch's own
    # data-dependent check breaks them)
    x, y = torch.zeros(2, 3), torch.ones(2, 3)
    var = torch.tensor([[1.0, -1.0, 1.0], [1.0, 1.0, 1.0]])
    # like torch, a negative var is clamped to eps where it is not checked
    expected = F.gaussian_nll_loss(x, y, var.clamp_min(1e-6), reduction="none")
    batched = vmap(lambda *a: funcloss.gaussian_nll_loss(*a, reduction="none"))(x, y, var)
    assert_close(batched, expected, "vmap")
    assert torch.isfinite(grad(lambda v: funcloss.gaussian_nll_loss(x, y, v))(var)).all()
    torch._dynamo.reset()
    compiled = torch.compile(funcloss.gaussian_nll_loss, fullgraph=True, backend="aot_eager")
    assert_close(compiled(x, y, var), expected.mean(), "compile")


# -- kl_div ------------------------------------------------------------------------------------


def test_kl_div_zero_target() -> None:
    # xlogy semantics (torch 2.13 F.kl_div): a zero target contributes 0 to the value and -0 to
    # d/dinput; d/dtarget there is nan in torch and in funcloss (t log t has slope -inf at 0).
    log_q = torch.log_softmax(_t([[0.2, -1.0, 3.0]]), 1)
    p = _t([[0.0, 0.4, 0.6]])
    got = funcloss.kl_div(log_q, p, reduction="none")
    assert got[0, 0] == 0
    assert_close(got, _torch_kl_div(log_q, p, reduction="none"))
    for reduction in ("batchmean", "mean", "sum"):

        def ours(x, reduction=reduction):
            return funcloss.kl_div(x, p, reduction=reduction)

        def theirs(x, reduction=reduction):
            return _torch_kl_div(x, p, reduction=reduction)

        assert_close(grad(ours)(log_q), torch.autograd.functional.jacobian(theirs, log_q))
    target_grad = grad(lambda t: funcloss.kl_div(log_q, t, reduction="sum"))(p)
    assert torch.isnan(target_grad[0, 0]) and torch.isfinite(target_grad[0, 1:]).all()


@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4)])
def test_kl_div_batchmean_divides_by_size_0(shape) -> None:
    g = torch.Generator().manual_seed(5)
    log_q = torch.randn(shape, generator=g, dtype=torch.float64)
    p = torch.rand(shape, generator=g, dtype=torch.float64)
    total = funcloss.kl_div(log_q, p, reduction="sum")
    divisor = shape[0] if shape else 1
    assert_close(funcloss.kl_div(log_q, p, reduction="batchmean"), total / divisor)
    assert_close(
        funcloss.kl_div(log_q, p, reduction="batchmean"), F.kl_div(log_q, p, reduction="batchmean")
    )


def test_kl_div_mean_warns_as_torch() -> None:
    x, y = torch.zeros(2, 2), torch.full((2, 2), 0.5)
    with pytest.warns(UserWarning) as theirs:
        F.kl_div(x, y)
    with pytest.warns(UserWarning) as ours:
        funcloss.kl_div(x, y)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert ours[0].filename == __file__  # points at the caller, as torch's does
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        funcloss.kl_div(x, y, reduction="batchmean")


# -- weights -----------------------------------------------------------------------------------


def test_weighted_l1_compiles_correctly() -> None:
    # torch 2.13's F.l1_loss drops `weight` under torch.compile (aot_eager and inductor) and
    # returns the unweighted loss; funcloss's compiled weighted loss is the weighted one.
    torch._dynamo.reset()

    def weighted(x, y, w):
        return funcloss.l1_loss(x, y, weight=w)

    compiled = torch.compile(weighted, fullgraph=True, backend="aot_eager")
    assert_close(compiled(X, Y, W), _t(1.28))


def test_weight_gradients_match_torch() -> None:
    for name in ("l1_loss", "mse_loss", "huber_loss"):
        for reduction in REDUCTIONS:

            def ours(w, name=name, reduction=reduction):
                return getattr(funcloss, name)(X, Y, reduction=reduction, weight=w)

            def theirs(w, name=name, reduction=reduction):
                return getattr(F, name)(X, Y, reduction=reduction, weight=w)

            assert_close(jacrev(ours)(W), torch.autograd.functional.jacobian(theirs, W), name)


def test_weighted_per_sample_vmap() -> None:
    # a weight of the input's shape is batched with the input
    batched = vmap(lambda x, y, w: funcloss.mse_loss(x, y, weight=w))(X, Y, W)
    looped = torch.stack([funcloss.mse_loss(X[i], Y[i], weight=W[i]) for i in range(2)])
    assert_close(batched, looped)


# -- modules -----------------------------------------------------------------------------------

MODULES = [
    ("L1Loss", funcloss.l1_loss, {"reduction": "sum"}),
    ("MSELoss", funcloss.mse_loss, {"reduction": "none"}),
    ("HuberLoss", funcloss.huber_loss, {"delta": 0.5}),
    ("SmoothL1Loss", funcloss.smooth_l1_loss, {"beta": 0.5}),
    ("PoissonNLLLoss", funcloss.poisson_nll_loss, {"log_input": False, "full": True, "eps": 1e-3}),
    ("GaussianNLLLoss", funcloss.gaussian_nll_loss, {"full": True, "eps": 1e-3}),
    ("KLDivLoss", funcloss.kl_div, {"reduction": "batchmean", "log_target": True}),
]


@pytest.mark.parametrize(("name", "fn", "config"), MODULES, ids=[m[0] for m in MODULES])
def test_module_matches_function_and_torch(name, fn, config) -> None:
    g = torch.Generator().manual_seed(6)
    x, y = torch.rand(3, 4, generator=g) + 0.1, torch.rand(3, 4, generator=g) * 3
    args = (x, y, torch.rand(3, 4, generator=g) + 0.1) if name == "GaussianNLLLoss" else (x, y)
    ours, theirs = getattr(fnn, name)(**config), getattr(torch.nn, name)(**config)
    assert_close(ours(*args), fn(*args, **config), "module vs function")
    assert_close(ours(*args), theirs(*args), "module vs torch")
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert repr(ours).startswith(f"{name}(") and all(k in repr(ours) for k in config)
    restored = pickle.loads(pickle.dumps(ours))
    assert_close(restored(*args), ours(*args), "pickle")


def test_module_weight_is_a_buffer() -> None:
    module = fnn.MSELoss(weight=W)
    assert list(module.state_dict()) == ["weight"]
    assert_close(module(X, Y), funcloss.mse_loss(X, Y, weight=W))
    assert module.to(torch.float32).weight.dtype == torch.float32


def test_modules_compile() -> None:
    torch._dynamo.reset()
    module = fnn.HuberLoss(delta=0.5, weight=W)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    assert_close(compiled(X, Y), funcloss.huber_loss(X, Y, delta=0.5, weight=W))


@pytest.mark.parametrize(
    ("input_dtype", "target_dtype"),
    [
        (torch.complex128, torch.complex128),
        (torch.complex128, torch.float64),
        (torch.float64, torch.complex128),
        (torch.complex64, torch.complex64),
        (torch.complex64, torch.float64),
    ],
)
def test_l1_loss_on_complex_is_torchs(input_dtype, target_dtype) -> None:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, dtype=input_dtype, generator=generator)
    y = torch.randn(4, 3, dtype=target_dtype, generator=generator)
    weight = torch.rand(4, 3, dtype=torch.float64, generator=generator)
    for kwargs in ({}, {"weight": weight}):
        for reduction in ("none", "mean", "sum"):
            expected = F.l1_loss(x, y, reduction=reduction, **kwargs)
            actual = funcloss.l1_loss(x, y, reduction=reduction, **kwargs)
            assert actual.dtype == expected.dtype and not actual.is_complex()
            assert_close(actual, expected, reduction, rtol=1e-5)
        leaves = [x.clone().requires_grad_(), y.clone().requires_grad_()]
        expected = torch.autograd.grad(F.l1_loss(*leaves, **kwargs), leaves)
        actual = torch.autograd.grad(funcloss.l1_loss(*leaves, **kwargs), leaves)
        assert_close(actual, expected, "gradients", rtol=1e-5)


def test_l1_loss_complex_subgradient_at_zero_and_under_vmap() -> None:
    x = torch.tensor([1 + 1j, 2 - 1j, 0.5j], dtype=torch.complex128)
    leaf = x.clone().requires_grad_()
    (at_zero,) = torch.autograd.grad(funcloss.l1_loss(leaf, x, reduction="sum"), leaf)
    assert (at_zero == 0).all()  # torch's sgn(0) = 0, as for real inputs
    zeros = torch.zeros(3, dtype=torch.complex128)
    batch = torch.stack([x, 2 * x])
    expected = torch.stack([F.l1_loss(row, zeros) for row in batch])
    assert_close(vmap(lambda row: funcloss.l1_loss(row, zeros))(batch), expected)


@pytest.mark.parametrize("name", ["huber_loss", "smooth_l1_loss"])
@pytest.mark.parametrize("switch", [1e39, 1e300, math.inf])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_switch_point_beyond_float32(name: str, switch: float, reduction: str) -> None:
    # delta / beta above float32's largest value on float32 inputs: torch takes it (every
    # difference is then inside, the quadratic branch); funcloss raised "value cannot be
    # converted to type float without overflow" from the clamp.
    key = "delta" if name == "huber_loss" else "beta"
    x = torch.tensor([[1.0, -5.0, 0.25], [3e3, 0.0, -2.0]], requires_grad=True)
    y = torch.tensor([[0.0, 1.0, 0.5], [-1e3, 0.0, 7.0]])
    ours = getattr(funcloss, name)(x, y, reduction=reduction, **{key: switch})
    theirs = getattr(F, name)(x, y, reduction=reduction, **{key: switch})
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    # smooth_l1 at beta = 1e39: diff^2 / (2 beta) is a float32 denormal (5e-40 at diff 1),
    # which torch's float32 beta (inf) flushes to 0; within float32 rounding of 0 either way
    assert_close(ours.detach(), theirs.detach(), "value")
    assert_close(g_ours, g_theirs, "gradient")


def test_smooth_l1_huge_beta_keeps_huge_differences_finite() -> None:
    # beta = 1e39, diff = 2e38: the loss diff^2 / (2 beta) = 2e37 fits float32; torch squares
    # first (inf / inf = nan). Listed in the README's differences.
    x = torch.tensor([2e38, 1.0], requires_grad=True)
    loss = funcloss.smooth_l1_loss(x, torch.zeros(2), beta=1e39, reduction="sum")
    assert bool(F.smooth_l1_loss(x, torch.zeros(2), beta=1e39, reduction="sum").isnan())
    (g,) = torch.autograd.grad(loss, x)
    assert_close(
        loss.detach().double(), torch.tensor(2e37 + 5e-40, dtype=torch.float64), "value", rtol=1e-6
    )
    assert_close(g.double(), torch.tensor([0.2, 1e-39], dtype=torch.float64), "gradient", rtol=1e-6)
