"""Edge inputs of cross_entropy, nll_loss and linear_cross_entropy (issue 14): masked (-inf) and
huge logits, nan/inf padding in ignored rows, double backward, probability targets at -inf, bad
arguments. Oracles: torch.nn.functional where torch is finite, else the float64 limit (±inf
replaced by ±1e300 and ±1e150; where both agree, that is the true value)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacfwd, jacrev, vmap

import funcloss
import funcloss._cross_entropy as ce_module
from funcloss._cross_entropy import _cross_entropy

INF, NAN = float("inf"), float("nan")


def _ce(x, y, fused: bool, **kwargs):
    return _cross_entropy(
        x,
        y,
        kwargs.get("weight"),
        kwargs.get("ignore_index", -100),
        kwargs.get("reduction", "mean"),
        kwargs.get("label_smoothing", 0.0),
        fused,
    )


def _value_and_grad(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_()
    loss = fn(x, *args, **kwargs)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _limit(x: torch.Tensor, big: float) -> torch.Tensor:
    x = x.double()
    return torch.where(x.isinf(), x.sign() * big, x)


_MASKED = [
    (torch.tensor([[0.0, 1.0, -INF], [2.0, -INF, 0.0]]), torch.tensor([0, 2])),
    (torch.tensor([[3e38, -3e38, 0.0], [-3e38, 1.0, 3e38]]), torch.tensor([0, 2])),
]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("case", range(len(_MASKED)))
def test_masked_and_huge_logits_match_torch(fused, reduction, weighted, case) -> None:
    # issue 14 item 1: the small path gave nan (0 * -inf in the log-softmax product)
    x, y = _MASKED[case]
    weight = torch.tensor([0.5, 2.0, 1.0]) if weighted else None
    value, grad = _value_and_grad(_ce, x, y, fused, weight=weight, reduction=reduction)
    expected, expected_grad = _value_and_grad(
        F.cross_entropy, x, y, weight=weight, reduction=reduction
    )
    assert expected.isfinite().all() and value.isfinite().all()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)
    assert (grad[x == -INF] == 0).all()


@pytest.mark.parametrize("fused", [False, True])
def test_masked_logits_under_transforms(fused) -> None:
    x, y = _MASKED[0]

    def ours(x):
        return _ce(x, y, fused)

    def theirs(x):
        return F.cross_entropy(x, y)

    torch.testing.assert_close(jacrev(ours)(x), jacrev(theirs)(x))
    torch.testing.assert_close(jacfwd(ours)(x), jacrev(theirs)(x))
    per_row = vmap(lambda r, t: _ce(r, t, fused))(x, y)
    torch.testing.assert_close(per_row, F.cross_entropy(x, y, reduction="none"))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.2}, {"weighted": True}])
def test_ignored_rows_holding_nan_or_inf_give_nothing(fused, bad, reduction, kwargs) -> None:
    # issue 14 item 2: a nan/inf logit in an ignored row poisoned the whole small-path loss
    x = torch.tensor([[bad, 0.0, 1.0], [1.0, 2.0, 0.5], [0.0, bad, bad], [0.3, -1.0, 2.0]])
    y = torch.tensor([-100, 1, -100, 2])
    kwargs = dict(kwargs)
    weight = torch.tensor([0.5, 2.0, 1.0]) if kwargs.pop("weighted", False) else None
    value, grad = _value_and_grad(_ce, x, y, fused, weight=weight, reduction=reduction, **kwargs)
    kept = y != -100
    expected, expected_grad = _value_and_grad(
        F.cross_entropy, x[kept], y[kept], weight=weight, reduction=reduction, **kwargs
    )
    torch.testing.assert_close(value[kept] if reduction == "none" else value, expected)
    assert (value[~kept] == 0).all() if reduction == "none" else True
    # torch's own gradient is nan in the ignored rows; ours is exactly 0 (the row gives nothing)
    torch.testing.assert_close(grad[kept], expected_grad)
    assert (grad[~kept] == 0).all()


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_nll_loss_ignored_rows_holding_nan_or_inf(bad, reduction) -> None:
    x = torch.tensor([[bad, -0.5], [-1.0, -2.0], [-0.1, bad]])
    y = torch.tensor([-100, 1, 0])
    value, grad = _value_and_grad(funcloss.nll_loss, x, y, reduction=reduction)
    expected, expected_grad = _value_and_grad(F.nll_loss, x, y, reduction=reduction)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)


def _double_backward(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(fn(x, *args, **kwargs), x, create_graph=True)
    return torch.autograd.grad(grad.sum(), x)[0]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_double_backward_is_zero_like_torch(reduction, weighted) -> None:
    # issue 14 item 6: raised "element 0 of tensors does not require grad"
    x, y = torch.randn(4, 3), torch.tensor([0, 2, -100, 1])
    weight = torch.rand(3) if weighted else None
    ours = _double_backward(funcloss.nll_loss, x, y, weight=weight, reduction=reduction)
    theirs = _double_backward(F.nll_loss, x, y, weight=weight, reduction=reduction)
    torch.testing.assert_close(ours, theirs)
    assert (ours == 0).all()


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("y", [torch.tensor([0, 2, -100, 1]), torch.tensor([-100] * 4)])
def test_cross_entropy_double_backward_matches_torch(fused, y) -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    ours = _double_backward(lambda x, y: _ce(x, y, fused, reduction="sum"), x, y)
    theirs = _double_backward(F.cross_entropy, x, y, reduction="sum")
    torch.testing.assert_close(ours, theirs)


def test_linear_cross_entropy_double_backward_matches_torch() -> None:
    h, w = torch.randn(4, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 4, -100, 1])
    ours = _double_backward(lambda h: funcloss.linear_cross_entropy(h, w, y), h)
    theirs = _double_backward(lambda h: F.cross_entropy(h @ w.T, y), h)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_probability_target_zero_at_masked_logit_is_the_limit(label_smoothing, weighted) -> None:
    # issue 14 item 8: torch and funcloss gave nan (0 * -inf); the limit is finite
    x = torch.tensor([[0.0, 1.0, -INF], [2.0, -INF, -INF], [0.5, 0.0, 1.0]])
    q = torch.tensor([[0.3, 0.7, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    weight = torch.tensor([0.5, 2.0, 1.0]) if weighted else None
    kwargs = {"weight": weight, "label_smoothing": label_smoothing}
    xq = (x.clone().requires_grad_(), q.clone().requires_grad_())
    loss = funcloss.cross_entropy(*xq, **kwargs)
    grad_x, grad_q = torch.autograd.grad(loss, xq)
    limits = []
    for big in (1e300, 1e150):
        x64 = _limit(x, big).requires_grad_()
        w64 = None if weight is None else weight.double()
        limit = F.cross_entropy(x64, q.double(), weight=w64, label_smoothing=label_smoothing)
        limits.append((limit, torch.autograd.grad(limit, x64)[0]))
    (v1, g1), (v2, g2) = limits
    if label_smoothing > 0:  # smoothing gives the masked class weight: the limit is infinite
        assert loss == INF and v1 > 1e100 and v2 > 1e100
    else:
        torch.testing.assert_close(v1, v2)
        torch.testing.assert_close(loss.double(), v1)
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(grad_x.double(), g1)
    # d/dq = -(1 - eps) w log_softmax(x): +inf in the limit at the masked classes (funcloss: inf
    # or, rescaled, a float beyond 1e37), the limit elsewhere
    masked = x == -INF
    assert (grad_q[masked] > 1e37).all() and grad_q[~masked].isfinite().all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_probability_target_gradient_half_precision_as_accurate_as_torch(
    dtype, label_smoothing, reduction
) -> None:
    # issue 14 item 7: the target gradient in half precision against the float64 truth
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 64, generator=gen) * 3
    q = torch.softmax(torch.randn(64, 64, generator=gen) * 2, 1)
    w = torch.rand(64, generator=gen)

    def target_grad(fn, dt):
        xx, qq = x.to(dt), q.to(dt).requires_grad_()
        kwargs = {"label_smoothing": label_smoothing, "reduction": reduction}
        loss = fn(xx, qq, weight=w.to(dt), **kwargs)
        return torch.autograd.grad(loss, qq)[0].double()

    truth = target_grad(F.cross_entropy, torch.float64)
    ours = (target_grad(funcloss.cross_entropy, dtype) - truth).abs().max()
    theirs = (target_grad(F.cross_entropy, dtype) - truth).abs().max()
    assert ours <= theirs, (ours, theirs)


def test_probability_target_with_ignore_index_raises_like_torch() -> None:
    x, q = torch.randn(2, 3), torch.softmax(torch.randn(2, 3), 1)
    with pytest.raises(RuntimeError, match="ignore_index is not supported"):
        F.cross_entropy(x, q, ignore_index=1)
    for index in (0, 1, 5):
        with pytest.raises(
            ValueError,
            match=r"cross_entropy: `ignore_index` must be negative for a floating-point target "
            rf".*, got {index}\.",
        ):
            funcloss.cross_entropy(x, q, ignore_index=index)
    for index in (-1, -100):  # accepted by torch, and by us
        torch.testing.assert_close(
            funcloss.cross_entropy(x, q, ignore_index=index), F.cross_entropy(x, q)
        )


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: funcloss.cross_entropy(None, torch.tensor([0])), "cross_entropy: `input`"),
        (lambda: funcloss.cross_entropy(torch.randn(1, 2), None), "cross_entropy: `target`"),
        (lambda: funcloss.nll_loss(None, torch.tensor([0])), "nll_loss: `input`"),
        (lambda: funcloss.nll_loss(torch.randn(1, 2), None), "nll_loss: `target`"),
        (
            lambda: funcloss.linear_cross_entropy(None, torch.randn(3, 2), torch.tensor([0])),
            "linear_cross_entropy: `input`",
        ),
        (
            lambda: funcloss.linear_cross_entropy(torch.randn(1, 2), None, torch.tensor([0])),
            "linear_cross_entropy: `linear_weight`",
        ),
        (
            lambda: funcloss.linear_cross_entropy(torch.randn(1, 2), torch.randn(3, 2), None),
            "linear_cross_entropy: `target`",
        ),
    ],
)
def test_none_for_a_required_tensor_is_named(call, name) -> None:
    # issue 14 item 9: AttributeError 'NoneType' object has no attribute 'shape'
    with pytest.raises(TypeError, match=rf"^{name} must be a torch\.Tensor, got NoneType\.$"):
        call()


# -- linear_cross_entropy -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [NAN, INF])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("requires_grad", [True, False])  # fused eager step / transform path
def test_linear_ignored_rows_holding_nan_or_inf_give_nothing(bad, reduction, requires_grad) -> None:
    gen = torch.Generator().manual_seed(0)
    h, w = torch.randn(4, 3, generator=gen), torch.randn(5, 3, generator=gen)
    h[0, 1] = bad
    h[2] = bad
    y = torch.tensor([-100, 4, -100, 1])
    hh, ww = h.clone().requires_grad_(requires_grad), w.clone().requires_grad_()
    loss = funcloss.linear_cross_entropy(hh, ww, y, reduction=reduction)
    grads = torch.autograd.grad(loss.sum(), (hh, ww) if requires_grad else (ww,))
    kept = y != -100
    h2, w2 = h[kept].clone().requires_grad_(requires_grad), w.clone().requires_grad_()
    expected = F.cross_entropy(h2 @ w2.T, y[kept], reduction=reduction)
    expected_grads = torch.autograd.grad(expected.sum(), (h2, w2) if requires_grad else (w2,))
    torch.testing.assert_close(loss[kept] if reduction == "none" else loss, expected)
    torch.testing.assert_close(grads[-1], expected_grads[-1])
    if requires_grad:
        torch.testing.assert_close(grads[0][kept], expected_grads[0])
        assert (grads[0][~kept] == 0).all()


@pytest.mark.parametrize("probabilities", [False, True])
@pytest.mark.parametrize("softcap", [None, 2.0])
@pytest.mark.parametrize("q_requires_grad", [False, True])
def test_linear_masked_class_by_minus_inf_bias_is_the_limit(
    probabilities, softcap, q_requires_grad
) -> None:
    if q_requires_grad and not probabilities:
        pytest.skip("class indices have no gradient")
    gen = torch.Generator().manual_seed(1)
    h, w = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    b = torch.tensor([0.0, 0.5, -INF])
    q = torch.tensor([[0.3, 0.7, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = q if probabilities else torch.tensor([0, 1, 0])
    leaves = (h.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_())
    yy = y.clone().requires_grad_(q_requires_grad) if probabilities else y
    loss = funcloss.linear_cross_entropy(*leaves[:2], yy, linear_bias=leaves[2], softcap=softcap)
    grads = torch.autograd.grad(loss, leaves)
    limits = []
    for big in (1e300, 1e150):
        leaves64 = (h.double(), w.double(), _limit(b, big))
        leaves64 = tuple(t.requires_grad_() for t in leaves64)
        z = leaves64[0] @ leaves64[1].T + leaves64[2]
        if softcap is not None:
            z = softcap * torch.tanh(z / softcap)
        limit = F.cross_entropy(z, y.double() if probabilities else y)
        limits.append((limit, torch.autograd.grad(limit, leaves64)))
    (v1, g1), (v2, g2) = limits
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(loss.double(), v1)
    for ours, first, second in zip(grads, g1, g2, strict=True):
        torch.testing.assert_close(first, second)
        torch.testing.assert_close(ours.double(), first)


@pytest.mark.parametrize(
    "x, y",
    [
        ([[INF, 0.0, 1.0], [0.5, 0.0, -1.0]], [0, 2]),  # +inf at the target class
        ([[0.0, INF, -INF]], [1]),  # with a masked class beside it
        ([[2.0, INF]], [1]),
    ],
)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_plus_inf_logit_at_the_target_is_the_limit(x, y, reduction, weighted) -> None:
    # issue 14 item 8: torch and funcloss gave nan (inf - inf); the float64 limit is finite
    x, y = torch.tensor(x), torch.tensor(y)
    weight = torch.linspace(0.5, 2.0, x.shape[1]) if weighted else None
    value, gradient = _value_and_grad(
        funcloss.cross_entropy, x, y, weight=weight, reduction=reduction
    )
    limits = []
    for big in (1e300, 1e150):
        w64 = None if weight is None else weight.double()
        limits.append(
            _value_and_grad(F.cross_entropy, _limit(x, big), y, weight=w64, reduction=reduction)
        )
    (v1, g1), (v2, g2) = limits
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(value.double(), v1)
    torch.testing.assert_close(gradient.double(), g1)
    forward = jacfwd(
        lambda t: funcloss.cross_entropy(t, y, weight=weight, reduction=reduction).sum()
    )(x)
    torch.testing.assert_close(forward, gradient)
    # unbatched, K-dim and probability targets take the same path
    unbatched = funcloss.cross_entropy(x[0], y[0], weight=weight)
    torch.testing.assert_close(unbatched.double(), _limit_row(x[0], y[0], weight))
    kdim = funcloss.cross_entropy(x.T[None], y[None], weight=weight, reduction="none")
    torch.testing.assert_close(kdim[0].double(), _per_row_limit(x, y, weight))
    probabilities = funcloss.cross_entropy(x, F.one_hot(y, x.shape[1]).float(), reduction="none")
    torch.testing.assert_close(probabilities.double(), _per_row_limit(x, y, None))


_FUSED_INF = [
    # +inf at the target class; two +inf classes (log 2); an ignored row holding +inf; -inf
    [[INF, 0.0, 1.0, -2.0], [0.5, INF, INF, -1.0], [INF, 0.0, 0.0, 0.0], [0.5, -INF, 2.0, 1.0]],
    [0, 2, -100, 3],
]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_plus_inf_logit_on_the_fused_path_is_the_limit(reduction, weighted) -> None:
    # issue 14 item 8 on the custom-backward path: it gave nan (inf - inf) in value and gradient,
    # in plain eager (rows found by a read and recomputed), under a graph (double backward) and
    # under transforms (clamped)
    x, y = torch.tensor(_FUSED_INF[0]), torch.tensor(_FUSED_INF[1])
    weight = torch.linspace(0.5, 2.0, x.shape[1]) if weighted else None
    w64 = None if weight is None else weight.double()
    limits = [
        _value_and_grad(F.cross_entropy, _limit(x, big), y, weight=w64, reduction=reduction)
        for big in (1e300, 1e150)
    ]
    (v1, g1), (v2, g2) = limits
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1, g2)

    def ce(t):
        return _ce(t, y, True, weight=weight, reduction=reduction)

    value, gradient = _value_and_grad(ce, x)
    torch.testing.assert_close(value.double(), v1)
    torch.testing.assert_close(gradient.double(), g1)
    leaf = x.clone().requires_grad_()
    (first,) = torch.autograd.grad(ce(leaf).sum(), leaf, create_graph=True)
    torch.testing.assert_close(first, gradient)
    (second,) = torch.autograd.grad((first * torch.randn_like(first)).sum(), leaf)
    assert second.isfinite().all()
    torch.testing.assert_close(jacfwd(lambda t: ce(t).sum())(x), gradient)
    torch.testing.assert_close(jacrev(lambda t: ce(t).sum())(x), gradient)
    if reduction == "none":
        per_row = vmap(
            torch.func.grad(
                lambda t, u: _ce(t[None], u[None], True, weight=weight, reduction="sum")
            )
        )
        torch.testing.assert_close(per_row(x, y).double(), g1)


def test_plus_inf_logit_on_the_fused_path_with_value_reads_off() -> None:
    # no host read then: the logits are clamped instead of the rows found and recomputed
    x, y = torch.tensor(_FUSED_INF[0]), torch.tensor(_FUSED_INF[1])
    with funcloss.set_value_checks(False):
        value, gradient = _value_and_grad(lambda t: _ce(t, y, True, reduction="none"), x)
    limit, expected = _value_and_grad(F.cross_entropy, _limit(x, 1e300), y, reduction="none")
    torch.testing.assert_close(value.double(), limit)
    torch.testing.assert_close(gradient.double(), expected)


def test_plus_inf_logit_under_a_class_mask_is_the_limit() -> None:
    # a class mask on a small input: autograd through the fused path's forward
    x, y = torch.tensor(_FUSED_INF[0]), torch.tensor(_FUSED_INF[1])
    allowed = torch.tensor([[True, True, True, False]] * 3 + [[True, True, True, True]])
    value, gradient = _value_and_grad(
        lambda t: funcloss.cross_entropy(t, y, reduction="none", where=allowed), x
    )
    z = torch.where(allowed, x.double(), -INF)
    limit = F.cross_entropy(_limit(z, 1e300), y, reduction="none")
    torch.testing.assert_close(value.double(), limit)
    assert gradient.isfinite().all()
    torch.testing.assert_close(gradient[0].double(), torch.zeros(4, dtype=torch.float64))


def test_plus_inf_logit_on_the_fused_path_compiled() -> None:
    x, y = torch.tensor(_FUSED_INF[0]), torch.tensor(_FUSED_INF[1])
    compiled = torch.compile(lambda t: _ce(t, y, True, reduction="sum"), fullgraph=True)
    torch.testing.assert_close(
        compiled(x).double(), F.cross_entropy(_limit(x, 1e300), y, reduction="sum")
    )


def _per_row_limit(x, y, weight):
    w64 = None if weight is None else weight.double()
    return F.cross_entropy(_limit(x, 1e300), y, weight=w64, reduction="none")


def _limit_row(x, y, weight):
    return _per_row_limit(x[None], y[None], weight)[0]


@pytest.mark.parametrize("fused", [False, True])
def test_huge_logits_with_full_label_smoothing_give_no_nan(fused) -> None:
    # label_smoothing = 1: the target class's own weight is 0, and its log-probability
    # underflows to -inf at logits of 3e38; 0 * -inf must not make the loss nan
    x = torch.tensor([[-3e38, 1.0, 3e38], [1e38, -2e38, 0.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    loss = _ce(x, y, fused, label_smoothing=1.0, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    assert loss == INF  # the truth overflows float32 (about 1e38 * 2 rows * ...)
    assert grad.isfinite().all()


@pytest.mark.parametrize("fused", [False, True])
def test_huge_logits_with_label_smoothing_fit_float32(fused) -> None:
    x, y = torch.tensor([[3e38, -3e38, 0.0, 1.0]]), torch.tensor([0])
    truth = F.cross_entropy(x.double(), y, label_smoothing=0.1, reduction="sum")
    loss = _ce(x, y, fused, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(loss.double(), truth, rtol=1e-5, atol=0)


_WIDE = torch.tensor([[3e38, -3e38, 0.0, 1.0], [0.5, -1.0, 2.0, 0.0], [-3e38, 3e38, 1e38, -1e38]])


def _wide_truth(target, **kwargs):
    """The float64 value and logits gradient (finite logits: no limit needed)."""
    x = _WIDE.double().requires_grad_()
    weight = kwargs.pop("weight", None)
    target = target.double() if target.is_floating_point() else target
    wide = None if weight is None else weight.double()
    loss = F.cross_entropy(x, target, weight=wide, reduction="none", **kwargs)
    return loss.detach(), torch.autograd.grad(loss.sum(), x)[0]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("probabilities", [False, True])
def test_rows_beyond_the_range_with_smoothing_under_transforms(
    fused, weighted, probabilities
) -> None:
    # logits spanning more than float32's range (log-probabilities of -6e38): with label
    # smoothing (or class probabilities) each row's float64 loss fits float32, and funcloss
    # gives it (torch: inf), with the gradient, under jacrev, jacfwd and vmap too
    target = torch.tensor([0, 2, 2])
    if probabilities:
        target = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.2, 0.3, 0.1, 0.4], [0.1, 0.6, 0.2, 0.1]])
    kwargs = {"label_smoothing": 0.1, "weight": torch.tensor([1.0, 0.3, 0.5, 0.1])}
    if not weighted:
        kwargs.pop("weight")
    truth, truth_grad = _wide_truth(target, **kwargs)
    assert truth.abs().max() < 3e38
    assert not F.cross_entropy(_WIDE, target, reduction="none", **kwargs).isfinite().all()

    def loss(x, target=target):
        if probabilities:
            return funcloss.cross_entropy(x, target, reduction="none", **kwargs)
        return _ce(x, target, fused, reduction="none", **kwargs)

    value, grad = _value_and_grad(loss, _WIDE)
    close = {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(value.double(), truth, **close)
    torch.testing.assert_close(grad.double(), truth_grad, **close)
    torch.testing.assert_close(jacrev(lambda x: loss(x).sum())(_WIDE).double(), truth_grad, **close)
    torch.testing.assert_close(jacfwd(lambda x: loss(x).sum())(_WIDE).double(), truth_grad, **close)
    per_row = vmap(lambda x, t: loss(x[None], t[None]))(_WIDE, target).squeeze(1)
    torch.testing.assert_close(per_row.double(), truth, **close)


def test_linear_cross_entropy_rows_beyond_the_range_with_smoothing() -> None:
    # the same logits from a linear layer (h = 1, one column of weights): the rows path without
    # reads (transforms) and eager mode (its float64 recomputation) give the float64 value
    weight, target, x = _WIDE[:1].T.contiguous(), torch.tensor([0]), torch.ones(1, 1)
    truth = F.cross_entropy(_WIDE[:1].double(), target, label_smoothing=0.1, reduction="sum")
    assert truth < 3e38

    def loss(x):
        return funcloss.linear_cross_entropy(
            x, weight, target, label_smoothing=0.1, reduction="sum"
        )

    torch.testing.assert_close(loss(x).double(), truth)
    with funcloss.set_value_checks(False):
        torch.testing.assert_close(loss(x).double(), truth)
    torch.testing.assert_close(vmap(loss)(x[None])[0].double(), truth)
    assert bool(jacrev(loss)(x).isfinite().all())


def test_class_index_out_of_range_is_named_on_the_small_path() -> None:
    # gather's / nll_loss's own range check, reworded: the function and the argument are named
    x = torch.randn(4, 3)
    for target, kwargs in [
        ([0, 1, 3, 2], {}),
        ([0, -1, 1, 2], {}),
        ([0, -100, -5, 1], {"label_smoothing": 0.1}),
        ([0, 5, 1, 7], {"ignore_index": 5, "weight": torch.ones(3)}),
    ]:
        with pytest.raises(IndexError, match=r"cross_entropy: `target` values must be in \[0, 3\)"):
            funcloss.cross_entropy(x, torch.tensor(target), **kwargs)
        if "label_smoothing" not in kwargs:
            with pytest.raises(IndexError, match=r"nll_loss: `target` values must be in \[0, 3\)"):
                funcloss.nll_loss(x, torch.tensor(target), **kwargs)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.1, 1e-60])
def test_masked_class_of_weight_zero_with_smoothing_is_finite(
    fused, reduction, label_smoothing
) -> None:
    # A class switched off twice, by a -inf logit and a class weight of 0, adds exactly 0 to the
    # smoothed loss (torch 2.13: nan, 0 * -inf); so does a -inf log-probability (logits of
    # 3e38) under a smoothing weight that underflows float32 (1e-60 / C = 0).
    x = torch.tensor([[0.0, 1.0, -INF], [2.0, 0.5, -INF], [3e38, 0.0, -3e38]])
    y = torch.tensor([0, 1, 0])
    if label_smoothing > 1e-30:
        # not the logits of 3e38 here: eps / C times a log-probability of -6e38 (-inf in
        # float32) is finite, but no log-softmax form reaches it (open, issue 14)
        x, y = x[:2], y[:2]
    weight = torch.tensor([0.5, 2.0, 0.0])
    value, grad = _value_and_grad(
        _ce, x, y, fused, weight=weight, label_smoothing=label_smoothing, reduction=reduction
    )
    truth, truth_grad = _value_and_grad(
        F.cross_entropy,
        _limit(x, 1e300),
        y,
        weight=weight.double(),
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    assert torch.isnan(
        F.cross_entropy(x, y, weight=weight, label_smoothing=0.1, reduction=reduction)
    ).any()  # torch's own loss: nan
    torch.testing.assert_close(value.double(), truth, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad.double(), truth_grad, rtol=1e-6, atol=1e-6)
    assert (grad[:, 2] == 0).all()


_FAST_LOGITS = {
    "moderate": [[0.5, -1.0, 2.0], [0.0, 0.3, -0.2], [1.0, 1.0, 1.0], [-2.0, 0.0, 4.0]],
    "huge": [[2e19, -1.0, 0.0], [0.0, 0.3, -0.2], [1.0, -3e38, 3e38], [-2.0, 0.0, 4.0]],
    "large": [[2e19, -1.0, 0.0], [0.0, 0.3, -3e38], [1.0, 1.0, 1.0], [-2.0, 0.0, 4.0]],
    "minus_inf": [[0.5, -INF, 2.0], [0.0, 0.3, -0.2], [1.0, 1.0, 1.0], [-2.0, 0.0, 4.0]],
    "plus_inf": [[INF, -1.0, 2.0], [0.0, 0.3, -0.2], [1.0, 1.0, 1.0], [-2.0, 0.0, 4.0]],
    "nan": [[NAN, -1.0, 2.0], [0.0, 0.3, -0.2], [1.0, 1.0, 1.0], [-2.0, 0.0, 4.0]],
}


@pytest.mark.parametrize("logits", sorted(_FAST_LOGITS))
@pytest.mark.parametrize(
    "target, ignore_index", [([0, 2, 1, 2], -100), ([0, -100, 1, 2], -100), ([0, 3, 1, 2], 3)]
)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    "label_smoothing, weighted, dtype",
    [(0.0, False, torch.float32), (0.1, False, torch.float32), (0.0, True, torch.float64)],
)
def test_plain_eager_call_matches_the_general_path(
    logits, target, ignore_index, reduction, label_smoothing, weighted, dtype
) -> None:
    # the plain eager call (_fast: moderate logits in product form, others clamped and gathered)
    # gives the general path's values, gradients and second derivatives
    x = torch.tensor(_FAST_LOGITS[logits], dtype=dtype)
    y = torch.tensor(target)
    kwargs = {
        "weight": torch.tensor([0.5, 2.0, 1.0], dtype=dtype) if weighted else None,
        "ignore_index": ignore_index,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
    }
    results = []
    for loss_fn in (funcloss.cross_entropy, lambda x, y, **kw: _ce(x, y, False, **kw)):
        leaf = x.clone().requires_grad_()
        loss = loss_fn(leaf, y, **kwargs)
        (grad,) = torch.autograd.grad(loss.sum(), leaf, create_graph=True)
        (second,) = torch.autograd.grad((grad * torch.linspace(-1, 1, 12).view(4, 3)).sum(), leaf)
        with torch.no_grad():
            no_grad = loss_fn(x, y, **kwargs)
        results.append((loss.detach(), grad.detach(), second, no_grad))
    for fast, general in zip(*results, strict=True):
        torch.testing.assert_close(fast, general, equal_nan=True)
    if logits in ("moderate", "huge", "large", "minus_inf"):
        expected = F.cross_entropy(x, y, **kwargs)  # torch's, where it is finite
        if label_smoothing > 0:
            # the float64 value rounded to the dtype: torch gives inf for the smoothed mean of
            # the huge logits (a log-probability of -6e38 times eps / C), the truth is 1.425e38
            weight = kwargs["weight"]
            wide = {**kwargs, "weight": None if weight is None else weight.double()}
            expected = F.cross_entropy(x.double(), y, **wide).to(dtype)
        torch.testing.assert_close(results[0][0], expected)


def _graph(output: torch.Tensor) -> list[str]:
    """The names of the autograd nodes behind ``output``, output first, one path."""
    names, node = [], output.grad_fn
    while node is not None:
        names.append(type(node).__name__)
        node = next((n for n, _ in node.next_functions if n is not None), None)
    return names


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("logits", ["moderate", "large"])
def test_plain_eager_call_builds_the_product_form_on_finite_log_probabilities(
    logits, label_smoothing, reduction
) -> None:
    # every log-probability finite (also where the logits' sum of squares overflows): the
    # small call's graph is sum(log_softmax(x) * coefficients), three nodes; with an infinite
    # one it is clamped and gathered
    x = torch.tensor(_FAST_LOGITS[logits]).requires_grad_()
    y = torch.tensor([0, 2, 1, 2])
    loss = funcloss.cross_entropy(x, y, reduction=reduction, label_smoothing=label_smoothing)
    assert _graph(loss)[:3] == [
        "SumBackward1" if reduction == "none" else "SumBackward0",
        "MulBackward0",
        "LogSoftmaxBackward0",
    ]
    inf = funcloss.cross_entropy(
        torch.tensor(_FAST_LOGITS["plus_inf"]).requires_grad_(), y, reduction=reduction
    )
    assert "ClampBackward1" in _graph(inf)


class _CountReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts host reads (``item``, ``float``, ``int``, ``bool`` of a tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("logits", sorted(_FAST_LOGITS))
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_plain_eager_call_reads_once(logits, label_smoothing, grad, reduction) -> None:
    # the finiteness test of the product form shares the class-index read
    x = torch.tensor(_FAST_LOGITS[logits]).requires_grad_(grad)
    for target in ([0, 2, 1, 2], [0, -100, 1, 2]):
        with _CountReads() as mode:
            funcloss.cross_entropy(
                x, torch.tensor(target), reduction=reduction, label_smoothing=label_smoothing
            )
        assert mode.reads == 1, (target, mode.reads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("target", [[0, 2, 1, 2], [0, -100, 1, 2], [-100] * 4])
def test_nll_loss_eager_step_is_the_composition_bitwise(
    dtype, reduction, weighted, target, monkeypatch
) -> None:
    # the plain eager call (_nll_fast) runs the composition's arithmetic op for op: the same
    # bits in value, gradient and (zero) second derivative; an ignored row's nan never shows
    x = torch.tensor(
        [[-0.5, -1.5, -2.0], [NAN, -0.1, -3.0], [-1.0, -0.7, -1.2], [-2.5, -0.3, -1.9]],
        dtype=dtype,
    )
    if -100 not in target:
        x[1, 0] = -0.25
    y = torch.tensor(target)
    weight = torch.tensor([0.5, 2.0, 1.0], dtype=dtype) if weighted else None
    results = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(ce_module, "_nll_fast", lambda *args: False)
        leaf = x.clone().requires_grad_()
        loss = funcloss.nll_loss(leaf, y, weight, reduction=reduction)
        (grad,) = torch.autograd.grad(loss.sum(), leaf, create_graph=True)
        (second,) = torch.autograd.grad(grad.sum(), leaf)
        results.append((loss.detach(), grad.detach(), second))
    for fast, general in zip(*results, strict=True):
        assert torch.equal(fast, general) or (fast.isnan().all() and general.isnan().all())
    assert (results[0][2] == 0).all()
    expected = F.nll_loss(
        x.float(), y, None if weight is None else weight.float(), reduction=reduction
    )
    torch.testing.assert_close(results[0][0].float(), expected, equal_nan=True, **_tolerance(dtype))


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-2, "rtol": 1e-2} if dtype == torch.bfloat16 else {}


def test_nll_loss_eager_step_graph() -> None:
    # no class weight, nothing ignored, a scalar reduction: four graph nodes, no squeeze
    x = torch.randn(8, 5).log_softmax(1).requires_grad_()
    loss = funcloss.nll_loss(x, torch.randint(0, 5, (8,)))
    assert _graph(loss) == [
        "MeanBackward0",
        "NegBackward0",
        "PowBackward0",
        "GatherBackward0",
        "AccumulateGrad",
    ]
    with pytest.raises(IndexError, match="nll_loss"):
        funcloss.nll_loss(x, torch.tensor([0, 1, 2, 3, 4, 5, 0, 1]))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 2, 5)])
@pytest.mark.parametrize("logits", ["moderate", "plus_inf", "minus_inf"])
def test_probability_target_eager_step_matches_the_general_path(
    logits, shape, label_smoothing, weighted, reduction, monkeypatch
) -> None:
    # the plain eager call with class probabilities (_soft_fast): torch's graph where the loss
    # is finite, the general path (its clamps: the limit) where not; values and gradients (of
    # logits and target) as the general path's, bitwise for (N, C) "none"
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    q = torch.randn(shape, dtype=torch.float64).softmax(1)
    if logits == "plus_inf":
        x[0, 1] = INF
    if logits == "minus_inf":  # a masked class with zero probability: no 0 * -inf
        x[1, 2], q[1, 2] = -INF, 0.0
    kwargs = {
        "weight": torch.tensor([0.5, 2.0, 1.0, 0.0], dtype=torch.float64) if weighted else None,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
    }
    results = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(ce_module, "_soft_fast", lambda *args: False)
        leaf, target = x.clone().requires_grad_(), q.clone().requires_grad_()
        loss = funcloss.cross_entropy(leaf, target, **kwargs)
        grads = torch.autograd.grad(loss.sum(), (leaf, target))
        results.append((loss.detach(), *grads))
    for fast, general in zip(*results, strict=True):
        assert not fast.isnan().any()
        if len(shape) == 2 and reduction == "none":
            assert torch.equal(fast, general)
        else:
            torch.testing.assert_close(fast, general, rtol=1e-14, atol=1e-14)
    if logits == "moderate":
        torch.testing.assert_close(results[0][0], F.cross_entropy(x, q, **kwargs))


def test_probability_target_eager_step_graph() -> None:
    # torch's own graph: no clamp of the logits, no rows reshape of K-dim logits
    x = torch.randn(2, 3, 4, 5).requires_grad_()
    loss = funcloss.cross_entropy(x, torch.randn(2, 3, 4, 5).softmax(1))
    assert _graph(loss) == [
        "DivBackward0",
        "NegBackward0",
        "SumBackward0",
        "MulBackward0",
        "LogSoftmaxBackward0",
        "AccumulateGrad",
    ]
