"""Specs for l1/mse/huber/smooth_l1, poisson_nll_loss, gaussian_nll_loss and kl_div.

Draws keep off the kinks (|x - y| = 0 for L1, |x - y| = delta/beta where the second derivative
of Huber/smooth L1 jumps, target = 1 where Poisson's Stirling term switches on) and off var's
clamp at eps; those points are pinned in test_regression.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import floats, logits, probabilities, shapes

from .registry import Case, LossSpec, weighted_count_mean

# Half-width of the band around a kink that draws never enter (kinks are >= 0.2 apart).
KINK_MARGIN = 0.02


def away_from(values: Tensor, points: Sequence[float], margin: float = KINK_MARGIN) -> Tensor:
    """Move every entry within ``margin`` of one of ``points`` to ``2 * margin`` from it."""
    for point in points:
        close = (values - point).abs() < margin
        pushed = point + torch.where(values >= point, 2 * margin, -2 * margin)
        values = torch.where(close, pushed, values)
    return values


@st.composite
def _pairs(
    draw: st.DrawFn, kinks: Sequence[float] = (), weighted: bool = False, min_dims: int = 1
) -> Case:
    """``input``, ``target = input - diff`` with ``diff`` off ``kinks``; optional weight."""
    shape = draw(shapes(min_dims, 3, max_side=4))
    x = draw(floats(shape))
    diff = away_from(draw(floats(shape)), kinks)
    kwargs = {}
    if weighted:
        kwargs["weight"] = draw(floats(shape, min_value=0.1, max_value=2.0))
    return Case((x, x - diff), kwargs)


def _weighted_mean(case: Case, loss: Tensor, where: Tensor) -> Tensor:
    """torch's mean with an elementwise weight divides by the (included) weights' sum."""
    return weighted_count_mean(loss, where, case.kwargs["weight"].expand(where.shape))


@st.composite
def _huber_cases(draw: st.DrawFn, weighted: bool = False) -> Case:
    delta = draw(st.floats(0.2, 3.0))
    case = draw(_pairs(kinks=(-delta, delta), weighted=weighted))
    return Case(case.args, dict(case.kwargs, delta=delta))


@st.composite
def _smooth_l1_cases(draw: st.DrawFn) -> Case:
    beta = draw(st.one_of(st.just(0.0), st.floats(0.2, 3.0)))
    case = draw(_pairs(kinks=(0.0,) if beta == 0 else (-beta, beta)))
    return Case(case.args, {"beta": beta})


@st.composite
def _poisson_cases(draw: st.DrawFn) -> Case:
    shape = draw(shapes(1, 3, max_side=4))
    log_input, full = draw(st.booleans()), draw(st.booleans())
    low, high = (-3.0, 3.0) if log_input else (0.1, 5.0)
    x = draw(floats(shape, min_value=low, max_value=high))
    # Positive counts off 1, where the Stirling term of `full` switches on (a jump).
    y = away_from(draw(floats(shape, min_value=0.05, max_value=8.0)), (1.0,))
    kwargs = {"log_input": log_input, "full": full}
    if draw(st.booleans()):
        kwargs["eps"] = draw(st.sampled_from([0.0, 1e-8, 1e-3]))
    return Case((x, y), kwargs)


@st.composite
def _gaussian_options(draw: st.DrawFn) -> dict:
    # eps stays below the variances drawn (>= 0.1): the clamp is pinned separately.
    return {"full": draw(st.booleans()), "eps": draw(st.sampled_from([1e-6, 1e-2]))}


def _variances(shape: Sequence[int]) -> st.SearchStrategy[Tensor]:
    return floats(shape, min_value=0.1, max_value=3.0)


@st.composite
def _gaussian_cases(draw: st.DrawFn) -> Case:
    shape = draw(shapes(1, 3, max_side=4))
    x, y = draw(floats(shape)), draw(floats(shape))
    return Case((x, y, draw(_variances(shape))), draw(_gaussian_options()))


def _with_one(shape: tuple[int, ...], dim: int) -> tuple[int, ...]:
    return (*shape[:dim], 1, *shape[dim + 1 :])


@st.composite
def _gaussian_homoscedastic_cases(draw: st.DrawFn) -> Case:
    """var one dimension short or with one dimension of 1; target maybe with a dimension of 1.

    Dimension 0 (the batch) is never the shared one, so per-sample slicing stays valid.
    """
    shape = draw(shapes(2, 3, min_side=2, max_side=4))
    x = draw(floats(shape))
    var_shape = draw(
        st.one_of(
            st.just(shape[:-1]),
            st.integers(1, len(shape) - 1).map(lambda d: _with_one(shape, d)),
        )
    )
    target_shape = draw(
        st.one_of(st.just(shape), st.integers(1, len(shape) - 1).map(lambda d: _with_one(shape, d)))
    )
    y = draw(floats(target_shape))
    return Case((x, y, draw(_variances(var_shape))), draw(_gaussian_options()))


@st.composite
def _gaussian_float_var_cases(draw: st.DrawFn) -> Case:
    shape = draw(shapes(1, 3, max_side=4))
    x, y = draw(floats(shape)), draw(floats(shape))
    return Case((x, y, draw(st.floats(0.1, 3.0))), draw(_gaussian_options()))


@st.composite
def _gaussian_scalar_target_cases(draw: st.DrawFn) -> Case:
    """One target value for every mean (a 0-dim target, broadcast as torch does)."""
    shape = draw(shapes(1, 3, max_side=4))
    x, y = draw(floats(shape)), draw(floats(()))
    return Case((x, y, draw(_variances(shape))), draw(_gaussian_options()))


@st.composite
def _kl_broadcast_cases(draw: st.DrawFn) -> Case:
    """One target distribution ``(1, C)`` for every row of ``(N, C)`` log-probabilities."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    log_q = torch.log_softmax(draw(logits((n, c))), -1)
    p = draw(probabilities((1, c), dim=1))
    log_target = draw(st.booleans())
    return Case((log_q, torch.log(p) if log_target else p), {"log_target": log_target})


@st.composite
def _kl_cases(draw: st.DrawFn) -> Case:
    shape = draw(shapes(1, 3, max_side=4))
    log_q = torch.log_softmax(draw(logits(shape)), -1)
    p = draw(probabilities(shape, dim=len(shape) - 1))
    log_target = draw(st.booleans())
    return Case((log_q, torch.log(p) if log_target else p), {"log_target": log_target})


def _torch_kl_div(input: Tensor, target: Tensor, **kwargs: object) -> Tensor:
    # torch warns on reduction="mean" (it divides by the number of elements); warnings are
    # errors in the tests, and the value is what we compare.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "reduction: 'mean' divides", UserWarning)
        return F.kl_div(input, target, **kwargs)


SPECS = [
    LossSpec(
        "l1_loss",
        funcloss.l1_loss,
        fnn.L1Loss,
        lambda: _pairs(kinks=(0.0,)),
        F.l1_loss,
        wrt=(0, 1),
        torch_module=torch.nn.L1Loss,
    ),
    LossSpec(
        "l1_loss-weighted",
        funcloss.l1_loss,
        fnn.L1Loss,
        lambda: _pairs(kinks=(0.0,), weighted=True),
        F.l1_loss,
        wrt=(0, 1),
        per_sample_dims=None,
        masked_mean=_weighted_mean,
    ),
    LossSpec(
        "mse_loss",
        funcloss.mse_loss,
        fnn.MSELoss,
        _pairs,
        F.mse_loss,
        wrt=(0, 1),
        torch_module=torch.nn.MSELoss,
    ),
    LossSpec(
        "mse_loss-weighted",
        funcloss.mse_loss,
        fnn.MSELoss,
        lambda: _pairs(weighted=True),
        F.mse_loss,
        wrt=(0, 1),
        per_sample_dims=None,
        masked_mean=_weighted_mean,
    ),
    LossSpec(
        "huber_loss",
        funcloss.huber_loss,
        fnn.HuberLoss,
        _huber_cases,
        F.huber_loss,
        wrt=(0, 1),
        torch_module=torch.nn.HuberLoss,
    ),
    LossSpec(
        "huber_loss-weighted",
        funcloss.huber_loss,
        fnn.HuberLoss,
        lambda: _huber_cases(weighted=True),
        F.huber_loss,
        wrt=(0, 1),
        per_sample_dims=None,
    ),
    LossSpec(
        "smooth_l1_loss",
        funcloss.smooth_l1_loss,
        fnn.SmoothL1Loss,
        _smooth_l1_cases,
        F.smooth_l1_loss,
        wrt=(0, 1),
        torch_module=torch.nn.SmoothL1Loss,
    ),
    LossSpec(
        "poisson_nll_loss",
        funcloss.poisson_nll_loss,
        fnn.PoissonNLLLoss,
        _poisson_cases,
        F.poisson_nll_loss,
        wrt=(0, 1),
        torch_module=torch.nn.PoissonNLLLoss,
    ),
    LossSpec(
        "gaussian_nll_loss",
        funcloss.gaussian_nll_loss,
        fnn.GaussianNLLLoss,
        _gaussian_cases,
        F.gaussian_nll_loss,
        wrt=(0, 1, 2),
        per_sample_dims=(0, 0, 0),
        torch_module=torch.nn.GaussianNLLLoss,
    ),
    LossSpec(
        "gaussian_nll_loss-homoscedastic",
        funcloss.gaussian_nll_loss,
        fnn.GaussianNLLLoss,
        _gaussian_homoscedastic_cases,
        F.gaussian_nll_loss,
        wrt=(0, 2),
        per_sample_dims=(0, 0, 0),
    ),
    LossSpec(
        "gaussian_nll_loss-scalar-target",
        funcloss.gaussian_nll_loss,
        fnn.GaussianNLLLoss,
        _gaussian_scalar_target_cases,
        F.gaussian_nll_loss,
        wrt=(0, 1, 2),
        per_sample_dims=(0, None, 0),
    ),
    LossSpec(
        "gaussian_nll_loss-float-var",
        funcloss.gaussian_nll_loss,
        fnn.GaussianNLLLoss,
        _gaussian_float_var_cases,
        F.gaussian_nll_loss,
        wrt=(0, 1),
        per_sample_dims=(0, 0, None),
    ),
    LossSpec(
        "kl_div",
        funcloss.kl_div,
        fnn.KLDivLoss,
        _kl_cases,
        _torch_kl_div,
        wrt=(0, 1),
        reductions=("none", "batchmean", "mean", "sum"),
        torch_module=torch.nn.KLDivLoss,
    ),
    LossSpec(
        "kl_div-broadcast",
        funcloss.kl_div,
        fnn.KLDivLoss,
        _kl_broadcast_cases,
        _torch_kl_div,
        wrt=(0, 1),
        per_sample_dims=(0, None),
        reductions=("none", "batchmean", "mean", "sum"),
    ),
]
