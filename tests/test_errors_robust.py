"""Bad input to the robust regression losses: each fails with the house message."""

from __future__ import annotations

import math

import pytest
import torch

import funcloss
import funcloss.nn as fnn

X = torch.zeros(2, 3)
PAIRWISE = [
    "log_cosh_loss",
    "charbonnier_loss",
    "cauchy_loss",
    "geman_mcclure_loss",
    "welsch_loss",
]
SCALED = PAIRWISE[1:]
MODULES = {
    "charbonnier_loss": fnn.CharbonnierLoss,
    "cauchy_loss": fnn.CauchyLoss,
    "geman_mcclure_loss": fnn.GemanMcClureLoss,
    "welsch_loss": fnn.WelschLoss,
}


def _call(name, *args, **kwargs):
    if name == "general_robust_loss":
        return funcloss.general_robust_loss(args[0], args[1], 1.0, *args[2:], **kwargs)
    return getattr(funcloss, name)(*args, **kwargs)


@pytest.mark.parametrize("name", [*PAIRWISE, "general_robust_loss"])
def test_non_floating_and_non_tensor_arguments(name: str) -> None:
    integers = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(TypeError, match=rf"{name}: `input` must have a floating-point dtype"):
        _call(name, integers, X)
    with pytest.raises(TypeError, match=rf"{name}: `target` must have a floating-point dtype"):
        _call(name, X, integers)
    with pytest.raises(TypeError, match=rf"{name}: `target` must be a torch.Tensor, got list"):
        _call(name, X, [0.0, 1.0, 2.0])


@pytest.mark.parametrize("name", [*PAIRWISE, "general_robust_loss"])
def test_shapes_and_reduction_and_where(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name}: `target` must be broadcastable with"):
        _call(name, X, torch.zeros(4))
    with pytest.raises(ValueError, match=rf"{name}: `reduction` must be one of"):
        _call(name, X, X, reduction="batchmean")
    with pytest.raises(TypeError, match=rf"{name}: `where` must be a bool tensor"):
        _call(name, X, X, where=torch.ones(2, 3))
    with pytest.raises(ValueError, match=rf"{name}: `where` must be broadcastable"):
        _call(name, X, X, where=torch.ones(4, dtype=torch.bool))


@pytest.mark.parametrize("name", [*SCALED, "general_robust_loss"])
@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan])
def test_non_positive_scale(name: str, scale: float) -> None:
    with pytest.raises(ValueError, match=rf"{name}: `scale` must be"):
        _call(name, X, X, scale)
    with pytest.raises(ValueError, match=rf"{name}: `scale` values must be positive, got"):
        _call(name, X, X, torch.tensor([1.0, scale, 2.0]))


@pytest.mark.parametrize("name", SCALED)
def test_scale_errors_at_module_construction(name: str) -> None:
    module = MODULES[name]
    with pytest.raises(ValueError, match=rf"{module.__name__}: `scale` must be positive, got -2"):
        module(scale=-2.0)
    with pytest.raises(ValueError, match=rf"{module.__name__}: `scale` values must be positive"):
        module(scale=torch.tensor([0.0]))
    with pytest.raises(TypeError, match=rf"{module.__name__}: `scale` must be a real number"):
        module(scale="1")
    with pytest.raises(ValueError, match=rf"{module.__name__}: `reduction` must be one of"):
        module(reduction="avg")


def test_general_robust_loss_alpha() -> None:
    fn = "general_robust_loss"
    with pytest.raises(ValueError, match=rf"{fn}: `alpha` must be a real number or -inf"):
        funcloss.general_robust_loss(X, X, math.inf)
    with pytest.raises(ValueError, match=rf"{fn}: `alpha` must be a real number, not NaN"):
        funcloss.general_robust_loss(X, X, math.nan)
    with pytest.raises(TypeError, match=rf"{fn}: `alpha` must be a real number, got str"):
        funcloss.general_robust_loss(X, X, "1")
    with pytest.raises(TypeError, match=rf"{fn}: `alpha` must have a floating-point dtype"):
        funcloss.general_robust_loss(X, X, torch.tensor(1))
    with pytest.raises(ValueError, match=rf"{fn}: `alpha` must be broadcastable with"):
        funcloss.general_robust_loss(X, X, torch.ones(4))
    with pytest.raises(ValueError, match=r"GeneralRobustLoss: `scale` must be positive"):
        fnn.GeneralRobustLoss(scale=0.0)


def test_log_cosh_module_config() -> None:
    with pytest.raises(ValueError, match=r"LogCoshLoss: `reduction` must be one of"):
        fnn.LogCoshLoss(reduction="batchmean")
    with pytest.raises(TypeError, match=r"LogCoshLoss: "):
        fnn.LogCoshLoss(scale=1.0)


@pytest.mark.parametrize("quantile", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_quantile_outside_the_unit_interval(quantile: float) -> None:
    with pytest.raises(ValueError, match=r"quantile_loss: `quantile` must be"):
        funcloss.quantile_loss(X, X, quantile)
    with pytest.raises(ValueError, match=r"quantile_loss: `quantile` values must be in \(0, 1\)"):
        funcloss.quantile_loss(X, X, torch.tensor([0.5, quantile, 0.2]))
    with pytest.raises(ValueError, match=r"QuantileLoss: `quantile` must be"):
        fnn.QuantileLoss(quantile=quantile)


def test_quantile_types_and_shapes() -> None:
    with pytest.raises(TypeError, match=r"quantile_loss: `quantile` must have a floating-point"):
        funcloss.quantile_loss(X, X, torch.tensor([1, 0, 0]))
    with pytest.raises(ValueError, match=r"quantile_loss: `quantile` must be broadcastable"):
        funcloss.quantile_loss(X, X, torch.full((4,), 0.5))
    with pytest.raises(ValueError, match=r"quantile_loss: `target` must be broadcastable"):
        funcloss.quantile_loss(X, torch.zeros(4))
    with pytest.raises(TypeError, match=r"quantile_loss: `input` must have a floating-point"):
        funcloss.quantile_loss(torch.zeros(3, dtype=torch.int64), torch.zeros(3))


def test_cosine_distance_config() -> None:
    fn = "cosine_distance_loss"
    for eps in (0.0, -1e-8, math.nan):
        with pytest.raises(ValueError, match=rf"{fn}: `eps` must be"):
            funcloss.cosine_distance_loss(X, X, eps=eps)
        with pytest.raises(ValueError, match=r"CosineDistanceLoss: `eps` must be"):
            fnn.CosineDistanceLoss(eps=eps)
    with pytest.raises(TypeError, match=rf"{fn}: `dim` must be an int, got float"):
        funcloss.cosine_distance_loss(X, X, dim=1.0)
    with pytest.raises(ValueError, match=rf"{fn}: `dim` must be a dimension of the inputs'"):
        funcloss.cosine_distance_loss(X, X, dim=2)
    with pytest.raises(ValueError, match=rf"{fn}: `dim` must be a dimension"):
        funcloss.cosine_distance_loss(torch.zeros(()), torch.zeros(()))
    with pytest.raises(ValueError, match=rf"{fn}: `where` must be broadcastable"):
        funcloss.cosine_distance_loss(X, X, where=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=rf"{fn}: `target` must be broadcastable"):
        funcloss.cosine_distance_loss(X, torch.zeros(4))
