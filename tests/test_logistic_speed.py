"""The eager training step of the BCE losses (``_logistic._BCEStep``) against the general path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import funcloss
from funcloss import _logistic

INF, NAN = float("inf"), float("nan")

_PROBABILITIES = {
    "moderate": [[0.5, 0.2, 0.9], [0.3, 0.7, 0.01], [0.6, 0.4, 0.5], [0.1, 0.8, 0.99]],
    "at_bounds": [[0.0, 1.0, 0.5], [1e-30, 1 - 1e-7, 0.01], [1.0, 0.0, 0.5], [0.1, 0.8, 0.0]],
    "nan": [[NAN, 0.2, 0.9], [0.3, 0.7, 0.01], [0.6, 0.4, 0.5], [0.1, 0.8, 0.99]],
    "above_one": [[1.5, 0.2, 0.9], [0.3, 0.7, 0.01], [0.6, 0.4, 0.5], [0.1, 0.8, 0.99]],
    "negative": [[-0.1, 0.2, 0.9], [0.3, 0.7, 0.01], [0.6, 0.4, 0.5], [0.1, 0.8, 0.99]],
}
_LOGITS = {
    "moderate": [[0.5, -1.0, 2.0], [0.0, 0.3, -0.2], [1.0, 1.0, 1.0], [-2.0, 0.0, 4.0]],
    "huge": [[60.0, -60.0, 0.0], [3e38, -3e38, -0.2], [1.0, 1e5, -1e5], [-2.0, 0.0, 4.0]],
    "plus_inf": [[INF, -1.0, 2.0], [0.0, INF, -0.2], [1.0, 1.0, 1.0], [-2.0, 0.0, 4.0]],
    "minus_inf": [[-INF, -1.0, 2.0], [0.0, -INF, -0.2], [1.0, 1.0, 1.0], [-2.0, 0.0, 4.0]],
    "nan": [[NAN, -1.0, 2.0], [0.0, 0.3, -0.2], [1.0, 1.0, 1.0], [-2.0, 0.0, 4.0]],
}
_TARGETS = {
    "hard": [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
    "soft": [[0.5, 0.2, 1.0], [0.0, 0.9, 0.3], [0.25, 0.0, 1.0], [0.6, 1.0, 0.1]],
    "above_one": [[1.5, 0.2, 1.0], [0.0, 0.9, 0.3], [0.25, 0.0, 1.0], [0.6, 1.0, 0.1]],
}


def _run(loss_fn, x, y, reduction):
    """Value, gradient, second derivative and no-grad value, or the error raised."""
    leaf = x.clone().requires_grad_()
    try:
        loss = loss_fn(leaf, y, reduction=reduction)
    except ValueError as error:
        return str(error)
    (grad,) = torch.autograd.grad(loss, leaf, create_graph=True)
    (second,) = torch.autograd.grad((grad * torch.linspace(-1, 1, 12).view(4, 3)).sum(), leaf)
    leaf.grad = None
    loss = loss_fn(leaf, y, reduction=reduction)
    loss.backward()  # the in-place first-order backward (the step's slope)
    with torch.no_grad():
        no_grad = loss_fn(x, y, reduction=reduction)
    return loss.detach(), leaf.grad, grad.detach(), second, no_grad, loss.grad_fn


def _general(monkeypatch, loss_fn, x, y, reduction):
    with monkeypatch.context() as patch:
        patch.setattr(_logistic, "_fast", lambda *args: False)
        return _run(loss_fn, x, y, reduction)


@pytest.mark.parametrize(
    "logits, values",
    [(False, name) for name in sorted(_PROBABILITIES)] + [(True, name) for name in sorted(_LOGITS)],
)
@pytest.mark.parametrize("target", sorted(_TARGETS))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_plain_eager_call_matches_the_general_path(
    monkeypatch, logits, values, target, reduction, dtype
) -> None:
    table = _LOGITS if logits else _PROBABILITIES
    loss_fn = funcloss.binary_cross_entropy_with_logits if logits else funcloss.binary_cross_entropy
    x = torch.tensor(table[values], dtype=dtype)
    y = torch.tensor(_TARGETS[target], dtype=dtype)
    # bf16: the step computes in float32 and rounds once, where binary_cross_entropy's general
    # path rounds each bf16 op (its second derivative at x = 0.01 is half the float64 one): the
    # general path of the float32 inputs, to bf16's resolution
    wide = torch.float32 if dtype == torch.bfloat16 else dtype
    fast = _run(loss_fn, x, y, reduction)
    general = _general(monkeypatch, loss_fn, x.to(wide), y.to(wide), reduction)
    if isinstance(general, str):  # the same error, raised by the general path's checks
        assert fast == general.replace("float32", "bfloat16")
        return
    assert "BCEStep" not in type(general[-1]).__name__
    tolerance = {"rtol": 2**-7, "atol": 1e-5} if dtype == torch.bfloat16 else {}  # an ulp
    for got, want in zip(fast[:-1], general[:-1], strict=True):
        assert got.dtype == dtype
        torch.testing.assert_close(got.to(wide), want, equal_nan=True, **tolerance)
    # the step ran wherever inputs and loss are finite and valid (an infinity, a NaN or a value
    # out of range takes the composition)
    valid = logits or (values in ("moderate", "at_bounds") and target != "above_one")
    finite = valid and bool(torch.isfinite(x).all() and torch.isfinite(general[0]))
    assert ("BCEStep" in type(fast[-1]).__name__) == finite
    if finite:  # torch's own loss agrees
        reference = F.binary_cross_entropy_with_logits if logits else F.binary_cross_entropy
        torch.testing.assert_close(fast[0], reference(x, y, reduction=reduction))


def test_the_step_skips_masks_weights_and_unreduced_calls() -> None:
    x = torch.rand(4, 3).requires_grad_()
    y = torch.rand(4, 3)
    for loss_fn in (funcloss.binary_cross_entropy, funcloss.binary_cross_entropy_with_logits):
        assert "BCEStep" in type(loss_fn(x, y).grad_fn).__name__
        others = [
            loss_fn(x, y, reduction="none").sum(),
            loss_fn(x, y, torch.rand(3)),
            loss_fn(x, y, where=torch.rand(4, 3) > 0.5),
            loss_fn(x, y.clone().requires_grad_()),
        ]
        for loss in others:
            assert "BCEStep" not in type(loss.grad_fn).__name__
    with funcloss.set_value_checks(False):  # the probability step reads values
        assert "BCEStep" not in type(funcloss.binary_cross_entropy(x, y).grad_fn).__name__


@pytest.mark.parametrize("shape", [(64, 10), (300, 300), (600, 500)])
@pytest.mark.parametrize("logits", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bf16_steps(monkeypatch, logits, reduction, shape) -> None:
    """bf16 takes the steps at every size, computed in float32 (the per-call sizes keep a float32
    slope, the steps go by chunks above 2**16 elements, without a slope: 600x500 is two chunks):
    the general path's values and gradients to bf16's resolution, a retained graph backed twice
    gives the same bits, and value and gradient are at least as accurate as torch's (float64 of
    the same bf16 inputs)."""
    generator = torch.Generator().manual_seed(5)
    if logits:
        x = torch.randn(shape, generator=generator) * 4
        loss_fn = funcloss.binary_cross_entropy_with_logits
        reference = F.binary_cross_entropy_with_logits
    else:
        x = torch.rand(shape, generator=generator) * 0.98 + 0.01
        loss_fn, reference = funcloss.binary_cross_entropy, F.binary_cross_entropy
    y = torch.rand(shape, generator=generator)
    y[0, :3] = torch.tensor([0.0, 1.0, 0.5])
    x, y = x.bfloat16(), y.bfloat16()
    leaf = x.clone().requires_grad_()
    loss = loss_fn(leaf, y, reduction=reduction)
    assert "BCEStep" in type(loss.grad_fn).__name__
    assert loss.dtype == torch.bfloat16
    (first,) = torch.autograd.grad(loss, leaf, retain_graph=True)
    (again,) = torch.autograd.grad(loss, leaf)
    assert first.dtype == torch.bfloat16 and torch.equal(first, again)
    # create_graph rounds as the slope does
    loss = loss_fn(leaf, y, reduction=reduction)
    (graph,) = torch.autograd.grad(loss, leaf, create_graph=True)
    assert torch.equal(graph.detach(), first)
    with monkeypatch.context() as patch:
        patch.setattr(_logistic, "_fast", lambda *args: False)
        general = loss_fn(leaf, y, reduction=reduction)
    assert "BCEStep" not in type(general.grad_fn).__name__
    torch.testing.assert_close(loss.detach(), general.detach())
    torch.testing.assert_close(first, torch.autograd.grad(general, leaf)[0])

    def value_and_grad(fn, x):
        leaf = x.clone().requires_grad_()
        value = fn(leaf, y.to(x.dtype), reduction=reduction)
        value.backward()
        return value.detach().double(), leaf.grad.double()

    truth = value_and_grad(reference, x.double())
    for got, want in zip(value_and_grad(loss_fn, x), truth, strict=True):
        theirs = value_and_grad(reference, x)[0 if got.dim() == 0 else 1]
        error, torch_error = (got - want).norm() / want.norm(), (theirs - want).norm() / want.norm()
        assert error <= torch_error or error <= torch.finfo(torch.bfloat16).eps / 2, (
            error,
            torch_error,
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_probability_step_reads_the_values(dtype) -> None:
    """Above 2**16 elements the probability step goes by chunks and still refuses what the
    general path refuses (a target or input outside [0, 1], a NaN), and keeps the logs' floor
    at inputs of exactly 0 and 1 (torch's values)."""
    generator = torch.Generator().manual_seed(7)
    x = (torch.rand(600, 500, generator=generator) * 0.98 + 0.01).to(dtype)
    y = torch.rand(600, 500, generator=generator).to(dtype)
    x[0, 0], y[0, 0], x[0, 1], y[0, 1] = 0.0, 0.5, 1.0, 0.25  # logs floored at -100
    leaf = x.clone().requires_grad_()
    loss = funcloss.binary_cross_entropy(leaf, y)
    assert "BCEStep" in type(loss.grad_fn).__name__
    loss.backward()
    reference = x.double().requires_grad_()
    F.binary_cross_entropy(reference, y.double()).backward()
    rtol = 2.0**-7 if dtype == torch.bfloat16 else 1e-5
    truth = F.binary_cross_entropy(x.double(), y.double())
    torch.testing.assert_close(loss.double(), truth, rtol=rtol, atol=0)
    torch.testing.assert_close(leaf.grad.double(), reference.grad, rtol=rtol, atol=1e-12)
    for bad_x, bad_y in [(None, 1.5), (None, -0.5), (math.nan, None), (1.5, None)]:
        x2, y2 = x.clone(), y.clone()
        if bad_x is not None:
            x2[3, 4] = bad_x
        if bad_y is not None:
            y2[3, 4] = bad_y
        with pytest.raises(ValueError, match="binary_cross_entropy"):
            funcloss.binary_cross_entropy(x2.requires_grad_(), y2)
