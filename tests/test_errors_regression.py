"""Bad input to the regression losses: each fails with the house message."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

import funcloss
import funcloss.nn as fnn

X = torch.zeros(2, 3)
PAIRWISE = [
    "l1_loss",
    "mse_loss",
    "huber_loss",
    "smooth_l1_loss",
    "poisson_nll_loss",
    "kl_div",
]
WEIGHTED = ["l1_loss", "mse_loss", "huber_loss"]


@pytest.mark.parametrize("name", [*PAIRWISE, "gaussian_nll_loss"])
@pytest.mark.parametrize("target_shape", [(4,), (3, 3), (2, 2), (5, 3, 2)])
def test_target_that_does_not_broadcast(name, target_shape) -> None:
    # torch raises a C++ broadcast error here (shapes that broadcast: tests/test_broadcasting.py)
    extra = (1.0,) if name == "gaussian_nll_loss" else ()
    with pytest.raises(
        ValueError,
        match=rf"{name}: `target` must be broadcastable with `input` \(shape \(2, 3\)\), got",
    ):
        getattr(funcloss, name)(X, torch.zeros(target_shape), *extra)


def test_mse_loss_refuses_complex() -> None:
    # torch 2.13: NotImplementedError "mse_cpu" not implemented for 'ComplexFloat'
    z = torch.zeros(2, 3, dtype=torch.complex64)
    with pytest.raises(TypeError, match=r"mse_loss: `input` must have a real floating-point"):
        funcloss.mse_loss(z, z)
    with pytest.raises(TypeError, match=r"mse_loss: `target` must have a real floating-point"):
        funcloss.mse_loss(X, z)


def test_l1_loss_refuses_integers_and_bool() -> None:
    with pytest.raises(TypeError, match=r"l1_loss: `input` must have a floating-point or complex"):
        funcloss.l1_loss(torch.zeros(3, dtype=torch.bool), torch.zeros(3))


@pytest.mark.parametrize("name", [*PAIRWISE, "gaussian_nll_loss"])
def test_non_floating_input_and_target(name) -> None:
    fn = getattr(funcloss, name)
    extra = (torch.ones(2, 3),) if name == "gaussian_nll_loss" else ()
    integers = torch.zeros(2, 3, dtype=torch.int64)
    # l1_loss takes complex tensors too: "a floating-point or complex dtype"
    with pytest.raises(TypeError, match=rf"{name}: `input` must have a floating-point"):
        fn(integers, X, *extra)
    with pytest.raises(TypeError, match=rf"{name}: `target` must have a floating-point"):
        fn(X, integers, *extra)
    with pytest.raises(TypeError, match=rf"{name}: `target` must be a torch.Tensor, got list"):
        fn(X, [[0.0] * 3] * 2, *extra)


@pytest.mark.parametrize("name", WEIGHTED)
def test_weight_shape_and_dtype(name) -> None:
    fn = getattr(funcloss, name)
    for shape in [(3,), (1, 3), (2, 3, 1)]:
        with pytest.raises(
            ValueError, match=rf"{name}: `weight` must have the same shape as `input` \(2, 3\)"
        ):
            fn(X, X, weight=torch.ones(shape))
    with pytest.raises(TypeError, match=rf"{name}: `weight` must have a floating-point dtype"):
        fn(X, X, weight=torch.ones(2, 3, dtype=torch.int64))


@pytest.mark.parametrize("name", [*PAIRWISE, "gaussian_nll_loss"])
@pytest.mark.parametrize("reduction", ["avg", "elementwise_mean", "", None])
def test_bad_reduction(name, reduction) -> None:
    extra = (torch.ones(2, 3),) if name == "gaussian_nll_loss" else ()
    with pytest.raises(ValueError, match=rf"{name}: `reduction` must be one of 'none' \| "):
        getattr(funcloss, name)(X, X, *extra, reduction=reduction)


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "poisson_nll_loss", "gaussian_nll_loss"])
def test_batchmean_is_kl_div_only(name) -> None:
    extra = (1.0,) if name == "gaussian_nll_loss" else ()
    with pytest.raises(ValueError, match=r"got 'batchmean'"):
        getattr(funcloss, name)(X, X, *extra, reduction="batchmean")


def test_kl_div_names_its_reductions() -> None:
    with pytest.raises(ValueError, match=r"'none' \| 'batchmean' \| 'mean' \| 'sum', got 'avg'"):
        funcloss.kl_div(X, X, reduction="avg")


@pytest.mark.parametrize("delta", [0.0, -1.0, float("nan")])
def test_huber_delta_must_be_positive(delta) -> None:
    with pytest.raises(ValueError, match=r"huber_loss: `delta` must be positive, got"):
        funcloss.huber_loss(X, X, delta=delta)


@pytest.mark.parametrize("beta", [-0.5, float("nan")])
def test_smooth_l1_beta_must_be_non_negative(beta) -> None:
    with pytest.raises(ValueError, match=r"smooth_l1_loss: `beta` must be non-negative, got"):
        funcloss.smooth_l1_loss(X, X, beta=beta)


def test_negative_eps() -> None:
    with pytest.raises(ValueError, match=r"poisson_nll_loss: `eps` must be non-negative, got -1e-"):
        funcloss.poisson_nll_loss(X, X, log_input=False, eps=-1e-8)
    with pytest.raises(ValueError, match=r"gaussian_nll_loss: `eps` must be non-negative, got -1"):
        funcloss.gaussian_nll_loss(X, X, 1.0, eps=-1.0)


@pytest.mark.parametrize(
    "var_shape", [(3,), (6,), (2, 3, 1), (1, 1), (2, 2), (3, 2), (1, 2, 3), (0, 3)]
)
def test_gaussian_var_shape(var_shape) -> None:
    with pytest.raises(
        ValueError,
        match=r"gaussian_nll_loss: `var` must have the input's shape \(2, 3\), that shape with "
        r"one dimension equal to 1, or that shape without its last dimension \(2,\), got",
    ):
        funcloss.gaussian_nll_loss(X, X, torch.ones(var_shape))


@pytest.mark.parametrize("target_shape", [(2,), (3, 1, 2), (2, 2)])
def test_gaussian_target_shape(target_shape) -> None:
    # torch broadcasts any target shape that broadcasts (tests/test_broadcasting.py)
    with pytest.raises(
        ValueError, match=r"gaussian_nll_loss: `target` must be broadcastable with `input` \("
    ):
        funcloss.gaussian_nll_loss(X, torch.zeros(target_shape), torch.ones(2, 3))


def test_gaussian_var_kind_and_dtype() -> None:
    for var in ("1.0", True, [1.0, 1.0]):
        with pytest.raises(TypeError, match=r"`var` must be a torch.Tensor or a float, got"):
            funcloss.gaussian_nll_loss(X, X, var)
    with pytest.raises(TypeError, match=r"`var` must have a floating-point dtype, got torch.int64"):
        funcloss.gaussian_nll_loss(X, X, torch.ones(2, 3, dtype=torch.int64))


def test_gaussian_negative_var_eager() -> None:
    with pytest.raises(ValueError, match=r"gaussian_nll_loss: `var` must be non-negative, got -1"):
        funcloss.gaussian_nll_loss(X, X, -1.0)
    var = torch.tensor([[1.0, 1.0, -0.5], [1.0, 1.0, 1.0]])
    with pytest.raises(
        ValueError, match=r"gaussian_nll_loss: `var` values must be non-negative, got -0.5"
    ):
        funcloss.gaussian_nll_loss(X, X, var)
    with pytest.raises(ValueError, match=r"values must be non-negative, got -2.0"):
        funcloss.gaussian_nll_loss(X, X, torch.tensor([1.0, -2.0]))  # one fewer dimension


def test_gaussian_negative_var_unchecked_under_vmap() -> None:
    var = torch.tensor([[1.0, 1.0, -0.5], [1.0, 1.0, 1.0]])
    vmap(funcloss.gaussian_nll_loss)(X, X, var)  # no error: value checks are eager-only


def test_legacy_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="size_average"):
        funcloss.l1_loss(X, X, size_average=True)
    with pytest.raises(TypeError):
        funcloss.mse_loss(X, X, None)  # torch's third positional is size_average
    with pytest.raises(TypeError):
        funcloss.kl_div(X, X, None, None, "sum")
    with pytest.raises(TypeError):
        funcloss.poisson_nll_loss(X, X, True, False, None)


def test_module_misspelt_argument() -> None:
    with pytest.raises(TypeError, match="HuberLoss"):
        fnn.HuberLoss(detla=2.0)
    with pytest.raises(TypeError, match="KLDivLoss"):
        fnn.KLDivLoss(size_average=False)


def test_module_checks_config_at_construction() -> None:
    with pytest.raises(ValueError, match=r"SmoothL1Loss: `beta` must be non-negative"):
        fnn.SmoothL1Loss(beta=-1.0)
    with pytest.raises(ValueError, match=r"KLDivLoss: `reduction` must be one of"):
        fnn.KLDivLoss(reduction="avg")


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("huber_loss", {"delta": "1"}),
        ("huber_loss", {"delta": torch.tensor(1.0)}),
        ("smooth_l1_loss", {"beta": None}),
        ("smooth_l1_loss", {"beta": torch.tensor(0.5)}),
        ("poisson_nll_loss", {"eps": "1e-8"}),
    ],
)
def test_config_must_be_a_number(name, config) -> None:
    # These used to fail with a bare TypeError from a comparison or from hardtanh.
    (arg,) = config
    with pytest.raises(TypeError, match=rf"{name}: `{arg}` must be a real number, got"):
        getattr(funcloss, name)(X, X, **config)
