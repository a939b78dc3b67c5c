"""The eager step of multi_margin_loss and multilabel_margin_loss (``_margin._HingeStep``) equals
the composition every transform differentiates: value, gradient (also a retained graph backed
twice: the in-place slope is used once, then recomputed), double backward and Hessian."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import funcloss
from funcloss import _margin

INF, NAN = float("inf"), float("nan")


@contextmanager
def _composition() -> Iterator[None]:
    """Every call takes the general path (the composition), as under a transform."""
    fast = _margin._fast
    _margin._fast = lambda *args, **kwargs: False  # type: ignore[assignment]
    try:
        yield
    finally:
        _margin._fast = fast


def _label_lists(n: int, c: int, most: int, generator: torch.Generator) -> Tensor:
    """Rows of 0 to ``most`` distinct labels, a label listed twice in some, then -1 and junk."""
    labels = torch.rand(n, c, generator=generator).argsort(-1)
    count = torch.randint(0, most + 1, (n, 1), generator=generator)
    twice = (torch.arange(n) % 3 == 0).unsqueeze(-1) & (count >= 2)
    labels[:, 1:2] = torch.where(twice, labels[:, :1], labels[:, 1:2])
    junk = torch.randint(-1, c, (n, c), generator=generator)
    slots = torch.arange(c)
    return torch.where(slots < count, labels, torch.where(slots == count, -1, junk))


def _case(name: str, shape: tuple[int, int], dtype: torch.dtype) -> tuple[Tensor, Tensor, dict]:
    generator = torch.Generator().manual_seed(sum(shape))
    n, c = shape
    scores = (torch.randn(n, c, generator=generator, dtype=dtype) * 2).round(decimals=1)
    if name == "multilabel_margin_loss":
        return scores, _label_lists(n, c, min(c, 16), generator), {}
    p, margin = (2, 0.5) if name.endswith("p2") else (1, 1.0)
    target = torch.randint(0, c, (n,), generator=generator)
    return scores, target, {"p": p, "margin": margin}


def _loss(name: str) -> Callable[..., Tensor]:
    return (
        funcloss.multilabel_margin_loss
        if name.startswith("multilabel")
        else (funcloss.multi_margin_loss)
    )


NAMES = ["multi_margin_loss", "multi_margin_loss-p2", "multilabel_margin_loss"]


# 300x1000 is above the steps' blocks (2**16 scores; 2**20 hinges at 16 labels), not a multiple.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7, 5), (300, 1000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", NAMES)
def test_eager_step_equals_the_composition(name, reduction, shape, dtype) -> None:
    fn = _loss(name)
    scores, target, kwargs = _case(name, shape, dtype)
    x = scores.clone().requires_grad_()
    loss = fn(x, target, reduction=reduction, **kwargs)
    assert type(loss.grad_fn).__name__ == "_HingeStepBackward"  # the step was taken
    weights = torch.rand(loss.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(loss, x, weights, retain_graph=True)
    (again,) = torch.autograd.grad(loss, x, weights)  # the slope is spent: recomputed
    with _composition():
        y = scores.clone().requires_grad_()
        expected = fn(y, target, reduction=reduction, **kwargs)
        assert type(expected.grad_fn).__name__ != "_HingeStepBackward"
        (expected_grad,) = torch.autograd.grad(expected, y, weights)
    assert torch.equal(again, grad)
    if name.startswith("multi_margin"):  # the composition's ops, one for one
        assert torch.equal(loss, expected)
        assert torch.equal(grad, expected_grad)
    else:  # direct hinges against the sort's suffix sums: the same hinges, summed otherwise
        torch.testing.assert_close(loss, expected)
        torch.testing.assert_close(grad, expected_grad)
    # the loss is torch's
    torch.testing.assert_close(
        loss, getattr(F, name.split("-")[0])(scores, target, **kwargs, reduction=reduction)
    )


@pytest.mark.parametrize("name", NAMES)
def test_eager_step_second_derivatives_are_the_compositions(name) -> None:
    fn = _loss(name)
    scores, target, kwargs = _case(name, (4, 5), torch.float64)

    def loss(x: Tensor) -> Tensor:
        return fn(x, target, reduction="mean", **kwargs)

    hessian = torch.autograd.functional.hessian(loss, scores)  # create_graph: the step's
    with _composition():
        expected = torch.autograd.functional.hessian(loss, scores)
    assert torch.equal(hessian, expected)
    if name.endswith("p2"):
        assert hessian.abs().sum() > 0  # a real second derivative, not a missing graph
    x = scores.clone().requires_grad_()
    assert torch.autograd.gradgradcheck(
        lambda v: fn(v, target, reduction="none", **kwargs), (x,), check_undefined_grad=False
    )


def test_multilabel_step_limits_are_the_compositions() -> None:
    """±inf and nan among the scores and at label classes: the composition's values (its
    limits; a nan among a row's other scores shows) and, away from nan, its gradients."""
    rows = [
        [INF, 0.0, 1.0, 2.0],
        [-INF, 0.0, 1.0, 2.0],
        [0.0, INF, 1.0, 2.0],
        [0.0, -INF, 1.0, 2.0],
        [INF, INF, 1.0, 2.0],
        [-INF, -INF, 1.0, 2.0],
        [INF, 0.0, -INF, INF],
        [NAN, 0.0, 1.0, 2.0],
        [0.0, 1.0, NAN, 2.0],
        [0.0, NAN, 1.0, 2.0],
    ]
    target = torch.tensor([[0, 2, -1, 1]]).expand(len(rows), 4).contiguous()
    target[6] = torch.tensor([2, -1, 0, 0])
    scores = torch.tensor(rows)
    x = scores.clone().requires_grad_()
    loss = funcloss.multilabel_margin_loss(x, target, reduction="none")
    assert type(loss.grad_fn).__name__ == "_HingeStepBackward"
    (grad,) = torch.autograd.grad(loss.sum(), x)
    with _composition():
        y = scores.clone().requires_grad_()
        expected = funcloss.multilabel_margin_loss(y, target, reduction="none")
        (expected_grad,) = torch.autograd.grad(expected.sum(), y)
    assert torch.equal(loss.isnan(), expected.isnan()) and loss[-1].isnan()
    torch.testing.assert_close(loss, expected, equal_nan=True)
    # a nan score: both values are nan; the step's gradient there is torch's (nan counts no
    # hinge), the sort's counts it as the largest score
    torch.testing.assert_close(grad[:-1], expected_grad[:-1])
    torch.testing.assert_close(grad[-1], torch.tensor([-0.25, 0.0, -0.25, 0.5]))


def test_multilabel_long_lists_take_the_composition() -> None:
    scores = torch.randn(3, 40, requires_grad=True)
    target = torch.arange(40).expand(3, 40).contiguous()
    target[0, 17] = -1  # 17 labels: more than the direct hinges take
    loss = funcloss.multilabel_margin_loss(scores, target)
    assert type(loss.grad_fn).__name__ != "_HingeStepBackward"
    target[:, 16] = -1
    assert type(funcloss.multilabel_margin_loss(scores, target).grad_fn).__name__ == (
        "_HingeStepBackward"
    )
    empty = torch.full((3, 40), -1)  # no label anywhere: the composition's 0
    assert funcloss.multilabel_margin_loss(scores, empty).item() == 0.0


def test_eager_step_reports_a_class_index_out_of_range() -> None:
    scores = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(IndexError, match=r"multi_margin_loss: `target` values must be in"):
        funcloss.multi_margin_loss(scores, torch.tensor([0, 3]))
    with pytest.raises(IndexError, match=r"multilabel_margin_loss: `target` values must be"):
        funcloss.multilabel_margin_loss(scores, torch.tensor([[0, -1, 5], [1, -1, 0]]))
