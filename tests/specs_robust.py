"""Specs for the robust regression losses (funcloss/_robust.py).

Oracles are the papers' formulas, written naively in float64 (no care for overflow or
cancellation): log(cosh(r)); Barron's rho(x, alpha, c) = |alpha - 2| / alpha *
(((x / c)^2 / |alpha - 2| + 1)^(alpha / 2) - 1) and its named members. Draws of Barron's
alpha keep off 0 and 2, where the formula is 0 / 0; those points are pinned in test_robust.py.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import floats, shapes

from .anchors import anchor
from .registry import Case, LossSpec, default_arg_mask


def reduce_like_torch(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


@st.composite
def pairs(draw: st.DrawFn, low: float = -5.0, high: float = 5.0) -> Case:
    shape = draw(shapes(1, 3, max_side=4))
    x = draw(floats(shape, min_value=low, max_value=high))
    y = draw(floats(shape, min_value=low, max_value=high))
    return Case((x, y))


def log_cosh_oracle(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    return reduce_like_torch(torch.log(torch.cosh(input - target)), reduction)


def barron_rho(residual: Tensor, alpha, scale=1.0) -> Tensor:
    """Barron 2019, eq. (1), naively (alpha off 0 and 2)."""
    z = (residual / scale) ** 2
    b = torch.abs(torch.as_tensor(alpha, dtype=z.dtype) - 2)
    return b / alpha * ((z / b + 1) ** (alpha / 2) - 1)


def general_oracle(input, target, alpha, scale=1.0, reduction="mean") -> Tensor:
    return reduce_like_torch(barron_rho(input - target, alpha, scale), reduction)


def charbonnier_oracle(input, target, scale=1.0, reduction="mean") -> Tensor:
    return reduce_like_torch(torch.sqrt(((input - target) / scale) ** 2 + 1) - 1, reduction)


def cauchy_oracle(input, target, scale=1.0, reduction="mean") -> Tensor:
    return reduce_like_torch(torch.log(0.5 * ((input - target) / scale) ** 2 + 1), reduction)


def geman_mcclure_oracle(input, target, scale=1.0, reduction="mean") -> Tensor:
    z = ((input - target) / scale) ** 2
    return reduce_like_torch(2 * z / (z + 4), reduction)


def welsch_oracle(input, target, scale=1.0, reduction="mean") -> Tensor:
    return reduce_like_torch(1 - torch.exp(-0.5 * ((input - target) / scale) ** 2), reduction)


def _alphas() -> st.SearchStrategy[float]:
    """alpha in [-6, 6] off 0 and 2 (the formula's 0 / 0) by 0.1: the limits are pinned in
    test_robust.py."""
    return st.floats(-6.0, 6.0).filter(lambda a: abs(a) > 0.1 and abs(a - 2) > 0.1)


def _scales() -> st.SearchStrategy[float]:
    return st.sampled_from([1.0, 0.5, 2.5])


@st.composite
def general_number_cases(draw: st.DrawFn) -> Case:
    x, y = draw(pairs()).args
    return Case((x, y, draw(_alphas())), {"scale": draw(_scales())})


@st.composite
def general_tensor_cases(draw: st.DrawFn) -> Case:
    """alpha a 0-dim tensor (differentiated), the scale a tensor of the last dimension's size
    or a number."""
    x, y = draw(pairs()).args
    alpha = torch.tensor(draw(_alphas()), dtype=torch.float64)
    scale = draw(st.one_of(_scales(), floats((x.shape[-1],), min_value=0.5, max_value=3.0)))
    return Case((x, y, alpha), {"scale": scale})


@st.composite
def scaled_pairs(draw: st.DrawFn) -> Case:
    x, y = draw(pairs()).args
    return Case((x, y), {"scale": draw(_scales())})


def _no_alpha_mask(where: Tensor, position: int, case: Case) -> Tensor | None:
    """Only the residual's arguments hold per-element values; a 0-dim alpha is shared."""
    return None if position == 2 else default_arg_mask(where, case.args[position])


def kornia_adapter(name: str):
    """kornia's loss ``name`` in funcloss's signature: kornia has no scale (c = 1), so the
    residual is divided by it first; kornia's default reduction is "none"."""

    def call(input: Tensor, target: Tensor, scale=1.0, reduction: str = "mean") -> Tensor:
        losses = anchor("kornia").losses
        return getattr(losses, name)(input / scale, target / scale, reduction=reduction)

    call.__name__ = f"kornia_{name}"
    return call


def quantile_oracle(input, target, quantile=0.5, reduction="mean") -> Tensor:
    """The pinball loss, max(q e, (q - 1) e), e = target - input (Koenker and Bassett)."""
    e = target - input
    return reduce_like_torch(torch.maximum(quantile * e, (quantile - 1) * e), reduction)


def away_from_zero(values: Tensor, margin: float = 0.02) -> Tensor:
    """Move entries within ``margin`` of 0 (the pinball's kink) to ``2 * margin`` from it."""
    close = values.abs() < margin
    return torch.where(close, torch.where(values >= 0, 2 * margin, -2 * margin), values)


@st.composite
def quantile_number_cases(draw: st.DrawFn) -> Case:
    shape = draw(shapes(1, 3, max_side=4))
    x = draw(floats(shape))
    y = x - away_from_zero(draw(floats(shape)))
    return Case((x, y), {"quantile": draw(st.floats(0.05, 0.95))})


@st.composite
def quantile_tensor_cases(draw: st.DrawFn) -> Case:
    """(N, K) predictions, one column per quantile, the quantiles a (K,) tensor."""
    n, k = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = draw(floats((n, k)))
    y = x - away_from_zero(draw(floats((n, k))))
    return Case((x, y), {"quantile": draw(floats((k,), min_value=0.05, max_value=0.95))})


def cosine_distance_oracle(input, target, dim=-1, eps=1e-8, reduction="mean") -> Tensor:
    """1 - <x, y> / (||x|| ||y||), naively (draws are never zero vectors)."""
    cosine = (input * target).sum(dim) / (input.norm(dim=dim) * target.norm(dim=dim))
    return reduce_like_torch(1 - cosine, reduction)


@st.composite
def cosine_cases(draw: st.DrawFn) -> Case:
    """(N, D) vectors along the last dimension, norms at least 0.1; target maybe (1, D)."""
    n, d = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = draw(floats((n, d)))
    y = draw(floats((draw(st.sampled_from([n, 1])), d)))
    x = torch.where(x.norm(dim=-1, keepdim=True) < 0.1, torch.ones_like(x), x)
    y = torch.where(y.norm(dim=-1, keepdim=True) < 0.1, torch.ones_like(y), y)
    return Case((x, y), {"eps": draw(st.sampled_from([1e-8, 1e-3]))})


NAMED = [
    ("charbonnier_loss", fnn.CharbonnierLoss, charbonnier_oracle),
    ("cauchy_loss", fnn.CauchyLoss, cauchy_oracle),
    ("geman_mcclure_loss", fnn.GemanMcClureLoss, geman_mcclure_oracle),
    ("welsch_loss", fnn.WelschLoss, welsch_oracle),
]

SPECS = [
    LossSpec(
        "log_cosh_loss",
        funcloss.log_cosh_loss,
        fnn.LogCoshLoss,
        pairs,
        log_cosh_oracle,
        wrt=(0, 1),
        anchor_name=None,
    ),
]

SPECS += [
    LossSpec(
        "general_robust_loss",
        funcloss.general_robust_loss,
        fnn.GeneralRobustLoss,
        general_number_cases,
        general_oracle,
        wrt=(0, 1),
        per_sample_dims=(0, 0, None),
        anchor_name=None,
    ),
    LossSpec(
        "general_robust_loss-tensor-alpha",
        funcloss.general_robust_loss,
        fnn.GeneralRobustLoss,
        general_tensor_cases,
        general_oracle,
        wrt=(0, 1, 2),
        per_sample_dims=None,
        where_arg_mask=_no_alpha_mask,
        anchor_name=None,
    ),
]
SPECS += [
    LossSpec(
        name,
        getattr(funcloss, name),
        module,
        scaled_pairs,
        oracle,
        wrt=(0, 1),
        anchor=kornia_adapter(name),
        anchor_name="kornia",
    )
    for name, module, oracle in NAMED
]

SPECS += [
    LossSpec(
        "quantile_loss",
        funcloss.quantile_loss,
        fnn.QuantileLoss,
        quantile_number_cases,
        quantile_oracle,
        wrt=(0, 1),
        anchor_name=None,
    ),
    LossSpec(
        "quantile_loss-tensor",
        funcloss.quantile_loss,
        fnn.QuantileLoss,
        quantile_tensor_cases,
        quantile_oracle,
        wrt=(0, 1),
        anchor_name=None,
    ),
]

SPECS += [
    LossSpec(
        "cosine_distance_loss",
        funcloss.cosine_distance_loss,
        fnn.CosineDistanceLoss,
        cosine_cases,
        cosine_distance_oracle,
        wrt=(0, 1),
        per_sample_dims=None,
        anchor_name=None,
    ),
]
