"""Bad input to the divergences: each fails with the house message."""

from __future__ import annotations

import pytest
import torch

import funcloss
import funcloss.nn as fnn

X = torch.full((2, 3), 1 / 3)
NAMES = ["js_div", "generalized_kl_div"]
MODULES = {"js_div": fnn.JSDivLoss, "generalized_kl_div": fnn.GeneralizedKLDivLoss}


@pytest.mark.parametrize("name", NAMES)
def test_non_floating_and_non_tensor_arguments(name: str) -> None:
    fn = getattr(funcloss, name)
    integers = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(TypeError, match=rf"{name}: `input` must have a floating-point dtype"):
        fn(integers, X)
    with pytest.raises(TypeError, match=rf"{name}: `target` must have a floating-point dtype"):
        fn(X, integers)
    with pytest.raises(TypeError, match=rf"{name}: `target` must be a torch.Tensor, got list"):
        fn(X, [0.0, 1.0, 2.0])
    with pytest.raises(TypeError, match=rf"{name}: `input` must be a torch.Tensor, got float"):
        fn(0.5, X)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_where(name: str) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(ValueError, match=rf"{name}: `target` must be broadcastable with"):
        fn(X, torch.zeros(4))
    with pytest.raises(TypeError, match=rf"{name}: `where` must be a bool tensor"):
        fn(X, X, where=torch.ones(2, 3))
    with pytest.raises(ValueError, match=rf"{name}: `where` must be broadcastable"):
        fn(X, X, where=torch.ones(4, dtype=torch.bool))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduction", ["avg", "elementwise_mean", None])
def test_bad_reduction(name: str, reduction) -> None:
    with pytest.raises(
        ValueError, match=rf"{name}: `reduction` must be one of 'none' \| 'batchmean' \| 'mean'"
    ):
        getattr(funcloss, name)(X, X, reduction=reduction)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("log_input", [1, "yes", None, torch.tensor(True)])
def test_log_input_must_be_a_bool(name: str, log_input) -> None:
    kind = type(log_input).__name__
    with pytest.raises(TypeError, match=rf"{name}: `log_input` must be a bool, got {kind}"):
        getattr(funcloss, name)(X, X, log_input=log_input)


@pytest.mark.parametrize("name", NAMES)
def test_bad_config_fails_at_module_construction(name: str) -> None:
    module = MODULES[name]
    with pytest.raises(ValueError, match=rf"{module.__name__}: `reduction` must be one of"):
        module(reduction="avg")
    with pytest.raises(TypeError, match=rf"{module.__name__}: `log_input` must be a bool"):
        module(log_input="yes")
    with pytest.raises(TypeError, match=r"log_target"):
        module(log_target=True)  # kl_div's name: a misspelt argument
