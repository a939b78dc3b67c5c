"""Bad input to the ranking losses: each fails with the house message."""

from __future__ import annotations

import pytest
import torch

import funcloss
import funcloss.nn as fnn

X = torch.zeros(2, 3)
Y = torch.ones(2, 3)
NAMES = [
    "ranking_softmax_loss",
    "pairwise_logistic_loss",
    "pairwise_hinge_loss",
    "listmle_loss",
    "approx_ndcg_loss",
]
WEIGHTED = [name for name in NAMES if name != "listmle_loss"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(3,), (2, 4), (2, 3, 1), (3, 2)])
def test_target_of_the_wrong_shape(name, shape) -> None:
    with pytest.raises(
        ValueError, match=rf"{name}: `target` must have the same shape as `input` \(2, 3\)"
    ):
        getattr(funcloss, name)(X, torch.zeros(shape))


@pytest.mark.parametrize("name", NAMES)
def test_negative_relevance(name) -> None:
    target = torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 2.0]])
    with pytest.raises(ValueError, match=rf"{name}: `target` values must be in \[0.0, inf\]"):
        getattr(funcloss, name)(X, target)
    with pytest.raises(ValueError, match=rf"{name}: `target` values must be in \[0.0, inf\]"):
        getattr(funcloss, name)(X, torch.full((2, 3), float("nan")))
    # a masked item's relevance is not read
    where = torch.tensor([[True, False, True], [True, True, True]])
    assert torch.isfinite(getattr(funcloss, name)(X, target, where=where))


@pytest.mark.parametrize("name", NAMES)
def test_input_and_target_kinds(name) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(TypeError, match=rf"{name}: `input` must have a floating-point dtype"):
        fn(X.long(), Y)
    with pytest.raises(TypeError, match=rf"{name}: `target` must have a floating-point dtype"):
        fn(X, Y.long())
    with pytest.raises(TypeError, match=rf"{name}: `input` must be a torch.Tensor, got list"):
        fn([0.0, 1.0], Y)
    with pytest.raises(ValueError, match=rf"{name}: `input` must have a list dimension"):
        fn(torch.tensor(1.0), torch.tensor(1.0))


@pytest.mark.parametrize("name", NAMES)
def test_where_kind_and_shape(name) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(TypeError, match=rf"{name}: `where` must be a bool tensor"):
        fn(X, Y, where=torch.ones(2, 3))
    with pytest.raises(TypeError, match=rf"{name}: `where` must be a bool tensor"):
        fn(X, Y, where=[True, False])
    for shape in [(3,), (2, 4), (3, 2, 3)]:
        # (3,): an item mask needs the scores' number of dimensions; for a list mask it is
        # not broadcastable to (2,)
        with pytest.raises(
            ValueError,
            match=rf"{name}: `where` must be broadcastable to the unreduced loss shape \(2,\) "
            r"\(a list mask\) or have the scores' 2 dimensions",
        ):
            fn(X, Y, where=torch.ones(shape, dtype=torch.bool))


@pytest.mark.parametrize("name", WEIGHTED)
def test_weight_shape_and_kind(name) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(ValueError, match=rf"{name}: `weight` must be broadcastable to \(2, 3\)"):
        fn(X, Y, weight=torch.ones(2, 2))
    with pytest.raises(ValueError, match=rf"{name}: `weight` must be broadcastable to \(2, 3\)"):
        fn(X, Y, weight=torch.ones(4, 2, 3))
    with pytest.raises(TypeError, match=rf"{name}: `weight` must have a floating-point dtype"):
        fn(X, Y, weight=torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_non_positive_temperature(temperature) -> None:
    with pytest.raises(ValueError, match=r"approx_ndcg_loss: `temperature` must be positive"):
        funcloss.approx_ndcg_loss(X, Y, temperature=temperature)
    with pytest.raises(ValueError, match=r"ApproxNDCGLoss: `temperature` must be positive"):
        fnn.ApproxNDCGLoss(temperature=temperature)


def test_margin_must_be_a_number() -> None:
    with pytest.raises(TypeError, match=r"pairwise_hinge_loss: `margin` must be a real number"):
        funcloss.pairwise_hinge_loss(X, Y, margin=torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"PairwiseHingeLoss: `margin` must be a real number"):
        fnn.PairwiseHingeLoss(margin=float("nan"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduction", ["avg", "batchmean", None])
def test_bad_reduction(name, reduction) -> None:
    with pytest.raises(ValueError, match=rf"{name}: `reduction` must be one of 'none' \| "):
        getattr(funcloss, name)(X, Y, reduction=reduction)


@pytest.mark.parametrize(
    "module",
    [
        fnn.RankingSoftmaxLoss,
        fnn.PairwiseLogisticLoss,
        fnn.PairwiseHingeLoss,
        fnn.ListMLELoss,
        fnn.ApproxNDCGLoss,
    ],
)
def test_module_checks_config_at_construction(module) -> None:
    with pytest.raises(ValueError, match=rf"{module.__name__}: `reduction` must be one of"):
        module(reduction="avg")
