"""Class indices of every integer dtype: int64/int32 pass through, narrower and unsigned dtypes
are widened, so values, gradients and range errors match torch's with int64 targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import funcloss
from funcloss._cross_entropy import _cross_entropy

NARROW = [torch.uint8, torch.int8, torch.int16, torch.int32]
X = torch.tensor([[0.3, -1.2, 2.0], [0.5, 0.1, -0.4], [1.5, 0.2, 0.0], [-0.7, 0.9, 0.4]])
W = torch.tensor([[0.2, -0.1, 0.4], [1.0, 0.3, -0.5], [-0.6, 0.8, 0.1]])
Y = torch.tensor([0, 1, 2, 1])


def _fused(x, y, **kwargs):
    return _cross_entropy(x, y, None, kwargs.get("ignore_index", -100), "mean", 0.0, True)


# (funcloss form, torch oracle taking int64 targets, target)
CASES = {
    "cross_entropy": (funcloss.cross_entropy, F.cross_entropy, Y),
    "cross_entropy-fused": (_fused, F.cross_entropy, Y),
    "cross_entropy-ignore": (
        lambda x, y: funcloss.cross_entropy(x, y, ignore_index=1),
        lambda x, y: F.cross_entropy(x, y, ignore_index=1),
        Y,
    ),
    "nll_loss": (
        lambda x, y: funcloss.nll_loss(x.log_softmax(1), y),
        lambda x, y: F.nll_loss(x.log_softmax(1), y),
        Y,
    ),
    "linear_cross_entropy": (
        lambda x, y: funcloss.linear_cross_entropy(x, W, y),
        lambda x, y: F.cross_entropy(x @ W.T, y),
        Y,
    ),
    "multi_margin_loss": (funcloss.multi_margin_loss, F.multi_margin_loss, Y),
    "multilabel_margin_loss": (
        funcloss.multilabel_margin_loss,
        F.multilabel_margin_loss,
        torch.tensor([[2, 0, 1], [1, 2, 0], [0, 1, 2], [2, 1, 0]]),
    ),
}


@pytest.mark.parametrize("dtype", NARROW, ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_narrow_index_dtypes_match_int64(name: str, dtype: torch.dtype) -> None:
    ours, theirs, target = CASES[name]
    x = X.clone().requires_grad_()
    loss = ours(x, target.to(dtype))
    (gradient,) = torch.autograd.grad(loss, x)
    x_ref = X.clone().requires_grad_()
    expected = theirs(x_ref, target)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(gradient, torch.autograd.grad(expected, x_ref)[0])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8], ids=str)
@pytest.mark.parametrize(
    "name", ["cross_entropy", "cross_entropy-fused", "nll_loss", "linear_cross_entropy"]
)
def test_narrow_index_out_of_range_names_the_value(name: str, dtype: torch.dtype) -> None:
    ours, _, _ = CASES[name]
    with pytest.raises(IndexError, match=r"`target` values must be in \[0, 3\).*got 7\."):
        ours(X, torch.tensor([0, 1, 7, 1], dtype=dtype))


def test_multilabel_margin_uint8_target_has_no_minus_one_wraparound() -> None:
    # uint8 cannot hold -1; its values must still be checked as numbers, not wrapped (255).
    target = torch.tensor([[2, 0, 1]], dtype=torch.uint8)
    torch.testing.assert_close(
        funcloss.multilabel_margin_loss(X[:1], target),
        F.multilabel_margin_loss(X[:1], target.long()),
    )
    with pytest.raises(IndexError, match=r"got 3\."):
        funcloss.multilabel_margin_loss(X[:1], torch.tensor([[3, 0, 1]], dtype=torch.uint8))
