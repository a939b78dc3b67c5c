"""The eager steps of soft_margin, multilabel_soft_margin and hinge_embedding
(``_margin._SoftMarginStep``, ``_embedding._HingeEmbeddingStep``) and the half-precision steps
of poisson_nll_loss and kl_div (``_regression._EagerStep``) against the general path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import funcloss
from funcloss import _embedding, _margin, _regression

INF, NAN = float("inf"), float("nan")
# soft_margin and hinge_embedding take their steps from 2**16 elements (the composition below)
ROWS, COLUMNS = 256, 257

_GATES = {
    "soft_margin_loss": (_margin, "_pair_fast"),
    "multilabel_soft_margin_loss": (_margin, "_pair_fast"),
    "hinge_embedding_loss": (_embedding, "_hinge_embedding_fast"),
    "poisson_nll_loss": (_regression, "_fast"),
    "kl_div": (_regression, "_fast"),
}
_STEPS = {
    "soft_margin_loss": "_SoftMarginStepBackward",
    "multilabel_soft_margin_loss": "_SoftMarginStepBackward",
    "hinge_embedding_loss": "_HingeEmbeddingStepBackward",
    "poisson_nll_loss": "_EagerStepBackward",
    "kl_div": "_EagerStepBackward",
}


def _inputs(name: str, dtype: torch.dtype, special: bool) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(ROWS, COLUMNS, generator=generator) * 3
    if name == "soft_margin_loss":
        y = torch.randint(0, 2, x.shape, generator=generator).float() * 2 - 1
    elif name == "multilabel_soft_margin_loss":
        y = torch.randint(0, 2, x.shape, generator=generator).float()
    elif name == "hinge_embedding_loss":
        x = x.abs()
        y = torch.randint(0, 2, x.shape, generator=generator).float() * 2 - 1
        y[0, :5] = 0.0  # neither 1 nor -1: both terms
        x[1, :3], y[1, :3] = 1.0, -1.0  # at the kink: clamp_min's derivative, 1
    elif name == "poisson_nll_loss":
        y = torch.poisson(torch.full(x.shape, 2.0), generator=generator)
    else:
        x = x.log_softmax(-1)
        y = torch.randn(x.shape, generator=generator).softmax(-1)
        y[0, :4] = 0.0  # a class of probability 0
    if special:  # infinities the composition counts as limits
        if name == "poisson_nll_loss":
            x[2, 0], y[2, 0] = -INF, 0.0  # a count of 0 at a rate of 0 adds 0
        elif name == "kl_div":
            x[0, 0] = -INF  # at a probability of 0
        else:
            x[2, 0], x[2, 1] = INF, -INF
    return x.to(dtype), y.to(dtype)


def _run(name: str, x: torch.Tensor, y: torch.Tensor, reduction: str):
    """Value, gradient, second derivative (create_graph), a second backward of the retained
    graph, the first-order gradient of backward(), and the grad_fn's name."""
    loss_fn = getattr(funcloss, name)
    weights = torch.linspace(-1, 1, x.numel()).view(x.shape).to(x.dtype)
    leaf = x.clone().requires_grad_()
    loss = loss_fn(leaf, y, reduction=reduction)
    (grad,) = torch.autograd.grad(loss, leaf, create_graph=True)
    second = None  # a loss piecewise linear in x: a gradient of constants, in both paths
    if grad.requires_grad:
        (second,) = torch.autograd.grad((grad * weights).sum(), leaf)
    leaf = x.clone().requires_grad_()
    loss = loss_fn(leaf, y, reduction=reduction)
    (first,) = torch.autograd.grad(loss, leaf, retain_graph=True)  # the in-place slope
    (again,) = torch.autograd.grad(loss, leaf)  # recomputed from the inputs
    return loss.detach(), grad.detach(), second, first, again, type(loss.grad_fn).__name__


def _general(monkeypatch, name: str, x: torch.Tensor, y: torch.Tensor, reduction: str):
    module, gate = _GATES[name]
    with monkeypatch.context() as patch:
        patch.setattr(module, gate, lambda *args, **kwargs: False)
        return _run(name, x, y, reduction)


def _cases() -> list[tuple[str, torch.dtype]]:
    cases = []
    for name in _STEPS:
        dtypes = [torch.bfloat16]
        if name == "soft_margin_loss":  # in half precision: the composition
            dtypes = []
        if name not in ("poisson_nll_loss", "kl_div"):  # fp32/fp64 steps of these: tested before
            dtypes += [torch.float32, torch.float64]  # fp16: the accuracy test below
        cases += [(name, dtype) for dtype in dtypes]
    return cases


@pytest.mark.parametrize(("name", "dtype"), _cases())
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("special", [False, True], ids=["finite", "infinite"])
def test_the_step_matches_the_general_path(monkeypatch, name, dtype, reduction, special) -> None:
    if name == "kl_div" and reduction == "mean":
        reduction = "batchmean"
    x, y = _inputs(name, dtype, special)
    fast, general = _run(name, x, y, reduction), _general(monkeypatch, name, x, y, reduction)
    assert general[-1] != _STEPS[name]
    # the step runs wherever its value is finite (multilabel_soft_margin's infinite logit makes
    # its terms 0 * inf: the composition reruns; the others count the limits themselves)
    stepped = not (special and name == "multilabel_soft_margin_loss")
    assert (fast[-1] == _STEPS[name]) == stepped
    value, grad, second, first, again = fast[:-1]
    close = torch.testing.assert_close
    if dtype == torch.bfloat16:
        # the step computes in float32 where soft_margin's and poisson's general paths round
        # each op to the dtype: two of its roundings at the largest magnitude apart (the test
        # below compares both with float64)
        def close(got, want, **kwargs):
            resolution = torch.finfo(dtype).eps
            scale = float(want.nan_to_num(0, 0, 0).abs().max())
            torch.testing.assert_close(
                got, want, rtol=2 * resolution, atol=2 * resolution * scale, **kwargs
            )

    close(value, general[0])
    close(grad, general[1], equal_nan=True)
    linear = name in ("hinge_embedding_loss", "kl_div")
    assert (second is None) == (general[2] is None) == linear
    if second is not None:
        close(second, general[2], equal_nan=True)
    close(first, general[3], equal_nan=True)
    assert torch.equal(first.isnan(), again.isnan())
    assert torch.equal(first.nan_to_num(), again.nan_to_num())  # the same bits, recomputed
    assert first.dtype == x.dtype
    if name == "hinge_embedding_loss":  # the composition's terms, bit for bit
        assert torch.equal(value, general[0]) and torch.equal(first, general[3])


@pytest.mark.parametrize(
    ("name", "dtype"),
    [(name, dtype) for name, dtype in _cases() if dtype in (torch.bfloat16, torch.float32)]
    + [(name, torch.float16) for name in ("hinge_embedding_loss", "multilabel_soft_margin_loss")],
)
def test_the_step_is_at_least_as_accurate_as_torch(name, dtype) -> None:
    """Against float64 on the same rounded inputs: the value's and the gradient's errors at
    most torch's (bf16 terms and sums accumulate in fp32)."""
    x, y = _inputs(name, dtype, special=False)
    reduction = "batchmean" if name == "kl_div" else "mean"

    def value_and_grad(loss_fn, x, y):
        leaf = x.clone().requires_grad_()
        loss = loss_fn(leaf, y, reduction=reduction)
        loss.backward()
        return loss.detach().double(), leaf.grad.double()

    truth = value_and_grad(getattr(F, name), x.double(), y.double())
    ours = value_and_grad(getattr(funcloss, name), x, y)
    theirs = value_and_grad(getattr(F, name), x, y)
    leaf = x.clone().requires_grad_()
    assert (
        type(getattr(funcloss, name)(leaf, y, reduction=reduction).grad_fn).__name__
        == (_STEPS[name])
    )

    def errors(result):
        return (
            float((result[0] - truth[0]).abs() / truth[0].abs()),
            float((result[1] - truth[1]).norm() / truth[1].norm()),
        )

    # torch's error, or where both are below it, the value's spacing in the dtype (sums of 65792
    # terms in two orders, each rounded to the dtype, are an ulp apart); a NaN error of torch's
    # (an fp16 overflow) is worse than any
    value = truth[0].to(dtype)
    spacing = float(torch.nextafter(value.abs(), torch.tensor(INF, dtype=dtype)) - value.abs())
    spacing /= float(truth[0].abs())
    (value_error, grad_error), (torch_value_error, torch_grad_error) = errors(ours), errors(theirs)
    assert value_error <= max(torch_value_error, spacing) or math.isnan(torch_value_error), (
        value_error,
        torch_value_error,
    )
    # float32 gradients: both below half an ulp, where the rounding of the factor 1 / N decides
    # (the fp32 steps compute as the compositions do); half precision: strictly torch's or less
    floor = torch.finfo(dtype).eps / 2 if dtype == torch.float32 else 0.0
    assert grad_error <= max(torch_grad_error, floor) or math.isnan(torch_grad_error), (
        grad_error,
        torch_grad_error,
    )


def test_small_calls_and_masks_take_the_composition() -> None:
    x, y = torch.randn(64, 10).requires_grad_(), torch.randint(0, 2, (64, 10)).float() * 2 - 1
    for name in ("soft_margin_loss", "hinge_embedding_loss"):
        loss_fn = getattr(funcloss, name)
        assert type(loss_fn(x, y).grad_fn).__name__ != _STEPS[name]  # below 2**16 elements
        torch.testing.assert_close(loss_fn(x, y), getattr(F, name)(x, y))
    big = torch.randn(ROWS, COLUMNS).requires_grad_()
    signs = torch.randint(0, 2, big.shape).float() * 2 - 1
    everywhere = torch.ones(big.shape, dtype=torch.bool)
    for name in _STEPS:
        loss_fn = getattr(funcloss, name)
        target = signs.clamp_min(0) if name != "soft_margin_loss" else signs
        assert type(loss_fn(big, target).grad_fn).__name__ == _STEPS[name]
        mask = everywhere[:, 0] if name == "multilabel_soft_margin_loss" else everywhere
        others = [
            loss_fn(big, target, where=mask),
            loss_fn(big, target, reduction="none").sum(),
            loss_fn(big, target.clone().requires_grad_()),
        ]
        for loss in others:
            assert type(loss.grad_fn).__name__ != _STEPS[name]
    small = torch.rand(64, 10, dtype=torch.bfloat16).requires_grad_()
    counts = torch.poisson(torch.full((64, 10), 2.0)).bfloat16()  # bf16 below 2**16 elements
    assert (
        type(funcloss.poisson_nll_loss(small, counts).grad_fn).__name__
        != (_STEPS["poisson_nll_loss"])
    )
    with funcloss.set_value_checks(False):  # multilabel_soft_margin's step reads its value
        loss = funcloss.multilabel_soft_margin_loss(big, signs.clamp_min(0))
        assert type(loss.grad_fn).__name__ != _STEPS["multilabel_soft_margin_loss"]


def test_run_is_apply_without_its_python_layer() -> None:
    """``SlopeStep.run`` (the C apply) gives ``apply``'s value, gradient and node, and unwraps a
    tensor escaped from a finished transform as ``apply`` does."""
    x, y = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)
    results = []
    for call in (_regression._EagerStep.apply, _regression._EagerStep.run):
        leaf = x.clone().requires_grad_()
        loss = call(_regression._MSE_RULE, leaf, y, (40, 0.0))
        loss.backward()
        results.append((loss.detach(), leaf.grad, type(loss.grad_fn).__name__))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert results[0][2] == results[1][2] == "_EagerStepBackward"
    escaped = []
    torch.func.grad(lambda t: escaped.append(t) or t.sum())(x)  # a dead wrapper after grad
    value = _regression._EagerStep.run(_regression._MSE_RULE, escaped[0], y, (40, 0.0))
    assert torch.equal(value, _regression._EagerStep.apply(_regression._MSE_RULE, x, y, (40, 0.0)))


@pytest.mark.parametrize("shape", [(7, 5), (64, 64), (64, 65), (600, 500)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_step_matches_the_general_path(monkeypatch, shape, dtype, reduction) -> None:
    """mse's step (one dot up to 4096 elements, 64x64; blocked norms above, 64x65) against the
    composition: value and gradient close, taken exactly where expected, the same bits from a
    second backward of the retained graph and from create_graph, and deterministic."""
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    y = torch.randn(shape, generator=generator, dtype=dtype)

    def run():
        leaf = x.clone().requires_grad_()
        loss = funcloss.mse_loss(leaf, y, reduction=reduction)
        (first,) = torch.autograd.grad(loss, leaf, retain_graph=True)
        (again,) = torch.autograd.grad(loss, leaf)
        graph = funcloss.mse_loss(leaf, y, reduction=reduction)
        (created,) = torch.autograd.grad(graph, leaf, create_graph=True)
        (second,) = torch.autograd.grad(created.sum(), leaf)
        return loss.detach(), first, again, created.detach(), second, type(loss.grad_fn).__name__

    fast = run()
    assert fast[-1] == "_EagerStepBackward"
    assert torch.equal(fast[1], fast[2]) and torch.equal(fast[1], fast[3])
    repeated = run()
    assert all(torch.equal(a, b) for a, b in zip(fast[:-1], repeated[:-1], strict=True))
    with monkeypatch.context() as patch:
        patch.setattr(_regression, "_fast", lambda *args, **kwargs: False)
        general = run()
    assert general[-1] != "_EagerStepBackward"
    for got, want in zip(fast[:-1], general[:-1], strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(fast[0], F.mse_loss(x, y, reduction=reduction))


# The float64 slope d loss / d x of each bf16 step's loss (the mean divides it by N C), the
# terms its float32 arithmetic subtracts, and the float64 loss.
_SLOPES = {
    "binary_cross_entropy_with_logits": lambda x, y: (torch.sigmoid(x) - y, torch.sigmoid(x) + y),
    "multilabel_soft_margin_loss": lambda x, y: (torch.sigmoid(x) - y, torch.sigmoid(x) + y),
    "poisson_nll_loss": lambda x, y: (torch.exp(x) - y, torch.exp(x) + y),
    "mse_loss": lambda x, y: (2 * (x - y), 2 * (x.abs() + y.abs())),
    "huber_loss": lambda x, y: ((x - y).clamp(-1, 1), x.abs() + y.abs()),
    "smooth_l1_loss": lambda x, y: ((x - y).clamp(-0.5, 0.5) / 0.5, (x.abs() + y.abs()) / 0.5),
}
_KWARGS = {"smooth_l1_loss": {"beta": 0.5}}


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("binary_cross_entropy_with_logits", "_logistic"),
        ("multilabel_soft_margin_loss", "_margin"),
        ("poisson_nll_loss", "_regression"),
        ("mse_loss", "_regression"),
        ("huber_loss", "_regression"),
        ("smooth_l1_loss", "_regression"),
    ],
)
def test_bf16_gradient_by_float32_chunks_is_rounded_once(
    name: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the chunk (2**18 entries, 600 x 500 not a multiple of it), the bf16 gradient is
    the float64 truth rounded once to bf16 (half an ulp: 2**-8 of it), plus float32's error on
    the way (a few float32 ulps of the terms that it subtracts); the value is torch's float64
    loss rounded once, within float32's summation error."""
    from funcloss import _logistic, _ops

    owner = {"_logistic": _logistic, "_margin": _margin, "_regression": _regression}[module]
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return _ops.float32_gradient(*args, **kwargs)

    monkeypatch.setattr(owner, "float32_gradient", counted)
    generator = torch.Generator().manual_seed(5)
    x = (torch.randn(600, 500, generator=generator) * 3).bfloat16()
    if name == "poisson_nll_loss":
        y = torch.poisson(torch.full(x.shape, 2.0), generator=generator).bfloat16()
    elif name in ("mse_loss", "huber_loss", "smooth_l1_loss"):
        y = torch.randn(x.shape, generator=generator).bfloat16()
    else:
        y = torch.randint(0, 2, x.shape, generator=generator).bfloat16()
    x64, y64 = x.double(), y.double()
    slope, terms = _SLOPES[name](x64, y64)
    truth, scale = slope / x.numel(), terms / x.numel()
    kwargs = _KWARGS.get(name, {})
    leaf = x.clone().requires_grad_()
    value = getattr(funcloss, name)(leaf, y, **kwargs)
    (gradient,) = torch.autograd.grad(value, leaf)
    assert calls, "the float32 chunked gradient did not run"
    assert gradient.dtype == torch.bfloat16 and value.dtype == torch.bfloat16
    error = (gradient.double() - truth).abs()
    assert bool((error <= truth.abs() * 2.0**-8 + 2.0**-21 * scale).all()), error.max()
    value64 = getattr(F, name)(x64, y64, **kwargs)
    assert abs(value.double() - value64) <= value64.abs() * (2.0**-8 + 1e-6), (value, value64)
