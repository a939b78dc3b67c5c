"""The eager training step of the BCE losses (``_logistic._BCEStep``) against the general path."""

from __future__ import annotations

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
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_plain_eager_call_matches_the_general_path(
    monkeypatch, logits, values, target, reduction, dtype
) -> None:
    table = _LOGITS if logits else _PROBABILITIES
    loss_fn = funcloss.binary_cross_entropy_with_logits if logits else funcloss.binary_cross_entropy
    x = torch.tensor(table[values], dtype=dtype)
    y = torch.tensor(_TARGETS[target], dtype=dtype)
    fast, general = _run(loss_fn, x, y, reduction), _general(monkeypatch, loss_fn, x, y, reduction)
    if isinstance(general, str):  # the same error, raised by the general path's checks
        assert fast == general
        return
    assert "BCEStep" not in type(general[-1]).__name__
    for got, want in zip(fast[:-1], general[:-1], strict=True):
        torch.testing.assert_close(got, want, equal_nan=True)
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
